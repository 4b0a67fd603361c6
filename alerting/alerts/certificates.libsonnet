// Alerts about the certificates themselves: time left, validity window, chain order, crypto, presence.
local alert = import '../lib/alert.libsonnet';
local duration = import '../lib/duration.libsonnet';

{
  local config = $._config,
  local sel = config.exporterSelector,
  local cert = alert.certificate(config),
  // The expiry alerts compute the time left themselves rather than reading certloop:cert_seconds_left,
  // so $value is exact at evaluation time whatever order rule groups run in; the thresholds they compare
  // against only change when a certificate does.
  // Notification templates show it as "time left"; $value is the seconds left in both expiry alerts.
  local timeLeft = { time_left: '{{ $value | humanizeDuration }}' },
  local identity = std.join(', ', ['job', 'source', 'target', config.certificateLabel, config.teamLabel]),

  prometheusAlerts+:: {
    groups+: [
      {
        name: 'certloop-certificates',
        rules: [
          alert.new(
            config,
            'CertloopCertificateExpiring',
            'expiring',
            ('(certloop_cert_not_after_timestamp_seconds{%s,role="leaf"} - time() > 0)'
             + ' < certloop:cert_expiry_warning_threshold_seconds') % sel,
            'TLS %s%s expires in {{ $value | humanizeDuration }}' % [cert, alert.where],
            ('The %s%s expires in {{ $value | humanizeDuration }}: less than its warning lead time '
             + '(a third of its lifetime unless overridden). certloop renews it when the renewer manages it; '
             + 'otherwise renew and deploy it now.') % [cert, alert.where],
            alert.dashboard(config) + timeLeft,
          ),
          alert.new(
            config,
            'CertloopCertificateExpiringSoon',
            'expiringSoon',
            ('(certloop_cert_not_after_timestamp_seconds{%s,role="leaf"} - time() > 0)'
             + ' < certloop:cert_expiry_critical_threshold_seconds') % sel,
            'TLS %s%s expires in {{ $value | humanizeDuration }}' % [cert, alert.where],
            ('The %s%s expires in {{ $value | humanizeDuration }}: less than its critical lead time '
             + '(a sixth of its lifetime unless overridden). Renewal has not happened in time; clients '
             + 'will fail when it expires.') % [cert, alert.where],
            alert.dashboard(config) + timeLeft,
          ),
          alert.new(
            config,
            'CertloopCertificateExpired',
            'expired',
            'time() - certloop_cert_not_after_timestamp_seconds{%s,role="leaf"} >= 0' % sel,
            'TLS %s%s has expired' % [cert, alert.where],
            ('The %s%s expired {{ $value | humanizeDuration }} ago. Clients reject it: '
             + 'renew and deploy it now.') % [cert, alert.where],
            alert.dashboard(config) + { time_left: 'none, expired {{ $value | humanizeDuration }} ago' },
          ),
          alert.new(
            config,
            'CertloopCertificateNotYetValid',
            'notYetValid',
            'certloop_cert_not_before_timestamp_seconds{%s} - time() > 0' % sel,
            'TLS %s%s is not valid yet' % [cert, alert.where],
            ('The %s %s%s becomes valid only in {{ $value | humanizeDuration }}. Clients reject it '
             + 'until then: check the clock of the host and of the issuer.') % [alert.position, cert, alert.where],
            alert.dashboard(config),
          ),
          alert.new(
            config,
            'CertloopIntermediateExpiresBeforeLeaf',
            'intermediateBeforeLeaf',
            ('certloop_cert_not_after_timestamp_seconds{%s,role="intermediate"}'
             + ' < ignoring(position, role) group_left()'
             + ' certloop_cert_not_after_timestamp_seconds{%s,role="leaf"}') % [sel, sel],
            'An intermediate of %s%s expires before the leaf' % [cert, alert.where],
            ('The intermediate at chain position {{ $labels.position }} of the %s%s expires on '
             + '{{ $value | humanizeTimestamp }}, before the leaf does. The chain breaks then: serve the '
             + "issuer's current intermediate.") % [cert, alert.where],
            alert.dashboard(config),
          ),
          alert.new(
            config,
            'CertloopCertificateWeakCrypto',
            'weakCrypto',
            'certloop_cert_weak_crypto{%s} == 1' % sel,
            'TLS %s%s uses weak cryptography' % [cert, alert.where],
            ('The %s %s%s has a weak key or signature'
             + "{{ with printf \"certloop_cert_info{target='%%s',address='%%s',position='%%s'}\" "
             + '$labels.target $labels.address $labels.position | query }}{{ with first . }} '
             + '({{ .Labels.key_type }} {{ .Labels.key_bits }} bits, signed with '
             + '{{ .Labels.signature_algorithm }}){{ end }}{{ end }}. '
             + 'Reissue it with an RSA key of 2048 bits or more, or an EC key, signed with SHA-256 or better.')
            % [alert.position, cert, alert.where],
            alert.dashboard(config),
          ),
          alert.new(
            config,
            'CertloopCertificateDisappeared',
            'disappeared',
            ('group by (%(id)s) (max_over_time(certloop_cert_not_after_timestamp_seconds{%(sel)s,role="leaf"}[%(lb)s]))'
             + '\nunless group by (%(id)s) (certloop_cert_not_after_timestamp_seconds{%(sel)s,role="leaf"})'
             + '\nunless on (job, source, target) (certloop_probe_success{%(sel)s} == 0)'
             + '\nunless on (job) (up{%(sel)s} == 0)') % { id: identity, sel: sel, lb: config.disappearedLookback },
            'TLS %s%s is no longer observed' % [cert, alert.where],
            ('The %s%s was observed within the last %s but no series for it exists now, while '
             + 'the exporter is up and no probe of it fails. If the target was removed on purpose this '
             + 'resolves by itself; otherwise the exporter lost it and nothing watches its expiry.')
            % [cert, alert.where, config.disappearedLookback],
          ),
        ],
      },
    ],
  },
}
