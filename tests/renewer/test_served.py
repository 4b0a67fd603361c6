"""The leaf served now, next to the one installed: a real nginx serving another leaf than the renewer's
files (drift: the server was not reloaded), a stopped endpoint (refused) and one that accepts TCP but
never answers the TLS handshake (a listening socket nobody accepts on: a real kernel, no fake), shown on
the status page and in /api/v1/certificates within the page's budget; the cache shares probes."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from certloop.config import validate_model
from certloop.renewer.config import StatusPageConfig
from certloop.renewer.install import verify_resolver
from certloop.renewer.served import Served, ServedLeaves, judge
from certloop.renewer.spec import CertificateSpec
from stack.nginx import Nginx
from stack.process import free_port, wait_until
from tests.renewer.conftest import RenewerProcess, Setup
from tests.support.pki import Issued, Pki


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port whose TCP handshake completes (the kernel's backlog) but whose TLS handshake never gets an
    answer: nobody accepts."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def _endpoint(port: int, name: str) -> dict[str, Any]:
    return {"endpoints": [{"endpoint": f"127.0.0.1:{port}", "server_name": name}], "timeout": "5s"}


def _row(html: str, cert: str) -> str:
    return html.split(f'id="cert-{cert}"')[1].split("</tr>")[0]


def _certs(r: RenewerProcess) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in r.get("/api/v1/certificates").json()["certificates"]}


@pytest.fixture
def drift(tmp_path: Path, nginx: Nginx, pki: Pki) -> tuple[int, Issued, Path]:
    """nginx serves a 40-day leaf from its own files; returns (port, that leaf, its directory)."""
    served = pki.leaf(["shop.example"], days=40)
    files = served.write(tmp_path / "nginx-files", "served")
    port = free_port()
    nginx.add_site(["shop.example"], files["fullchain"], files["key"], listen=[("127.0.0.1", port)], default=True)
    nginx.start()
    return port, served, tmp_path / "nginx-files"


def test_the_page_and_api_show_the_served_leaf_drift_and_probe_failures(
    drift: tuple[int, Issued, Path], nginx: Nginx, pki: Pki, silent_port: int,
    make_setup: Callable[..., Setup], start_renewer: Callable[..., RenewerProcess],
) -> None:
    """shop: 20-day leaf installed, nginx serves a 40-day one -> the served leaf's fingerprint and days left
    with the drift mark; blog: nothing listens -> "connection refused"; slow: no TLS answer -> "probe
    timed out". Once nginx serves the installed files (reloaded), the drift mark goes (probe_interval 1s)."""
    port, served, _ = drift
    setup = make_setup(["shop", "blog", "slow"], top={"status_page": {
        "probe_interval": "1s", "probe_timeout": "1s", "probe_wait": "5s", "probe_concurrency": 2}})
    installed = pki.leaf(["shop.example"], days=20)
    live = Path(setup.data["certificates"][0]["outputs"]["fullchain"])
    live.write_bytes(installed.fullchain_pem)
    live.with_name("key.pem").write_bytes(installed.key_pem)
    closed = free_port()
    for cert, target in zip(setup.data["certificates"], (port, closed, silent_port), strict=True):
        cert["verify"] = _endpoint(target, f"{cert['id']}.example")
    setup.write()
    r = start_renewer(setup.path)

    started = time.monotonic()
    html = r.get("/status").text
    assert time.monotonic() - started < 5 + 3  # probe_wait, and the probes are bounded well within it
    shop = _row(html, "shop")
    assert f'data-fingerprint="{served.fingerprint}"' in shop and served.fingerprint[:12] in shop
    days = float(re.search(r'class="served-days [a-z]+">([0-9.]+)<', shop).group(1))  # type: ignore[union-attr]
    assert 39 < days <= 40
    assert "drift: not the installed leaf" in shop
    installed_days = float(re.search(r'class="days-left [a-z]+">([0-9.]+)<', shop).group(1))  # type: ignore[union-attr]
    assert 19 < installed_days <= 20  # the installed leaf's column is unchanged
    assert "probe failed: connection refused" in _row(html, "blog") and "drift" not in _row(html, "blog")
    assert "probe failed: probe timed out" in _row(html, "slow")

    certs = _certs(r)
    doc = certs["shop"]["served"]
    assert (doc["state"], doc["drift"], doc["probe_failed"]) == ("drift", True, False)
    (address,) = doc["endpoints"][0]["addresses"]
    assert address["fingerprint_sha256"] == served.fingerprint != certs["shop"]["fingerprint_sha256"]
    assert datetime.fromisoformat(address["not_after"]) == served.cert.not_valid_after_utc
    assert certs["shop"]["fingerprint_sha256"] == installed.fingerprint
    blog = certs["blog"]["served"]
    assert (blog["state"], blog["endpoints"][0]["addresses"][0]["reason"]) == ("probe_failed", "refused")
    assert certs["slow"]["served"]["endpoints"][0]["addresses"][0]["reason"] == "timeout"

    # The operator reloads nginx onto the installed files: the next probe sees the installed leaf.
    nginx.remove_site(nginx.sites[0])
    nginx.add_site(["shop.example"], live, live.with_name("key.pem"), listen=[("127.0.0.1", port)], default=True)
    nginx.reload()
    wait_until(lambda: _certs(r)["shop"]["served"]["state"] == "serves_installed", 20,
               "the installed leaf to be served", interval=0.3)
    assert "drift" not in _row(r.get("/status").text, "shop")


