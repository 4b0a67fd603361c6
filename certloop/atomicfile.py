"""Atomic file writes: a reader sees the old content or the new one, never a torn file, even after a crash.

Temp file in the same directory (created 0600 with O_EXCL, so a secret is never readable on the way),
chown/chmod, write, fsync the file, ``os.replace`` over the target, fsync the directory so the rename
itself survives a power cut.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Replacement", "fsync_dir", "write_atomic", "write_atomic_many"]


def fsync_dir(directory: Path) -> None:
    """Make a rename or create inside ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Replacement:
    """One file of :func:`write_atomic_many`: ``path`` gets ``data`` with ``mode`` (and owner/group)."""

    path: Path
    data: bytes
    mode: int
    uid: int = -1
    gid: int = -1


def write_atomic(path: Path, data: bytes, *, mode: int, uid: int = -1, gid: int = -1) -> None:
    """Replace ``path`` with ``data`` (``mode``, and owner/group when ``uid``/``gid`` are not -1)."""
    write_atomic_many([Replacement(path, data, mode, uid, gid)])


def write_atomic_many(files: Sequence[Replacement]) -> None:
    """Replace several files as nearly together as the filesystem allows (a certificate and its key).

    Every temp file is written and fsync'ed first (the slow part; a failure there changes nothing
    live), then the renames run back to back (microseconds apart, instead of one fsync apart), then
    each directory is fsync'ed once. A crash can still fall between two renames: the caller's
    journal is what repairs that (``renewer/install.py``).
    """
    temps: list[Path] = []
    try:
        for item in files:
            tmp = item.path.with_name(f".{item.path.name}.certloop-{secrets.token_hex(4)}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            temps.append(tmp)
            with os.fdopen(fd, "wb") as fh:
                if item.uid != -1 or item.gid != -1:
                    os.fchown(fh.fileno(), item.uid, item.gid)
                os.fchmod(fh.fileno(), item.mode)
                fh.write(item.data)
                fh.flush()
                os.fsync(fh.fileno())
        for item, tmp in zip(files, temps, strict=True):
            os.replace(tmp, item.path)
    except BaseException:
        for tmp in temps:
            tmp.unlink(missing_ok=True)  # those already renamed are gone from their temp names
        raise
    for directory in dict.fromkeys(item.path.parent for item in files):
        fsync_dir(directory)
