// Alerts about the renewer: failed and rolled-back renewals, overdue certificates, a stuck queue.
local alert = import '../lib/alert.libsonnet';
local duration = import '../lib/duration.libsonnet';

{
  local config = $._config,
  local sel = config.renewerSelector,
  // The renewer exports the certificate id under the contract label `certificate`.
  local id = '"{{ $labels.certificate }}"',
  local idZh = '「{{ $labels.certificate }}」',
  local dur = alert.durationZh('$value'),

  prometheusAlerts+:: {
    groups+: [
      {
        name: 'certloop-renewals',
        rules: [
          alert.new(
            config,
            'CertloopRenewalFailed',
            'renewalFailed',
            'certloop_renewer_last_result{%s,result="failed"} == 1' % sel,
            'Renewal of certificate %s failed' % id,
            ('The last renewal attempt of certificate %s failed{{ with printf '
             + "\"certloop_renewer_last_attempt_timestamp_seconds{certificate='%%s'}\" $labels.certificate | query }}"
             + '{{ with first . }} at {{ .Value | humanizeTimestamp }}{{ end }}{{ end }}. '
             + 'The renewer retries, but the certificate keeps ageing: check the job log '
             + 'through the renewer API.') % id,
          ) + alert.zh(
            '证书%s续期失败' % idZh,
            ('证书%s最近一次续期尝试失败{{ with printf '
             + "\"certloop_renewer_last_attempt_timestamp_seconds{certificate='%%s'}\" $labels.certificate | query }}"
             + '{{ with first . }}（{{ .Value | humanizeTimestamp }}）{{ end }}{{ end }}。'
             + '续期服务会重试，但证书仍在临近过期：请通过续期服务的 API 查看任务日志。') % idZh,
          ),
          alert.new(
            config,
            'CertloopRenewalRolledBack',
            'renewalRolledBack',
            'certloop_renewer_last_result{%s,result="rolled_back"} == 1' % sel,
            'Renewal of certificate %s was rolled back' % id,
            ('The renewer issued and installed a new certificate %s but the post-install check failed, so '
             + 'it restored the previous one. The service still serves the old certificate; fix the '
             + 'deployment (reload command, server config) before the old one expires.') % id,
          ) + alert.zh(
            '证书%s的续期已回滚' % idZh,
            ('续期服务已签发并安装新的证书%s，但安装后的检查失败，因此恢复了原证书。服务仍在提供旧证书：'
             + '请在旧证书过期前修复部署（重新加载命令、服务器配置）。') % idZh,
          ),
          alert.new(
            config,
            'CertloopRenewalOverdue',
            'renewalOverdue',
            ('time() - certloop_renewer_next_due_timestamp_seconds{%s} > %d'
             + '\nand certloop_renewer_next_due_timestamp_seconds{%s} > 0')
            % [sel, duration.seconds(config.renewalOverdueAfter), sel],
            'Renewal of certificate %s is overdue by {{ $value | humanizeDuration }}' % id,
            ('Certificate %s has been due for renewal for {{ $value | humanizeDuration }} (more than %s) '
             + 'and has not been renewed. Neither alerts nor the renewal schedule got it renewed.')
            % [id, config.renewalOverdueAfter],
          ) + alert.zh(
            '证书%s的续期已逾期 %s' % [idZh, dur],
            '证书%s已到续期时间 %s（超过 %s），仍未续期。告警和续期计划都没有让它完成续期。'
            % [idZh, dur, alert.durationTextZh(config.renewalOverdueAfter)],
          ),
          alert.new(
            config,
            'CertloopRenewerQueueStuck',
            'renewerQueueStuck',
            ('time() - certloop_renewer_oldest_queued_job_timestamp_seconds{%s} > %d'
             + '\nand certloop_renewer_oldest_queued_job_timestamp_seconds{%s} > 0')
            % [sel, duration.seconds(config.renewerQueueStuckAfter), sel],
            'Renewer {{ $labels.instance }} has a job queued for {{ $value | humanizeDuration }}',
            ('The oldest queued renewal job on {{ $labels.instance }} has waited {{ $value | humanizeDuration }} '
             + '(more than %s). Workers are stuck or busy: renewals are not happening.')
            % config.renewerQueueStuckAfter,
          ) + alert.zh(
            '续期服务 {{ $labels.instance }} 有任务已排队 %s' % dur,
            ('{{ $labels.instance }} 上最早排队的续期任务已等待 %s（超过 %s）。工作线程卡住或过于繁忙：'
             + '续期没有在进行。') % [dur, alert.durationTextZh(config.renewerQueueStuckAfter)],
          ),
        ],
      },
    ],
  },
}
