// Alerts about certloop itself: a component down or running on a stale configuration.
local alert = import '../lib/alert.libsonnet';

{
  local config = $._config,

  prometheusAlerts+:: {
    groups+: [
      {
        name: 'certloop-health',
        rules: [
          alert.new(
            config,
            'CertloopExporterDown',
            'exporterDown',
            'up{%s} == 0' % config.exporterSelector,
            'certloop exporter {{ $labels.instance }} is down',
            ('Prometheus cannot scrape the certloop exporter {{ $labels.instance }} (job {{ $labels.job }}). '
             + 'No certificate it watches is observed, so no expiry alert can fire for them.'),
          ),
          alert.new(
            config,
            'CertloopRenewerDown',
            'renewerDown',
            'up{%s} == 0' % config.renewerSelector,
            'certloop renewer {{ $labels.instance }} is down',
            ('Prometheus cannot scrape the certloop renewer {{ $labels.instance }} (job {{ $labels.job }}). '
             + 'Alertmanager cannot hand it renewals either: certificates will not be renewed.'),
          ),
          alert.new(
            config,
            'CertloopExporterConfigReloadFailing',
            'exporterConfigReload',
            'certloop_config_last_reload_successful{%s} == 0' % config.exporterSelector,
            'certloop exporter {{ $labels.instance }} failed to reload its configuration',
            ('The last configuration reload of the exporter {{ $labels.instance }} failed; it keeps '
             + 'running with the previous configuration, so changed targets are not observed.'),
          ),
          alert.new(
            config,
            'CertloopRenewerConfigReloadFailing',
            'renewerConfigReload',
            'certloop_renewer_config_last_reload_successful{%s} == 0' % config.renewerSelector,
            'certloop renewer {{ $labels.instance }} failed to reload its configuration',
            ('The last configuration reload of the renewer {{ $labels.instance }} failed; it keeps '
             + 'running with the previous configuration, so changed certificates are not renewed as configured.'),
          ),
        ],
      },
    ],
  },
}
