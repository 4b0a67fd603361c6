// Alerts about the certificates themselves: time left, validity window, chain order, crypto, presence.
local alert = import '../lib/alert.libsonnet';
local duration = import '../lib/duration.libsonnet';

{
  local config = $._config,
  local sel = config.exporterSelector,
  local cert = alert.certificate(config),
  local certZh = alert.certificateZh(config),
  local dur = alert.durationZh('$value'),
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
          ) + alert.zh(
            'TLS %s%s将在 %s 后过期' % [certZh, alert.whereZh, dur],
            ('%s%s将在 %s 后过期，已少于其预警提前期（未单独配置时为有效期的三分之一）。'
             + '若该证书由 certloop 续期服务管理，它会自动续期；否则请立即续期并部署。') % [certZh, alert.whereZh, dur],
            { time_left_zh: dur },
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
          ) + alert.zh(
            'TLS %s%s将在 %s 后过期' % [certZh, alert.whereZh, dur],
            ('%s%s将在 %s 后过期，已少于其紧急提前期（未单独配置时为有效期的六分之一）。'
             + '续期没有按时完成；证书过期后客户端将无法连接。') % [certZh, alert.whereZh, dur],
            { time_left_zh: dur },
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
          ) + alert.zh(
            'TLS %s%s已过期' % [certZh, alert.whereZh],
            '%s%s已于 %s 前过期，客户端会拒绝它：请立即续期并部署。' % [certZh, alert.whereZh, dur],
            { time_left_zh: '无，已过期 %s' % dur },
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
          ) + alert.zh(
            'TLS %s%s尚未生效' % [certZh, alert.whereZh],
            ('%s%s的%s要在 %s 后才生效，在此之前客户端会拒绝它：请检查本机和签发方的时钟。')
            % [certZh, alert.whereZh, alert.positionZh, dur],
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
          ) + alert.zh(
            '%s%s的中间证书早于叶证书过期' % [certZh, alert.whereZh],
            ('%s%s链中第 {{ $labels.position }} 位的中间证书将于 {{ $value | humanizeTimestamp }} 过期，'
             + '早于叶证书。届时证书链会断裂：请改为提供签发方当前的中间证书。') % [certZh, alert.whereZh],
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
          ) + alert.zh(
            'TLS %s%s使用弱加密算法' % [certZh, alert.whereZh],
            ('%s%s的%s使用了弱密钥或弱签名算法'
             + "{{ with printf \"certloop_cert_info{target='%%s',address='%%s',position='%%s'}\" "
             + '$labels.target $labels.address $labels.position | query }}{{ with first . }}'
             + '（{{ .Labels.key_type }} {{ .Labels.key_bits }} 位，签名算法 {{ .Labels.signature_algorithm }}）'
             + '{{ end }}{{ end }}。请使用 2048 位及以上的 RSA 密钥或 EC 密钥、以 SHA-256 或更强的算法签名重新签发。')
            % [certZh, alert.whereZh, alert.positionZh],
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
          ) + alert.zh(
            'TLS %s%s不再被监测' % [certZh, alert.whereZh],
            ('%s%s在过去 %s 内被观测到，但现在已没有它的序列，而导出器正常运行、对它的探测也没有失败。'
             + '如果目标是有意移除的，此告警会自行恢复；否则导出器丢失了它，没有任何东西在监测它的过期时间。')
            % [certZh, alert.whereZh, alert.durationTextZh(config.disappearedLookback)],
          ),
        ],
      },
    ],
  },
}
