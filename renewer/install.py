"""Install new material atomically, reload, prove it is served, and roll back on any failure.

Sequence for one deploy (``deploy(material, spec, ctx)``):

1. snapshot: copy each live output to ``<file>.certloop-prev`` (atomic, mode and owner kept);
2. journal: write ``<data_dir>/journal/<id>.json`` (fsync) naming the files and their snapshots,
   BEFORE any live file changes - a crash (kill -9) from here on is undone by :func:`recover`;
3. install: every output together (:func:`certloop.atomicfile.write_atomic_many`: all temp files
   written and fsync'ed first, then the renames back to back, then the directories fsync'ed), so the
   certificate and key change microseconds apart; chown/chmod as configured, key 0600 by default;
4. run the deploy steps (argv lists, each with a timeout);
5. verify: probe every endpoint (every resolved address) until it serves the new leaf's SHA-256
   fingerprint, within ``spec.verify.timeout``;
6. success: delete the journal. Failure at 3-5: roll back (below).

Rolling back: put back only the live files that differ from their snapshot (after a failed install,
often none: rewriting untouched files on a full disk would fail for nothing), run the deploy steps
again, then probe the verify endpoints for the previous leaf. The probe decides, not the steps: a
reload step that is broken (a pid file elsewhere) fails the same way on the way back while the server
never stopped serving the previous, valid certificate. :class:`RolledBack` (retryable) when the
previous leaf is served (or nothing can be probed); :class:`RollbackFailed` ("live files may be
broken", page someone) only when the files could not be restored or the probe proves the previous
leaf is not served.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import grp
import hashlib
import json
import logging
import os
import pwd
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import NoReturn

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certloop.atomicfile import Replacement, fsync_dir, write_atomic, write_atomic_many
from certloop.caches import Caches
from certloop.errors import FailureReason, ProbeError
from certloop.probe import addresses_of, probe_address, target_names
from certloop.renewer.context import RenewalContext
from certloop.renewer.errors import (
    BackendFailed,
    DeployError,
    RenewerError,
    RollbackFailed,
    RolledBack,
    UndoFailed,
    VerifyError,
)
from certloop.renewer.material import IssuedMaterial, split_pem
from certloop.renewer.programs import run_program
from certloop.renewer.spec import CertificateSpec, VerifyEndpoint
from certloop.resolve import Resolver

__all__ = [
    "PREV_SUFFIX",
    "DeployResult",
    "OnStage",
    "deploy",
    "describe_os_error",
    "recover",
    "served_fingerprint",
    "verify_resolver",
]

log = logging.getLogger(__name__)

PREV_SUFFIX = ".certloop-prev"
# A reloading server keeps old workers accepting for a moment after new ones serve: the new leaf
# must be seen on this many consecutive probes, STABLE_INTERVAL seconds apart, to count as served.
STABLE_PROBES = 3
STABLE_INTERVAL = 0.05
OnStage = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class DeployResult:
    """A verified deployment: the new leaf's fingerprint, when it was installed and proven served."""

    fingerprint: str
    installed_at: datetime
    verified_at: datetime
    endpoints: tuple[str, ...]
    seconds: float


@dataclass(frozen=True)
class Journal:
    """What a started install changes: role -> live path, role -> snapshot path (None: did not exist)."""

    certificate: str
    files: dict[str, str]
    prev: dict[str, str | None]
    old_fingerprint: str | None
    new_fingerprint: str

    def dump(self) -> bytes:
        return json.dumps(self.__dict__, indent=1).encode()

    @classmethod
    def parse(cls, data: bytes) -> Journal:
        doc = json.loads(data)
        return cls(
            certificate=str(doc["certificate"]),
            files={str(k): str(v) for k, v in doc["files"].items()},
            prev={str(k): (None if v is None else str(v)) for k, v in doc["prev"].items()},
            old_fingerprint=doc.get("old_fingerprint"),
            new_fingerprint=str(doc["new_fingerprint"]),
        )


# --- files -------------------------------------------------------------------------------------


def describe_os_error(exc: OSError) -> str:
    """One line for a failed file operation; a full disk says so in the words an operator searches for."""
    where = f" ({exc.filename})" if exc.filename else ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"no space left on device{where}"
    return f"{exc.strerror or exc}{where}"


