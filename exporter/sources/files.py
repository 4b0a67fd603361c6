"""Certificate files: list paths, globs and directories each sweep; re-read a file only when it changed.

A file's identity is its ``stat`` (device, inode, size, mtime_ns, ctime_ns, mode): an unchanged file
costs one ``stat`` per sweep (relative to its open directory) and no re-render, unless time crosses a
validity boundary of its chain; then its verdict is re-computed from the certificates kept in memory
(as DER), without reading. Listing runs on the event loop in slices, yielding between them. What
identifies a version and how directories are listed is :mod:`exporter.sources.paths`; a sweep that
inotify shows nothing could have changed is skipped (:mod:`exporter.sources.watch`); with
``--storage.path`` a restart starts from a snapshot (:mod:`exporter.sources.filestate`).

Reading, verifying and rendering a file is CPU work, most of it the signature check (the figures:
benchmarks/RESULTS.md, "File inventory: stat, slices, batches, snapshot"), done in batches by
:mod:`exporter.sources.filebatch`. A sweep with many files to
read (the first one) forks one worker process per core as soon as the listing has found enough of
them, and hands out chunks while later directories are still listed; each chunk comes back as compact
results (rendered text, stat key, DER for later re-judging) while the event loop keeps serving
``/metrics`` and ``/-/ready``. Smaller sweeps read in a worker thread.

Every failure is data for that file only (``certloop_probe_success 0`` with a reason from
:class:`certloop.errors.FileReason`); nothing else is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import glob
import logging
import multiprocessing
import os
import signal
from collections.abc import Hashable, Iterator
from concurrent.futures import BrokenExecutor, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from certloop.errors import ConfigError, FileError
from certloop.exporter.config import FileGroup
from certloop.exporter.metrics import Fragments
from certloop.exporter.report import ExporterCaches, Observation
from certloop.exporter.sources.base import Context, Put
from certloop.exporter.sources.filebatch import Job, Known, Reader, Result
from certloop.exporter.sources.filestate import Snapshots, from_micros
from certloop.exporter.sources.paths import (
    GLOB_CHARS,
    VANISHED,
    Listing,
    NameFilter,
    StatKey,
    lexists,
    list_directory,
    stat_key,
)
from certloop.exporter.sources.watch import DirectoryWatch, Resolution
from certloop.facts import facts
from certloop.x509 import read_certificate_file

__all__ = ["FileSource", "Workers", "leaf_fingerprint"]

log = logging.getLogger(__name__)

_BATCH = 256
_SLICE = 4096  # files stat'ed between two yields to the event loop: a slice must stay short next to a scrape


@dataclass(frozen=True, slots=True)
class Workers:
    """How a sweep spreads reading over forked worker processes; the defaults suit an inventory.

    A sweep with at least ``min_files`` files to read (a first one) forks ``processes`` workers (0: one
    per core this process may run on; fewer than two: none) and hands them ``chunk`` files at a time
    while the listing goes on; until something is known, the listing yields to the loop every
    ``first_slice`` files, so the first chunks leave early.
    """

    processes: int = 0
    min_files: int = 1024  # files to read in one sweep that are worth forking worker processes for
    chunk: int = 128  # files per worker task: small enough to spread evenly, large enough to amortise a round trip
    first_slice: int = 1024  # files stat'ed between two yields on a first sweep (later ones: _SLICE)


def _job_path(job: Job) -> str:
    return job.path


class FileSource:
    """The ``files:`` groups of the config."""

    kind = "files"

    def __init__(self, ctx: Context, *, watch: bool = True, workers: Workers = Workers()) -> None:
        """``watch=False``: no inotify watch even when ``global.files_watch`` asks for one (a one-shot
        listing, :meth:`listed`, has no next sweep to skip). ``workers``: when and how reading is
        spread over worker processes."""
        self.ctx = ctx
        self.workers = workers
        self.interval = ctx.config.global_.files_interval.total_seconds()
        self.max_bytes = ctx.config.global_.max_file_bytes
        self.reader = Reader(ctx.trust, self.max_bytes, ctx.caches)
        self._groups: list[tuple[FileGroup, NameFilter, tuple[tuple[str, str], ...], bytes | None]] = []
        for i, group in enumerate(ctx.config.files):
            try:
                password = ctx.config.file_password(i)
            except ConfigError:
                password = None  # validated at load time; the secret vanished since: read without it
            self._groups.append((group, NameFilter(group), tuple(sorted(group.labels.items())), password))
        self._known: dict[str, Known] = {}
        self._listings: dict[tuple[int, str], Listing] = {}
        self._fragments: dict[str, Fragments] = {}  # what was last put per path (kept for the snapshot)
        self._state = Snapshots(ctx) if ctx.state_dir else None
        self._restore = self._state is not None  # the first sweep starts from the snapshot
        self._watch = DirectoryWatch() if watch and ctx.config.global_.files_watch else None
        self._alive: set[Hashable] = set()  # what the last full sweep found (a skipped sweep's answer)
        self.full_sweeps = 0  # sweeps that listed and stat'ed (the others were skipped: nothing changed)
        # what the last full sweep did, for tests and profiles:
        self.listings_reused = 0  # directories whose listing it reused (settled and unchanged)
        self.read_while_listing = 0  # files it handed to worker processes before its listing ended

    async def close(self) -> None:
        """Write the snapshot if anything changed since the last one (on stop and before a reload)."""
        if self._watch is not None:
            self._watch.close()
        if self._state is not None:
            await self._state.save(self._known, self._fragments, force=True)

    async def sweep(self, put: Put) -> set[Hashable]:
        now = self.ctx.clock()
        watch = self._watch
        if watch is not None and not self._restore and watch.quiet(now):
            return self._alive  # no event, nothing due: the last full sweep's answer stands
        # Listing and stat'ing runs on the loop in slices of _SLICE files, yielding in between, so /metrics
        # keeps answering; the sweep's state is only ever touched on the loop.
        alive: set[Hashable] = set()
        jobs: list[Job] = []
        restored = await self._restored() if self._restore else {}
        plan = Resolution() if watch is not None and watch.available else None
        self.full_sweeps += 1
        self.listings_reused = self.read_while_listing = 0
        processes = self.workers.processes or _cores()
        pool_at = self.workers.min_files if processes > 1 else None  # files to read that start workers
        pool: _Pool | None = None
        try:
            for _ in self._scan(now, alive, jobs, plan):
                if pool is None and pool_at is not None and len(jobs) >= pool_at:
                    pool = _Pool(self, now, processes)  # a large sweep: workers start on what is listed so far
                if pool is not None:
                    pool.feed(jobs)
                await asyncio.sleep(0)
            for path, fragments in restored.items():  # unchanged since the snapshot: served as stored
                if path in alive:
                    put(path, fragments)
            if pool is None and pool_at is not None and len(jobs) >= pool_at:
                pool = _Pool(self, now, processes)
            if pool is not None:
                pool.feed(jobs, final=True)
                await pool.finish(put)
            else:
                jobs.sort(key=_job_path)  # a stable order whatever the directory order
                for start in range(0, len(jobs), _BATCH):
                    self._apply(await asyncio.to_thread(self._read_batch, jobs[start : start + _BATCH], now), put)
        finally:
            if pool is not None:
                pool.close()
        if len(self._known) != len(alive):  # every alive path is known now: equal sizes, equal sets
            for path in [p for p in self._known if p not in alive]:
                del self._known[path]
                self._fragments.pop(path, None)
                if self._state is not None:
                    self._state.dirty = True
        if self._state is not None:
            await self._state.save(self._known, self._fragments)
        if watch is not None and plan is not None:
            due = min((k.valid_until for k in self._known.values() if k.valid_until is not None and k.ders),
                      default=None)
            watch.after_full_sweep(None if plan.broken else plan.dirs, due, plan.broken or "")
        self._alive = alive
        return alive

    async def _restored(self) -> dict[str, Fragments]:
        """Adopt the snapshot's entries as if this process had read them; their stored series."""
        assert self._state is not None
        self._restore = False
        entries = await self._state.load()
        for path, e in entries.items():
            self._known[path] = Known(e.stat, from_micros(e.valid_until), e.ders, e.labels, e.duration)
            self._fragments[path] = e.fragments
        return {path: e.fragments for path, e in entries.items()}

    def _apply(self, results: list[Result], put: Put) -> None:
        if results and self._state is not None:
            self._state.dirty = True
        for result in results:
            self._known[result.path] = result.known
            self._fragments[result.path] = result.fragments
            put(result.path, result.fragments)
            if result.read:
                self.ctx.counter.add("file", result.success)

    def _scan(
        self, now: datetime, alive: set[Hashable], jobs: list[Job], plan: Resolution | None = None,
    ) -> Iterator[None]:
        """Fill ``alive`` (paths that exist now) and ``jobs`` (to read: new or changed; to re-judge:
        time passed), yielding every :data:`_SLICE` files (``workers.first_slice`` on a first sweep) so the
        caller can let the loop run and feed workers; with a
        ``plan``, record the directories to watch for changes."""
        listings: dict[tuple[int, str], Listing] = {}
        for index, (group, _, _, _) in enumerate(self._groups):
            for pattern in group.paths:
                yield from self._scan_pattern(pattern, index, listings, now, alive, jobs, plan)
        self._listings = listings  # those of directories that are gone are dropped

    def _scan_pattern(
        self, pattern: str, index: int, listings: dict[tuple[int, str], Listing], now: datetime,
        alive: set[Hashable], jobs: list[Job], plan: Resolution | None,
    ) -> Iterator[None]:
        """:meth:`_scan` for one path, glob or directory of group ``index``."""
        group, _, labels, password = self._groups[index]
        if GLOB_CHARS & set(pattern):
            head = os.path.dirname(pattern)
            if plan is not None and GLOB_CHARS & set(head):
                plan.broken = f"{pattern} has a wildcard in a directory"
            elif plan is not None:
                plan.root(head)  # a new match appears there
            for match in sorted(glob.glob(pattern, recursive=group.recursive)):
                if os.path.isdir(match):
                    yield from self._scan_directory(match, index, listings, now, alive, jobs, plan)
                else:
                    if plan is not None and os.path.islink(match):
                        plan.link(match)
                    key = stat_key(match)
                    if key != VANISHED or os.path.lexists(match):  # else removed since matched
                        self._consider(match, key, labels, password, now, alive, jobs)
        elif os.path.isdir(pattern):
            yield from self._scan_directory(pattern, index, listings, now, alive, jobs, plan)
        else:
            if plan is not None:
                plan.link(pattern)  # its directory, and where its symlinks lead
            self._consider(pattern, stat_key(pattern), labels, password, now, alive, jobs)

    def listed(self, now: datetime) -> list[Job]:
        """Every file the groups name now, as a sweep lists them, in the order the groups and their
        paths are given (the files of one directory or glob by path); a file named twice once, as the
        first group names it. On a source that has not swept (a file it knows unchanged is no job).
        ``certloop check`` lists through this, so it sees the files the exporter sees."""
        alive: set[Hashable] = set()
        jobs: list[Job] = []
        listings: dict[tuple[int, str], Listing] = {}
        for index, (group, _, _, _) in enumerate(self._groups):
            for pattern in group.paths:
                start = len(jobs)
                for _ in self._scan_pattern(pattern, index, listings, now, alive, jobs, None):
                    pass
                jobs[start:] = sorted(jobs[start:], key=_job_path)
        return jobs

    def judge(self, jobs: list[Job], now: datetime) -> list[Observation]:
        """The jobs' files read and judged as a sweep judges them (the verdict its series carry), one
        observation each, in order; nothing is kept. For ``certloop check``, with :meth:`listed`."""
        return [judged.observation for judged in self.reader.judge(jobs, now)]

    def _consider(
        self, path: str, key: StatKey, labels: tuple[tuple[str, str], ...], password: bytes | None,
        now: datetime, alive: set[Hashable], jobs: list[Job],
    ) -> None:
        if path in alive:
            return  # named by an earlier group: that group's labels win
        alive.add(path)
        old = self._known.get(path)
        if old is not None and old.stat == key:
            if old.valid_until is not None and now >= old.valid_until and old.ders:
                jobs.append(Job(path, key, labels, password, old))
            return
        jobs.append(Job(path, key, labels, password))

    def _scan_directory(
        self, root: str, index: int, listings: dict[tuple[int, str], Listing], now: datetime,
        alive: set[Hashable], jobs: list[Job], plan: Resolution | None = None,
    ) -> Iterator[None]:
        """:meth:`_consider` every file under ``root`` (as :func:`.paths.list_directory` lists them).

        The idle-sweep hot path, so written out in one loop: each file costs one ``stat`` relative to
        its open directory. A directory whose own stat is unchanged since a listing taken when it had
        been settled for a while (:data:`.paths.SETTLED`; timestamps are coarse) has the same entries,
        so its filtered listing is reused. Directories holding symlinks are always listed again (a
        link's target can change type without its directory changing). With a ``plan``, every
        directory opened and every symlinked file is recorded for the inotify watch.
        """
        group, wanted, labels, password = self._groups[index]
        recursive = group.recursive
        known = self._known
        stat = os.stat
        slice_ = _SLICE if known else self.workers.first_slice
        budget = slice_
        flags = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0)
        stack = [root]
        while stack:
            directory = stack.pop()
            try:
                fd = os.open(directory, flags)
            except OSError:
                continue
            try:
                dst = os.fstat(fd)
                dir_key = (dst.st_dev, dst.st_ino, dst.st_mtime_ns, dst.st_ctime_ns)
                listing = self._listings.get((index, directory))
                if listing is None or listing[0] != dir_key:
                    listing = list_directory(directory, fd, dir_key, recursive, wanted)
                else:
                    self.listings_reused += 1
                if listing[3]:
                    listings[(index, directory)] = listing
                if plan is not None:
                    plan.root(directory)
                    for link in listing[4]:
                        plan.link(link)
                stack.extend(reversed(listing[2]))
                for name, path in listing[1]:
                    budget -= 1
                    if not budget:
                        budget = slice_
                        yield
                    key: StatKey
                    try:
                        st = stat(name, dir_fd=fd)
                    except FileNotFoundError:
                        if not lexists(name, fd):
                            continue  # removed since the listing: gone, not failed
                        key = VANISHED  # a dangling symlink: a broken certificate, reported
                    except OSError as exc:
                        key = (-(exc.errno or errno.EIO),)
                    else:
                        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode)
                    if path in alive:
                        continue  # named by an earlier group: that group's labels win
                    alive.add(path)
                    old = known.get(path)
                    if old is not None and old.stat == key:
                        if old.valid_until is not None and now >= old.valid_until and old.ders:
                            jobs.append(Job(path, key, labels, password, old))
                        continue
                    jobs.append(Job(path, key, labels, password))
            except OSError:
                pass  # the directory vanished or became unreadable while listed: what was seen stands
            finally:
                os.close(fd)

    def _read_batch(self, batch: list[Job], now: datetime) -> list[Result]:
        return self.reader.batch(batch, now)


