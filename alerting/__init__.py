"""certloop's alerting: the jsonnet mixin (rules, alerts), its renderer and the Alertmanager example."""
