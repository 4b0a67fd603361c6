"""Certificate files: list paths, globs and directories each sweep; re-read a file only when it changed.

A file's identity is its ``stat`` (device, inode, size, mtime_ns, ctime_ns): an unchanged file costs
one ``stat`` call per sweep and no re-render, unless time crosses a validity boundary of its chain (then
its verdict is re-computed from the certificates already in memory). Reading and parsing run in a
worker thread, in batches, so ``/metrics`` keeps answering during a large first sweep.

Every failure is data for that file only (``certloop_probe_success 0`` with a reason from
:class:`certloop.x509.FileReason`); nothing else is lost.
"""

from __future__ import annotations

import asyncio
import errno
import fnmatch
import glob
import logging
import os
import re
import time
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509

from certloop.errors import ConfigError
from certloop.x509 import FileError, FileReason, facts, read_certificate_file
from exporter.config import FileGroup
from exporter.report import Observation, TargetReport, assess, render
from exporter.sources.base import Context, Put

__all__ = ["FileSource", "expand_group", "leaf_fingerprint", "stat_key"]

log = logging.getLogger(__name__)

_BATCH = 256
_GLOB_CHARS = frozenset("*?[")
StatKey = tuple[int, ...]


def stat_key(path: str) -> StatKey:
    """What identifies a version of the file, or ``(-errno,)`` when it cannot be stat'ed."""
    try:
        st = os.stat(path)
    except OSError as exc:
        return (-(exc.errno or errno.EIO),)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode)


class _NameFilter:
    """A group's include/exclude patterns compiled once into two regexes (fnmatch per name is slow)."""

    __slots__ = ("_exclude", "_include")

    def __init__(self, group: FileGroup) -> None:
        self._include = _compile(group.include)
        self._exclude = _compile(group.exclude)

    def __call__(self, name: str) -> bool:
        if self._include is not None and not self._include.match(name):
            return False
        return self._exclude is None or not self._exclude.match(name)


def _compile(patterns: list[str]) -> re.Pattern[str] | None:
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns)) if patterns else None