# ------------------------------------------------------------------------------ worker processes
class _Pool:
    """Forked workers for a large sweep (the first one): read, verify and render chunks of files.

    Fed while the scan is still listing (the first chunks are read as later directories are
    stat'ed); the event loop only merges finished chunks, so ``/metrics`` and ``/-/ready`` keep
    answering. If the pool breaks (a worker killed), the chunks it did not finish, and those listed
    after it broke, are read in-process.
    """

    def __init__(self, source: FileSource, now: datetime, processes: int) -> None:
        self.source, self.now = source, now
        self.sent = 0
        self.chunk_of: dict[asyncio.Future[list[Result]], list[Job]] = {}
        self.unsent: list[list[Job]] = []  # chunks refused by a pool already broken
        self.broken: BaseException | None = None
        self.executor = ProcessPoolExecutor(
            processes, mp_context=multiprocessing.get_context("fork"), initializer=_adopt, initargs=(source,)
        )

    def feed(self, jobs: list[Job], *, final: bool = False) -> None:
        """Submit the jobs listed since the last call, in whole chunks (and the rest when ``final``)."""
        size = self.source.workers.chunk
        while len(jobs) - self.sent >= size or (final and self.sent < len(jobs)):
            chunk = jobs[self.sent : self.sent + size]
            self.sent += len(chunk)
            try:
                future = self.executor.submit(_read_chunk, chunk, self.now)
            except BrokenExecutor as exc:  # a worker died while the listing went on
                self.broken = self.broken or exc
                self.unsent.append(chunk)
                continue
            self.chunk_of[asyncio.wrap_future(future)] = chunk
            if not final:
                self.source.read_while_listing += len(chunk)

    async def finish(self, put: Put) -> None:
        waiting = set(self.chunk_of)
        left = list(self.unsent)
        while waiting:
            done, waiting = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            for future in done:
                error = future.exception()
                if error is None:
                    self.source._apply(future.result(), put)
                else:  # a broken pool fails every pending chunk at once; each is read here instead
                    self.broken = self.broken or error
                    left.append(self.chunk_of[future])
        if left:
            log.warning("file workers failed (%s); reading their files in-process", self.broken)
        self.close()
        for chunk in left:
            self.source._apply(await asyncio.to_thread(self.source._read_batch, chunk, self.now), put)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)



