"""deploy/kubernetes/: each Kustomize overlay renders with `kubectl kustomize`, and every object it
renders validates offline against the Kubernetes OpenAPI schemas (kubernetes-validate, strict: unknown
fields rejected).

The Prometheus Operator kinds (ServiceMonitor, PrometheusRule) have no schema in kubernetes-validate; they
are validated against the operator's CRD schemas as generated into the pydantic models of PyPI's
cloudcoil-models-prometheus-operator (types, enums and patterns from the CRDs), made strict here by
refusing any field the models do not know. Beyond the schema, each ServiceMonitor is checked against the
Service it must select and the PrometheusRule's groups with `promtool check rules`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from cloudcoil.models.prometheus_operator import v1 as prometheus_operator

from certloop.exporter.config import parse_config as parse_exporter_config
from stack.prometheus import promtool

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "kubernetes"
OVERLAYS = ("dev", "prod")
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
CERTLOOP = REPO / ".venv" / "bin" / "certloop"


def kubectl() -> str:
    binary = shutil.which("kubectl")
    assert binary, "kubectl (with built-in kustomize) is required to render deploy/kubernetes/overlays"
    return binary


@cache
def render(overlay: str) -> tuple[dict[str, Any], ...]:
    done = subprocess.run([kubectl(), "kustomize", str(K8S / "overlays" / overlay)], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)


def objects(overlay: str, kind: str) -> list[dict[str, Any]]:
    return [doc for doc in render(overlay) if doc["kind"] == kind]


def one(overlay: str, kind: str, name: str) -> dict[str, Any]:
    [found] = [doc for doc in objects(overlay, kind) if doc["metadata"]["name"] == name]
    return found


def pod_specs(overlay: str) -> list[tuple[str, dict[str, Any]]]:
    return [(doc["metadata"]["name"], doc["spec"]["template"]["spec"])
            for doc in render(overlay) if doc["kind"] in {"Deployment", "DaemonSet", "StatefulSet"}]


CASES = [(overlay, index) for overlay in OVERLAYS for index in range(len(render(overlay)))]


def _case_id(case: tuple[str, int]) -> str:
    overlay, index = case
    doc = render(overlay)[index]
    return f"{overlay}:{doc['kind']}/{doc['metadata']['name']}"


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_rendered_object_is_valid(case: tuple[str, int]) -> None:
    """Each rendered object validates strictly against the bundled Kubernetes schema."""
    overlay, index = case
    doc = render(overlay)[index]
    if doc["kind"] in CRD_KINDS:
        validate_crd(doc)
    else:
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


def unknown_fields(given: Any, kept: Any, path: str) -> list[str]:
    """Keys of the object as written that the CRD models did not keep: not in the CRD schema (the models
    drop or set aside unknown fields instead of refusing them)."""
    found: list[str] = []
    if isinstance(given, dict) and isinstance(kept, dict):
        for key, value in given.items():
            if key not in kept:
                found.append(f"{path}.{key}")
            else:
                found += unknown_fields(value, kept[key], f"{path}.{key}")
    elif isinstance(given, list) and isinstance(kept, list):
        for i, (a, b) in enumerate(zip(given, kept, strict=False)):
            found += unknown_fields(a, b, f"{path}[{i}]")
    return found


def validate_crd(doc: dict[str, Any]) -> None:
    """Validate a monitoring.coreos.com/v1 object against the operator's CRD schema, unknown fields refused."""
    assert doc["apiVersion"] == "monitoring.coreos.com/v1"
    model = getattr(prometheus_operator, doc["kind"]).model_validate(doc)
    kept = model.model_dump(by_alias=True, exclude_unset=True, mode="json")
    unknown = unknown_fields(doc, kept, doc["kind"])
    assert not unknown, f"fields not in the {doc['kind']} CRD schema: {unknown}"


def test_the_crd_check_rejects_a_misspelt_field_and_a_bad_value() -> None:
    """The CRD check is live: an unknown field and an interval that is not a duration are both refused."""
    monitor = yaml.safe_load(yaml.safe_dump(objects("prod", "ServiceMonitor")[0]))
    validate_crd(monitor)
    monitor["spec"]["endpoints"][0]["intervall"] = "30s"
    with pytest.raises(AssertionError, match="intervall"):
        validate_crd(monitor)
    del monitor["spec"]["endpoints"][0]["intervall"]
    monitor["spec"]["endpoints"][0]["interval"] = "30 seconds"
    with pytest.raises(ValueError, match="interval"):
        validate_crd(monitor)
    rule = yaml.safe_load(yaml.safe_dump(one("prod", "PrometheusRule", "certloop")))
    rule["spec"]["groups"][0]["rulez"] = []
    with pytest.raises(AssertionError, match="rulez"):
        validate_crd(rule)


