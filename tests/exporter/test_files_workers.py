"""Large file sweeps in forked worker processes give exactly what the in-process path gives."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Hashable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from certloop.exporter import metrics as m
from certloop.exporter.engine import Engine
from certloop.exporter.sources import files as files_mod
from certloop.exporter.sources import paths as paths_mod
from certloop.exporter.sources.files import FileSource
from tests.support.pki import Pki

Fragments = dict[Hashable, dict[str, bytes]]


def _tree(pki: Pki, root: Path) -> None:
    """Fullchains, bare leaves, DER, an expiring leaf, a stranger's chain, duplicates and broken files."""
    other = Pki(name="stranger")
    for i in range(12):
        pki.leaf([f"host{i}.example"], days=30 + i).write(root / f"d{i % 3}", f"host{i}")
    soon = pki.leaf(["soon.example"], days=1)
    soon.write(root, "soon")
    other.leaf(["stranger.example"]).write(root, "stranger")
    (root / "shop.der").write_bytes(pki.leaf(["der.example"]).der)
    (root / "copy-a.pem").write_bytes(soon.fullchain_pem)
    (root / "copy-b.pem").write_bytes(soon.fullchain_pem)
    (root / "garbage.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    (root / "empty.crt").write_bytes(b"")


def _source(tmp_path: Path, root: Path, pki: Pki, clock: Callable[[], datetime]) -> FileSource:
    config = tmp_path / "exporter.yml"
    config.write_text(yaml.safe_dump({
        "global": {"ca_file": str(pki.write_root(tmp_path / "root.pem"))},
        "files": [{"paths": [str(root)], "recursive": True, "labels": {"team": "web"}}],
    }))
    return FileSource(Engine(config, clock=clock).ctx)


def _sweep(source: FileSource) -> tuple[Fragments, set[Hashable]]:
    seen: Fragments = {}

    def put(key: Hashable, fragments: Mapping[str, bytes]) -> None:
        seen[key] = {k: v for k, v in fragments.items() if k != m.PROBE_DURATION.name}  # timings differ

    alive = asyncio.run(source.sweep(put))
    return seen, alive


def test_worker_processes_match_the_in_process_path(
    pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same targets, same series (verdicts, facts, failures), same probe counts, either way."""
    root = tmp_path / "certs"
    _tree(pki, root)
    now = datetime.now(UTC)
    in_process = _source(tmp_path, root, pki, lambda: now)
    expected, alive_expected = _sweep(in_process)
    monkeypatch.setattr(files_mod, "_POOL_MIN", 1)
    monkeypatch.setattr(files_mod, "_cores", lambda: 2)
    pooled = _source(tmp_path, root, pki, lambda: now)
    got, alive = _sweep(pooled)
    assert alive == alive_expected
    assert got == expected
    assert len(got) == len(alive) > 40
    assert pooled.ctx.counter.counts == in_process.ctx.counter.counts
    assert in_process.ctx.counter.counts[("file", "failure")] >= 2


def test_verdicts_follow_the_clock_after_a_worker_sweep(
    pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Certificates read in a worker are kept (as DER) so the parent re-judges them without reading."""
    root = tmp_path / "certs"
    _tree(pki, root)
    clock = [datetime.now(UTC)]
    monkeypatch.setattr(files_mod, "_POOL_MIN", 1)
    monkeypatch.setattr(files_mod, "_cores", lambda: 2)
    source = _source(tmp_path, root, pki, lambda: clock[0])
    first, _ = _sweep(source)
    reads = dict(source.ctx.counter.counts)
    target = str(root / "soon.fullchain.pem")
    assert b'verdict="ok"' in first[target][m.VERIFY_VERDICT.name]
    clock[0] += timedelta(days=2)
    later, _ = _sweep(source)
    assert b'verdict="expired"' in later[target][m.VERIFY_VERDICT.name]
    assert target in later and str(root / "d0" / "host0.fullchain.pem") not in later  # only what changed
    assert source.ctx.counter.counts == reads  # re-judged from memory, not read again


def test_a_broken_worker_pool_falls_back_to_reading_in_process(
    pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker that dies (killed, out of memory) costs time, not data: every file is still reported."""
    root = tmp_path / "certs"
    _tree(pki, root)
    now = datetime.now(UTC)
    monkeypatch.setattr(files_mod, "_POOL_MIN", 1)
    monkeypatch.setattr(files_mod, "_cores", lambda: 2)
    expected, _ = _sweep(_source(tmp_path, root, pki, lambda: now))
    parent, real = os.getpid(), FileSource._read_batch

    def die_in_workers(self: FileSource, batch: list[Any], at: datetime) -> list[Any]:
        if os.getpid() != parent:
            os._exit(3)
        return real(self, batch, at)

    monkeypatch.setattr(FileSource, "_read_batch", die_in_workers)
    source = _source(tmp_path, root, pki, lambda: now)
    got, alive = _sweep(source)
    assert "file workers failed" in caplog.text
    assert got == expected
    assert len(alive) == len(got)


def test_reused_directory_listings_still_see_every_change(
    pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reusing a settled directory's listing misses nothing: added, removed, rewritten files all show."""
    monkeypatch.setattr(paths_mod, "SETTLED", -1.0)  # every listing counts as settled at once
    root = tmp_path / "certs"
    _tree(pki, root)
    now = datetime.now(UTC)
    source = _source(tmp_path, root, pki, lambda: now)
    _, alive = _sweep(source)
    assert source._listings  # the listings are kept for reuse
    assert _sweep(source) == ({}, alive)  # nothing changed: nothing rendered again
    added = root / "d1" / "added.pem"
    added.write_bytes(pki.leaf(["added.example"]).fullchain_pem)
    (root / "d2" / "host2.crt").unlink()
    rewritten = root / "d0" / "host0.fullchain.pem"
    renewed = pki.leaf(["host0.example"], days=300)
    rewritten.write_bytes(renewed.fullchain_pem)  # in place: the directory itself does not change
    changed, alive_now = _sweep(source)
    assert set(changed) == {str(added), str(rewritten)}
    assert str(root / "d2" / "host2.crt") not in alive_now
    assert renewed.fingerprint.encode() in changed[str(rewritten)][m.CERT_INFO.name]


def test_workers_start_while_the_scan_is_still_listing(
    pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large first sweep hands whole chunks to the workers as soon as they are listed, not after the
    last directory: reading overlaps listing. The outcome is the in-process one."""
    root = tmp_path / "certs"
    _tree(pki, root)
    now = datetime.now(UTC)
    expected, _ = _sweep(_source(tmp_path, root, pki, lambda: now))
    monkeypatch.setattr(files_mod, "_POOL_MIN", 4)
    monkeypatch.setattr(files_mod, "_FIRST_SLICE", 4)  # a first scan yields every 4 files
    monkeypatch.setattr(files_mod, "_CHUNK", 4)
    monkeypatch.setattr(files_mod, "_cores", lambda: 2)
    fed: list[tuple[int, int, bool]] = []
    real_feed = files_mod._Pool.feed

    def feed(pool: Any, jobs: list[Any], *, final: bool = False) -> None:
        real_feed(pool, jobs, final=final)
        fed.append((len(jobs), pool.sent, final))

    monkeypatch.setattr(files_mod._Pool, "feed", feed)
    got, alive = _sweep(_source(tmp_path, root, pki, lambda: now))
    assert got == expected
    total = len(alive)
    early = [(listed, sent) for listed, sent, final in fed if not final and sent > 0]
    assert early and early[0][0] < total / 2  # chunks went out with under half the files listed
    assert fed[-1] == (total, total, True)
