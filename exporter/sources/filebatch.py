"""Reading certificate files in batches: what is kept per file, and the read itself, stage by stage.

    reader = Reader(trust, max_bytes, caches)
    results = reader.batch(jobs, now)        # one Result per Job, in order; never raises for a file
    judged = reader.judge(jobs, now)         # the same judgement, not rendered (certloop check)

A :class:`Job` is a file to read (new or changed since the last sweep) or, with ``known`` set, a file
to re-judge at a new time from the certificates kept in memory. :meth:`Reader.judge` is the one place a
file's verdict is made: its :class:`Judged` holds the :class:`~exporter.report.Observation` (the chain's
verdict and expiry, or the failure's reason) and what the file source keeps (:class:`Known`: stat key,
DER, when the verdict next changes); :meth:`Reader.batch` renders it into the file's series
(:class:`Result`). The file source runs batches in a thread, or in forked worker processes on a first
sweep; ``certloop check`` takes the judgement itself, so it cannot say otherwise than the exporter.

Every failure is data for that file only (``certloop_probe_success 0`` with a reason from
:class:`certloop.errors.FileReason`); nothing else in the batch is lost.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import NamedTuple, TypeVar

from cryptography import x509

from certloop.errors import FileError, FileReason
from certloop.exporter.report import ChainReport, ExporterCaches, Observation, TargetReport, assess, render
from certloop.exporter.sources.paths import StatKey, key_of
from certloop.facts import der_bytes
from certloop.truststore import TrustStore
from certloop.x509 import certificates_in, load_der_chain, read_bounded, reason_for_errno

__all__ = ["Job", "Judged", "Known", "Reader", "Result"]

log = logging.getLogger(__name__)

A = TypeVar("A")
B = TypeVar("B")

# Named tuples rather than frozen dataclasses: on a first sweep they cross between processes by the ten
# thousand (why, and what must stay true: docs/architecture.md, "Value types").


class Known(NamedTuple):
    """What is kept per file between sweeps: enough to skip it, or to re-judge it without reading."""

    stat: StatKey
    valid_until: datetime | None  # re-judge when time reaches it; None: never (or nothing to judge)
    ders: tuple[bytes, ...]  # the certificates read (empty after a failure)
    labels: tuple[tuple[str, str], ...]
    duration: float
    secret: bool = False  # read with a password: never persisted


class Job(NamedTuple):
    path: str
    stat: StatKey
    labels: tuple[tuple[str, str], ...]
    password: bytes | None
    known: Known | None = None  # set: re-judge these certificates at a new time, do not read


class Judged(NamedTuple):
    """What one file was judged to be: the observation its series are rendered from, and what is kept."""

    observation: Observation  # success with the chain's report, or the failure's reason
    known: Known
    read: bool  # False for a re-judgement from memory (not a probe)


class Result(NamedTuple):
    """A file's outcome, compact and picklable (it crosses from a worker process)."""

    path: str
    known: Known
    fragments: dict[str, bytes]
    read: bool  # False for a re-judgement from memory (not a probe)
    success: bool


