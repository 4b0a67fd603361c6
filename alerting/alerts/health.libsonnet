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
          ) + alert.zh(
            'certloop 导出器 {{ $labels.instance }} 不可用',
            ('Prometheus 无法抓取 certloop 导出器 {{ $labels.instance }}（任务 {{ $labels.job }}）。'
             + '它监测的证书都不再被观测，因此不会为它们触发任何过期告警。'),
          ),
          alert.new(
            config,
            'CertloopRenewerDown',
            'renewerDown',
            'up{%s} == 0' % config.renewerSelector,
            'certloop renewer {{ $labels.instance }} is down',
            ('Prometheus cannot scrape the certloop renewer {{ $labels.instance }} (job {{ $labels.job }}). '
             + 'Alertmanager cannot hand it renewals either: certificates will not be renewed.'),
          ) + alert.zh(
            'certloop 续期服务 {{ $labels.instance }} 不可用',
            ('Prometheus 无法抓取 certloop 续期服务 {{ $labels.instance }}（任务 {{ $labels.job }}）。'
             + 'Alertmanager 也无法把续期交给它：证书将不会被续期。'),
          ),
          alert.new(
            config,
            'CertloopExporterConfigReloadFailing',
            'exporterConfigReload',
            'certloop_config_last_reload_successful{%s} == 0' % config.exporterSelector,
            'certloop exporter {{ $labels.instance }} failed to reload its configuration',
            ('The last configuration reload of the exporter {{ $labels.instance }} failed; it keeps '
             + 'running with the previous configuration, so changed targets are not observed.'),
          ) + alert.zh(
            'certloop 导出器 {{ $labels.instance }} 重载配置失败',
            ('导出器 {{ $labels.instance }} 最近一次重载配置失败；它继续使用之前的配置运行，'
             + '因此变更后的目标不会被观测。'),
          ),
          alert.new(
            config,
            'CertloopRenewerConfigReloadFailing',
            'renewerConfigReload',
            'certloop_renewer_config_last_reload_successful{%s} == 0' % config.renewerSelector,
            'certloop renewer {{ $labels.instance }} failed to reload its configuration',
            ('The last configuration reload of the renewer {{ $labels.instance }} failed; it keeps '
             + 'running with the previous configuration, so changed certificates are not renewed as configured.'),
          ) + alert.zh(
            'certloop 续期服务 {{ $labels.instance }} 重载配置失败',
            ('续期服务 {{ $labels.instance }} 最近一次重载配置失败；它继续使用之前的配置运行，'
             + '因此变更后的证书不会按配置续期。'),
          ),
        ],
      },
    ],
  },
}
