"""Inventory of TLS endpoints against a real nginx on loopback, names resolved by pebble-challtestsrv."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from stack.challtestsrv import ChallTestSrv
from stack.nginx import Nginx
from stack.process import free_port
from tests.exporter.support import exporter, samples, value
from tests.support.pki import Issued, Pki


@dataclass
class Scene:
    """One nginx serving every scenario by SNI on ``port``, plus a name on two addresses on ``multi_port``."""

    pki: Pki
    root: Path
    dns: str
    port: int
    multi_port: int
    leaves: dict[str, Issued]
    workdir: Path


NAMES = ("valid", "rsa", "expired", "notyet", "selfsigned", "wronghost", "nointer", "shortinter")


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    work = tmp_path_factory.mktemp("endpoints")
    pki = Pki()
    now = datetime.now(UTC)
    short = pki.issue_intermediate(days=10, name="short-lived intermediate")
    leaves = {
        "valid": pki.leaf(["valid.test"], days=60),
        "rsa": pki.leaf(["rsa.test"], days=60, key_kind="rsa2048"),
        "expired": pki.leaf(["expired.test"], not_before=now - timedelta(days=90), not_after=now - timedelta(days=2)),
        "notyet": pki.leaf(["notyet.test"], not_before=now + timedelta(days=2), not_after=now + timedelta(days=90)),
        "selfsigned": pki.self_signed(["selfsigned.test"]),
        "wronghost": pki.leaf(["other.test"]),
        "nointer": pki.leaf(["nointer.test"]),
        "shortinter": pki.leaf(["shortinter.test"], days=90, issuer=short),
        "multi-a": pki.leaf(["multi.test"], days=30),
        "multi-b": pki.leaf(["multi.test"], days=31),
    }
    certs = work / "certs"
    for name, issued in leaves.items():
        issued.write(certs, name)
    dns = ChallTestSrv(free_port(), free_port(), workdir=work / "dns")
    web = Nginx(work / "nginx")
    port, multi_port = free_port(), free_port()
    for name in NAMES:
        cert = certs / (f"{name}.crt" if name == "nointer" else f"{name}.fullchain.pem")
        web.add_site([f"{name}.test"], cert, certs / f"{name}.key", [("127.0.0.1", port)], default=name == "valid")
    web.add_site(["multi.test"], certs / "multi-a.fullchain.pem", certs / "multi-a.key", [("127.0.0.1", multi_port)])
    web.add_site(["multi.test"], certs / "multi-b.fullchain.pem", certs / "multi-b.key", [("127.0.0.2", multi_port)])
    dns.start()
    try:
        web.start()
        try:
            dns.add_a("multi.test", ["127.0.0.1", "127.0.0.2"])
            yield Scene(pki, pki.write_root(work / "root.pem"), dns.dns_address, port, multi_port, leaves, work)
        finally:
            web.stop()
    finally:
        dns.stop()


def _config(scene: Scene, **extra: object) -> dict[str, object]:
    return {
        "global": {"ca_file": str(scene.root), "resolver": [scene.dns], "connect_timeout": "2s",
                   "handshake_timeout": "2s", **extra},
        "endpoints": [
            {"targets": [f"{n}.test:{scene.port}" for n in NAMES], "labels": {"team": "web"}},
            {"targets": [f"multi.test:{scene.multi_port}"], "expect_file": str(scene.workdir / "certs" / "multi-a.crt"),
             "labels": {"certificate": "multi"}},
        ],
    }


def test_verdicts_dates_and_identity(scene: Scene) -> None:
    """Each nginx scenario gets its verdict; dates, identity, key and TLS facts are exported whatever it is."""
    with exporter(_config(scene)) as exp:
        text = exp.metrics()
    expected = {"valid": "ok", "rsa": "ok", "expired": "expired", "notyet": "not_yet_valid",
                "selfsigned": "self_signed", "wronghost": "hostname_mismatch", "nointer": "incomplete_chain",
                "shortinter": "ok"}
    for name, verdict in expected.items():
        target = f"{name}.test:{scene.port}"
        assert value(text, "certloop_probe_success", target=target, address="127.0.0.1", team="web") == 1, name
        assert value(text, "certloop_verify_verdict", target=target, verdict=verdict) == 1, name
        assert value(text, "certloop_verify_ok", target=target) == (1 if verdict == "ok" else 0), name
        leaf = scene.leaves[name].cert
        assert value(text, "certloop_cert_not_after_timestamp_seconds", target=target, position="0",
                     role="leaf") == int(leaf.not_valid_after_utc.timestamp()), name
    assert value(text, "certloop_hostname_match", target=f"wronghost.test:{scene.port}") == 0
    assert value(text, "certloop_hostname_match", target=f"valid.test:{scene.port}") == 1
    rsa = samples(text, "certloop_cert_info", target=f"rsa.test:{scene.port}", position="0")
    assert rsa[0][0]["key_type"] == "rsa" and rsa[0][0]["key_bits"] == "2048"
    assert rsa[0][0]["dns_names"] == "rsa.test" and rsa[0][0]["subject"] == "CN=rsa.test"
    ec = samples(text, "certloop_cert_info", target=f"valid.test:{scene.port}", position="0")
    assert ec[0][0]["key_type"] == "ecdsa" and ec[0][0]["signature_algorithm"] == "sha256-ecdsa"
    assert ec[0][0]["fingerprint_sha256"] == scene.leaves["valid"].fingerprint
    assert value(text, "certloop_cert_info", target=f"valid.test:{scene.port}", position="1",
                 role="intermediate") == 1
    tls = samples(text, "certloop_tls_version_info", target=f"valid.test:{scene.port}")
    # Debian nginx 1.22 enables TLS 1.3 only when configured; the exporter reports what was negotiated
    assert tls and tls[0][0]["version"] in {"TLS 1.2", "TLS 1.3"} and tls[0][0]["cipher"], tls
    # the chain the client depends on expires with its short-lived intermediate, not with the leaf
    short = scene.leaves["shortinter"]
    assert value(text, "certloop_chain_expiry_timestamp_seconds", target=f"shortinter.test:{scene.port}") == int(
        short.chain[0].not_valid_after_utc.timestamp())
    assert short.chain[0].not_valid_after_utc < short.cert.not_valid_after_utc


def test_addresses_consistency_and_drift(scene: Scene) -> None:
    """A name on two addresses serving different leaves: each address is labelled, inconsistency and drift show."""
    target = f"multi.test:{scene.multi_port}"
    with exporter(_config(scene)) as exp:
        text = exp.metrics()
        probed = requests.get(f"{exp.url}/probe", params={"target": target}, timeout=10).text
    # /probe resolves the name too and probes every address, with the same series names
    assert {s[0]["address"] for s in samples(probed, "certloop_probe_success", target=target)} == {
        "127.0.0.1", "127.0.0.2"}
    assert value(probed, "certloop_endpoint_addresses_consistent", target=target, source="endpoint") == 0
    a, b = scene.leaves["multi-a"], scene.leaves["multi-b"]
    assert value(text, "certloop_cert_info", target=target, address="127.0.0.1", position="0",
                 fingerprint_sha256=a.fingerprint, certificate="multi") == 1
    assert value(text, "certloop_cert_info", target=target, address="127.0.0.2", position="0",
                 fingerprint_sha256=b.fingerprint) == 1
    assert value(text, "certloop_endpoint_addresses_consistent", target=target, certificate="multi") == 0
    expect = str(scene.workdir / "certs" / "multi-a.crt")
    assert value(text, "certloop_endpoint_matches_file", target=target, address="127.0.0.1", expect_file=expect) == 1
    assert value(text, "certloop_endpoint_matches_file", target=target, address="127.0.0.2", expect_file=expect) == 0
    assert value(text, "certloop_endpoint_addresses_consistent", target=f"valid.test:{scene.port}") == 1


@pytest.fixture
def hanging_server() -> Iterator[int]:
    """A hostile peer: accepts TCP connections and never says a word."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        listener.close()


