"""Atomic file writes: a reader sees the old content or the new one, never a torn file, even after a crash.

Temp file in the same directory (created 0600 with O_EXCL, so a secret is never readable on the way),
chown/chmod, write, fsync the file, ``os.replace`` over the target, fsync the directory so the rename
itself survives a power cut.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

__all__ = ["fsync_dir", "write_atomic"]


def fsync_dir(directory: Path) -> None:
    """Make a rename or create inside ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, mode: int, uid: int = -1, gid: int = -1) -> None:
    """Replace ``path`` with ``data`` (``mode``, and owner/group when ``uid``/``gid`` are not -1)."""
    tmp = path.with_name(f".{path.name}.certloop-{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            if uid != -1 or gid != -1:
                os.fchown(fh.fileno(), uid, gid)
            os.fchmod(fh.fileno(), mode)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
