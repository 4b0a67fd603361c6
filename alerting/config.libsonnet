// Every knob of the certloop mixin. Override any of them when importing the mixin:
//
//   (import 'github.com/certloop/certloop/alerting/mixin.libsonnet') + {   // jb: see alerting/README.md
//     _config+:: { exporterSelector: 'job="tls"', expiry+: { warningCeiling: '45d' } },
//   }
//
// Durations are Prometheus-style strings with one unit: '90s', '15m', '6h', '30d', '2w'.
{
  _config+:: {
    // Selects the exporter's series (its /metrics scrape and any /probe jobs). Change it when your
    // Prometheus scrape job for the exporter has another name, e.g. 'job=~"certloop-exporter|certloop-probe"'.
    exporterSelector: 'job="certloop-exporter"',

    // Selects the renewer's series. Change it when the renewer's scrape job has another name.
    renewerSelector: 'job="certloop-renewer"',

    // The label that names a certificate the renewer manages. The exporter carries it as a static label
    // on endpoints and file groups; the renewer exports it on its own series and reads it from the
    // webhook. Change it only together with the exporter's static labels and the renewer's config.
    certificateLabel: 'certificate',

    // The label that names the owning team (a static label on exporter targets). Alerts keep it so
    // Alertmanager can route and group by it. Change it when your organisation uses another label.
    teamLabel: 'team',

    // Where each alert's runbook lives (%s is the alert name). Change it when you host the runbooks
    // yourself, e.g. on an internal wiki.
    runbookUrlPattern: 'https://github.com/certloop/certloop/blob/main/docs/runbooks/%s.md',

    // Link to the Certificate detail dashboard, filled into certificate alerts as `dashboard_url`
    // (%s is the URL-encoded target). Change the host to your Grafana; the uid (certloop-detail) is the one
    // dashboards/generated/detail.json ships with.
    dashboardUrlPattern: 'http://localhost:3000/d/certloop-detail?var-target=%s',

    // Severity of each alert. The four levels and what Alertmanager does with them in
    // alerting/alertmanager/alertmanager.yml:
    //   critical: users fail now or soon; page (email, chat, SMS).
    //   major:    broken, will become critical without action; same working day.
    //   warning:  needs attention within days, the loop may fix it itself (renewal).
    //   info:     for awareness, often intended (a decommissioned certificate).
    // Change one when your policy differs, e.g. make weakCrypto 'major' under a strict security policy.
    // Chinese notifications name them 紧急 (critical), 严重 (major), 警告 (warning), 信息 (info).
    severities: {
      expiring: 'warning',
      expiringSoon: 'critical',
      expired: 'critical',
      notYetValid: 'major',
      verificationFailing: 'critical',
      hostnameMismatch: 'critical',
      intermediateBeforeLeaf: 'warning',
      servedDiffersFromFile: 'major',
      addressesInconsistent: 'major',
      probeFailing: 'major',
      fileUnreadable: 'major',
      disappeared: 'info',
      weakCrypto: 'warning',
      renewalFailed: 'major',
      renewalRolledBack: 'major',
      renewalOverdue: 'major',
      renewerQueueStuck: 'major',
      exporterDown: 'major',
      renewerDown: 'major',
      exporterConfigReload: 'warning',
      renewerConfigReload: 'warning',
      monitoredCertificatesDropped: 'major',
      renewerWebhookErrors: 'major',
      renewerWebhookSlow: 'warning',
      renewerDatabaseUnavailable: 'major',
    },

    // How many severity levels the alerts carry. kube-prometheus, most monitoring mixins and the routing
    // trees built for them know three: critical, warning, info; an alert with severity="major" matches
    // none of their routes. Set 'three' to map certloop's four levels through severityMapping (major
    // becomes warning unless you map it to critical); the level certloop meant stays in the label
    // `certloop_severity`, so a route can still tell a former major from a warning.
    //   'four'  (default): severity is critical, major, warning or info, as in `severities`.
    //   'three': severity is severityMapping[level]; certloop_severity is the level.
    severityLevels: 'four',
    severityMapping: { critical: 'critical', major: 'warning', warning: 'warning', info: 'info' },

    // Expiry thresholds are relative to each certificate's lifetime (not_after - not_before), so a
    // 6-day and a 90-day certificate both get a sensible lead time:
    //   warning  when less than 1/warningDivisor of the lifetime remains, clamped to [floor, ceiling]
    //   critical when less than 1/criticalDivisor remains, clamped likewise.
    // 90-day certificate: warning at 30d left, critical at 14d (15d capped). 6-day: 2d and 1d.
    // A certificate shorter than 3 x warningFloor warns from the moment it is issued: lower the floors
    // when you run very short-lived certificates (e.g. 24h step-ca certificates: floors of '4h'/'2h').
    // Change the divisors when your renewals start at another point of the lifetime; the warning
    // alert is what triggers the renewer, so it should match your renewal policy.
    expiry: {
      warningDivisor: 3,
      warningFloor: '1d',
      warningCeiling: '30d',
      criticalDivisor: 6,
      criticalFloor: '12h',
      criticalCeiling: '14d',
      // Fixed lead times for selected certificates, e.g. ones renewed by hand through procurement.
      // The first entry whose selector matches wins; unmatched certificates keep the relative default.
      //   { selector: 'certificate="vpn-gateway"', warning: '45d', critical: '20d' },
      //   { selector: 'team="payments"', warning: '21d', critical: '7d' },
      overrides: [],
    },

    // A certificate that was exported within this window but is gone now raises
    // CertloopCertificateDisappeared. Longer catches more, but a decommissioned target stays noisy longer.
    disappearedLookback: '1d',

    // CertloopMonitoredCertificatesDropped fires when an exporter instance monitors fewer than
    // droppedRatio times the most leaf certificates it monitored within droppedLookback (a config
    // emptied or truncated, a file glob that matches nothing after a move). A deliberate large removal
    // fires it too, until the lookback passes: shorten the lookback to hear about it for less long;
    // raise the ratio (e.g. 0.8) to hear about smaller drops.
    monitoredCertificates: {
      droppedRatio: 0.5,
      droppedLookback: '1h',
    },

    // The renewer renews a certificate at its next due time; alert when it is still due this long after.
    // Raise it when your issuer is slow or rate-limited on purpose.
    renewalOverdueAfter: '6h',

    // Alert when the oldest queued renewal job waits longer than this.
    renewerQueueStuckAfter: '1h',

    // The renewer's webhook intake (POST /api/v1/alertmanager), from its request metrics over `window`.
    // CertloopRenewerWebhookErrors fires when more than errorRatio of the webhook's answers are 5xx (503:
    // the job store did not take the renewal; Alertmanager retries, but renewals wait). Raise it only if a
    // flaky database is known and tolerated. CertloopRenewerWebhookSlow fires when the p99 answer time
    // exceeds p99Latency: keep it well below Alertmanager's webhook timeout (http_config, 10s by
    // default), past which Alertmanager gives up and retries. A longer window smooths a quiet intake
    // (a few webhooks an hour make a noisy ratio); it must exceed 4 scrape intervals for rate().
    renewerWebhook: {
      window: '10m',
      errorRatio: 0.05,
      p99Latency: '2s',
    },

    // How long each condition must hold before the alert fires. Longer is quieter, shorter is faster.
    'for': {
      expiring: '15m',
      expiringSoon: '15m',
      expired: '5m',
      notYetValid: '10m',
      verificationFailing: '10m',
      hostnameMismatch: '10m',
      intermediateBeforeLeaf: '1h',
      // Renewed but not reloaded: allow the deployer's reload and the next probe to catch up.
      servedDiffersFromFile: '30m',
      addressesInconsistent: '30m',
      probeFailing: '10m',
      fileUnreadable: '10m',
      disappeared: '15m',
      weakCrypto: '1h',
      renewalFailed: '5m',
      renewalRolledBack: '5m',
      renewalOverdue: '15m',
      renewerQueueStuck: '5m',
      exporterDown: '5m',
      renewerDown: '5m',
      exporterConfigReload: '10m',
      renewerConfigReload: '10m',
      // Longer than an exporter restart's first sweep, so a restart does not look like a drop.
      monitoredCertificatesDropped: '15m',
      renewerWebhookErrors: '10m',
      renewerWebhookSlow: '15m',
      // A database restart or failover takes a minute or two; longer than that is an outage.
      renewerDatabaseUnavailable: '5m',
    },
  },
}