def test_hanging_peer_never_blocks_metrics(scene: Scene, hanging_server: int) -> None:
    """While a silent peer holds a probe until its timeout, /metrics answers at once; then it reads timeout."""
    # DNS goes to a loopback port where no server listens: the name cannot resolve (reason dns)
    config = _config(scene, handshake_timeout="3s", resolver=[f"127.0.0.1:{free_port()}"])
    config["endpoints"] = [{"targets": [f"127.0.0.1:{hanging_server}"]},
                           {"targets": [f"127.0.0.1:{scene.port}"], "server_name": "valid.test"},
                           {"targets": ["nonexistent.invalid:443"]}]
    with exporter(config, ready=False) as exp:
        started = time.monotonic()
        response = requests.get(f"{exp.url}/metrics", timeout=5)
        assert response.status_code == 200 and time.monotonic() - started < 2.0  # the probe holds for 3s
        assert requests.get(f"{exp.url}/-/ready", timeout=5).status_code == 503
        exp.wait_ready(timeout=15)
        text = exp.metrics()
    hang = f"127.0.0.1:{hanging_server}"
    assert value(text, "certloop_probe_failure_reason", target=hang, reason="timeout") == 1
    assert value(text, "certloop_probe_success", target=hang) == 0
    assert value(text, "certloop_verify_verdict", target=f"127.0.0.1:{scene.port}", verdict="ok") == 1
    assert value(text, "certloop_probe_failure_reason", target="nonexistent.invalid:443", reason="dns") == 1


