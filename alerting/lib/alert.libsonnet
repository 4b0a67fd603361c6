// Builders shared by alerts/*.libsonnet: one place decides the shape of an alert and its wording helpers.
local levels = ['critical', 'major', 'warning', 'info'];
local threeLevels = ['critical', 'warning', 'info'];

// The severity label(s) of one alert under config.severityLevels (see config.libsonnet).
local severityLabels(config, key) =
  local level = config.severities[key];
  assert std.member(levels, level)
         : 'severities.%s: expected one of %s, got "%s"' % [key, std.join(', ', levels), level];
  if config.severityLevels == 'four' then
    { severity: level }
  else if config.severityLevels == 'three' then
    local mapped = config.severityMapping[level];
    assert std.member(threeLevels, mapped)
           : 'severityMapping.%s: expected one of %s, got "%s"' % [level, std.join(', ', threeLevels), mapped];
    { severity: mapped, certloop_severity: level }
  else
    error 'severityLevels: expected "four" or "three", got "%s"' % config.severityLevels;

{
  // An alert with its severity and runbook link; `key` indexes config.severities and config.for.
  new(config, name, key, expr, summary, description, extraAnnotations={}):: {
    alert: name,
    expr: expr,
    'for': config['for'][key],
    labels: severityLabels(config, key),
    annotations: {
      summary: summary,
      description: description,
      runbook_url: config.runbookUrlPattern % name,
    } + extraAnnotations,
  },

  // "certificate "shop" " when the series carries the certificate label, else "".
  certificate(config):: '{{ with $labels.%s }}certificate "{{ . }}" {{ else }}certificate {{ end }}' % config.certificateLabel,

  // Where the certificate was seen: an endpoint with its address, or a file.
  where:: '{{ if eq $labels.source "file" }}in file {{ $labels.target }}{{ else }}served at {{ $labels.target }}{{ with $labels.address }} (address {{ . }}){{ end }}{{ end }}',

  // The chain position in words, for alerts that apply to any position.
  position:: '{{ if eq $labels.role "leaf" }}leaf{{ else }}{{ $labels.role }} (chain position {{ $labels.position }}){{ end }}',

  // The dashboard link annotation for alerts about one target.
  dashboard(config):: { dashboard_url: config.dashboardUrlPattern % '{{ $labels.target | urlquery }}' },

  // Chinese annotations for the Chinese notification templates (alertmanager/templates/*.tmpl), added
  // to an alert as `alert.new(...) + alert.zh(summary, description)`. Every alert has both, so a Chinese
  // notification never falls back to the English text.
  zh(summary, description, extraAnnotations={}):: {
    annotations+: { summary_zh: summary, description_zh: description } + extraAnnotations,
  },

  // 证书「shop」 when the series carries the certificate label, else 证书.
  certificateZh(config):: '{{ with $labels.%s }}证书「{{ . }}」{{ else }}证书{{ end }}' % config.certificateLabel,

  // （文件 /etc/x.pem） or （shop.example:443，地址 127.0.0.1）.
  whereZh:: '{{ if eq $labels.source "file" }}（文件 {{ $labels.target }}）{{ else }}（{{ $labels.target }}{{ with $labels.address }}，地址 {{ . }}{{ end }}）{{ end }}',

  positionZh:: '{{ if eq $labels.role "leaf" }}叶证书{{ else if eq $labels.role "intermediate" }}中间证书（链中第 {{ $labels.position }} 位）{{ else }}{{ $labels.role }}（链中第 {{ $labels.position }} 位）{{ end }}',

  // A duration in seconds (a template expression such as `$value`) as 13天 23小时 30分 0秒:
  // humanizeDuration's English units replaced one by one (ms before m).
  durationZh(value):: '{{ %s | humanizeDuration | reReplaceAll "([0-9])d" "${1}天" | reReplaceAll "([0-9])h" "${1}小时" | reReplaceAll "([0-9])ms" "${1}毫秒" | reReplaceAll "([0-9])m" "${1}分" | reReplaceAll "([0-9])s" "${1}秒" }}' % value,

  // A configured duration such as `6h` or `1h30m` in Chinese units (6小时, 1小时30分钟).
  durationTextZh(text)::
    std.foldl(function(s, pair) std.strReplace(s, pair[0], pair[1]),
              [['ms', '毫秒'], ['y', '年'], ['w', '周'], ['d', '天'], ['h', '小时'], ['m', '分钟'], ['s', '秒']],
              text),
}
