"""Where backup archives live: a local directory or an S3-compatible bucket prefix, and how long they stay.

A location is what ``backup --out``, ``restore --in``, ``backup verify`` and ``backup prune`` take:

- ``/var/backups/certloop/renewer.clb``: one file;
- ``/var/backups/certloop/`` (trailing slash, or an existing directory): a directory; ``backup`` writes a
  new ``renewer-YYYYMMDDTHHMMSSZ.clb`` into it, the name retention understands;
- ``s3://bucket/prefix/renewer.clb`` and ``s3://bucket/prefix/``: the same on S3 or anything that speaks
  its API (MinIO, Alibaba OSS, Ceph RGW, ...).

S3 goes through boto3 (the optional ``s3`` extra), configured the standard AWS way and nothing else:
credentials from ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, a profile or an instance role; the
endpoint from ``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``); path-style addressing from the shared
config file (``s3 = addressing_style = path``). So one set of settings serves certloop, the aws CLI
and any other tool on the host. boto3 and botocore errors are translated here, and only here, into
:class:`~certloop.renewer.errors.BackupError` naming the URL.

Retention (:func:`expired`) is a pure function of the archive names: it never looks at object times,
which differ between a copy and its original, and it never touches a name it did not write.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from certloop.renewer.errors import BackupError
from certloop.renewer.keystore import write_private

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = [
    "ARCHIVE_NAME", "Archive", "Directory", "Place", "S3Prefix", "archive_name", "archives", "expired",
    "parse_location",
]

ARCHIVE_NAME = re.compile(r"^renewer-(\d{8}T\d{6}Z)\.clb$")


def archive_name(now: datetime) -> str:
    """The name of an archive made at ``now``; :func:`expired` reads the time back from it."""
    return f"renewer-{now.astimezone(UTC):%Y%m%dT%H%M%SZ}.clb"


class Place(Protocol):
    """A directory of archives: a local directory or an S3 bucket prefix."""

    def describe(self, name: str = "") -> str: ...
    def put(self, name: str, data: bytes) -> None: ...
    def get(self, name: str) -> bytes: ...
    def names(self) -> list[str]: ...
    def delete(self, name: str) -> None: ...


@dataclass(frozen=True)
class Directory:
    path: Path

    def describe(self, name: str = "") -> str:
        return str(self.path / name) if name else f"{self.path}/"

    def put(self, name: str, data: bytes) -> None:
        try:
            write_private(self.path / name, data)
        except OSError as exc:
            raise BackupError(self.describe(name), f"cannot write: {exc.strerror}") from exc

    def get(self, name: str) -> bytes:
        try:
            return (self.path / name).read_bytes()
        except OSError as exc:
            raise BackupError(self.describe(name), f"cannot read: {exc.strerror}") from exc

    def names(self) -> list[str]:
        try:
            return sorted(p.name for p in self.path.iterdir() if p.is_file())
        except OSError as exc:
            raise BackupError(self.describe(), f"cannot list: {exc.strerror}") from exc

    def delete(self, name: str) -> None:
        try:
            (self.path / name).unlink()
        except OSError as exc:
            raise BackupError(self.describe(name), f"cannot delete: {exc.strerror}") from exc


@dataclass(frozen=True)
class S3Prefix:
    """``s3://bucket/prefix/``; ``prefix`` is empty or ends with ``/``."""

    bucket: str
    prefix: str

    def describe(self, name: str = "") -> str:
        return f"s3://{self.bucket}/{self.prefix}{name}"

    @contextmanager
    def _translated(self, name: str, action: str) -> Iterator[S3Client]:
        try:
            import boto3
            import botocore.exceptions
        except ImportError as exc:
            raise BackupError(self.describe(name),
                              "s3:// locations need boto3: install certloop with the `s3` extra") from exc
        try:
            yield boto3.client("s3")
        except botocore.exceptions.ClientError as exc:
            err = exc.response.get("Error", {})
            raise BackupError(self.describe(name),
                              f"cannot {action}: {err.get('Code', '?')} {err.get('Message', '')}".rstrip()) from exc
        except (botocore.exceptions.BotoCoreError, OSError) as exc:
            raise BackupError(self.describe(name), f"cannot {action}: {exc}") from exc

    def put(self, name: str, data: bytes) -> None:
        with self._translated(name, "upload") as s3:
            s3.put_object(Bucket=self.bucket, Key=self.prefix + name, Body=data,
                          ContentType="application/octet-stream")

    def get(self, name: str) -> bytes:
        with self._translated(name, "download") as s3:
            return s3.get_object(Bucket=self.bucket, Key=self.prefix + name)["Body"].read()

    def names(self) -> list[str]:
        found: list[str] = []
        with self._translated("", "list") as s3:
            pages = s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix,
                                                                 Delimiter="/")
            for page in pages:
                found += [obj["Key"][len(self.prefix):] for obj in page.get("Contents", [])]
        return sorted(found)

    def delete(self, name: str) -> None:
        with self._translated(name, "delete") as s3:
            s3.delete_object(Bucket=self.bucket, Key=self.prefix + name)


def parse_location(text: str) -> tuple[Place, str | None]:
    """``(place, name)`` for a location; ``name`` is None when the location is a directory or prefix."""
    if text.startswith("s3://"):
        url = urlsplit(text)
        if not url.netloc or url.query or url.fragment:
            raise BackupError(text, "expected s3://BUCKET/PREFIX/ or s3://BUCKET/PREFIX/NAME")
        key = url.path.lstrip("/")
        if ".." in key.split("/"):
            raise BackupError(text, "an S3 key must not contain `..`")
        prefix, _, name = key.rpartition("/")
        return S3Prefix(url.netloc, f"{prefix}/" if prefix else ""), name or None
    if "://" in text:
        raise BackupError(text, "only local paths and s3:// URLs are supported")
    path = Path(text)
    if text.endswith(os.sep) or path.is_dir():
        return Directory(path), None
    return Directory(path.parent), path.name


@dataclass(frozen=True)
class Archive:
    name: str
    made_at: datetime


def archives(names: Iterable[str]) -> list[Archive]:
    """The names that retention manages, newest first; every other name is ignored."""
    found = []
    for name in names:
        m = ARCHIVE_NAME.match(name)
        if m:
            found.append(Archive(name, datetime.strptime(m.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)))
    return sorted(found, key=lambda a: a.made_at, reverse=True)


def expired(names: Iterable[str], *, keep_daily: int, keep_weekly: int) -> list[str]:
    """The archive names to delete to keep the newest archive of each of the ``keep_daily`` latest days and
    of each of the ``keep_weekly`` latest ISO weeks that have one (UTC). The newest archive is always kept."""
    if keep_daily < 0 or keep_weekly < 0:
        raise ValueError("keep counts must not be negative")
    found = archives(names)
    keep: set[str] = {found[0].name} if found else set()
    days: set[object] = set()
    weeks: set[object] = set()
    for archive in found:  # newest first: the first archive seen of a day or week is the one kept
        day, week = archive.made_at.date(), archive.made_at.isocalendar()[:2]
        if day not in days and len(days) < keep_daily:
            days.add(day)
            keep.add(archive.name)
        if week not in weeks and len(weeks) < keep_weekly:
            weeks.add(week)
            keep.add(archive.name)
    return [a.name for a in reversed(found) if a.name not in keep]
