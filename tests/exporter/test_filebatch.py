"""A batch of files is read stage by stage, yet each file's outcome is its own, in order."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from certloop.exporter import metrics as m
from certloop.exporter import report as report_mod
from certloop.exporter.report import ExporterCaches
from certloop.exporter.sources import filebatch
from certloop.exporter.sources.filebatch import Job, Reader, Result
from certloop.exporter.sources.paths import stat_key
from certloop.truststore import TrustStore
from tests.support.pki import Pki


def _jobs(paths: list[Path]) -> list[Job]:
    return [Job(str(p), stat_key(str(p)), (("team", "web"),), None) for p in paths]


def _by_path(results: list[Result]) -> dict[str, dict[str, bytes]]:
    return {r.path: {k: v for k, v in r.fragments.items() if k != m.PROBE_DURATION.name} for r in results}


def test_each_file_in_a_batch_keeps_its_own_outcome(
    pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Failures at every stage (stat, read, parse, a bug while verifying) sit between good files: each
    gets its reason, the good ones read as they do alone, results come back in the batch's order."""
    goods = []
    for i in range(4):
        goods.append(pki.leaf([f"good{i}.example"]).write(tmp_path, f"good{i}")["fullchain"])
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    big = tmp_path / "big.pem"
    big.write_bytes(pki.leaf(["big.example"]).fullchain_pem + b"#" * 70_000)
    missing = tmp_path / "missing.pem"
    buggy = pki.leaf(["buggy.example"]).write(tmp_path, "buggy")["fullchain"]
    order = [goods[0], garbage, goods[1], big, missing, goods[2], buggy, goods[3]]
    caches = ExporterCaches()
    trust = TrustStore.from_pem(pki.root_pem, caches)
    now = datetime.now(UTC)

    alone = _by_path(Reader(trust, 65_536, caches).batch(_jobs(goods), now))

    real_assess = report_mod.assess

    def assess_with_a_bug(chain, **kwargs):  # type: ignore[no-untyped-def]
        if "buggy.example" in chain[0].subject.rfc4514_string():
            raise RuntimeError("a bug for one file")
        return real_assess(chain, **kwargs)

    monkeypatch.setattr(filebatch, "assess", assess_with_a_bug)
    results = Reader(trust, 65_536, caches).batch(_jobs(order), now)

    assert [r.path for r in results] == [str(p) for p in order]
    outcome = {r.path: (r.success, r.fragments.get(m.PROBE_FAILURE.name, b"")) for r in results}
    assert outcome[str(garbage)][1].count(b'reason="parse_error"') == 1
    assert outcome[str(big)][1].count(b'reason="too_large"') == 1
    assert outcome[str(missing)][1].count(b'reason="not_found"') == 1
    assert outcome[str(buggy)][1].count(b'reason="unreadable"') == 1
    assert "a bug for one file" in caplog.text
    assert [p for p, (ok, _) in outcome.items() if ok] == [str(p) for p in goods]
    got = _by_path(results)
    assert {p: got[p] for p in alone} == alone
    for r in results:
        assert r.read
        if r.success:  # timed over its own stages: read, parse, verify
            assert 0 < r.known.duration < 5
            assert len(r.known.ders) == 2 and r.known.valid_until is not None
        else:
            assert r.known.ders == ()
    assert results[4].known.stat[0] < 0  # the listing's failed stat is kept: not re-read until it changes
