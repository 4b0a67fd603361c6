// Builders shared by alerts/*.libsonnet: one place decides the shape of an alert and its wording helpers.
{
  // An alert with its severity and runbook link; `key` indexes config.severities and config.for.
  new(config, name, key, expr, summary, description, extraAnnotations={}):: {
    alert: name,
    expr: expr,
    'for': config['for'][key],
    labels: { severity: config.severities[key] },
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
}
