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
            'CertloopMonitoredCertificatesDropped',
            'monitoredCertificatesDropped',
            // The `or` side makes an instance that monitors nothing at all count as 0 (count() of no
            // series is no series); `up == 1` leaves a down exporter to CertloopExporterDown.
            ('(\n  count by (job, instance) (%(leaves)s)\n  or on (job, instance) (0 * count by (job, instance) (up{%(sel)s} == 1))\n)'
             + '\n< on (job, instance)\n  %(ratio)s * max_over_time(count by (job, instance) (%(leaves)s)[%(lb)s:])')
            % {
              leaves: 'certloop_cert_not_after_timestamp_seconds{%s,role="leaf"}' % config.exporterSelector,
              sel: config.exporterSelector,
              ratio: std.toString(config.monitoredCertificates.droppedRatio),
              lb: config.monitoredCertificates.droppedLookback,
            },
            'certloop exporter {{ $labels.instance }} monitors far fewer certificates than before',
            ('The exporter {{ $labels.instance }} now exports {{ $value }} leaf certificates, fewer than %s '
             + 'of the most it exported within the last %s. Targets or files left its configuration (an '
             + 'emptied or truncated config, a directory or glob that matches nothing any more): nothing '
             + 'watches their expiry. If they were removed on purpose this resolves by itself.')
            % [std.toString(config.monitoredCertificates.droppedRatio), config.monitoredCertificates.droppedLookback],
          ) + alert.zh(
            'certloop 导出器 {{ $labels.instance }} 监测的证书数量骤降',
            ('导出器 {{ $labels.instance }} 现在只导出 {{ $value }} 个叶证书，少于最近 %s 内最多时的 %s。'
             + '目标或文件已从其配置中消失（配置被清空或截断，目录或通配符不再匹配任何文件）：'
             + '没有任何东西再监测它们的过期时间。如果是有意移除，告警会自行恢复。')
            % [config.monitoredCertificates.droppedLookback, std.toString(config.monitoredCertificates.droppedRatio)],
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