def test_a_remembered_judgement_ends_where_the_chain_changes_state(scene: Scene) -> None:
    """An endpoint re-probed while it serves the same chain is judged once (ExporterCaches.judged), and
    never past the instant its verdict can change: the same leaf probed after its expiry is 'expired',
    with another verified name it is judged for that name, and a reloaded trust store judges afresh."""
    import asyncio

    from certloop.exporter.config import parse_config
    from certloop.exporter.engine import build_context
    from certloop.exporter.report import ExporterCaches
    from certloop.exporter.sources.base import ProbeCounter
    from certloop.exporter.sources.endpoints import probe_endpoint, spec_for

    config = parse_config({"global": {"ca_file": str(scene.root)}})
    caches = ExporterCaches()
    leaf = scene.leaves["valid"].cert
    now = [datetime.now(UTC)]
    ctx = build_context(config, ProbeCounter(), caches, clock=lambda: now[0])

    def probe(server_name: str, context: object = None) -> tuple[str, bool | None]:
        use = context or ctx
        spec = spec_for(use, f"127.0.0.1:{scene.port}", config.module("default"), server_name=server_name)
        report = asyncio.run(probe_endpoint(spec, use))
        (obs,) = report.observations
        assert obs.chain is not None, obs
        return obs.chain.verdict.value, obs.hostname_match

    assert probe("valid.test") == ("ok", True)
    assert probe("valid.test") == ("ok", True) and len(caches.judged) == 1  # the second is a hit
    assert probe("other.valid.test")[1] is False  # nginx's default site, judged for the name asked
    now[0] = leaf.not_valid_after_utc + timedelta(seconds=1)
    assert probe("valid.test") == ("expired", True)
    now[0] = datetime.now(UTC)
    assert probe("valid.test") == ("ok", True)  # the clock went back: judged afresh, not from the later entry
    other_root = Pki().write_root(scene.workdir / "other-root.pem")
    other = parse_config({"global": {"ca_file": str(other_root)}})
    reloaded = build_context(other, ProbeCounter(), caches, clock=lambda: now[0])  # a reload, another CA
    spec = spec_for(reloaded, f"127.0.0.1:{scene.port}", other.module("default"), server_name="valid.test")
    (obs,) = asyncio.run(probe_endpoint(spec, reloaded)).observations
    assert obs.chain is not None and obs.chain.verdict.value != "ok"