def _ids(owner: str | None, group: str | None) -> tuple[int, int]:
    try:
        uid = pwd.getpwnam(owner).pw_uid if owner else -1
        gid = grp.getgrnam(group).gr_gid if group else -1
    except KeyError as exc:
        raise DeployError(("install",), None, f"unknown owner or group: {exc}") from exc
    return uid, gid


def _contents(material: IssuedMaterial, role: str) -> bytes:
    return {
        "cert": material.cert_pem,
        "key": material.key_pem,
        "fullchain": material.fullchain_pem,
        "chain": material.chain_pem,
    }[role]


def _journal_path(spec: CertificateSpec, ctx: RenewalContext) -> Path:
    return ctx.data_dir / "journal" / f"{spec.id}.json"


def _snapshot(files: dict[str, Path]) -> dict[str, str | None]:
    """Copy each existing live file to its ``.certloop-prev`` twin; None for files that do not exist."""
    prev: dict[str, str | None] = {}
    for role, live in files.items():
        try:
            data = live.read_bytes()
            st = live.stat()
        except FileNotFoundError:
            prev[role] = None
            continue
        twin = live.with_name(live.name + PREV_SUFFIX)
        uid, gid = (st.st_uid, st.st_gid) if os.geteuid() == 0 else (-1, -1)
        write_atomic(twin, data, mode=st.st_mode & 0o7777, uid=uid, gid=gid)
        prev[role] = str(twin)
    return prev


def _restore(journal: Journal) -> list[str]:
    """Put back, all together (:func:`write_atomic_many`), the snapshots of live files that changed;
    files that did not exist go. Returns the roles rewritten or removed.

    A live file still equal to its snapshot (content, mode, owner) was never replaced and is left
    alone: after an install that failed before its renames nothing is rewritten, so a full disk that
    stopped the install cannot also stop the rollback.
    """
    back: list[Replacement] = []
    touched: list[str] = []
    for role, live_s in journal.files.items():
        live, twin_s = Path(live_s), journal.prev.get(role)
        if twin_s is None:
            if live.exists():
                live.unlink()
                touched.append(role)
            continue
        twin = Path(twin_s)
        st = twin.stat()
        data = twin.read_bytes()
        uid, gid = (st.st_uid, st.st_gid) if os.geteuid() == 0 else (-1, -1)
        if _unchanged(live, data, st):
            continue
        back.append(Replacement(live, data, st.st_mode & 0o7777, uid, gid))
        touched.append(role)
    write_atomic_many(back)
    return touched


def _unchanged(live: Path, data: bytes, snapshot: os.stat_result) -> bool:
    try:
        st = live.stat()
        same_meta = (st.st_mode & 0o7777) == (snapshot.st_mode & 0o7777) and (
            os.geteuid() != 0 or (st.st_uid, st.st_gid) == (snapshot.st_uid, snapshot.st_gid)
        )
        return same_meta and live.read_bytes() == data
    except FileNotFoundError:
        return False


def _leaf_fingerprint_of_files(files: dict[str, Path]) -> str | None:
    for role in ("fullchain", "cert"):
        path = files.get(role)
        if path is None:
            continue
        with contextlib.suppress(OSError, ValueError):
            blocks = split_pem(path.read_bytes())
            if blocks:
                return _fingerprint_pem(blocks[0])
    return None


def _fingerprint_pem(pem: bytes) -> str:
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


# --- verify probes -------------------------------------------------------------------------------


async def served_fingerprint(
    address: str, port: int, server_name: str | None, limit: float
) -> str:
    """SHA-256 (hex) of the leaf ``address:port`` presents for ``server_name``. ProbeError on failure.

    The chain is fetched unverified through the one probe path (`certloop.probe`: the exporter's
    and ``check``'s rules for SNI): we compare fingerprints here, trust was
    :func:`renewer.pipeline.validate`'s job.
    """
    probed = await probe_address(address, port, target_names(address, server_name), Caches(),
                                 connect_timeout=limit, handshake_timeout=limit)
    if probed.error is not None:
        raise probed.error
    seen = probed.leaf_fingerprint
    if seen is None:
        raise ProbeError(FailureReason.NO_CERTIFICATE, "no certificate presented")
    return seen


