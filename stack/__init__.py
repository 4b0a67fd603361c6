"""Real peers on loopback (nginx, pebble, Prometheus, Alertmanager, ...) for tests and `make demo`."""
