"""certloop exporter: observe TLS endpoints and certificate files, expose Prometheus metrics.

    exporter.config.load_config(path) -> ExporterConfig      # YAML -> frozen models, ConfigError names the path
    exporter.metrics.CATALOGUE                                # every metric, as certloop.metricspec.MetricSpec
    exporter.engine.Engine(path | config=...)                 # sweeps, inventory cache, reload, exposition()
    exporter.server.build_server(engine) -> HttpServer        # /metrics /probe /-/healthy /-/ready /-/reload
    exporter.sources.endpoints.probe_endpoint(spec, ctx)      # one endpoint, every address -> TargetReport
    exporter.cli.main(argv) -> int                            # `certloop exporter ...`

See docs/exporter.md for the configuration reference and the metric catalogue.
"""
