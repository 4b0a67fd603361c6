// grafanaDashboards: certloop's Grafana dashboards (dashboards/*.py) with the thresholds of this
// _config, so an override of the expiry lead times or renewerQueueStuckAfter changes the dashboards
// with the alerts. generated/dashboards.libsonnet is rendered by `python -m dashboards.build`.
local template = import 'generated/dashboards.libsonnet';
local thresholds = import 'lib/dashboard_thresholds.libsonnet';

{
  grafanaDashboards+:: template(thresholds($._config)),
}
