// The numbers the dashboards colour and count by, derived from the same _config the alerts use, so one
// override changes both. dashboards/build.py reads this (through the jsonnet binding) to render
// dashboards/generated; the mixin applies it to the generated dashboard template (grafanaDashboards).
// Each value is in the unit the panel uses; the dashboard code does no arithmetic on them.
local duration = import 'duration.libsonnet';

function(config) {
  // "Expiring" counts leaves past the warning threshold, computed as the recording rule does.
  expiryWarningDivisor: config.expiry.warningDivisor,
  expiryWarningFloorSeconds: duration.seconds(config.expiry.warningFloor),
  expiryWarningCeilingSeconds: duration.seconds(config.expiry.warningCeiling),
  // "Days left" colours: red once expired, orange below the critical ceiling, yellow below the warning
  // ceiling, green above (the longest lead times the expiry alerts use).
  expiryCriticalCeilingDays: duration.seconds(config.expiry.criticalCeiling) / 86400,
  expiryWarningCeilingDays: duration.seconds(config.expiry.warningCeiling) / 86400,
  // "Oldest queued job" turns red when CertloopRenewerQueueStuck's condition holds.
  renewerQueueStuckSeconds: duration.seconds(config.renewerQueueStuckAfter),
  // The renewer's request panels: the webhook's 5xx ratio and p99 latency turn red where
  // CertloopRenewerWebhookErrors and CertloopRenewerWebhookSlow fire.
  renewerWebhookErrorRatio: config.renewerWebhook.errorRatio,
  renewerWebhookP99Seconds: duration.seconds(config.renewerWebhook.p99Latency),
}
