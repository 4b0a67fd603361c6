"""deploy/kubernetes/: core manifests validate offline against the Kubernetes OpenAPI schemas
(kubernetes-validate, strict), and the Prometheus Operator CRDs (ServiceMonitor, PrometheusRule),
for which no schema is bundled, are checked structurally plus with promtool for the rules."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from certloop.config import validate_model
from exporter.config import parse_config as parse_exporter_config
from renewer.config import RenewerConfig
from stack.prometheus import promtool

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "kubernetes"
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}


def documents() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((path.name, doc))
    return docs


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in documents() if doc["kind"] == kind]


CORE = [(name, doc) for name, doc in documents() if doc["kind"] not in CRD_KINDS]


@pytest.mark.parametrize(("name", "doc"), CORE, ids=[f"{n}:{d['kind']}/{d['metadata']['name']}" for n, d in CORE])
def test_core_manifest_is_valid(name: str, doc: dict[str, Any]) -> None:
    """Each core resource validates strictly (unknown fields rejected) against the bundled schema."""
    kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


def test_an_invalid_manifest_is_rejected() -> None:
    """The validator is live: a misspelt field in a Deployment fails strict validation."""
    deployment = yaml.safe_load(yaml.safe_dump(by_kind("Deployment")[0]))
    deployment["spec"]["replicaz"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, kubernetes_validate.latest_version(), strict=True)


def test_expected_resources_exist() -> None:
    """Both components have a Deployment, Service and ConfigMap; monitoring has ServiceMonitors and rules."""
    names = {(doc["kind"], doc["metadata"]["name"]) for _, doc in documents()}
    for component in ("certloop-exporter", "certloop-renewer"):
        assert {("Deployment", component), ("Service", component), ("ConfigMap", component),
                ("ServiceMonitor", component)} <= names
    assert ("PrometheusRule", "certloop") in names


def test_service_monitors_select_a_service_port() -> None:
    """Each ServiceMonitor (structural check) selects a Service by its labels and names one of its ports."""
    services = by_kind("Service")
    for monitor in by_kind("ServiceMonitor"):
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        wanted = monitor["spec"]["selector"]["matchLabels"]
        matches = [s for s in services if wanted.items() <= s["metadata"]["labels"].items()]
        assert len(matches) == 1, monitor["metadata"]["name"]
        ports = {p["name"] for p in matches[0]["spec"]["ports"]}
        assert {e["port"] for e in monitor["spec"]["endpoints"]} <= ports
        # the job label (= Service name) is what the generated rules select on
        assert matches[0]["metadata"]["name"] == monitor["metadata"]["name"]


def test_prometheus_rule_is_the_generated_one_and_promtool_accepts_it(tmp_path: Path) -> None:
    """prometheusrule.yaml links to alerting/generated/ (no copy to drift) and its groups pass promtool."""
    link = K8S / "prometheusrule.yaml"
    assert link.is_symlink()
    assert link.resolve() == (REPO / "alerting" / "generated" / "prometheusrule.yaml").resolve()
    [rule] = by_kind("PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    groups = rule["spec"]["groups"]
    assert groups and all(g["name"] and g["rules"] for g in groups)
    rules_file = tmp_path / "rules.yml"
    rules_file.write_text(yaml.safe_dump({"groups": groups}))
    done = promtool("check", "rules", str(rules_file))
    assert done.returncode == 0, done.stdout + done.stderr


def test_services_target_the_deployment_ports() -> None:
    """Each Service selects its Deployment's pod labels, and targets a named container port."""
    deployments = {d["metadata"]["name"]: d for d in by_kind("Deployment")}
    for service in by_kind("Service"):
        pod = deployments[service["metadata"]["name"]]["spec"]["template"]
        assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
        container_ports = {p["name"] for c in pod["spec"]["containers"] for p in c["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= container_ports


def test_configmaps_hold_valid_certloop_configs() -> None:
    """The embedded exporter.yml and renewer.yml validate against the certloop config models."""
    maps = {m["metadata"]["name"]: m["data"] for m in by_kind("ConfigMap")}
    exporter = parse_exporter_config(yaml.safe_load(maps["certloop-exporter"]["exporter.yml"]), source="exporter")
    assert exporter.endpoints[0].labels["certificate"] == "shop"
    renewer = validate_model(RenewerConfig, yaml.safe_load(maps["certloop-renewer"]["renewer.yml"]), source="renewer")
    assert str(renewer.data_dir) == "/var/lib/certloop"


def test_cli_validator_passes_core_files() -> None:
    """The kubernetes-validate command (as an operator would run it) passes the core manifests."""
    files = [str(K8S / n) for n in ("00-namespace.yaml", "exporter.yaml", "renewer.yaml")]
    done = subprocess.run([str(REPO / ".venv" / "bin" / "kubernetes-validate"), "--strict", "--quiet", *files],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
