"""certloop exporter: observe TLS endpoints and certificate files, expose Prometheus metrics."""
