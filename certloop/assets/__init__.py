"""``certloop assets``: where an installed certloop keeps what an operator copies into place.

The wheel carries the generated alert rules, the dashboards and their Grafana provisioning, the
Alertmanager configuration and templates, the jsonnet mixin, the database migrations and the systemd,
Kubernetes and logrotate files. Their places differ between a checkout, a venv and a distribution
package, so the command prints them rather than the docs guessing:

    certloop assets                 # one line per asset: name, path
    certloop assets rules           # just the path, for scripts: cp "$(certloop assets rules)" /etc/prometheus/
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from certloop.exitcodes import ExitCode

__all__ = ["ASSETS", "locate", "main"]

_ROOT = Path(__file__).parent  # certloop/assets; not resolved: in a checkout the subpackages are symlinks

# name -> (path below the certloop package, what it is)
ASSETS: dict[str, tuple[str, str]] = {
    "rules": ("alerting/generated/certloop.rules.yml", "Prometheus alert and recording rules"),
    "prometheusrule": ("alerting/generated/prometheusrule.yaml", "the same rules as a PrometheusRule object"),
    "mixin": ("alerting", "the jsonnet mixin (mixin.libsonnet, config.libsonnet, jsonnetfile.json)"),
    "alertmanager": ("alerting/alertmanager/alertmanager.yml", "Alertmanager routing for the four severities"),
    "alertmanager-templates": ("alerting/alertmanager/templates", "email, Slack, WeCom and SMS templates"),
    "dashboards": ("dashboards/generated", "Grafana dashboards (JSON)"),
    "grafana-provisioning": ("dashboards/generated/provisioning", "Grafana datasource and dashboard provisioning"),
    "migrations": ("renewer/migrations", "the renewer's database migrations (Alembic)"),
    "systemd": ("assets/systemd", "systemd units for the exporter, the renewer and the backup timer"),
    "kubernetes": ("assets/kubernetes", "Kustomize base and overlays"),
    "logrotate": ("assets/logrotate", "logrotate configuration"),
}


def locate(name: str) -> Path:
    """The installed path of asset ``name`` (KeyError for an unknown name)."""
    return _ROOT.parent / ASSETS[name][0]


def main(argv: Sequence[str]) -> int:
    args = list(argv)
    if args and args[0] in {"-h", "--help"}:
        print(__doc__.strip().split("\n\n")[-1] if __doc__ else "")
        print("\nassets: " + ", ".join(ASSETS))
        return ExitCode.OK
    if len(args) > 1 or (args and args[0] not in ASSETS):
        print(f"usage: certloop assets [{'|'.join(ASSETS)}]", file=sys.stderr)
        return ExitCode.USAGE
    if args:
        print(locate(args[0]))
        return ExitCode.OK
    width = max(map(len, ASSETS))
    missing = 0
    for name, (_, what) in ASSETS.items():
        path = locate(name)
        missing += not path.exists()
        print(f"{name:<{width}}  {path}{'' if path.exists() else '  (missing)'}  # {what}")
    return ExitCode.FAILURE if missing else ExitCode.OK
