// Alerts about what endpoints serve and whether the exporter can see it: verification, hostname,
// drift between served and deployed files, inconsistent addresses, failing probes and unreadable files.
local alert = import '../lib/alert.libsonnet';

{
  local config = $._config,
  local sel = config.exporterSelector,
  local cert = alert.certificate(config),
  local certZh = alert.certificateZh(config),
  local reason(source) =
    ("{{ with printf \"certloop_probe_failure_reason{source='%s',target='%%s',address='%%s'}\" "
     + '$labels.target $labels.address | query }}{{ with first . }} ({{ .Labels.reason }}){{ end }}{{ end }}')
    % source,

  local reasonZh(source) =
    ("{{ with printf \"certloop_probe_failure_reason{source='%s',target='%%s',address='%%s'}\" "
     + '$labels.target $labels.address | query }}{{ with first . }}（{{ .Labels.reason }}）{{ end }}{{ end }}')
    % source,

  prometheusAlerts+:: {
    groups+: [
      {
        name: 'certloop-serving',
        rules: [
          alert.new(
            config,
            'CertloopCertificateVerificationFailing',
            'verificationFailing',
            // Endpoints only: that is what clients verify. Files often hold a leaf without its chain
            // (cert.pem next to fullchain.pem), which cannot verify on its own and is not a problem;
            // their verdicts show on the dashboards (certloop:certs_by_verdict:count).
            ('certloop_verify_verdict{%s,source="endpoint",verdict!~"ok|expired|not_yet_valid|hostname_mismatch"}'
             + ' == 1') % sel,
            'TLS %s%s fails verification: {{ $labels.verdict }}' % [cert, alert.where],
            ('The chain of the %s%s does not verify against the trust store (verdict {{ $labels.verdict }}'
             + '{{ if eq $labels.verdict "unknown_authority" }}: no trusted root issued it'
             + '{{ else if eq $labels.verdict "incomplete_chain" }}: an intermediate is missing from what is served'
             + '{{ else if eq $labels.verdict "self_signed" }}: it is self-signed'
             + '{{ else if eq $labels.verdict "intermediate_expired" }}: an intermediate has expired'
             + '{{ end }}). Clients that verify reject it.') % [cert, alert.where],
            alert.dashboard(config),
          ) + alert.zh(
            'TLS %s%s证书链验证失败：{{ $labels.verdict }}' % [certZh, alert.whereZh],
            ('%s%s的证书链无法通过信任库验证（结论 {{ $labels.verdict }}'
             + '{{ if eq $labels.verdict "unknown_authority" }}：没有受信任的根证书签发它'
             + '{{ else if eq $labels.verdict "incomplete_chain" }}：服务端提供的内容缺少中间证书'
             + '{{ else if eq $labels.verdict "self_signed" }}：这是自签名证书'
             + '{{ else if eq $labels.verdict "intermediate_expired" }}：某个中间证书已过期'
             + '{{ end }}）。进行验证的客户端会拒绝它。') % [certZh, alert.whereZh],
          ),
          alert.new(
            config,
            'CertloopCertificateHostnameMismatch',
            'hostnameMismatch',
            'certloop_hostname_match{%s} == 0' % sel,
            'TLS %s%s does not cover the server name' % [cert, alert.where],
            ('The leaf %s%s does not list the name clients ask for among its DNS names. Clients '
             + 'reject it: reissue it with the name, or fix the server block that serves it.') % [cert, alert.where],
            alert.dashboard(config),
          ) + alert.zh(
            'TLS %s%s不包含客户端访问的服务器名称' % [certZh, alert.whereZh],
            ('%s%s的叶证书未在 DNS 名称中列出客户端请求的名称，客户端会拒绝它：'
             + '请用该名称重新签发，或修正提供它的服务器配置。') % [certZh, alert.whereZh],
          ),
          alert.new(
            config,
            'CertloopServedCertificateDiffersFromFile',
            'servedDiffersFromFile',
            'certloop_endpoint_matches_file{%s} == 0' % sel,
            'The certificate served at {{ $labels.target }} differs from {{ $labels.expect_file }}',
            ('The leaf %s%s is not the one in {{ $labels.expect_file }}: the file was renewed or '
             + 'replaced but the server still serves the old certificate. Reload the server.') % [cert, alert.where],
            alert.dashboard(config),
          ) + alert.zh(
            '{{ $labels.target }} 提供的证书与 {{ $labels.expect_file }} 不一致',
            ('%s%s的叶证书不是 {{ $labels.expect_file }} 中的那一张：文件已续期或被替换，'
             + '但服务器仍在提供旧证书。请重新加载服务器。') % [certZh, alert.whereZh],
          ),
          alert.new(
            config,
            'CertloopEndpointAddressesInconsistent',
            'addressesInconsistent',
            'certloop_endpoint_addresses_consistent{%s} == 0' % sel,
            'Addresses of {{ $labels.target }} serve different certificates',
            ('The addresses {{ $labels.target }} resolves to do not all serve the same leaf %sany more: some '
             + 'servers behind the name were not renewed or not reloaded. Clients see one or the other '
             + 'depending on the address they reach.') % cert,
            alert.dashboard(config),
          ) + alert.zh(
            '{{ $labels.target }} 的各个地址提供的证书不一致',
            ('{{ $labels.target }} 解析到的各个地址不再提供同一张叶证书%s：该名称背后的部分服务器没有续期'
             + '或没有重新加载。客户端看到哪一张取决于它连接到的地址。')
            % '{{ with $labels.certificate }}（证书「{{ . }}」）{{ end }}',
          ),
          alert.new(
            config,
            'CertloopProbeFailing',
            'probeFailing',
            'certloop_probe_success{%s,source="endpoint"} == 0' % sel,
            'Probing %s%s fails' % [cert, alert.where],
            ('The exporter could not fetch a certificate %s%s. Its expiry and '
             + 'verification are unknown until the probe succeeds again.') % [alert.where, reason('endpoint')],
            alert.dashboard(config),
          ) + alert.zh(
            '探测 %s%s失败' % [certZh, alert.whereZh],
            ('导出器无法从 {{ $labels.target }}{{ with $labels.address }}（地址 {{ . }}）{{ end }} 获取证书%s。'
             + '在探测再次成功之前，它的过期时间和验证结果都未知。') % reasonZh('endpoint'),
          ),
          alert.new(
            config,
            'CertloopCertificateFileUnreadable',
            'fileUnreadable',
            'certloop_probe_success{%s,source="file"} == 0' % sel,
            'Certificate file {{ $labels.target }} cannot be read',
            ('The exporter could not read or parse the %sfile {{ $labels.target }}%s. Its expiry is '
             + 'unknown until it can.') % [cert, reason('file')],
            alert.dashboard(config),
          ) + alert.zh(
            '证书文件 {{ $labels.target }} 无法读取',
            '导出器无法读取或解析%s的文件 {{ $labels.target }}%s。在能读取之前，它的过期时间未知。'
            % [certZh, reasonZh('file')],
          ),
        ],
      },
    ],
  },
}
