// Recording rules: time left, lifetime and the lifetime-relative expiry thresholds the alerts compare
// against, plus counts for dashboards.
local duration = import '../lib/duration.libsonnet';

{
  local config = $._config,
  local sel = config.exporterSelector,
  local leafLifetime = 'certloop:cert_lifetime_seconds{role="leaf"}',

  // One threshold series per leaf: the first per-label override whose selector matches, else the
  // lifetime-relative default. `or` keeps the left-most match for a label set, so order is priority.
  local thresholds(record, divisor, floor, ceiling, pick) = {
    record: record,
    expr: std.join('\nor ', [
      '0 * certloop:cert_lifetime_seconds{role="leaf",%s} + %d' % [o.selector, duration.seconds(pick(o))]
      for o in config.expiry.overrides
    ] + [
      'clamp(%s / %d, %d, %d)' % [leafLifetime, divisor, duration.seconds(floor), duration.seconds(ceiling)],
    ]),
  },

  // Leaf series counted by expiry status, for dashboards: one series per source and status.
  local statusCounts = {
    record: 'certloop:certs_by_expiry_status:count',
    expr: std.join('\nor ', [
      'label_replace(count by (source) (%s), "status", "%s", "", "")' % [s.condition, s.status]
      for s in [
        { status: 'expired', condition: 'certloop:cert_seconds_left{role="leaf"} <= 0' },
        {
          status: 'expiring_soon',
          condition: '(certloop:cert_seconds_left{role="leaf"} > 0) < certloop:cert_expiry_critical_threshold_seconds',
        },
        {
          status: 'expiring',
          condition: '(certloop:cert_seconds_left{role="leaf"} >= certloop:cert_expiry_critical_threshold_seconds)'
                     + ' < certloop:cert_expiry_warning_threshold_seconds',
        },
        {
          status: 'ok',
          condition: 'certloop:cert_seconds_left{role="leaf"} >= certloop:cert_expiry_warning_threshold_seconds',
        },
      ]
    ]),
  },

  prometheusRules+:: {
    groups+: [
      {
        name: 'certloop-certificates.rules',
        rules: [
          {
            record: 'certloop:cert_seconds_left',
            expr: 'certloop_cert_not_after_timestamp_seconds{%s} - time()' % sel,
          },
          {
            record: 'certloop:cert_lifetime_seconds',
            expr: 'certloop_cert_not_after_timestamp_seconds{%s} - certloop_cert_not_before_timestamp_seconds{%s}'
                  % [sel, sel],
          },
          {
            record: 'certloop:cert_lifetime_used_ratio',
            expr: 'clamp((time() - certloop_cert_not_before_timestamp_seconds{%s}) / certloop:cert_lifetime_seconds, 0, 1)'
                  % sel,
          },
          thresholds(
            'certloop:cert_expiry_warning_threshold_seconds',
            config.expiry.warningDivisor,
            config.expiry.warningFloor,
            config.expiry.warningCeiling,
            function(o) o.warning,
          ),
          thresholds(
            'certloop:cert_expiry_critical_threshold_seconds',
            config.expiry.criticalDivisor,
            config.expiry.criticalFloor,
            config.expiry.criticalCeiling,
            function(o) o.critical,
          ),
          {
            record: 'certloop:certs_by_verdict:count',
            expr: 'count by (source, verdict) (certloop_verify_verdict{%s} == 1)' % sel,
          },
          statusCounts,
        ],
      },
    ],
  },
}
