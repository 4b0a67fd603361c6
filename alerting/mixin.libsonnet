// The certloop monitoring mixin: knobs, recording rules and alerts. Dashboards live in dashboards/.
(import 'config.libsonnet')
+ (import 'rules/certificates.libsonnet')
+ (import 'alerts/certificates.libsonnet')
+ (import 'alerts/serving.libsonnet')
+ (import 'alerts/renewals.libsonnet')
+ (import 'alerts/health.libsonnet')
+ (import 'alerts/host.libsonnet')
