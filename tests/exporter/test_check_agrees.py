"""``certloop check --config`` and the exporter on one config give the same verdict for every endpoint.

Both read the exporter's config model and probe through `certloop.probe`, so a target and address
the exporter judges ``expired`` (or ``hostname_mismatch``, ``refused``...) is judged so by check too.
Real TLS servers (Python's ssl on 127.0.0.1, one per served chain) and the real exporter (engine and
HTTP server in a thread), scraped over HTTP.
"""

from __future__ import annotations

import io
import json
from datetime import timedelta
from pathlib import Path

import requests

from certloop.exporter.check import run
from stack.process import free_port, wait_until
from tests.exporter.support import exporter, samples, write_config
from tests.exporter.test_check import tls_server
from tests.support.pki import Pki

Judged = dict[tuple[str, str], str]


def _from_exporter(text: str, targets: list[str]) -> Judged:
    """(target, address) -> the verdict, or the failure reason, from the exporter's /metrics."""
    found: Judged = {}
    for labels, value in samples(text, "certloop_verify_verdict", source="endpoint"):
        if value == 1 and labels.get("position", "0") == "0":
            found[(labels["target"], labels["address"])] = labels["verdict"]
    for labels, value in samples(text, "certloop_probe_failure_reason", source="endpoint"):
        if value == 1:
            found[(labels["target"], labels["address"])] = labels["reason"]
    return {k: v for k, v in found.items() if k[0] in targets}


def _from_check(config: Path) -> tuple[int, Judged]:
    out = io.StringIO()
    code = run(["--config", str(config), "--output", "json"], stdout=out, stderr=io.StringIO())
    rows = json.loads(out.getvalue())["results"]
    return code, {(str(r["target"]), str(r["address"] or "")): str(r["verdict"] or r["reason"]) for r in rows}


def test_check_and_the_exporter_agree_on_every_endpoint(tmp_path: Path) -> None:
    """One config with a trusted, an expired, a mismatched, an untrusted (but trusted by its module's
    ca_file), an IP target without server_name, and a closed port: check's verdict per target and
    address equals the exporter's. Before this step check verified IP targets against the literal
    (hostname_mismatch where the exporter said ok) and ignored modules' ca_file and ip_protocol."""
    pki, other = Pki(), Pki()
    ca, other_ca = pki.write_root(tmp_path / "ca.pem"), other.write_root(tmp_path / "other.pem")
    good = pki.leaf(["shop.example"])
    expired = pki.leaf(["old.example"], not_before=pki.now - timedelta(days=100),
                       not_after=pki.now - timedelta(days=1))
    foreign = other.leaf(["c.example"])
    closed = free_port()
    with tls_server({None: good}, tmp_path / "a") as a, tls_server({None: expired}, tmp_path / "b") as b, \
            tls_server({None: foreign}, tmp_path / "c") as c:
        targets = [f"127.0.0.1:{a}", f"localhost:{a}", f"127.0.0.1:{b}", f"127.0.0.1:{c}", f"localhost:{c}",
                   f"127.0.0.1:{closed}"]
        config = write_config(tmp_path / "exporter.yml", {
            "global": {"ca_file": str(ca), "jitter": "0s", "connect_timeout": "2s", "handshake_timeout": "2s"},
            "modules": {"other": {"ca_file": str(other_ca), "server_name": "c.example", "ip_protocol": "ip4"}},
            "endpoints": [
                {"targets": [f"127.0.0.1:{a}"], "server_name": "shop.example"},  # ok
                {"targets": [f"localhost:{a}"]},  # a name the leaf does not cover
                {"targets": [f"127.0.0.1:{b}", f"127.0.0.1:{c}", f"127.0.0.1:{closed}"]},  # IP: no name
                {"targets": [f"localhost:{c}"], "module": "other"},  # trusted by the module's bundle
            ],
        })
        with exporter(config_path=config) as exp:
            judged: Judged = {}

            def swept() -> bool:
                judged.update(_from_exporter(requests.get(f"{exp.url}/metrics", timeout=10).text, targets))
                return {t for t, _ in judged} == set(targets)

            wait_until(swept, 30, "the exporter's first sweep")
        code, checked = _from_check(config)
    assert checked == judged
    assert code == 2
    assert judged[(f"127.0.0.1:{a}", "127.0.0.1")] == "ok"
    assert judged[(f"localhost:{a}", "127.0.0.1")] == "hostname_mismatch"
    assert judged[(f"127.0.0.1:{b}", "127.0.0.1")] == "expired"
    assert judged[(f"127.0.0.1:{c}", "127.0.0.1")] == "unknown_authority"
    assert judged[(f"localhost:{c}", "127.0.0.1")] == "ok"
    assert [k for k in judged if k[0] == f"localhost:{c}"] == [(f"localhost:{c}", "127.0.0.1")]  # ip4 only
    assert judged[(f"127.0.0.1:{closed}", "127.0.0.1")] == "refused"