class Reader:
    """Reads, verifies and renders files against one trust store, with one size bound, remembering in
    ``caches`` (the engine's, or ``certloop check``'s for its run)."""

    def __init__(self, trust: TrustStore, max_bytes: int, caches: ExporterCaches) -> None:
        self.trust = trust
        self.max_bytes = max_bytes
        self.caches = caches

    def batch(self, jobs: list[Job], now: datetime) -> list[Result]:
        """One :class:`Result` per job, in order: :meth:`judge`, then rendering as one more stage.

        Reading, parsing (Rust), verifying (OpenSSL) and rendering each keep their code and data hot
        in the CPU caches while they run over the batch, which costs less CPU per file than taking each
        file through every stage in turn (benchmarks/RESULTS.md, "File inventory: stat, slices, batches,
        snapshot"). A file's duration is the sum of its own stages (rendering is not the file's).
        """
        caches = self.caches
        results = []
        for job, judged in zip(jobs, self.judge(jobs, now), strict=True):
            try:
                results.append(_rendered(judged, caches))
            except Exception:  # a bug for one file must not blind the exporter to all others
                log.exception("rendering %s failed unexpectedly", job.path)
                results.append(_rendered(failed(job, judged.known.stat, FileReason.UNREADABLE, 0.0), caches))
        return results

    def judge(self, jobs: list[Job], now: datetime) -> list[Judged]:
        """One :class:`Judged` per job, in order, each stage run over the whole batch; never raises for
        a file (a failure is that file's observation)."""
        run = _Run(jobs)
        caches = self.caches
        todo: list[tuple[int, None]] = []
        for i, job in enumerate(jobs):
            if job.known is None:
                todo.append((i, None))
            else:
                run.judge(i, lambda job: self._judge(job, now))
        data = run.stage(todo, lambda job, i, _: self._read(run, job, i))
        certs = run.stage(data, self._parse)
        chains = run.stage(certs, lambda _job, _, chain: (chain, assess(chain, trust=self.trust, at=now,
                                                                        caches=caches)))
        for i, judged in run.stage(chains, lambda job, i, done: self._done(run, job, i, *done)):
            run.out[i] = judged
        return [r for r in run.out if r is not None]

    def _parse(self, job: Job, _i: int, data: bytes) -> tuple[x509.Certificate, ...]:
        return certificates_in(job.path, data, self.caches, password=job.password).certificates

    def _read(self, run: _Run, job: Job, i: int) -> bytes:
        key = run.keys[i]
        if key[0] < 0:  # the listing's stat failed: that error is the result
            raise FileError(job.path, reason_for_errno(-key[0]))
        data, st = read_bounded(job.path, self.max_bytes)
        run.keys[i] = key_of(st)  # what was actually read (it may have changed since the listing)
        return data

    def _done(self, run: _Run, job: Job, i: int, certs: tuple[x509.Certificate, ...], chain: ChainReport) -> Judged:
        caches = self.caches
        ders = []
        for cert in certs:  # a loop: a comprehension naming caches costs a closure cell (certloop.caches)
            ders.append(der_bytes(cert, caches))
        duration = run.spent[i]  # reading, parsing and verifying
        obs = Observation("file", job.path, "", True, duration, chain=chain)
        return Judged(obs, Known(run.keys[i], chain.valid_until, tuple(ders), job.labels, duration,
                                 job.password is not None), True)

    def _judge(self, job: Job, now: datetime) -> Judged:
        """Re-judge an unchanged file at a new time from the certificates kept in memory."""
        old = job.known
        assert old is not None
        caches = self.caches
        chain = assess(load_der_chain(old.ders, caches), trust=self.trust, at=now, caches=caches)
        obs = Observation("file", job.path, "", True, old.duration, chain=chain)
        return Judged(obs, Known(old.stat, chain.valid_until, old.ders, old.labels, old.duration, old.secret), False)


def _rendered(judged: Judged, caches: ExporterCaches) -> Result:
    obs, known = judged.observation, judged.known
    report = TargetReport("file", obs.target, known.labels, (obs,))
    return Result(obs.target, known, render(report, caches), judged.read, obs.success)


def failed(job: Job, key: StatKey, reason: FileReason, duration: float) -> Judged:
    """The judgement of a file that could not be read or used."""
    obs = Observation("file", job.path, "", False, duration, reason=reason.value)
    return Judged(obs, Known(key, None, (), job.labels, duration, job.password is not None), True)


class _Run:
    """One batch in progress: per file its stat key, time spent so far and, once decided, its result."""

    def __init__(self, jobs: list[Job]) -> None:
        self.jobs = jobs
        self.keys: list[StatKey] = [job.stat for job in jobs]
        self.spent = [0.0] * len(jobs)
        self.out: list[Judged | None] = [None] * len(jobs)

    def judge(self, i: int, work: Callable[[Job], Judged]) -> None:
        """Decide file ``i`` with ``work`` (a re-judgement), a bug becoming that file's failure."""
        job = self.jobs[i]
        try:
            self.out[i] = work(job)
        except Exception:  # a bug for one file must not blind the exporter to all others
            log.exception("reading %s failed unexpectedly", job.path)
            self.out[i] = failed(job, self.keys[i], FileReason.UNREADABLE, 0.0)

    def stage(self, items: list[tuple[int, A]], work: Callable[[Job, int, A], B]) -> list[tuple[int, B]]:
        """``work`` on each file still in play, timed; a file that fails gets its judgement and drops out."""
        kept: list[tuple[int, B]] = []
        pc = time.perf_counter
        for i, value in items:
            job, started = self.jobs[i], pc()
            try:
                kept.append((i, work(job, i, value)))
            except (FileError, ValueError) as exc:  # malformed fields surface lazily as ValueError: data
                reason = exc.reason if isinstance(exc, FileError) else FileReason.PARSE_ERROR
                self.out[i] = failed(job, self.keys[i], reason, self.spent[i] + pc() - started)
            except Exception:  # a bug for one file must not blind the exporter to all others
                log.exception("reading %s failed unexpectedly", job.path)
                self.out[i] = failed(job, self.keys[i], FileReason.UNREADABLE, 0.0)
            self.spent[i] += pc() - started
        return kept
