"""inotify-driven file sweeps: an idle sweep is skipped, and every kind of change is still seen at once.

These drive the real file source (real files, real inotify) sweep by sweep, so each test states
exactly which sweep must be a full one (``full_sweeps``) and what it must then report.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable, Hashable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from certloop.exporter.config import parse_config
from certloop.exporter.engine import build_context
from certloop.exporter.report import ExporterCaches
from certloop.exporter.sources import ProbeCounter
from certloop.exporter.sources import watch as watch_module
from certloop.exporter.sources.files import FileSource
from tests.support.pki import Issued, Pki


class Sweeper:
    """One FileSource and what its sweeps reported, per path."""

    def __init__(self, config: Mapping[str, Any], clock: Callable[[], datetime] | None = None) -> None:
        ctx = build_context(parse_config(dict(config)), ProbeCounter(), ExporterCaches(), *([clock] if clock else []))
        self.source = FileSource(ctx)
        self.seen: dict[Hashable, bytes] = {}
        self.alive: set[Hashable] = set()

    def sweep(self) -> bool:
        """One sweep; True when it was a full one."""
        before = self.source.full_sweeps

        def put(key: Hashable, fragments: Mapping[str, bytes]) -> None:
            self.seen[key] = b"".join(fragments.values())

        self.alive = asyncio.run(self.source.sweep(put))
        return self.source.full_sweeps > before

    def settle(self) -> None:
        """The first sweep adds the watches, the second confirms nothing changed meanwhile."""
        assert self.sweep() and self.sweep()
        assert self.source._watch is not None and self.source._watch.active

    def serves(self, path: Path, leaf: Issued) -> bool:
        return str(path) in self.alive and leaf.fingerprint.encode() in self.seen[str(path)]

    def close(self) -> None:
        asyncio.run(self.source.close())


@pytest.fixture
def sweepers() -> Any:
    made: list[Sweeper] = []

    def make(paths: list[str], **group: Any) -> Sweeper:
        sweeper = Sweeper({"global": {"files_interval": "1h"}, "files": [{"paths": paths, **group}]})
        made.append(sweeper)
        return sweeper

    yield make
    for sweeper in made:
        sweeper.close()


def test_idle_sweeps_are_skipped_and_every_change_is_seen_at_once(pki: Pki, tmp_path: Path, sweepers: Any) -> None:
    certs = tmp_path / "certs"
    first = pki.leaf(["a.example"])
    first.write(certs, "a")
    sweeper = sweepers([str(certs)], recursive=True, include=["*.fullchain.pem"])
    sweeper.settle()
    assert not sweeper.sweep() and not sweeper.sweep()  # nothing changed: skipped
    assert sweeper.serves(certs / "a.fullchain.pem", first)

    renewed = pki.leaf(["a.example"], days=200)
    (certs / "a.fullchain.pem").write_bytes(renewed.fullchain_pem)  # in place: same inode, no rename
    assert sweeper.sweep() and sweeper.serves(certs / "a.fullchain.pem", renewed)

    added = pki.leaf(["b.example"])
    added.write(certs / "deeper", "b")  # a new subdirectory, then a file in it
    assert sweeper.sweep() and sweeper.serves(certs / "deeper" / "b.fullchain.pem", added)
    assert sweeper.sweep()  # a watch was added by that sweep: one more full one
    again = pki.leaf(["b.example"], days=10)
    (certs / "deeper" / "b.fullchain.pem").write_bytes(again.fullchain_pem)
    assert sweeper.sweep() and sweeper.serves(certs / "deeper" / "b.fullchain.pem", again)

    (certs / "a.fullchain.pem").unlink()
    assert sweeper.sweep() and str(certs / "a.fullchain.pem") not in sweeper.alive
    os.chmod(certs / "deeper" / "b.fullchain.pem", 0o000)  # an attribute change is an event too
    assert sweeper.sweep()


def test_certbot_live_links_are_followed_into_the_archive(pki: Pki, tmp_path: Path, sweepers: Any) -> None:
    """live/NAME/fullchain.pem -> ../../archive/NAME/fullchainN.pem: an in-place archive edit and a
    re-pointed link are both seen, though neither touches the watched live/ directory's files."""
    live, archive = tmp_path / "live" / "shop", tmp_path / "archive" / "shop"
    live.mkdir(parents=True)
    archive.mkdir(parents=True)
    one, two, three = (pki.leaf(["shop.example"], days=days) for days in (30, 60, 80))
    (archive / "fullchain1.pem").write_bytes(one.fullchain_pem)
    (live / "fullchain.pem").symlink_to("../../archive/shop/fullchain1.pem")
    sweeper = sweepers([str(live)], include=["fullchain.pem"])
    sweeper.settle()
    assert not sweeper.sweep()
    (archive / "fullchain1.pem").write_bytes(two.fullchain_pem)  # only the archive directory changes
    assert sweeper.sweep() and sweeper.serves(live / "fullchain.pem", two)
    (archive / "fullchain2.pem").write_bytes(three.fullchain_pem)
    assert sweeper.sweep()  # a new archive file: an event, a full sweep, nothing else changed
    (live / "fullchain.tmp").symlink_to("../../archive/shop/fullchain2.pem")
    os.replace(live / "fullchain.tmp", live / "fullchain.pem")  # certbot renews by re-pointing
    assert sweeper.sweep() and sweeper.serves(live / "fullchain.pem", three)


