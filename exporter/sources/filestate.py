"""What the file inventory remembers across restarts and reloads (``--storage.path``).

A snapshot holds each file's last reading: its stat key, the certificates read (DER), when its
verdict next changes, and its rendered series. A restart then costs one ``stat`` per file instead
of reading, parsing and verifying every file again: for 10,000 files ``/metrics`` is complete
0.45-0.65 s after the process starts, against 1.2-2.1 s without a snapshot (``benchmarks/RESULTS.md``).

    snapshots = Snapshots(ctx)             # ctx.state_dir: the --storage.path directory
    entries = await snapshots.load()       # {} when absent, written for another config, or corrupt
    snapshots.dirty = True                 # something changed since
    await snapshots.save(known, fragments) # at most every SAVE_EVERY seconds unless forced; atomic, 0600

Why it never shows wrong data:

- a snapshot is used only with the exact files config, trust store and certloop version that
  wrote it (``fingerprint``); anything else is a cold start;
- within a snapshot an entry stands only while its file's stat key (device, inode, size, mtime,
  ctime, mode) is unchanged, exactly as between two sweeps of one process; a file whose verdict
  changed with time since (``valid_until``) is re-judged from the stored certificates;
- files read with a PKCS#12 password are not stored (nothing derived from a secret is written);
- loading builds nothing but bytes, str, int, tuples and dicts (an unpickler that refuses every
  class), behind a SHA-256 checksum: a truncated, corrupt or foreign file is reported and ignored.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
import os
import pickle
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives.serialization import Encoding

from certloop import __version__
from certloop.atomicfile import write_atomic
from certloop.exporter.sources.base import Context

__all__ = ["SAVE_EVERY", "Entry", "FileState", "Snapshots", "fingerprint", "from_micros", "to_micros"]

SAVE_EVERY = 60.0
"""Seconds between two snapshots while files change (and always on stop or reload). A crash loses at
most this much, and what it loses is only work: a file changed since the snapshot is read again."""

log = logging.getLogger(__name__)

_MAGIC = b"certloop files state 1\n"
_NAME = "files.state"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class Entry:
    """One file's last reading, as stored."""

    stat: tuple[int, ...]
    valid_until: int | None  # microseconds since the epoch (exact, unlike a float timestamp)
    ders: tuple[bytes, ...]
    labels: tuple[tuple[str, str], ...]
    duration: float
    fragments: Mapping[str, bytes]


def to_micros(moment: datetime | None) -> int | None:
    return None if moment is None else (moment - _EPOCH) // _MICRO


def from_micros(micros: int | None) -> datetime | None:
    return None if micros is None else _EPOCH + micros * _MICRO


class _PlainUnpickler(pickle.Unpickler):
    """Builds only what pickle encodes natively; a request for any class or function is refused."""

    def find_class(self, module: str, name: str) -> object:
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a state file")


class FileState:
    """The snapshot file in ``directory``."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.path = Path(directory) / _NAME

    def load(self, fingerprint: str) -> dict[str, Entry]:
        """The stored entries if the snapshot was written for ``fingerprint``, else ``{}`` (logged)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            log.warning("file state %s: cannot read (%s); reading every file", self.path, exc.strerror or exc)
            return {}
        try:
            stored, raw = _unpack(data)
        except ValueError as exc:
            log.warning("file state %s: %s; ignored, reading every file", self.path, exc)
            return {}
        if stored != fingerprint:
            log.info("file state %s: written for another config, trust store or version; reading every file",
                     self.path)
            return {}
        return raw

    def save(self, fingerprint: str, entries: Mapping[str, Entry]) -> None:
        """Replace the snapshot atomically (0600); an OSError is the caller's to report."""
        payload = pickle.dumps((fingerprint, {path: _row(e) for path, e in entries.items()}),
                               protocol=pickle.HIGHEST_PROTOCOL)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(self.path, _MAGIC + hashlib.sha256(payload).digest() + payload, mode=0o600)


def _row(e: Entry) -> tuple[object, ...]:
    return (e.stat, e.valid_until, e.ders, e.labels, e.duration, dict(e.fragments))


def _unpack(data: bytes) -> tuple[str, dict[str, Entry]]:
    """Check the header and checksum, unpickle plain data, check every field's type."""
    if not data.startswith(_MAGIC):
        raise ValueError("not a certloop files state (bad header)")
    digest, payload = data[len(_MAGIC) : len(_MAGIC) + 32], data[len(_MAGIC) + 32 :]
    if hashlib.sha256(payload).digest() != digest:
        raise ValueError("checksum mismatch (truncated or corrupt)")
    try:
        fingerprint, rows = _PlainUnpickler(io.BytesIO(payload)).load()
    except Exception as exc:
        raise ValueError(f"cannot decode ({exc})") from exc
    if not isinstance(fingerprint, str) or not isinstance(rows, dict):
        raise ValueError("unexpected layout")
    entries = {}
    for path, row in rows.items():
        entry = _entry(row) if isinstance(path, str) else None
        if entry is None:
            raise ValueError(f"malformed entry for {path!r}")
        entries[path] = entry
    return fingerprint, entries


