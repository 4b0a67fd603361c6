"""Change notification for the file inventory: skip an idle sweep that nothing could have changed.

A sweep stats every file (what that costs: benchmarks/RESULTS.md, "File inventory: stat, slices, batches,
snapshot"). On Linux the file source also keeps an
inotify watch on every directory that decides what its paths contain or resolve to: each directory
it lists, the directory of each named file, and the directory holding every symlink met on the way
(a ``live/`` link repointed by certbot, a Kubernetes ``..data`` swap, a symlinked root). A sweep
whose event queue is empty is then skipped, unless

- a certificate's verdict changes with time before the next sweep (``due``),
- the last full sweep is ``FULL_EVERY`` old: changes inotify cannot see (NFS written from another
  host, a lower overlay layer) still show within minutes, as a safety net,
- the last full sweep added a watch (a change between its listing and the watch would be missed),
- a watched path now names another directory than the one watched (it or an ancestor was replaced:
  ``rm -rf certs && mkdir certs``, a renamed parent): one ``stat`` per watched directory tells,
- the config cannot be watched: a glob with wildcards in a directory component, a missing parent
  directory, the watch limit (``fs.inotify.max_user_watches``) reached, or no inotify at all.

In every one of those cases the sweep is a full one, exactly as without this module.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import time
from collections.abc import Iterable
from datetime import datetime

__all__ = ["FULL_EVERY", "DirectoryWatch", "Inotify", "Resolution"]

log = logging.getLogger(__name__)

FULL_EVERY = 300.0
"""Seconds after which a sweep is a full one even if no event arrived (the safety net)."""

# <sys/inotify.h>: what changes a directory's entries or a file in it
_MASK = (
    0x00000002  # IN_MODIFY
    | 0x00000004  # IN_ATTRIB
    | 0x00000008  # IN_CLOSE_WRITE
    | 0x00000040  # IN_MOVED_FROM
    | 0x00000080  # IN_MOVED_TO
    | 0x00000100  # IN_CREATE
    | 0x00000200  # IN_DELETE
    | 0x00000400  # IN_DELETE_SELF
    | 0x00000800  # IN_MOVE_SELF
    | 0x01000000  # IN_ONLYDIR
)
_MAX_HOPS = 40  # symlinks followed while resolving one path, as the kernel's ELOOP limit


class Inotify:
    """One inotify instance: ``add`` a directory, ``pending()`` drains the queue (True: something happened)."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self._add = libc.inotify_add_watch
        self._add.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32)
        self._rm = libc.inotify_rm_watch
        self._rm.argtypes = (ctypes.c_int, ctypes.c_int)
        fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            number = ctypes.get_errno()
            raise OSError(number, os.strerror(number))
        self.fd: int = fd

    def add(self, directory: str) -> int:
        wd = int(self._add(self.fd, os.fsencode(directory), _MASK))
        if wd < 0:
            number = ctypes.get_errno()
            raise OSError(number, os.strerror(number), directory)
        return wd

    def remove(self, wd: int) -> None:
        self._rm(self.fd, wd)  # EINVAL when the directory is gone already: nothing to undo

    def pending(self) -> bool:
        seen = False
        while True:
            try:
                if not os.read(self.fd, 65536):
                    return seen
            except BlockingIOError:
                return seen
            seen = True

    def close(self) -> None:
        os.close(self.fd)


class Resolution:
    """Directories whose entries decide what paths resolve to (symlinks followed as the kernel would)."""

    def __init__(self) -> None:
        self.dirs: set[str] = set()
        self.broken: str | None = None  # why these paths cannot be watched (then ``dirs`` is not enough)
        self._real: dict[str, str] = {}  # directory as written -> real path (memo for one plan)

    def root(self, path: str) -> None:
        """A directory that is listed: watch it, and the parents of symlinks on its way."""
        try:
            self.dirs.add(self.directory(path))
        except OSError as exc:
            self.broken = f"cannot resolve {path}: {exc.strerror or exc}"

    def link(self, path: str) -> None:
        """:meth:`file`, recording a failure in ``broken`` instead of raising."""
        try:
            self.file(path)
        except OSError as exc:
            self.broken = f"cannot resolve {path}: {exc.strerror or exc}"

    def directory(self, path: str, hops: int = 0) -> str:
        """The real path of directory ``path``; the parent of every symlink met is recorded."""
        path = os.path.abspath(path)
        found = self._real.get(path)
        if found is not None:
            return found
        parent, name = os.path.split(path)
        if not name:
            return path
        here = os.path.join(self.directory(parent, hops), name)
        real = here
        if os.path.islink(here):
            if hops >= _MAX_HOPS:
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
            self.dirs.add(os.path.dirname(here))
            real = self.directory(os.path.join(os.path.dirname(here), os.readlink(here)), hops + 1)
        self._real[path] = real
        return real

    def file(self, path: str) -> None:
        """Record the directories deciding what file ``path`` is: its own, and those of every link on the way."""
        for _ in range(_MAX_HOPS):
            parent = self.directory(os.path.dirname(os.path.abspath(path)))
            self.dirs.add(parent)
            here = os.path.join(parent, os.path.basename(path))
            if not os.path.islink(here):
                return
            path = os.path.join(parent, os.readlink(here))
        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)


