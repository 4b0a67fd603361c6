"""The wheel as an operator installs it: only ``certloop`` in site-packages, everything findable, and the
three commands working from a fresh venv outside the repository against a real nginx."""

from __future__ import annotations

import ast
import os
import re
import site
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from stack.nginx import Nginx
from stack.process import free_port, wait_until
from tests.support.pki import Pki

REPO = Path(__file__).resolve().parents[2]
SUBPACKAGES = ("exporter", "renewer", "alerting", "dashboards")


def _tracked_python() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "*.py"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    return [REPO / line for line in out.split() if not (REPO / line).is_symlink()]


def test_code_imports_the_subpackages_by_their_installed_names() -> None:
    """`from exporter...` would load a second copy of a module beside `certloop.exporter...` in a checkout and
    fail outright in an installed wheel: every import names certloop.<subpackage>."""
    offenders = []
    for path in _tracked_python():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            offenders += [f"{path.relative_to(REPO)}:{node.lineno}: {n}" for n in names
                          if n.split(".")[0] in SUBPACKAGES]
    assert not offenders, "\n".join(offenders)


def test_the_core_contract_lists_every_core_module() -> None:
    """The import-linter contract that keeps the core free of its users names each core module; a new one
    must be added there, or the contract silently stops covering it."""
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"][1][
        "source_modules"])
    core = {f"certloop.{p.stem if p.suffix == '.py' else p.name}" for p in (REPO / "certloop").iterdir()
            if not p.is_symlink() and p.name != "__pycache__" and (p.suffix == ".py" or (p / "__init__.py").exists())}
    core.discard("certloop.__init__")
    assert core == listed, f"missing: {sorted(core - listed)}, stale: {sorted(listed - core)}"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out),
                    str(REPO)], check=True, capture_output=True, timeout=300)
    (found,) = out.glob("certloop-*.whl")
    return found


def test_the_wheel_installs_only_certloop_with_its_assets_and_license(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"certloop", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}, tops
    for needed in ("certloop/alerting/generated/certloop.rules.yml", "certloop/dashboards/generated/overview.json",
                   "certloop/alerting/alertmanager/templates/wecom.tmpl", "certloop/renewer/migrations/env.py",
                   "certloop/assets/systemd/certloop-renewer.service", "certloop/alerting/jsonnetfile.json"):
        assert needed in names, needed
    assert not any(n.startswith(("certloop/stack", "certloop/tests", "certloop/benchmarks")) for n in names)
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("/METADATA"))).decode()
    assert re.search(r"^License-Expression: Apache-2.0$", metadata, re.M), metadata[:800]
    assert any(n.endswith("licenses/LICENSE") for n in names)


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv outside the repository with the wheel installed; its dependencies are read from this
    interpreter's site-packages through a .pth line (no network, and the checkout's editable finder is not
    loaded: a .pth line adds a directory, it does not run the .pth files inside it)."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    purelib = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    (purelib / "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--no-deps",
                    "-q", str(wheel)], check=True, capture_output=True, timeout=300)
    return venv


def _run(venv: Path, *args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    return subprocess.run([str(venv / "bin" / "certloop"), *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=timeout, check=False)


def test_nothing_but_certloop_is_importable_from_the_install(installed: Path, tmp_path: Path) -> None:
    code = ("import importlib.util, certloop, certloop.exporter.cli, certloop.renewer.cli; "
            "print(certloop.__file__); print([importlib.util.find_spec(n) is None for n in "
            "('exporter', 'renewer', 'alerting', 'dashboards', 'stack')])")
    res = subprocess.run([str(installed / "bin" / "python"), "-c", code], capture_output=True, text=True,
                         cwd=tmp_path, timeout=60, check=True,
                         env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    where, flags = res.stdout.splitlines()
    assert where.startswith(str(installed)) and flags == str([True] * 5)


def test_assets_are_printed_and_exist(installed: Path, tmp_path: Path) -> None:
    res = _run(installed, "assets", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "(missing)" not in res.stdout and str(installed) in res.stdout
    rules = _run(installed, "assets", "rules", cwd=tmp_path).stdout.strip()
    assert yaml.safe_load(Path(rules).read_text())["groups"]
    assert _run(installed, "--version", cwd=tmp_path).stdout.startswith("certloop ")
    demo = _run(installed, "demo", cwd=tmp_path)  # stack/ is not installed: a sentence, not a traceback
    assert demo.returncode == 69 and "make demo" in demo.stderr and "Traceback" not in demo.stderr


@pytest.fixture
def site_under_test(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    pki = Pki()
    leaf = pki.leaf(["shop.example"], days=20).write(tmp_path / "pki", "shop")
    ca = pki.write_root(tmp_path / "ca.pem")
    web = Nginx(tmp_path / "nginx")
    port = free_port()
    web.add_site(["shop.example"], leaf["fullchain"], leaf["key"], listen=[("127.0.0.1", port)], default=True)
    web.start()
    try:
        yield port, ca
    finally:
        web.stop()


def test_check_exporter_and_renewer_run_from_the_install_against_real_nginx(
    installed: Path, site_under_test: tuple[int, Path], tmp_path: Path,
) -> None:
    port, ca = site_under_test
    check = _run(installed, "check", f"127.0.0.1:{port}", "--server-name", "shop.example", "--ca-file", str(ca),
                 cwd=tmp_path)
    assert check.returncode in (0, 1) and "shop.example" in check.stdout, check.stdout + check.stderr

    config = tmp_path / "exporter.yml"
    config.write_text(yaml.safe_dump({"global": {"interval": "1h", "ca_file": str(ca)},
                                      "endpoints": [{"targets": [f"127.0.0.1:{port}"], "server_name": "shop.example",
                                                     "labels": {"certificate": "shop"}}]}))
    listen = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    exporter = subprocess.Popen([str(installed / "bin" / "certloop"), "exporter", f"--config.file={config}",
                                 f"--web.listen-address=127.0.0.1:{listen}"], cwd=tmp_path, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    expiry = re.compile(r'certloop_cert_not_after_timestamp_seconds\{[^}]*certificate="shop"')

    def scraped() -> bool:
        assert exporter.poll() is None, exporter.stderr.read() if exporter.stderr else ""
        try:
            return bool(expiry.search(requests.get(f"http://127.0.0.1:{listen}/metrics", timeout=2).text))
        except requests.RequestException:  # not listening yet
            return False

    try:
        wait_until(scraped, 30, "the installed exporter's /metrics to carry the certificate's expiry")
    finally:
        exporter.terminate()
        exporter.wait(10)

    renewer_cfg = tmp_path / "renewer.yml"
    (tmp_path / "token").write_text("t" * 24)
    renewer_cfg.write_text(yaml.safe_dump({"listen": f"127.0.0.1:{free_port()}",
                                           "auth": {"token_file": str(tmp_path / "token")},
                                           "data_dir": str(tmp_path / "data"),
                                           "keystore": {"key": "0" * 64}, "certificates": []}))
    res = _run(installed, "renewer", "--config.file", str(renewer_cfg), "db", "upgrade", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr  # the migrations ship inside the wheel
    res = _run(installed, "renewer", "--config.file", str(renewer_cfg), "--config.check", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