def _list_directory(root: str, group: FileGroup, wanted: _NameFilter) -> Iterator[str]:
    if group.recursive:
        for dirpath, dirnames, filenames in os.walk(root, onerror=None, followlinks=False):
            dirnames.sort()
            for name in sorted(filenames):
                if wanted(name):
                    yield os.path.join(dirpath, name)
        return
    try:
        with os.scandir(root) as it:
            entries = sorted((e for e in it if not e.is_dir(follow_symlinks=False)), key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        if wanted(entry.name):
            yield entry.path


def expand_group(group: FileGroup, wanted: _NameFilter | None = None) -> Iterator[str]:
    """Every file path a group names now: plain paths as given (even missing), globs, directory contents."""
    wanted = wanted or _NameFilter(group)
    for pattern in group.paths:
        if _GLOB_CHARS & set(pattern):
            for match in sorted(glob.glob(pattern, recursive=group.recursive)):
                if os.path.isdir(match):
                    yield from _list_directory(match, group, wanted)
                else:
                    yield match
        elif os.path.isdir(pattern):
            yield from _list_directory(pattern, group, wanted)
        else:
            yield pattern


@dataclass(frozen=True, slots=True)
class _Known:
    stat: StatKey
    certs: tuple[x509.Certificate, ...]
    report: TargetReport
    valid_until: datetime | None


@dataclass(frozen=True, slots=True)
class _Job:
    path: str
    stat: StatKey
    labels: tuple[tuple[str, str], ...]
    password: bytes | None


class FileSource:
    """The ``files:`` groups of the config."""

    kind = "files"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.interval = ctx.config.global_.files_interval.total_seconds()
        self.max_bytes = ctx.config.global_.max_file_bytes
        self._groups: list[tuple[FileGroup, _NameFilter, tuple[tuple[str, str], ...], bytes | None]] = []
        for i, group in enumerate(ctx.config.files):
            try:
                password = ctx.config.file_password(i)
            except ConfigError:
                password = None  # validated at load time; the secret vanished since: read without it
            self._groups.append((group, _NameFilter(group), tuple(sorted(group.labels.items())), password))
        self._known: dict[str, _Known] = {}

    async def sweep(self, put: Put) -> set[Hashable]:
        now = self.ctx.clock()
        # listing and stat'ing thousands of files runs in a worker thread: /metrics keeps answering
        alive, jobs, stale = await asyncio.to_thread(self._scan, now)
        for path in stale:
            self._reassess(path, self._known[path], now, put)
        for start in range(0, len(jobs), _BATCH):
            batch = jobs[start : start + _BATCH]
            results = await asyncio.to_thread(self._read_batch, batch, now)
            for job, known in zip(batch, results, strict=True):
                self._known[job.path] = known
                put(job.path, render(known.report))
                self.ctx.counter.add("file", known.report.success)
        for path in [p for p in self._known if p not in alive]:
            del self._known[path]
        return alive

    def _scan(self, now: datetime) -> tuple[set[Hashable], list[_Job], list[str]]:
        """Which paths exist now, which must be read (new or changed), which must be re-judged (time)."""
        alive: set[Hashable] = set()
        jobs: list[_Job] = []
        stale: list[str] = []
        for group, wanted, labels, password in self._groups:
            for path in expand_group(group, wanted):
                if path in alive:
                    continue  # named by an earlier group: that group's labels win
                alive.add(path)
                key = stat_key(path)
                known = self._known.get(path)
                if known is not None and known.stat == key:
                    if known.valid_until is not None and now >= known.valid_until and known.certs:
                        stale.append(path)
                    continue
                jobs.append(_Job(path, key, labels, password))
        return alive, jobs, stale

    def _reassess(self, path: str, known: _Known, now: datetime, put: Put) -> None:
        chain = assess(known.certs, trust=self.ctx.trust, at=now)
        old = known.report.observations[0]
        obs = Observation("file", path, "", True, old.duration, chain=chain)
        report = TargetReport("file", path, known.report.labels, (obs,))
        self._known[path] = _Known(known.stat, known.certs, report, chain.valid_until)
        put(path, render(report))

    def _read_batch(self, batch: list[_Job], now: datetime) -> list[_Known]:
        out = []
        for job in batch:
            try:
                out.append(self._read(job, now))
            except Exception:  # a bug for one file must not blind the exporter to all others
                log.exception("reading %s failed unexpectedly", job.path)
                obs = Observation("file", job.path, "", False, 0.0, reason=FileReason.UNREADABLE.value)
                out.append(_Known(job.stat, (), TargetReport("file", job.path, job.labels, (obs,)), None))
        return out

    def _read(self, job: _Job, now: datetime) -> _Known:
        started = time.perf_counter()
        try:
            if job.stat[0] < 0:
                raise FileError(job.path, _errno_reason(-job.stat[0]))
            parsed = read_certificate_file(job.path, password=job.password, max_bytes=self.max_bytes)
            # malformed fields surface lazily (names, extensions) as ValueError: data, not a bug
            chain = assess(parsed.certificates, trust=self.ctx.trust, at=now)
        except (FileError, ValueError) as exc:
            reason = exc.reason if isinstance(exc, FileError) else FileReason.PARSE_ERROR
            obs = Observation("file", job.path, "", False, time.perf_counter() - started, reason=str(reason))
            return _Known(job.stat, (), TargetReport("file", job.path, job.labels, (obs,)), None)
        obs = Observation("file", job.path, "", True, time.perf_counter() - started, chain=chain)
        report = TargetReport("file", job.path, job.labels, (obs,))
        return _Known(job.stat, parsed.certificates, report, chain.valid_until)


def _errno_reason(code: int) -> FileReason:
    return {
        errno.ENOENT: FileReason.NOT_FOUND,
        errno.ENOTDIR: FileReason.NOT_FOUND,
        errno.EACCES: FileReason.PERMISSION_DENIED,
        errno.EPERM: FileReason.PERMISSION_DENIED,
        errno.ELOOP: FileReason.SYMLINK_LOOP,
    }.get(code, FileReason.UNREADABLE)


def leaf_fingerprint(path: str, cache: dict[str, tuple[StatKey, str | None]], max_bytes: int) -> str | None:
    """SHA-256 fingerprint of the first certificate in ``path`` (``expect_file``), re-read only on change."""
    key = stat_key(path)
    found = cache.get(path)
    if found is not None and found[0] == key:
        return found[1]
    fingerprint: str | None = None
    if key[0] >= 0:
        try:
            parsed = read_certificate_file(path, max_bytes=max_bytes)
            fingerprint = facts(parsed.certificates[0]).fingerprint_sha256
        except FileError:
            fingerprint = None
    cache[path] = (key, fingerprint)
    return fingerprint
