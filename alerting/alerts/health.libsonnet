// Alerts about certloop itself: a component down or running on a stale configuration, the renewer's
// webhook intake failing or slow, its job store unreachable.
local alert = import '../lib/alert.libsonnet';
local duration = import '../lib/duration.libsonnet';

{
  local config = $._config,
  local webhook = config.renewerWebhook,
  local intake = 'handler="/api/v1/alertmanager"',

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
          alert.new(
            config,
            'CertloopRenewerWebhookErrors',
            'renewerWebhookErrors',
            // No webhook in the window: 0/0 is no sample, the alert stays silent.
            ('sum by (job, instance) (rate(certloop_renewer_http_requests_total{%(sel)s,%(intake)s,code=~"5.."}[%(w)s]))'
             + '\n/ sum by (job, instance) (rate(certloop_renewer_http_requests_total{%(sel)s,%(intake)s}[%(w)s]))'
             + '\n> %(ratio)s')
            % { sel: config.renewerSelector, intake: intake, w: webhook.window, ratio: '%g' % webhook.errorRatio },
            'certloop renewer {{ $labels.instance }} answers {{ $value | humanizePercentage }} of webhooks with an error',
            ('The renewer {{ $labels.instance }} answered {{ $value | humanizePercentage }} of the Alertmanager '
             + 'webhooks of the last %s with a 5xx status (more than %s). Alertmanager retries them, but '
             + 'no renewal is queued meanwhile: usually the job store does not answer.')
            % [webhook.window, '%g%%' % (webhook.errorRatio * 100)],
          ) + alert.zh(
            'certloop 续期服务 {{ $labels.instance }} 有 {{ $value | humanizePercentage }} 的 webhook 请求出错',
            ('续期服务 {{ $labels.instance }} 在最近 %s 内以 5xx 状态应答了 {{ $value | humanizePercentage }} 的 '
             + 'Alertmanager webhook 请求（超过 %s）。Alertmanager 会重试，但在此期间没有续期任务入队：'
             + '通常是任务存储（数据库）没有响应。')
            % [alert.durationTextZh(webhook.window), '%g%%' % (webhook.errorRatio * 100)],
          ),
          alert.new(
            config,
            'CertloopRenewerWebhookSlow',
            'renewerWebhookSlow',
            ('histogram_quantile(0.99, sum by (job, instance, le) (rate('
             + 'certloop_renewer_http_request_duration_seconds_bucket{%(sel)s,%(intake)s}[%(w)s])))\n> %(p99)d')
            % { sel: config.renewerSelector, intake: intake, w: webhook.window, p99: duration.seconds(webhook.p99Latency) },
            'certloop renewer {{ $labels.instance }} answers webhooks slowly (p99 {{ $value | humanizeDuration }})',
            ('99%% of the Alertmanager webhooks the renewer {{ $labels.instance }} answered in the last %s took up to '
             + '{{ $value | humanizeDuration }} (more than %s). Past Alertmanager\'s webhook timeout the '
             + 'notification fails and is retried: renewals are queued late. Usually the job store is slow.')
            % [webhook.window, webhook.p99Latency],
          ) + alert.zh(
            'certloop 续期服务 {{ $labels.instance }} 应答 webhook 缓慢（p99 {{ $value | humanizeDuration }}）',
            ('续期服务 {{ $labels.instance }} 在最近 %s 内应答的 Alertmanager webhook 请求中，99%% 耗时不超过 '
             + '{{ $value | humanizeDuration }}（超过 %s）。超过 Alertmanager 的 webhook 超时后通知会失败并重试：'
             + '续期任务会延迟入队。通常是任务存储（数据库）变慢。')
            % [alert.durationTextZh(webhook.window), alert.durationTextZh(webhook.p99Latency)],
          ),
          alert.new(
            config,
            'CertloopRenewerDatabaseUnavailable',
            'renewerDatabaseUnavailable',
            'certloop_renewer_database_up{%s} == 0' % config.renewerSelector,
            'certloop renewer {{ $labels.instance }} cannot reach its database',
            ('The job store of the renewer {{ $labels.instance }} did not answer within its timeout at the last '
             + 'scrapes. Webhooks are refused with 503 (Alertmanager retries), no job is claimed, and its '
             + '/metrics shows the last snapshot of the queue and certificates.'),
          ) + alert.zh(
            'certloop 续期服务 {{ $labels.instance }} 无法访问其数据库',
            ('续期服务 {{ $labels.instance }} 的任务存储在最近几次抓取时未在超时内响应。webhook 请求以 503 拒绝'
             + '（Alertmanager 会重试），不会领取任何任务，其 /metrics 显示的是队列和证书的最后一次快照。'),
          ),
        ],
      },
    ],
  },
}