def _entry(row: object) -> Entry | None:
    if not isinstance(row, tuple) or len(row) != 6:
        return None
    stat, valid_until, ders, labels, duration, fragments = row
    ok = (
        isinstance(stat, tuple) and all(type(v) is int for v in stat)
        and (valid_until is None or type(valid_until) is int)
        and isinstance(ders, tuple) and all(type(d) is bytes for d in ders)
        and isinstance(labels, tuple)
        and all(isinstance(p, tuple) and len(p) == 2 and all(type(s) is str for s in p) for p in labels)
        and type(duration) is float
        and isinstance(fragments, dict)
        and all(type(k) is str and type(v) is bytes for k, v in fragments.items())
    )
    return Entry(stat, valid_until, ders, labels, duration, fragments) if ok else None


class Known(Protocol):
    """What the file source keeps per file (``exporter.sources.files._Known``)."""

    @property
    def stat(self) -> tuple[int, ...]: ...
    @property
    def valid_until(self) -> datetime | None: ...
    @property
    def ders(self) -> tuple[bytes, ...]: ...
    @property
    def labels(self) -> tuple[tuple[str, str], ...]: ...
    @property
    def duration(self) -> float: ...
    @property
    def secret(self) -> bool: ...


def fingerprint(ctx: Context) -> str:
    """What a snapshot is valid for: certloop's version, the files config and the trust anchors.

    Secrets are left out (files read with a password are never stored, so they need not be).
    """
    files = [g.model_dump(mode="json", exclude={"password", "password_file"}) for g in ctx.config.files]
    h = hashlib.sha256()
    h.update(json.dumps([__version__, ctx.config.global_.max_file_bytes, files], sort_keys=True).encode())
    for cert in ctx.trust.certificates:
        h.update(hashlib.sha256(cert.public_bytes(Encoding.DER)).digest())
    return h.hexdigest()


class Snapshots:
    """The file source's side of :class:`FileState`: when to load and save, off the event loop."""

    def __init__(self, ctx: Context) -> None:
        assert ctx.state_dir is not None
        self.state = FileState(ctx.state_dir)
        self.fingerprint = fingerprint(ctx)
        self.dirty = False
        self._saved_at = float("-inf")
        self._writing: asyncio.Task[None] | None = None

    async def load(self) -> dict[str, Entry]:
        started = time.perf_counter()
        entries = await asyncio.to_thread(self.state.load, self.fingerprint)
        if entries:
            log.info("file state: %d files restored from %s in %.3f s",
                     len(entries), self.state.path, time.perf_counter() - started)
        return entries

    async def save(self, known: Mapping[str, Known], fragments: Mapping[str, Mapping[str, bytes]],
                   *, force: bool = False) -> None:
        """Write a snapshot if something changed, and ``SAVE_EVERY`` passed or ``force``.

        Unforced, the write runs in the background (a sweep, and readiness after the first one, do
        not wait for a large inventory's snapshot to reach the disk), one at a time; ``force`` (stop,
        reload) waits for it.
        """
        if self._writing is not None and not self._writing.done():
            if not force:
                return  # still writing the last one; what changed since stays dirty for the next sweep
            await self._writing
        if not self.dirty or (not force and time.monotonic() - self._saved_at < SAVE_EVERY):
            return
        # references taken on the loop (cheap); the entries are built and written in a thread
        rows = [(path, k, fragments.get(path)) for path, k in known.items() if not k.secret]
        self.dirty = False
        self._saved_at = time.monotonic()
        self._writing = asyncio.create_task(self._write_in_thread(rows), name="files-state")
        if force:
            await self._writing

    async def _write_in_thread(self, rows: list[tuple[str, Known, Mapping[str, bytes] | None]]) -> None:
        try:
            await asyncio.to_thread(self._write, rows)
        except OSError as exc:
            self.dirty = True
            log.warning("file state %s: cannot write (%s); a restart will read every file",
                        self.state.path, exc.strerror or exc)
        except Exception:  # a bug here costs a restart's speed, never the inventory: log it, go on
            self.dirty = True
            log.exception("file state %s: writing failed", self.state.path)

    def _write(self, rows: list[tuple[str, Known, Mapping[str, bytes] | None]]) -> None:
        started = time.perf_counter()
        entries = {
            path: Entry(k.stat, to_micros(k.valid_until), k.ders, k.labels, k.duration, frags)
            for path, k, frags in rows if frags is not None
        }
        self.state.save(self.fingerprint, entries)
        log.debug("file state: %d files written to %s in %.3f s", len(entries), self.state.path,
                  time.perf_counter() - started)
