// The certloop monitoring mixin, as monitoring-mixins are shaped: _config (every knob), prometheusRules,
// prometheusAlerts and grafanaDashboards (the dashboards of dashboards/, with this _config's thresholds).
(import 'config.libsonnet')
+ (import 'rules/certificates.libsonnet')
+ (import 'alerts/certificates.libsonnet')
+ (import 'alerts/serving.libsonnet')
+ (import 'alerts/renewals.libsonnet')
+ (import 'alerts/health.libsonnet')
+ (import 'alerts/host.libsonnet')
+ (import 'dashboards.libsonnet')