def test_an_invalid_manifest_is_rejected() -> None:
    """The validator is live: a misspelt field in a rendered Deployment fails strict validation."""
    deployment = yaml.safe_load(yaml.safe_dump(objects("prod", "Deployment")[0]))
    deployment["spec"]["replicaz"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, kubernetes_validate.latest_version(), strict=True)


def test_a_broken_overlay_fails_to_render(tmp_path: Path) -> None:
    """The renderer is live: an overlay patching a Deployment the base lacks is refused by kustomize."""
    overlay = tmp_path / "broken"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        f"resources: [{os.path.relpath(K8S / 'base', overlay)}]\n"
        "patches:\n  - patch: '{apiVersion: apps/v1, kind: Deployment, metadata: {name: nope}, spec: {replicas: 3}}'\n"
    )
    done = subprocess.run([kubectl(), "kustomize", "--load-restrictor", "LoadRestrictionsNone", str(overlay)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode != 0
    assert "nope" in done.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_expected_resources_exist(overlay: str) -> None:
    """Both components have a Deployment, Service, ConfigMap and ServiceMonitor, plus the rules and
    the NetworkPolicies, in the namespace certloop."""
    names = {(doc["kind"], doc["metadata"]["name"]) for doc in render(overlay)}
    for component in ("certloop-exporter", "certloop-renewer"):
        assert {("Deployment", component), ("Service", component), ("ConfigMap", component),
                ("ServiceMonitor", component)} <= names
    assert ("PrometheusRule", "certloop") in names
    assert ("NetworkPolicy", "certloop-default-deny-ingress") in names
    for doc in render(overlay):
        if doc["kind"] != "Namespace" and doc["metadata"]["name"].startswith("certloop"):
            assert doc["metadata"].get("namespace") == "certloop", f"{doc['kind']}/{doc['metadata']['name']}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_service_monitors_select_a_service_port(overlay: str) -> None:
    """Each ServiceMonitor (structural check) selects exactly one Service in its namespace by labels and
    names one of its ports; the `job` label it gives is the one the generated rules select on."""
    for monitor in objects(overlay, "ServiceMonitor"):
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        wanted = monitor["spec"]["selector"]["matchLabels"]
        matches = [s for s in objects(overlay, "Service")
                   if s["metadata"]["namespace"] == monitor["metadata"]["namespace"]
                   and wanted.items() <= s["metadata"]["labels"].items()]
        assert len(matches) == 1, monitor["metadata"]["name"]
        ports = {p["name"] for p in matches[0]["spec"]["ports"]}
        assert {e["port"] for e in monitor["spec"]["endpoints"]} <= ports
        job_label = monitor["spec"].get("jobLabel")
        job = matches[0]["metadata"]["labels"][job_label] if job_label else matches[0]["metadata"]["name"]
        rules = (REPO / "alerting" / "generated" / "certloop.rules.yml").read_text()
        assert f'job="{job}"' in rules, f"no generated rule selects job={job!r}"


def test_prometheus_rule_is_the_generated_one_and_promtool_accepts_it(tmp_path: Path) -> None:
    """base/prometheusrule.yaml is byte-identical to alerting/generated/prometheusrule.yaml (kustomize
    loads no file from outside the base, so it is a copy `make generate` refreshes), and its groups pass
    promtool."""
    copy = K8S / "base" / "prometheusrule.yaml"
    assert copy.read_bytes() == (REPO / "alerting" / "generated" / "prometheusrule.yaml").read_bytes(), (
        "deploy/kubernetes/base/prometheusrule.yaml is stale: run `make generate`")
    rule = one("prod", "PrometheusRule", "certloop")
    groups = rule["spec"]["groups"]
    assert groups and all(g["name"] and g["rules"] for g in groups)
    rules_file = tmp_path / "rules.yml"
    rules_file.write_text(yaml.safe_dump({"groups": groups}))
    done = promtool("check", "rules", str(rules_file))
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_target_the_workload_ports(overlay: str) -> None:
    """Each Service selects its workload's pod labels and targets a named container port."""
    workloads = {(d["metadata"]["namespace"], d["metadata"]["name"]): d["spec"]["template"]
                 for d in render(overlay) if d["kind"] in {"Deployment", "DaemonSet"}}
    for service in objects(overlay, "Service"):
        pod = workloads[(service["metadata"]["namespace"], service["metadata"]["name"])]
        assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
        container_ports = {p["name"] for c in pod["spec"]["containers"] for p in c.get("ports", [])}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= container_ports


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_requests_and_limits(overlay: str) -> None:
    """CPU and memory requests and limits on every container, sidecars included."""
    for name, spec in pod_specs(overlay):
        for container in spec["containers"] + spec.get("initContainers", []):
            resources = container.get("resources", {})
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(part, {})), f"{name}/{container['name']}: {part}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_config_reaches_the_daemons_without_a_restart(overlay: str) -> None:
    """Configs are mounted as directories (no subPath, which would freeze the file), from plain ConfigMaps
    (no content-hash name that would roll the pods), and a config-reloader sidecar watches the directory
    the daemon reads its --config.file from and POSTs that daemon's /-/reload on loopback (which the daemon
    answers only with --web.enable-lifecycle)."""
    for name, spec in pod_specs(overlay):
        for container in spec["containers"]:
            for mount in container.get("volumeMounts", []):
                assert "subPath" not in mount and "subPathExpr" not in mount, f"{name}/{container['name']}"
        if not name.startswith("certloop-"):
            continue
        daemon, reloader = spec["containers"]
        config_arg = next(a for a in daemon["args"] if a.startswith("--config.file="))
        config_dir = str(Path(config_arg.split("=", 1)[1]).parent)
        [mount] = [m for m in daemon["volumeMounts"] if m["mountPath"] == config_dir]
        [volume] = [v for v in spec["volumes"] if v["name"] == mount["name"]]
        assert volume["configMap"]["name"] == name, "the daemon's ConfigMap keeps its plain name"
        assert reloader["name"] == "config-reloader"
        args = dict(a.removeprefix("--").split("=", 1) for a in reloader["args"])
        assert args["watch-dir"] == config_dir
        assert {m["name"] for m in reloader["volumeMounts"] if m["mountPath"] == config_dir} == {mount["name"]}
        port = daemon["ports"][0]["containerPort"]
        assert args["reload-url"] == f"http://127.0.0.1:{port}/-/reload"
        assert "--web.enable-lifecycle" in daemon["args"], "without it the daemon answers the sidecar 403"
        if name == "certloop-renewer":  # its /-/reload needs the bearer token the renewer itself reads
            assert args["token-file"] == "/etc/certloop/secrets/token"
        script = next(v for v in spec["volumes"] if v["name"] == "config-reloader")["configMap"]["name"]
        data = one(overlay, "ConfigMap", script)["data"]["config_reloader.py"]
        assert data == (K8S / "base" / "config_reloader.py").read_text()


def test_prod_runs_two_renewers_on_postgresql_with_a_disruption_budget() -> None:
    """prod: 2 renewer replicas, spread over nodes, rolling without dropping below one, a PDB keeping one
    available, and the PostgreSQL URL from a Secret into a config that `certloop renewer --config.check`
    accepts."""
    renewer = one("prod", "Deployment", "certloop-renewer")
    assert renewer["spec"]["replicas"] == 2
    assert renewer["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = renewer["spec"]["template"]
    assert pod["spec"]["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname"
    [pdb] = objects("prod", "PodDisruptionBudget")
    assert pdb["metadata"]["namespace"] == "certloop"
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert 1 <= pdb["spec"]["minAvailable"] < renewer["spec"]["replicas"]
    env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
    assert env["CERTLOOP_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "certloop-renewer-database",
                                                                           "key": "url"}
    text = one("prod", "ConfigMap", "certloop-renewer")["data"]["renewer.yml"]
    assert yaml.safe_load(text)["database"]["url"] == "${CERTLOOP_DATABASE_URL}"
    assert not objects("prod", "PersistentVolumeClaim"), "prod replicas share PostgreSQL, not a volume"
    assert renewer_config_check(text, "postgresql+psycopg://certloop:x@postgres.example:5432/certloop") == 0


def test_dev_runs_one_renewer_on_sqlite_in_a_volume() -> None:
    """dev: one renewer on SQLite in a PersistentVolumeClaim, Recreate so two pods never share the file."""
    renewer = one("dev", "Deployment", "certloop-renewer")
    assert renewer["spec"]["replicas"] == 1
    assert renewer["spec"]["strategy"] == {"type": "Recreate"}
    [claim] = objects("dev", "PersistentVolumeClaim")
    volumes = {v["name"]: v for v in renewer["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"] == {"name": "data", "persistentVolumeClaim": {"claimName": claim["metadata"]["name"]}}
    text = one("dev", "ConfigMap", "certloop-renewer")["data"]["renewer.yml"]
    assert "database" not in yaml.safe_load(text)
    assert renewer_config_check(text, None) == 0


def renewer_config_check(text: str, database_url: str | None) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "renewer.yml"
        secrets = Path(tmp) / "secrets"
        secrets.mkdir()
        (secrets / "token").write_text("0123456789abcdef0123456789")
        (secrets / "keystore-key").write_text("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
        path.write_text(text.replace("/etc/certloop/secrets", str(secrets)))
        env = {k: v for k, v in os.environ.items() if k != "CERTLOOP_DATABASE_URL"}
        if database_url:
            env["CERTLOOP_DATABASE_URL"] = database_url
        done = subprocess.run([str(CERTLOOP), "renewer", f"--config.file={path}", "--config.check"],
                              capture_output=True, text=True, timeout=60, check=False, env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.returncode


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_exporter_configmap_holds_a_valid_config(overlay: str) -> None:
    """The embedded exporter.yml validates against the exporter's config model."""
    text = one(overlay, "ConfigMap", "certloop-exporter")["data"]["exporter.yml"]
    exporter = parse_exporter_config(yaml.safe_load(text), source="exporter")
    assert exporter.endpoints[0].labels["certificate"] == "shop"


def _allowed_sources(policy: dict[str, Any]) -> set[tuple[str, str]]:
    sources = set()
    for rule in policy["spec"].get("ingress", []):
        for peer in rule["from"]:
            namespace = peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
            sources.add((namespace, peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"]))
    return sources


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_admit_only_prometheus_and_alertmanager(overlay: str) -> None:
    """Ingress to certloop pods is denied by default; the exporter admits Prometheus only, the renewer
    Alertmanager (webhook) and Prometheus (metrics) only, each on the daemon's port only."""
    policies = {p["metadata"]["name"]: p for p in objects(overlay, "NetworkPolicy")
                if p["metadata"]["namespace"] == "certloop"}
    deny = policies.pop("certloop-default-deny-ingress")
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    by_component = {p["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"]: p
                    for p in policies.values()}
    assert set(by_component) == {"exporter", "renewer"}
    assert _allowed_sources(by_component["exporter"]) == {("monitoring", "prometheus")}
    assert _allowed_sources(by_component["renewer"]) == {("monitoring", "prometheus"), ("monitoring", "alertmanager")}
    for policy in by_component.values():
        assert [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]] == ["http"]


def test_prod_runs_node_exporter_on_every_node_outside_the_restricted_namespace() -> None:
    """node_exporter (for the host alerts) is a DaemonSet tolerating every taint, in its own namespace
    (host network, PID and root need `privileged`), scraped as job="node" with the node name as
    instance, which is what the mixin's host group selects by default."""
    [daemonset] = objects("prod", "DaemonSet")
    namespace = daemonset["metadata"]["namespace"]
    assert namespace != "certloop"
    ns = one("prod", "Namespace", namespace)
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    assert one("prod", "Namespace", "certloop")["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == (
        "restricted")
    spec = daemonset["spec"]["template"]["spec"]
    assert spec["hostNetwork"] and spec["hostPID"] and spec["tolerations"] == [{"operator": "Exists"}]
    assert "--path.rootfs=/host/root" in spec["containers"][0]["args"]
    [monitor] = [m for m in objects("prod", "ServiceMonitor") if m["metadata"]["namespace"] == namespace]
    assert monitor["spec"]["jobLabel"] == "job"
    assert one("prod", "Service", "node-exporter")["metadata"]["labels"]["job"] == "node"
    [relabel] = monitor["spec"]["endpoints"][0]["relabelings"]
    assert relabel == {"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "instance"}
    assert not objects("dev", "DaemonSet"), "dev leaves node_exporter to the cluster"


def test_dockerfile_pins_its_base_image_by_digest() -> None:
    """The Dockerfile's base image reference carries a sha256 digest, so rebuilds are reproducible."""
    text = (REPO / "compose" / "Dockerfile").read_text()
    match = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, flags=re.MULTILINE)
    assert match, "the base image is set by ARG PYTHON_IMAGE"
    assert re.fullmatch(r"python:3\.11[.\d]*-slim-bookworm@sha256:[0-9a-f]{64}", match.group(1)), match.group(1)
    assert all(line.split()[1] == "${PYTHON_IMAGE}" for line in text.splitlines() if line.startswith("FROM "))
