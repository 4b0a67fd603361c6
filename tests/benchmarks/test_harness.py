"""Smoke test of the benchmark harness: every scenario runs end to end with tiny N and prints ratios.

Not a timed test: the numbers are not judged here (the box is shared), only that the harness starts
the real peers (nginx, blackbox_exporter, certloop exporter and renewer, pebble), drives them with
wrk, collects CPU/RSS from /proc, and reports every table with working probes on both sides.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from certloop.caches import Caches

REPO = Path(__file__).resolve().parents[2]


def test_quick_run_prints_ratios_for_every_scenario(tmp_path: Path) -> None:
    """A --quick run of all scenarios exits 0, prints certloop/blackbox ratios and writes Markdown tables
    in which every probe answered with success on both exporters."""
    markdown = tmp_path / "results.md"
    argv = [
        sys.executable, "-m", "benchmarks.run", "--quick", "--scenario", "all",
        "--n", "40", "--sweep-n", "40", "--files-n", "60", "--webhook-certificates", "4",
        "--rounds", "2", "--seconds", "1", "--workdir", str(tmp_path / "work"), "--markdown", str(markdown),
    ]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=240, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    ratios = re.findall(r"^certloop/blackbox\s+(\d+\.\d\d)x", done.stdout, re.MULTILINE)
    assert len(ratios) == 5, output[-4000:]  # /probe ports, SNI, hosts-file names, DNS names; inventory sweep
    assert all(float(r) > 0 for r in ratios)
    text = markdown.read_text()
    for title in ("/probe, N=40 ports ecdsa", "/probe, N=40 sni ecdsa", "/probe, N=40 hosts ecdsa",
                  "/probe, N=40 dns ecdsa", "inventory sweep of 40 endpoints",
                  "60 certificate files", "webhook intake, concurrency 8", "webhook intake, concurrency 64",
                  "one renewal, alert to new leaf served"):
        assert f"### {title}" in text, text
    probe_rows = re.findall(r"^\| (certloop|blackbox) \| (\d+) \|.* \| (\d+) \|$", text, re.MULTILINE)
    assert len(probe_rows) == 8, text  # two exporters x four /probe variants
    assert all(int(count) > 0 and failed == "0" for _, count, failed in probe_rows), text
    assert "files listed in /metrics (first start, restart) | 60, 60 of 60" in text
    assert "lower bound: benchmarks/filefloor.py" in text and "certloop / lower bound (medians)" in text
    assert "lower bound: list and os.stat every file" in text
    assert "answers other than 2xx, socket errors | 0, 0" in text
    assert "dnsmasq CPU ms per probe while loaded by: certloop" in text
    assert "MET: alert to served < 10 s" in text


def test_benchmark_leaves_are_valid_web_pki_certificates(tmp_path: Path, caches: Caches) -> None:
    """The targets both exporters probe carry what a public CA's leaf carries (SAN, EKU, AKI; the CA
    its key usage), so certloop is measured on the path production chains take (verdict ok), not on
    the slower one that classifies a failure."""
    from datetime import UTC, datetime

    from cryptography import x509

    from benchmarks.pki import Minter
    from certloop.truststore import TrustStore
    from certloop.verify import Verdict, verify_chain

    minter = Minter(tmp_path / "pki")
    for kind in ("ecdsa", "rsa"):
        issued = next(iter(minter.issue_many(["site00001.bench"], kind)))
        chain = x509.load_pem_x509_certificates(issued.chain_path.read_bytes())
        trust = TrustStore.from_file(str(minter.ca_path), caches)
        verdict = verify_chain(chain, trust=trust, at=datetime.now(UTC), hostname="site00001.bench", caches=caches)
        assert verdict is Verdict.OK, (kind, verdict)


def test_warm_server_handshakes_every_target_and_names_a_dead_one(tmp_path: Path) -> None:
    """The neutral warm-up before a /probe variant reaches every target ``passes`` times through real
    nginx (SNI names included), and a target that cannot be handshaken stops the run by name instead
    of leaving a cold server to whichever exporter probes first."""
    import pytest

    from benchmarks.pki import Minter
    from benchmarks.probe import Targets, Variant, serve_targets, warm_server
    from stack.process import free_port

    with serve_targets(Variant("sni", "ecdsa", 3), tmp_path, Minter(tmp_path / "pki")) as (targets, _):
        assert warm_server(targets, passes=2, threads=2) == 6
        assert len({name for _, name in targets.endpoints} - {None}) == 3
        dead = free_port()
        with pytest.raises(RuntimeError, match=rf"warming nginx: 127\.0\.0\.1:{dead} \(server name x\.bench\)"):
            warm_server(Targets(((dead, "x.bench"),), targets.ca_path), passes=1, threads=1)