def verify_resolver(dns_resolver: str | None) -> Resolver:
    """What looks up the verify endpoints' host names (``RenewalContext.dns_resolver``, else the system's):
    the same for this proof and for the status page's look at what is served (`renewer.served`)."""
    return Resolver([dns_resolver] if dns_resolver else None)


async def _await_served(
    endpoints: Sequence[VerifyEndpoint], fingerprint: str, limit: float, resolver_address: str | None
) -> None:
    """Poll every address of every endpoint until each serves ``fingerprint`` steadily (STABLE_PROBES
    in a row); VerifyError at the deadline."""
    deadline = time.monotonic() + limit
    resolver = verify_resolver(resolver_address)
    for ep in endpoints:
        names = target_names(ep.host, ep.server_name)
        server_name = names.verified
        last = "not probed"
        pending: list[str] | None = None
        streak = 0
        while True:
            try:
                if pending is None:
                    pending = await addresses_of(ep.host, resolver, names=names)
                remaining = max(deadline - time.monotonic(), 0.1)
                seen = await served_fingerprint(pending[0], ep.port, server_name, min(remaining, 5))
                if seen == fingerprint:
                    streak += 1
                    if streak >= STABLE_PROBES:
                        pending.pop(0)
                        streak = 0
                        if not pending:
                            break
                    await asyncio.sleep(STABLE_INTERVAL)
                    continue
                streak = 0
                last = f"serves {seen[:16]}..., expected {fingerprint[:16]}..."
            except ProbeError as exc:
                last = f"probe failed: {exc}"
            if time.monotonic() >= deadline:
                raise VerifyError(ep.endpoint, f"{last} after {limit:g}s")
            await asyncio.sleep(min(0.1, max(deadline - time.monotonic(), 0)))


# --- steps ----------------------------------------------------------------------------------------


async def _run_steps(spec: CertificateSpec) -> None:
    for step in spec.deploy:
        try:
            done = await run_program(step.argv, time_limit=step.timeout.total_seconds(), what="deploy step")
        except BackendFailed as exc:
            raise DeployError(tuple(step.argv), None, exc.stderr_tail, outcome=exc.outcome) from exc
        if done.returncode != 0:
            raise DeployError(tuple(step.argv), done.returncode, done.stderr_tail or done.stdout[-2000:])


def _install(material: IssuedMaterial, spec: CertificateSpec) -> None:
    """Every output at once (:func:`write_atomic_many`): the certificate and key files change together."""
    out = spec.outputs
    uid, gid = _ids(out.owner, out.group)
    files = [
        Replacement(path, _contents(material, role), out.key_mode if role == "key" else out.mode, uid, gid)
        for role, path in out.files().items()
    ]
    try:
        write_atomic_many(files)
    except OSError as exc:
        where = exc.filename or ", ".join(str(f.path) for f in files)
        raise DeployError(("install", str(where)), None, "", outcome=f"failed: {describe_os_error(exc)}") from exc


async def deploy(
    material: IssuedMaterial,
    spec: CertificateSpec,
    ctx: RenewalContext,
    *,
    on_stage: OnStage | None = None,
) -> DeployResult:
    """Install ``material``, run the deploy steps, verify; roll back on any failure (see module doc)."""
    started = time.monotonic()
    files = spec.outputs.files()
    journal_path = _journal_path(spec, ctx)
    journal_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # File work (reads, writes, fsyncs) runs in a thread: the renewer's API shares this event loop.
    if journal_path.exists():  # an earlier install was interrupted: undo it before starting anew
        await recover(spec, ctx)
    fingerprint = material.fingerprint
    if on_stage is not None:
        await on_stage("installing")
    old_fingerprint = await asyncio.to_thread(_leaf_fingerprint_of_files, files)
    try:
        prev = await asyncio.to_thread(_snapshot, files)
    except OSError as exc:
        raise RolledBack(f"cannot snapshot the live files: {describe_os_error(exc)}", exc) from exc
    journal = Journal(
        certificate=spec.id,
        files={r: str(p) for r, p in files.items()},
        prev=prev,
        old_fingerprint=old_fingerprint,
        new_fingerprint=fingerprint,
    )
    try:
        await asyncio.to_thread(write_atomic, journal_path, journal.dump(), mode=0o600)
    except OSError as exc:  # nothing live has changed yet
        raise RolledBack(f"cannot write the install journal: {describe_os_error(exc)}", exc) from exc
    try:
        await asyncio.to_thread(_install, material, spec)
        installed_at = ctx.clock()
        await _run_steps(spec)
        if on_stage is not None:
            await on_stage("verifying")
        await _await_served(
            spec.verify.endpoints, fingerprint, spec.verify.timeout.total_seconds(), ctx.dns_resolver
        )
    except Exception as exc:  # anything (a step, a probe, the stage callback): the old pair goes back
        await _roll_back(spec, ctx, journal, exc)
    await asyncio.to_thread(_drop_journal, journal_path)
    return DeployResult(
        fingerprint=fingerprint,
        installed_at=installed_at,
        verified_at=ctx.clock(),
        endpoints=tuple(ep.endpoint for ep in spec.verify.endpoints),
        seconds=time.monotonic() - started,
    )


