"""compose/: both compose files are valid Compose files, everything they mount or build from exists,
the image is built the way we promise, and the compose-side configs load.

Docker cannot run on these machines: validation uses Debian's docker-compose 1.29 (`config -q`
validates against the compose-spec JSON schema bundled with it, and understands `profiles`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from stack.prometheus import promtool

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "compose"
BASE = COMPOSE / "docker-compose.yml"
POSTGRES = COMPOSE / "docker-compose.postgres.yml"
SECRETS = {
    "CERTLOOP_RENEWER_TOKEN": "0123456789abcdef0123456789",
    "CERTLOOP_KEYSTORE_KEY": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    "GRAFANA_ADMIN_PASSWORD": "grafana-test",
    "POSTGRES_PASSWORD": "postgrestest",
}
HOST_PATHS_OUTSIDE_REPO = {"/"}  # node-exporter reads the host root filesystem


def compose(*files: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose (Debian package docker-compose) is required to validate compose files"
    argv = [binary, "--project-directory", str(COMPOSE)]
    for f in files:
        argv += ["-f", str(f)]
    clean = {k: v for k, v in os.environ.items() if k not in SECRETS}
    return subprocess.run([*argv, "config", "-q"], capture_output=True, text=True, timeout=60, check=False,
                          env={**clean, **env}, cwd=COMPOSE)


@pytest.mark.parametrize("files", [(BASE,), (BASE, POSTGRES)], ids=["base", "postgres"])
def test_compose_files_are_valid(files: tuple[Path, ...]) -> None:
    """`docker-compose config -q` accepts the base file and the PostgreSQL override on top of it."""
    done = compose(*files, env=SECRETS)
    assert done.returncode == 0, done.stderr


def test_missing_secret_is_refused() -> None:
    """Without CERTLOOP_RENEWER_TOKEN the stack does not even render: secrets are required, not defaulted."""
    env = {k: v for k, v in SECRETS.items() if k != "CERTLOOP_RENEWER_TOKEN"}
    done = compose(BASE, env=env)
    assert done.returncode != 0
    assert "CERTLOOP_RENEWER_TOKEN" in done.stderr


def services(path: Path) -> dict[str, dict[str, Any]]:
    data = yaml.safe_load(path.read_text())
    result: dict[str, dict[str, Any]] = data["services"]
    return result


def bind_sources(path: Path) -> list[str]:
    sources = []
    for service in services(path).values():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith((".", "/")):
                sources.append(source)
    return sources


@pytest.mark.parametrize("path", [BASE, POSTGRES], ids=["base", "postgres"])
def test_every_mounted_host_path_exists(path: Path) -> None:
    """Each bind mount source (relative to compose/) exists in the repository."""
    missing = []
    for source in bind_sources(path):
        if source in HOST_PATHS_OUTSIDE_REPO:
            continue
        assert not source.startswith("/"), f"{source}: absolute host paths other than / are not portable"
        if not (COMPOSE / source).exists():
            missing.append(source)
    assert bind_sources(path), "expected bind mounts"
    assert not missing, f"{path.name} mounts paths that do not exist: {missing}"


def test_build_context_and_dockerfile_sources_exist() -> None:
    """The build context and Dockerfile exist and every COPY source in the Dockerfile is in the context."""
    builds = {str(s["build"]) for s in services(BASE).values() if "build" in s}
    assert builds, "expected a build section"
    build = services(BASE)["exporter"]["build"]
    context = (COMPOSE / build["context"]).resolve()
    dockerfile = context / build["dockerfile"]
    assert context == REPO and dockerfile.is_file()
    for line in dockerfile.read_text().splitlines():
        if line.startswith("COPY") and "--from=" not in line:
            for source in line.split()[1:-1]:
                assert (context / source).exists(), f"Dockerfile copies {source}, which is missing"


def test_dockerfile_is_multi_stage_non_root_with_healthcheck() -> None:
    """Build tools stay in the build stage; the final stage runs as an unprivileged user with a HEALTHCHECK."""
    text = (COMPOSE / "Dockerfile").read_text()
    stages = re.split(r"^FROM ", text, flags=re.MULTILINE)[1:]
    assert len(stages) == 2
    final = stages[-1]
    assert "build-essential" in stages[0] and "build-essential" not in final
    user = re.search(r"^USER (\S+)", final, flags=re.MULTILINE)
    assert user and not user.group(1).startswith(("root", "0"))
    assert "HEALTHCHECK" in final
    assert re.search(r'^ENTRYPOINT \["certloop"\]', final, flags=re.MULTILINE)


def test_demo_profile_services_are_profiled() -> None:
    """pebble, challtestsrv, nginx and the seed job run only with `--profile demo`; the product needs none."""
    base = services(BASE)
    demo = {name for name, s in base.items() if "demo" in s.get("profiles", [])}
    assert demo == {"pebble", "challtestsrv", "nginx", "seed"}
    product = set(base) - demo
    assert {"exporter", "renewer", "prometheus", "alertmanager", "grafana", "node-exporter"} <= product
    for name in product:
        assert not set(base[name].get("depends_on", {})) & demo, f"{name} must not depend on demo services"


def test_prometheus_config_is_valid() -> None:
    """promtool accepts compose/prometheus/prometheus.yml, which has both scrape modes."""
    path = COMPOSE / "prometheus" / "prometheus.yml"
    done = promtool("check", "config", "--syntax-only", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    jobs = {job["job_name"]: job for job in yaml.safe_load(path.read_text())["scrape_configs"]}
    assert jobs["certloop-probe"]["metrics_path"] == "/probe"
    assert {"certloop-exporter", "certloop-renewer"} <= set(jobs)


def config_check(component: str, name: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    argv = [str(REPO / ".venv" / "bin" / "certloop"), component, f"--config.file={COMPOSE / name}", "--config.check"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, **env}, cwd=REPO)


def test_exporter_config_passes_config_check() -> None:
    """`certloop exporter --config.check` accepts compose/exporter.yml, which carries the `certificate` label."""
    done = config_check("exporter", "exporter.yml", {})
    assert done.returncode == 0, done.stdout + done.stderr
    endpoints = yaml.safe_load((COMPOSE / "exporter.yml").read_text())["endpoints"]
    assert endpoints[0]["labels"]["certificate"] == "shop"


@pytest.mark.parametrize("name", ["renewer.yml", "renewer.postgres.yml"])
def test_renewer_configs_pass_config_check(name: str) -> None:
    """`certloop renewer --config.check` accepts both renewer configs with the secrets compose passes in."""
    env = {**SECRETS, "CERTLOOP_DATABASE_URL": "postgresql+psycopg://certloop:x@postgres:5432/certloop"}
    done = config_check("renewer", name, env)
    assert done.returncode == 0, done.stdout + done.stderr
    without_token = {k: v for k, v in env.items() if k != "CERTLOOP_RENEWER_TOKEN"}
    missing = subprocess.run(
        [str(REPO / ".venv" / "bin" / "certloop"), "renewer", f"--config.file={COMPOSE / name}", "--config.check"],
        capture_output=True, text=True, timeout=60, check=False, cwd=REPO,
        env={**{k: v for k, v in os.environ.items() if k != "CERTLOOP_RENEWER_TOKEN"}, **without_token},
    )
    assert missing.returncode != 0 and "CERTLOOP_RENEWER_TOKEN" in missing.stderr, "a missing token must fail"


def test_demo_seed_mints_an_expiring_certificate(tmp_path: Path) -> None:
    """The demo seed writes pebble's HTTPS identity and a shop.example certificate expiring within the hour."""
    pki, tls = tmp_path / "pki", tmp_path / "tls"
    pki.mkdir()
    tls.mkdir()
    python = REPO / ".venv" / "bin" / "python"
    subprocess.run([str(python), str(COMPOSE / "demo" / "seed.py"), str(pki), str(tls)], check=True, timeout=60)
    leaf = x509.load_pem_x509_certificate((tls / "shop.pem").read_bytes())
    assert leaf.not_valid_after_utc - datetime.now(UTC) < timedelta(hours=1)
    assert {p.name for p in pki.iterdir()} == {"pebble-ca.pem", "pebble.pem", "pebble.key"}
    assert (tls / "shop.key").stat().st_mode & 0o777 == 0o640


def test_alertmanager_renewal_route_reaches_the_compose_renewer() -> None:
    """The webhook in the mounted alertmanager.yml targets the compose `renewer` service on the port the
    renewer listens on, with the token file the `secrets` volume provides."""
    config = yaml.safe_load((REPO / "alerting" / "alertmanager" / "alertmanager.yml").read_text())
    [receiver] = [r for r in config["receivers"] if r["name"] == "certloop-renewer"]
    [webhook] = receiver["webhook_configs"]
    match = re.fullmatch(r"http://([^:/]+):(\d+)/api/v1/alertmanager", webhook["url"])
    assert match, webhook["url"]
    renewer_listen = yaml.safe_load((COMPOSE / "renewer.yml").read_text())["listen"]
    assert match.group(1) in services(BASE)
    assert match.group(2) == renewer_listen.rpartition(":")[2], (
        f"Alertmanager posts to port {match.group(2)}, the renewer listens on {renewer_listen}"
    )
    credentials = webhook["http_config"]["authorization"]["credentials_file"]
    assert "secrets:/etc/alertmanager/secrets:ro" in services(BASE)["alertmanager"]["volumes"]
    assert credentials == "/etc/alertmanager/secrets/renewer-token"
