"""Large file sweeps in forked worker processes give exactly what the in-process path gives.

Everything here goes through the file source's public seams: its ``workers`` settings (when and how
reading is spread over processes), what a sweep puts, the probe counters, and what the last sweep
reports (``listings_reused``, ``read_while_listing``). A worker that dies is a real process killed with
SIGKILL; a directory that has settled is one whose mtime lies in the past.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Hashable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from certloop.exporter import metrics as m
from certloop.exporter.engine import Engine
from certloop.exporter.sources.files import FileSource, Workers
from tests.support.pki import Pki

Fragments = dict[Hashable, dict[str, bytes]]

IN_PROCESS = Workers(processes=1)  # one process: never forks
POOLED = Workers(processes=2, min_files=1, chunk=8, first_slice=8)  # forks for any sweep, chunks go out early


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


def _source(
    tmp_path: Path, root: Path, pki: Pki, clock: Callable[[], datetime], workers: Workers, *, watch: bool = True,
) -> FileSource:
    config = tmp_path / "exporter.yml"
    config.write_text(yaml.safe_dump({
        "global": {"ca_file": str(pki.write_root(tmp_path / "root.pem"))},
        "files": [{"paths": [str(root)], "recursive": True, "labels": {"team": "web"}}],
    }))
    return FileSource(Engine(config, clock=clock).ctx, workers=workers, watch=watch)


def _put_into(seen: Fragments) -> Callable[[Hashable, Mapping[str, bytes]], None]:
    def put(key: Hashable, fragments: Mapping[str, bytes]) -> None:
        seen[key] = {k: v for k, v in fragments.items() if k != m.PROBE_DURATION.name}  # timings differ
    return put


def _sweep(source: FileSource) -> tuple[Fragments, set[Hashable]]:
    seen: Fragments = {}
    alive = asyncio.run(source.sweep(_put_into(seen)))
    return seen, alive


def test_worker_processes_match_the_in_process_path(pki: Pki, tmp_path: Path) -> None:
    """Same targets, same series (verdicts, facts, failures), same probe counts, either way."""
    root = tmp_path / "certs"
    _tree(pki, root)
    now = datetime.now(UTC)
    in_process = _source(tmp_path, root, pki, lambda: now, IN_PROCESS)
    expected, alive_expected = _sweep(in_process)
    assert in_process.read_while_listing == 0
    pooled = _source(tmp_path, root, pki, lambda: now, POOLED)
    got, alive = _sweep(pooled)
    assert pooled.read_while_listing > 0  # the workers did read
    assert alive == alive_expected
    assert got == expected
    assert len(got) == len(alive) > 40
    assert pooled.ctx.counter.counts == in_process.ctx.counter.counts
    assert in_process.ctx.counter.counts[("file", "failure")] >= 2


def test_verdicts_follow_the_clock_after_a_worker_sweep(pki: Pki, tmp_path: Path) -> None:
    """Certificates read in a worker are kept (as DER) so the parent re-judges them without reading."""
    root = tmp_path / "certs"
    _tree(pki, root)
    clock = [datetime.now(UTC)]
    source = _source(tmp_path, root, pki, lambda: clock[0], POOLED)
    first, _ = _sweep(source)
    assert source.read_while_listing > 0
    reads = dict(source.ctx.counter.counts)
    target = str(root / "soon.fullchain.pem")
    assert b'verdict="ok"' in first[target][m.VERIFY_VERDICT.name]
    clock[0] += timedelta(days=2)
    later, _ = _sweep(source)
    assert b'verdict="expired"' in later[target][m.VERIFY_VERDICT.name]
    assert target in later and str(root / "d0" / "host0.fullchain.pem") not in later  # only what changed
    assert source.ctx.counter.counts == reads  # re-judged from memory, not read again


def test_a_worker_killed_while_listing_costs_time_not_data(
    pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Workers killed (SIGKILL, as the out-of-memory killer does) as soon as they exist, while the
    listing goes on: the chunks they took and those listed after are read in-process; every file is
    still reported, as the in-process path reports it. A chunk listed after the deaths is either
    refused by the broken pool at once or failed by it a moment later, depending on how soon the pool
    noticed: both must end the same (the first once made the sweep raise)."""
    root = tmp_path / "certs"
    _tree(pki, root)
    now = datetime.now(UTC)
    expected, _ = _sweep(_source(tmp_path, root, pki, lambda: now, IN_PROCESS))
    source = _source(tmp_path, root, pki, lambda: now, Workers(processes=2, min_files=4, chunk=4, first_slice=4))
    before = {p.pid for p in multiprocessing.active_children()}
    killed: list[int] = []

    async def sweep_and_kill() -> tuple[Fragments, set[Hashable]]:
        async def killer() -> None:
            while not killed:  # runs whenever the listing yields to the loop
                for child in multiprocessing.active_children():
                    if child.pid is not None and child.pid not in before:
                        os.kill(child.pid, signal.SIGKILL)
                        killed.append(child.pid)
                        child.join(30)  # dead before the listing goes on
                await asyncio.sleep(0)

        seen: Fragments = {}
        task = asyncio.create_task(killer())
        try:
            return seen, await source.sweep(_put_into(seen))
        finally:
            task.cancel()

    got, alive = asyncio.run(sweep_and_kill())
    assert killed, "no worker process was started"
    assert "file workers failed" in caplog.text
    assert got == expected
    assert len(alive) == len(got)


