"""Which files the ``files:`` groups name, and what identifies a version of a file.

A file's version is its ``stat`` key (device, inode, size, mtime_ns, ctime_ns, mode): the file source
re-reads a file only when that key changes. Directories are listed as ``os.walk`` splits them (a
symlink to a directory is not descended into), filtered by a group's include/exclude patterns.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import re
import time

from certloop.exporter.config import FileGroup

__all__ = ["GLOB_CHARS", "SETTLED", "VANISHED", "Listing", "NameFilter", "StatKey", "key_of", "lexists",
           "list_directory", "stat_key"]

SETTLED = 2.0  # seconds a directory must be unmodified before its listing is reused (coarse mtimes)
GLOB_CHARS = frozenset("*?[")
StatKey = tuple[int, ...]
VANISHED: StatKey = (-errno.ENOENT,)  # a listed or globbed file removed before its stat


def lexists(name: str, dir_fd: int) -> bool:
    """Whether directory entry ``name`` exists (a dangling symlink does)."""
    try:
        os.lstat(name, dir_fd=dir_fd)
    except OSError:
        return False
    return True


def stat_key(path: str) -> StatKey:
    """What identifies a version of the file, or ``(-errno,)`` when it cannot be stat'ed."""
    try:
        st = os.stat(path)
    except OSError as exc:
        return (-(exc.errno or errno.EIO),)
    return key_of(st)


def key_of(st: os.stat_result) -> StatKey:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode)


class NameFilter:
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


# (directory stat key, (name, path) of each wanted file, subdirectories to descend, reusable,
#  paths of the wanted files that are symlinks)
Listing = tuple[tuple[int, ...], tuple[tuple[str, str], ...], tuple[str, ...], bool, tuple[str, ...]]


def list_directory(
    directory: str, fd: int, dir_key: tuple[int, ...], recursive: bool, wanted: NameFilter,
) -> Listing:
    """One directory's wanted files and subdirectories, split as ``os.walk`` does (raises OSError)."""
    settled = time.time() - dir_key[2] / 1e9 > SETTLED
    prefix = directory if directory.endswith(os.sep) else directory + os.sep
    files: list[tuple[str, str]] = []
    subdirs: list[str] = []
    links: list[str] = []
    with os.scandir(fd) as it:
        for entry in it:
            name = entry.name
            link = entry.is_symlink()
            if link:
                settled = False
            try:
                # os.walk's split: a symlink to a directory is a directory (not descended into)
                is_dir = entry.is_dir() if recursive else entry.is_dir(follow_symlinks=False)
            except OSError:
                is_dir = False
            if is_dir:
                if recursive and not entry.is_symlink():
                    subdirs.append(prefix + name)
            elif wanted(name):
                files.append((name, prefix + name))
                if link:
                    links.append(prefix + name)
    return dir_key, tuple(files), tuple(subdirs), settled, tuple(links)