async def _roll_back(
    spec: CertificateSpec, ctx: RenewalContext, journal: Journal, cause: BaseException
) -> NoReturn:
    """Undo, then raise RolledBack (or RollbackFailed when the undo proves the site broken)."""
    reason = _reason(cause)
    try:
        note = await _undo(spec, ctx, journal)
    except UndoFailed as exc:
        raise RollbackFailed(f"{reason}; then {exc}", cause) from exc
    raise RolledBack(f"{reason}{note}", cause) from cause


async def _undo(spec: CertificateSpec, ctx: RenewalContext, journal: Journal) -> str:
    """Restore changed files, rerun the deploy steps, probe for the old leaf, drop the journal.

    Returns a note ("" or "; ...") on what failed on the way back without harm - a deploy step that
    fails again while the previous leaf is still served. Raises :class:`UndoFailed` when the files
    cannot be restored or the probe shows the previous leaf is not served.
    """
    try:
        await asyncio.to_thread(_restore, journal)
    except OSError as exc:
        raise UndoFailed(f"restoring the previous files failed: {describe_os_error(exc)}") from exc
    note = ""
    try:
        await _run_steps(spec)
    except DeployError as exc:
        note = f"; rerunning the deploy steps after restoring failed too ({exc})"
    old = journal.old_fingerprint
    endpoints = spec.verify.endpoints
    if old is not None and endpoints:
        try:
            await _await_served(endpoints, old, spec.verify.timeout.total_seconds(), ctx.dns_resolver)
        except VerifyError as exc:
            raise UndoFailed(f"after restoring, the previous leaf is not served: {exc}{note}") from exc
        if note:
            note += f"; the previous leaf is still served by {len(endpoints)} endpoint(s)"
    elif note:
        note += "; nothing to probe (no verify endpoints or no previous leaf), the files are restored"
    # A journal that cannot be deleted only means the next deploy's recover() repeats this undo,
    # which changes nothing the second time.
    with contextlib.suppress(OSError):
        await asyncio.to_thread(_drop_journal, _journal_path(spec, ctx))
    return note


def _drop_journal(path: Path) -> None:
    path.unlink(missing_ok=True)
    fsync_dir(path.parent)


def _reason(exc: BaseException) -> str:
    """One line for the audit trail: our errors speak for themselves, foreign ones get their type."""
    return str(exc) if isinstance(exc, RenewerError) else f"{type(exc).__name__}: {exc}"


async def recover(spec: CertificateSpec, ctx: RenewalContext) -> bool:
    """Undo an install interrupted by a crash. Returns True if there was one to undo.

    The worker calls this for every certificate at start-up. RollbackFailed if it cannot.
    """
    path = _journal_path(spec, ctx)
    try:
        journal = Journal.parse(path.read_bytes())
    except FileNotFoundError:
        return False
    except (OSError, ValueError, KeyError, AttributeError) as exc:
        raise RollbackFailed(f"cannot read the install journal {path}: {exc}") from exc
    try:
        note = await _undo(spec, ctx, journal)
    except UndoFailed as exc:
        raise RollbackFailed(f"recovering the interrupted install failed: {exc}", exc) from exc
    except OSError as exc:
        raise RollbackFailed(f"recovering the interrupted install failed: {describe_os_error(exc)}", exc) from exc
    if note:
        log.warning("recovered the interrupted install of %s%s", spec.id, note)
    return True