_ADOPTED: list[FileSource] = []


def _adopt(source: FileSource) -> None:
    """Worker initializer (fork: the source, its trust store and caches are inherited, not pickled).

    A worker lives for one sweep and makes no reference cycles worth collecting: without the cyclic
    collector it neither pauses nor touches (and so copies) the pages it shares with the parent.
    The parent's signal handling (the event loop's wakeup fd, SIGTERM/SIGHUP handlers) is undone: a
    signal to the process group must stop a worker, not be relayed into the parent's loop.
    """
    gc.disable()
    with contextlib.suppress(ValueError):  # only possible from the main thread
        signal.set_wakeup_fd(-1)
        for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(number, signal.SIG_DFL)
    _ADOPTED[:] = [source]


def _read_chunk(chunk: list[Job], now: datetime) -> list[Result]:
    return _ADOPTED[0]._read_batch(chunk, now)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def leaf_fingerprint(
    path: str, seen: dict[str, tuple[StatKey, str | None]], max_bytes: int, caches: ExporterCaches
) -> str | None:
    """SHA-256 fingerprint of the first certificate in ``path`` (``expect_file``), re-read only on change
    (``seen``: the caller's by path)."""
    key = stat_key(path)
    found = seen.get(path)
    if found is not None and found[0] == key:
        return found[1]
    fingerprint: str | None = None
    if key[0] >= 0:
        try:
            parsed = read_certificate_file(path, caches, max_bytes=max_bytes)
            fingerprint = facts(parsed.certificates[0], caches).fingerprint_sha256
        except FileError:
            fingerprint = None
    seen[path] = (key, fingerprint)
    return fingerprint
