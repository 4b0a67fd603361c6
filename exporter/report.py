"""What one probe saw, as frozen data, and its rendering into exposition text fragments (pure).

    caches = ExporterCaches()            # the engine's, kept for the life of the process
    chain = assess(certs, trust=trust, at=now, hostname="shop.example", caches=caches)  # verdict, expiry, roles
    obs = Observation("endpoint", "shop.example:443", "127.0.0.1", success=True, duration=0.004, chain=chain)
    report = TargetReport("endpoint", "shop.example:443", (("certificate", "shop"),), (obs,))
    fragments = render(report, caches)   # {metric name: sample lines}, merged by the collector

A :class:`ChainReport` knows until when its verdict holds (``valid_until``, the next validity boundary
of the chain or the trust store), so an unchanged file is re-verified only when time crosses one.

The report types are named tuples, not frozen dataclasses: a first sweep builds a few per file, tens of
thousands in a row (why, and what must stay true: docs/architecture.md, "Value types").
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

from cryptography import x509

from certloop.bounded import remember
from certloop.caches import Caches
from certloop.exporter import metrics as m
from certloop.facts import CertFacts, Role, chain_roles, facts
from certloop.metricspec import MetricSpec
from certloop.truststore import TrustStore
from certloop.verify import Verdict, earliest_expiry, verify_chain

__all__ = ["ChainReport", "ExporterCaches", "Observation", "TargetReport", "assess", "render"]


class ExporterCaches(Caches):
    """The core's :class:`certloop.caches.Caches` plus the rendered text the exporter reuses.

    The engine makes one for the life of the process (config reloads keep it) and hands it to every
    source and to ``/probe`` through their context; a test makes a fresh one.
    """

    __slots__ = ("chain_lines", "judged", "probe_bodies", "tails")

    def __init__(self) -> None:
        super().__init__()
        # endpoints: a presented chain's judgement and hostname match, by (chain DER, trust, verified name),
        # with the instant it was made (it holds from then until the report's valid_until)
        self.judged: dict[tuple[object, ...], tuple[ChainReport, bool | None, datetime]] = {}
        # /probe: a whole one-address answer, split around its duration, by everything else it shows
        self.probe_bodies: dict[tuple[object, ...], tuple[bytes, bytes]] = {}
        # a certificate's per-position lines without the target prefix, by (fingerprint, position, role)
        self.tails: dict[tuple[str, int, Role], tuple[tuple[str, str], ...]] = {}
        # /probe: a chain's whole lines by (prefix, fingerprints, verdict)
        self.chain_lines: dict[tuple[str, tuple[str, ...], Verdict], tuple[tuple[str, str], ...]] = {}


class ChainReport(NamedTuple):
    """A presented chain (leaf first) with its facts, roles, verdict and earliest expiry."""

    facts: tuple[CertFacts, ...]
    roles: tuple[Role, ...]
    verdict: Verdict
    expiry: datetime | None
    valid_until: datetime | None  # the verdict may change at this instant; None: never again

    @property
    def leaf_fingerprint(self) -> str:
        return self.facts[0].fingerprint_sha256


def assess(
    chain: Sequence[x509.Certificate], *, trust: TrustStore, at: datetime, hostname: str | None = None,
    caches: Caches,
) -> ChainReport:
    """Facts, roles and the verdict of ``chain`` at ``at`` (all remembered in ``caches``)."""
    found = []
    for cert in chain:  # a loop: a comprehension naming caches costs a closure cell (certloop.caches)
        found.append(facts(cert, caches))
    all_facts = tuple(found)
    roles = chain_roles(chain, caches)
    verdict = verify_chain(chain, trust=trust, at=at, hostname=hostname, caches=caches)
    bounds = sorted({d for f in all_facts for d in (f.not_before, f.not_after)})
    later = [b[bisect.bisect_right(b, at)] for b in (bounds, trust.boundaries) if bisect.bisect_right(b, at) < len(b)]
    return ChainReport(all_facts, roles, verdict, earliest_expiry(all_facts, roles), min(later) if later else None)


class Observation(NamedTuple):
    """One probed address of an endpoint, or one file. ``reason`` is set exactly when not ``success``."""

    source: str  # "endpoint" | "file"
    target: str
    address: str
    success: bool
    duration: float
    reason: str | None = None
    chain: ChainReport | None = None
    hostname_match: bool | None = None  # endpoints only
    tls_version: str | None = None
    cipher: str | None = None
    expect_file: str | None = None
    matches_file: bool | None = None  # None: expect_file unset or unreadable


class TargetReport(NamedTuple):
    """Everything about one target: its static labels and one observation per address (one for files)."""

    source: str
    target: str
    labels: tuple[tuple[str, str], ...]
    observations: tuple[Observation, ...]
    consistent: bool | None = None  # endpoints: every address served the same leaf

    @property
    def success(self) -> bool:
        return bool(self.observations) and all(o.success for o in self.observations)


def consistency(observations: Sequence[Observation]) -> bool | None:
    """Do all successful addresses serve the same leaf? None when none succeeded."""
    leaves = {o.chain.leaf_fingerprint for o in observations if o.chain is not None}
    return len(leaves) == 1 if leaves else None


_TAILS = 50_000  # certificates' lines remembered (three per certificate and position)
_CHAIN_LINES = 10_000  # /probe: chains' lines remembered


def _bool(value: bool) -> float:
    return 1.0 if value else 0.0


def _tail(spec: MetricSpec, extra: Sequence[tuple[str, str]], value: float) -> tuple[str, str]:
    """(name, what follows the prefix): ``m.sample(name, prefix, extra, value)`` is name{prefix + tail."""
    line = m.sample(spec.name, "\0", extra, value)  # a placeholder prefix, split off below
    return spec.name, line[line.index("\0") + 1 :]


def _cert_tails(
    f: CertFacts, position: int, role: Role, tails: dict[tuple[str, int, Role], tuple[tuple[str, str], ...]]
) -> tuple[tuple[str, str], ...]:
    """A certificate's per-position lines without the target prefix: shared by every file naming it.

    Written out directly (a leaf is rendered once per file, so this is on the cold-start path); the
    text is exactly what :func:`exporter.metrics.sample` writes, which a test checks.
    """
    key = (f.fingerprint_sha256, position, role)
    found = tails.get(key)
    if found is None:
        esc, num = m.escape, m.format_value
        pos = f',position="{position}",role="{esc(role.value)}"'
        found = (
            (m.CERT_NOT_BEFORE.name, f"{pos}}} {num(f.not_before.timestamp())}\n"),
            (m.CERT_NOT_AFTER.name, f"{pos}}} {num(f.not_after.timestamp())}\n"),
            (m.CERT_WEAK.name, f"{pos}}} {num(_bool(f.weak_crypto))}\n"),
            (m.CERT_INFO.name, (
                f'{pos},subject="{esc(f.subject)}",issuer="{esc(f.issuer)}",serial="{esc(f.serial)}",'
                f'dns_names="{esc(",".join(f.names))}",fingerprint_sha256="{esc(f.fingerprint_sha256)}",'
                f'key_type="{esc(f.key_type)}",key_bits="{f.key_bits}",'
                f'signature_algorithm="{esc(f.signature_algorithm)}"}} 1\n'
            )),
        )
        found = remember(tails, key, found, _TAILS)
    return found


_VERDICT_TAILS: dict[Verdict, tuple[tuple[str, str], ...]] = {
    verdict: (
        _tail(m.VERIFY_OK, (), _bool(verdict is Verdict.OK)),
        _tail(m.VERIFY_VERDICT, (("verdict", verdict.value),), 1),
    )
    for verdict in Verdict
}  # a constant table: nine verdicts, two lines each


def _chain_lines(
    prefix: str, chain: ChainReport, caches: ExporterCaches, reuse: bool
) -> tuple[tuple[str, str], ...]:
    """(metric name, sample line) pairs that depend only on the chain and the labels.

    With ``reuse`` (``/probe``), re-probing an endpoint that serves the same chain renders these
    once: facts, roles and expiry follow from the certificates, so fingerprints plus the verdict
    are the key. The inventory keeps its rendered text anyway, so it does not remember twice. Either
    way each certificate's lines are rendered once without the prefix (:func:`_cert_tails`).
    """
    key = (prefix, tuple(f.fingerprint_sha256 for f in chain.facts), chain.verdict)
    found = caches.chain_lines.get(key) if reuse else None
    if found is not None:
        return found
    tails = list(_VERDICT_TAILS[chain.verdict])
    if chain.expiry is not None:  # as _tail(m.CHAIN_EXPIRY, (), value) writes it
        tails.append((m.CHAIN_EXPIRY.name, f"}} {m.format_value(chain.expiry.timestamp())}\n"))
    cert_tails = caches.tails
    for position, (f, role) in enumerate(zip(chain.facts, chain.roles, strict=True)):
        tails.extend(_cert_tails(f, position, role, cert_tails))
    if prefix:
        lines = tuple((name, f"{name}{{{prefix}{tail}") for name, tail in tails)
    else:  # an empty prefix: "name{extra} v" or "name v", exactly as m.sample writes them
        lines = tuple((name, f"{name}{{{tail[1:]}" if tail[0] == "," else f"{name}{tail[1:]}") for name, tail in tails)
    return remember(caches.chain_lines, key, lines, _CHAIN_LINES) if reuse else lines


def render(report: TargetReport, caches: ExporterCaches, *, reuse: bool = False) -> dict[str, bytes]:
    """Sample lines per metric name for one target (the families are merged by the caller).

    ``reuse=True`` reuses the chain's rendered lines from earlier calls (the ``/probe`` hot path).
    """
    out: dict[str, list[str]] = {}

    def add(spec: MetricSpec, prefix: str, extra: Sequence[tuple[str, str]], value: float) -> None:
        out.setdefault(spec.name, []).append(m.sample(spec.name, prefix, extra, value))

    static = m.label_text(report.labels)
    for obs in report.observations:
        esc = m.escape  # as m.label_text writes these three
        base = f'source="{esc(obs.source)}",target="{esc(obs.target)}",address="{esc(obs.address)}"'
        prefix = f"{base},{static}" if static else base
        add(m.PROBE_SUCCESS, prefix, (), _bool(obs.success))
        add(m.PROBE_DURATION, prefix, (), obs.duration)
        if obs.reason is not None:
            add(m.PROBE_FAILURE, prefix, (("reason", obs.reason),), 1)
        if obs.tls_version is not None:
            add(m.TLS_VERSION, prefix, (("version", obs.tls_version), ("cipher", obs.cipher or "")), 1)
        if obs.expect_file is not None and obs.matches_file is not None:
            add(m.MATCHES_FILE, prefix, (("expect_file", obs.expect_file),), _bool(obs.matches_file))
        if obs.hostname_match is not None:
            add(m.HOSTNAME_MATCH, prefix, (), _bool(obs.hostname_match))
        if obs.chain is not None:
            for name, line in _chain_lines(prefix, obs.chain, caches, reuse):
                out.setdefault(name, []).append(line)
    if report.consistent is not None:
        base = m.label_text((("source", report.source), ("target", report.target)))
        add(m.CONSISTENT, f"{base},{static}" if static else base, (), _bool(report.consistent))
    return {name: "".join(lines).encode() for name, lines in out.items()}