def test_kubernetes_style_atomic_swaps_and_symlinked_roots(pki: Pki, tmp_path: Path, sweepers: Any) -> None:
    """A secret volume (tls.crt -> ..data/tls.crt, ..data -> ..v1 swapped to ..v2) behind a symlinked root."""
    volume = tmp_path / "volume"
    (volume / "..v1").mkdir(parents=True)
    first, second, third = (pki.leaf(["k8s.example"], days=days) for days in (15, 30, 45))
    (volume / "..v1" / "tls.crt").write_bytes(first.fullchain_pem)
    (volume / "..data").symlink_to("..v1")
    (volume / "tls.crt").symlink_to("..data/tls.crt")
    (tmp_path / "mounted").symlink_to(volume)  # the configured root is itself a link
    target = tmp_path / "mounted" / "tls.crt"
    sweeper = sweepers([str(target)])
    sweeper.settle()
    assert not sweeper.sweep()
    (volume / "..v2").mkdir()
    (volume / "..v2" / "tls.crt").write_bytes(second.fullchain_pem)
    (volume / "..data_tmp").symlink_to("..v2")
    os.replace(volume / "..data_tmp", volume / "..data")
    assert sweeper.sweep() and sweeper.serves(target, second)
    sweeper.sweep()  # the new ..v2 watch settles
    assert not sweeper.sweep()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "tls.crt").write_bytes(third.fullchain_pem)
    (tmp_path / "mounted.tmp").symlink_to(elsewhere)
    os.replace(tmp_path / "mounted.tmp", tmp_path / "mounted")  # the root link itself re-pointed
    assert sweeper.sweep() and sweeper.serves(target, third)


def test_time_due_forces_a_full_sweep(pki: Pki, tmp_path: Path) -> None:
    """A verdict that changes with time is judged on time even when no file changed."""
    now = datetime.now(UTC)
    clock = [now]
    leaf = pki.leaf(["soon.example"], not_after=now + timedelta(hours=1))
    leaf.write(tmp_path, "soon")
    sweeper = Sweeper({"global": {"ca_file": str(pki.write_root(tmp_path / "r.pem"))},
                       "files": [{"paths": [str(tmp_path / "soon.fullchain.pem")]}]}, lambda: clock[0])
    try:
        assert sweeper.sweep() and sweeper.sweep() and not sweeper.sweep()
        clock[0] = now + timedelta(hours=2)
        assert sweeper.sweep()
        assert b'verdict="expired"' in sweeper.seen[str(tmp_path / "soon.fullchain.pem")]
    finally:
        sweeper.close()


def test_what_cannot_be_watched_is_swept_in_full_every_time(
    pki: Pki, tmp_path: Path, sweepers: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """A wildcard in a directory component, a missing parent, files_watch: false, the safety net."""
    pki.leaf(["a.example"]).write(tmp_path / "sites" / "a", "a")
    with caplog.at_level("INFO", logger="certloop.exporter.sources.watch"):
        wild = sweepers([str(tmp_path / "sites" / "*" / "*.fullchain.pem")])
        assert all(wild.sweep() for _ in range(4))
    assert any("has a wildcard in a directory" in r.getMessage() for r in caplog.records)
    missing = sweepers([str(tmp_path / "not-yet" / "cert.pem")])
    assert all(missing.sweep() for _ in range(4))
    off = Sweeper({"global": {"files_watch": False},
                   "files": [{"paths": [str(tmp_path / "sites")], "recursive": True}]})
    try:
        assert all(off.sweep() for _ in range(4))
    finally:
        off.close()
    watched = sweepers([str(tmp_path / "sites")], recursive=True)
    watched.settle()
    assert not watched.sweep()
    monkeypatch.setattr(watch_module, "FULL_EVERY", 0.0)  # the safety net's period, reached
    assert watched.sweep()


def test_a_replaced_directory_or_ancestor_is_watched_anew(pki: Pki, tmp_path: Path, sweepers: Any) -> None:
    """``rm -rf certs && mkdir certs`` and a renamed parent: the old watches would never fire again."""
    root = tmp_path / "srv" / "tls"
    first = pki.leaf(["a.example"])
    first.write(root, "a")
    sweeper = sweepers([str(root)], include=["*.fullchain.pem"])
    sweeper.settle()
    assert not sweeper.sweep()
    shutil.rmtree(root)
    second = pki.leaf(["a.example"], days=50)
    second.write(root, "a")  # a new directory at the same path
    assert sweeper.sweep() and sweeper.serves(root / "a.fullchain.pem", second)
    sweeper.sweep()  # the new directory's watch settles
    assert not sweeper.sweep()
    os.rename(tmp_path / "srv", tmp_path / "srv.old")  # an ancestor moves away: no event on the watched dir
    third = pki.leaf(["a.example"], days=70)
    third.write(root, "a")
    assert sweeper.sweep() and sweeper.serves(root / "a.fullchain.pem", third)
    sweeper.sweep()
    assert not sweeper.sweep()
    third_again = pki.leaf(["a.example"], days=80)
    (root / "a.fullchain.pem").write_bytes(third_again.fullchain_pem)  # the new directory is watched
    assert sweeper.sweep() and sweeper.serves(root / "a.fullchain.pem", third_again)