def test_a_dead_endpoint_never_holds_the_page_beyond_its_budget(
    silent_port: int, make_setup: Callable[..., Setup], start_renewer: Callable[..., RenewerProcess],
) -> None:
    """probe_timeout 3s, probe_wait 0.3s: the page answers at once saying the endpoint is being probed;
    once the probe gives up, the page shows the timeout without waiting again."""
    setup = make_setup(["slow"], top={"status_page": {"probe_timeout": "3s", "probe_wait": "300ms",
                                                      "probe_interval": "1h"}})
    setup.data["certificates"][0]["verify"] = _endpoint(silent_port, "slow.example")
    setup.write()
    r = start_renewer(setup.path)
    started = time.monotonic()
    html = r.get("/status").text
    elapsed = time.monotonic() - started
    assert elapsed < 2.5, elapsed  # 0.3s of waiting plus the page itself, on a loaded 2-core box
    assert ">probing<" in _row(html, "slow")
    assert r.get("/api/v1/certificates").json()["certificates"][0]["served"]["state"] == "probing"
    page = wait_until(lambda: t if "probe timed out" in (t := r.get("/status").text) else None, 15,
                      "the probe to time out", interval=0.3)
    assert "probe failed: probe timed out" in _row(page, "slow")


def test_looks_within_the_interval_share_one_probe(drift: tuple[int, Issued, Path]) -> None:
    """Two concurrent looks and a third inside probe_interval start one probe of the endpoint; another
    installed leaf (a renewal) or the interval passing (a reload's new settings) starts a new one.
    Verdicts against the installed fingerprint."""
    port, served, _ = drift
    spec = validate_model(CertificateSpec, {
        "id": "shop", "domains": ["shop.example"], "issuer": {"type": "command", "argv": ["true"]},
        "outputs": {"fullchain": "/nonexistent/fullchain.pem", "key": "/nonexistent/key.pem"},
        "verify": _endpoint(port, "shop.example")})
    settings = [StatusPageConfig(probe_interval="1h")]  # type: ignore[arg-type]

    installed: dict[str, str | None] = {"shop": served.fingerprint}

    async def scenario() -> None:
        leaves = ServedLeaves(lambda: settings[0], verify_resolver(None), lambda: datetime.now(UTC))
        first, second = await asyncio.gather(leaves.look([spec], installed), leaves.look([spec], installed))
        third = await leaves.look([spec], installed)
        assert leaves.probes_started == 1
        for look in (first, second, third):
            (ep,) = look["shop"]
            assert ep.addresses[0].leaf is not None and ep.addresses[0].leaf.fingerprint_sha256 == served.fingerprint
        assert judge(served.fingerprint, third["shop"]).state is Served.SERVES_INSTALLED
        assert judge(None, third["shop"]).state is Served.DRIFT  # served, yet nothing installed
        installed["shop"] = "another leaf installed since"  # a renewal: the answer is stale, whatever its age
        await leaves.look([spec], installed)
        assert leaves.probes_started == 2
        await leaves.look([spec], installed)
        assert leaves.probes_started == 2
        settings[0] = StatusPageConfig(probe_interval="0s")  # type: ignore[arg-type]
        await leaves.look([spec], installed)
        assert leaves.probes_started == 3
        assert await leaves.look([], {}) == {} and len(leaves) == 0  # forgotten with the config
        await leaves.close()

    asyncio.run(scenario())
