// Alerts about the renewer: failed and rolled-back renewals, overdue certificates, a stuck queue.
local alert = import '../lib/alert.libsonnet';
local duration = import '../lib/duration.libsonnet';

{
  local config = $._config,
  local sel = config.renewerSelector,
  // The renewer exports the certificate id under the contract label `certificate`.
  local id = '"{{ $labels.certificate }}"',

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
          ),
        ],
      },
    ],
  },
}