def test_reused_directory_listings_still_see_every_change(pki: Pki, tmp_path: Path) -> None:
    """Reusing a settled directory's listing misses nothing: added, removed, rewritten files all show."""
    root = tmp_path / "certs"
    _tree(pki, root)
    directories = [root, root / "d0", root / "d1", root / "d2"]
    settled = time.time() - 60  # well past paths.SETTLED: these listings may be reused
    for directory in directories:
        os.utime(directory, (settled, settled))
    now = datetime.now(UTC)
    source = _source(tmp_path, root, pki, lambda: now, IN_PROCESS, watch=False)  # every sweep lists
    _, alive = _sweep(source)
    assert source.listings_reused == 0  # nothing listed before
    assert _sweep(source) == ({}, alive)  # nothing changed: nothing rendered again
    assert source.listings_reused == len(directories)
    added = root / "d1" / "added.pem"
    added.write_bytes(pki.leaf(["added.example"]).fullchain_pem)
    (root / "d2" / "host2.crt").unlink()
    rewritten = root / "d0" / "host0.fullchain.pem"
    renewed = pki.leaf(["host0.example"], days=300)
    rewritten.write_bytes(renewed.fullchain_pem)  # in place: the directory itself does not change
    changed, alive_now = _sweep(source)
    assert source.listings_reused == 2  # the root and d0, unchanged; d1 and d2 were listed again
    assert set(changed) == {str(added), str(rewritten)}
    assert str(root / "d2" / "host2.crt") not in alive_now
    assert renewed.fingerprint.encode() in changed[str(rewritten)][m.CERT_INFO.name]


def test_workers_start_while_the_scan_is_still_listing(pki: Pki, tmp_path: Path) -> None:
    """A large first sweep hands whole chunks to the workers as soon as they are listed, not after the
    last directory: reading overlaps listing. The outcome is the in-process one."""
    root = tmp_path / "certs"
    _tree(pki, root)
    now = datetime.now(UTC)
    expected, _ = _sweep(_source(tmp_path, root, pki, lambda: now, IN_PROCESS))
    source = _source(tmp_path, root, pki, lambda: now, Workers(processes=2, min_files=4, chunk=4, first_slice=4))
    got, alive = _sweep(source)
    assert got == expected
    total = len(alive)
    assert total / 2 <= source.read_while_listing <= total  # most chunks went out while listing went on