class DirectoryWatch:
    """The file source's watch: which directories, and whether the coming sweep can be skipped."""

    def __init__(self) -> None:
        self._inotify: Inotify | None = None
        try:
            self._inotify = Inotify()
        except (OSError, AttributeError) as exc:  # AttributeError: a libc without inotify (not Linux)
            log.info("file changes: no inotify (%s); every sweep stats every file", exc)
        self._wds: dict[str, tuple[int, int, int]] = {}  # directory -> (watch, st_dev, st_ino) when added
        self._usable = False
        self._settled = False
        self._last_full = float("-inf")
        self._due: datetime | None = None
        self._why: str | None = None

    @property
    def available(self) -> bool:
        """inotify works here (the plan is worth computing)."""
        return self._inotify is not None

    @property
    def active(self) -> bool:
        """Sweeps may be skipped now."""
        return self._inotify is not None and self._usable

    def quiet(self, now: datetime) -> bool:
        """True when nothing could have changed since the last full sweep (the queue is drained here)."""
        if self._inotify is None:
            return False
        changed = self._inotify.pending()
        if self._usable and not changed:
            changed = self._replaced()
        return (
            self._usable and self._settled and not changed
            and time.monotonic() - self._last_full < FULL_EVERY
            and (self._due is None or now < self._due)
        )

    def after_full_sweep(self, dirs: Iterable[str] | None, due: datetime | None, why: str = "") -> None:
        """Watch exactly ``dirs`` from now on (None: this config cannot be watched, ``why``)."""
        self._last_full = time.monotonic()
        self._due = due
        if self._inotify is None:
            return
        if dirs is None:
            self._unusable(why)
            return
        wanted = set(dirs)
        added = False
        for directory in sorted(wanted - self._wds.keys()):
            try:
                st = os.stat(directory)  # before the watch: a directory replaced in between is seen next time
                self._wds[directory] = (self._inotify.add(directory), st.st_dev, st.st_ino)
            except OSError as exc:
                self._unusable(f"cannot watch {directory}: {exc.strerror or exc}")
                return
            added = True
        for directory in self._wds.keys() - wanted:
            self._drop(directory)
        self._usable = True
        self._settled = not added  # a watch added after its listing: one more full sweep first
        if self._why is not None:
            log.info("file changes: watching %d directories again", len(self._wds))
            self._why = None

    def _unusable(self, why: str) -> None:
        if why != self._why:
            log.info("file changes: not watched (%s); every sweep stats every file", why)
        self._why = why
        self._usable = False
        for directory in list(self._wds):
            self._drop(directory)

    def _replaced(self) -> bool:
        """Whether a watched path now names another directory (it, or an ancestor, was replaced or
        removed: events from the new one would never come). Such paths are dropped, to be watched
        anew by the full sweep this causes. One ``stat`` per watched directory."""
        stale = []
        for directory, (_, dev, ino) in self._wds.items():
            try:
                st = os.stat(directory)
            except OSError:
                stale.append(directory)
                continue
            if st.st_ino != ino or st.st_dev != dev:
                stale.append(directory)
        for directory in stale:
            self._drop(directory)
        return bool(stale)

    def _drop(self, directory: str) -> None:
        wd = self._wds.pop(directory)[0]
        if self._inotify is not None and all(w != wd for w, _, _ in self._wds.values()):
            self._inotify.remove(wd)  # not when another path names the same directory (one descriptor)

    def close(self) -> None:
        if self._inotify is not None:
            self._inotify.close()
            self._inotify = None
