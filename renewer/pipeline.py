"""The renewal pipeline the worker drives: issue -> validate -> save, then deploy (install.py).

    material = await issue(spec, ctx)                 # IssuanceError subclasses on failure
    validate(material, spec, now=ctx.clock())         # ValidationError before any live file is touched
    save_material(ctx, job_id, material)              # so a failed deploy retries without re-issuing
    result = await install.deploy(material, spec, ctx, on_stage=record)  # RolledBack / RollbackFailed
    await install.recover(spec, ctx)                  # at start-up: undo a half-finished install
    remove_stale_staging(ctx)                         # at start-up: what a killed issuance left behind

Issuance and deployment are separate steps so the worker can retry them separately; deploying (install,
reload, verify, roll back) is :mod:`certloop.renewer.install`'s, which the worker calls itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from certloop.caches import Caches
from certloop.errors import ConfigError, TrustStoreError
from certloop.hostnames import covers
from certloop.renewer.context import RenewalContext
from certloop.renewer.errors import IssuanceError, ValidationError
from certloop.renewer.issuers import ISSUERS
from certloop.renewer.issuers.base import IssueContext
from certloop.renewer.material import IssuedMaterial, split_pem
from certloop.renewer.spec import CertificateSpec
from certloop.truststore import TrustStore
from certloop.verify import Verdict, verify_chain

__all__ = [
    "discard_material",
    "issue",
    "load_material",
    "remove_stale_staging",
    "save_material",
    "validate",
]

_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")  # fullmatch: `$` passes a newline


_STAGING_LOCK = ".in-use"
_STAGING_GRACE = 60.0  # seconds: a staging dir this young without its lock file is being set up


@contextlib.contextmanager
def _staging_dir(ctx: RenewalContext, spec: CertificateSpec) -> Iterator[Path]:
    """A fresh staging dir, flock'ed for as long as the issuance runs, removed afterwards.

    The lock is how :func:`remove_stale_staging` tells a live issuance (of this or another process on
    the same data dir) from the remains of a killed one: the kernel drops a dead process's flock.
    """
    staging_root = ctx.data_dir / "staging" / spec.id
    staging_root.mkdir(parents=True, exist_ok=True, mode=0o700)
    staging = staging_root / f"{ctx.clock().strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(4)}"
    staging.mkdir(mode=0o700)
    fd = os.open(staging / _STAGING_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # it may hold a plaintext private key
        os.close(fd)


def remove_stale_staging(ctx: RenewalContext) -> list[Path]:
    """Remove staging dirs no running issuance holds: a kill -9 during issuance leaves one behind, maybe
    with a plaintext ``key.pem``. Called at start-up; safe beside other processes on the same data dir.
    Returns the directories removed."""
    removed: list[Path] = []
    root = ctx.data_dir / "staging"
    if not root.is_dir():
        return removed
    for staging in sorted(p for per_cert in root.iterdir() if per_cert.is_dir() for p in per_cert.iterdir()):
        if not staging.is_dir() or _in_use(staging):
            continue
        shutil.rmtree(staging, ignore_errors=True)
        removed.append(staging)
    return removed


def _in_use(staging: Path) -> bool:
    try:
        fd = os.open(staging / _STAGING_LOCK, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:  # no lock yet: being set up right now, or left by an older version
        with contextlib.suppress(OSError):
            return time.time() - staging.stat().st_mtime < _STAGING_GRACE
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops our lock at once
    return False


async def issue(spec: CertificateSpec, ctx: RenewalContext) -> IssuedMaterial:
    """Run the configured issuer. It writes only into a fresh staging dir, removed afterwards."""
    with _staging_dir(ctx, spec) as staging:
        return await _issue_in(spec, ctx, staging)


async def _issue_in(spec: CertificateSpec, ctx: RenewalContext, staging: Path) -> IssuedMaterial:
    entry = ISSUERS[spec.issuer.type]
    home = ctx.data_dir / "issuers" / _dirname(spec.issuer.type) / spec.id
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    issue_ctx = IssueContext(
        staging=staging, home=home, keystore=ctx.keystore, clock=ctx.clock, timeout=ctx.issuance_timeout
    )
    try:
        material = await entry.issue(spec.issuer, spec.issue_request, issue_ctx)
    except ConfigError as exc:  # a secret (EAB key, token) that cannot be resolved now
        raise IssuanceError(f"issuer {spec.issuer.type}: {exc}") from exc
    if not isinstance(material, IssuedMaterial):  # an issuer bug, not a CA problem
        raise IssuanceError(f"issuer {spec.issuer.type} returned {type(material).__name__}")
    return material


def _dirname(issuer_type: str) -> str:
    return issuer_type.replace(".", "_")


def _load_key(pem: bytes) -> object:
    try:
        return serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ValidationError("the private key does not parse (PEM, unencrypted)") from exc


def _key_kind(cert: x509.Certificate) -> str:
    """The key in the notation of ``key_type`` (``ec256``, ``rsa2048``, ...)."""
    public = cert.public_key()
    if isinstance(public, ec.EllipticCurvePublicKey):
        return f"ec{public.curve.key_size}"
    if isinstance(public, rsa.RSAPublicKey):
        return f"rsa{public.key_size}"
    return type(public).__name__


def _spki(key_or_cert: object) -> bytes:
    public = key_or_cert.public_key()  # type: ignore[attr-defined]  # any key or certificate
    der: bytes = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return der


def validate(
    material: IssuedMaterial, spec: CertificateSpec, *, now: datetime, trust: TrustStore | None = None
) -> None:
    """Reject material that must not go live. Pure: reads nothing but ``spec.trust_bundle``.

    Checks: leaf and chain parse, the key matches the leaf, every configured domain is covered,
    the leaf is valid now with at least ``spec.min_lifetime`` left, each chain certificate signed
    the one before it, and - with ``trust`` or ``spec.trust_bundle`` - the chain verifies to it.
    """
    blocks = split_pem(material.cert_pem)
    if len(blocks) != 1:
        raise ValidationError(f"expected exactly one leaf certificate, found {len(blocks)}")
    try:
        leaf = x509.load_pem_x509_certificate(blocks[0])
        chain = [x509.load_pem_x509_certificate(b) for b in split_pem(material.chain_pem)]
    except ValueError as exc:
        raise ValidationError(f"a certificate does not parse: {exc}") from exc
    key = _load_key(material.key_pem)
    if _spki(key) != _spki(leaf):
        raise ValidationError("the private key does not match the certificate")
    kind = _key_kind(leaf)
    if kind != spec.key_type:
        raise ValidationError(f"the certificate's key is {kind}, but key_type is {spec.key_type}")
    sans = _dns_sans(leaf)
    missing = [d for d in spec.domains if not (d in sans if d.startswith("*.") else covers(leaf, d))]
    if missing:
        raise ValidationError(f"the certificate does not cover {', '.join(missing)}")
    nb, na = leaf.not_valid_before_utc, leaf.not_valid_after_utc
    if now < nb:
        raise ValidationError(f"the certificate is not valid yet (not_before {nb.isoformat()})")
    if na - now < spec.min_lifetime:
        raise ValidationError(
            f"the certificate expires {na.isoformat()}, less than min_lifetime {spec.min_lifetime} from now"
        )
    for child, parent in zip([leaf, *chain], chain, strict=False):
        try:
            child.verify_directly_issued_by(parent)
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise ValidationError(
                f"the chain does not build: {parent.subject.rfc4514_string()} did not issue "
                f"{child.subject.rfc4514_string()}"
            ) from exc
    caches = Caches()  # one chain, judged once: nothing worth keeping afterwards
    if trust is None and spec.trust_bundle is not None:
        try:
            trust = TrustStore.from_file(spec.trust_bundle, caches)
        except TrustStoreError as exc:
            raise ValidationError(f"cannot load trust_bundle {spec.trust_bundle}: {exc}") from exc
    if trust is not None:
        verdict = verify_chain([leaf, *chain], trust=trust, at=now, caches=caches)
        if verdict is not Verdict.OK:
            raise ValidationError(f"the chain does not verify to the configured trust: {verdict.value}")


def _dns_sans(cert: x509.Certificate) -> set[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return set()
    return {n.lower().rstrip(".") for n in ext.value.get_values_for_type(x509.DNSName)}


def _material_path(ctx: RenewalContext, job_id: str) -> Path:
    if not _JOB_ID.fullmatch(job_id):
        raise ValueError(f"job id {job_id!r} is not usable as a file name")
    return ctx.data_dir / "material" / f"{job_id}.sealed"


def save_material(ctx: RenewalContext, job_id: str | int, material: IssuedMaterial) -> Path:
    """Keep issued material (key included) encrypted in the data dir, bound to the job id."""
    job = str(job_id)
    doc = {
        "cert": material.cert_pem.decode("ascii"),
        "chain": material.chain_pem.decode("ascii"),
        "key": material.key_pem.decode("ascii"),
    }
    path = _material_path(ctx, job)
    ctx.keystore.write(path, json.dumps(doc).encode(), certificate_id=job, purpose="material")
    return path


def load_material(ctx: RenewalContext, job_id: str | int) -> IssuedMaterial | None:
    """The material saved for ``job_id``, or None if none was saved. KeystoreError if it cannot open."""
    job = str(job_id)
    path = _material_path(ctx, job)
    if not path.exists():
        return None
    doc = json.loads(ctx.keystore.read(path, certificate_id=job, purpose="material"))
    return IssuedMaterial(
        cert_pem=doc["cert"].encode("ascii"),
        chain_pem=doc["chain"].encode("ascii"),
        key_pem=doc["key"].encode("ascii"),
    )


def discard_material(ctx: RenewalContext, job_id: str | int) -> None:
    """Delete saved material once the job is finished."""
    _material_path(ctx, str(job_id)).unlink(missing_ok=True)
