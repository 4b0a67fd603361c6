"""Side-by-side benchmarks of certloop against its peers, on loopback, printing ratios.

    python -m benchmarks.run --scenario all            # what `make bench` runs
    python -m benchmarks.run --scenario probe --quick  # a small, fast run (N=200)

Scenarios (one module each): :mod:`benchmarks.probe` (``/probe`` vs blackbox_exporter),
:mod:`benchmarks.sweep` (inventory sweep vs blackbox driven like Prometheus), :mod:`benchmarks.files`
(10,000 certificate files), :mod:`benchmarks.webhook` (renewer intake under load) and
:mod:`benchmarks.renewal` (one renewal from alert to served, against pebble and nginx).
Every process is started and stopped by the harness; all traffic stays on 127.0.0.1.
"""
