"""certloop.exporter.report renders each certificate's lines once and reuses them: the text stays byte-identical."""

from __future__ import annotations

from datetime import UTC, datetime

from certloop.exporter import metrics as m
from certloop.exporter.report import ExporterCaches, Observation, TargetReport, assess, render
from certloop.metricspec import MetricSpec
from certloop.truststore import TrustStore
from certloop.verify import Verdict
from tests.support.pki import Pki

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def _reference_render(report: TargetReport) -> dict[str, bytes]:
    """The exposition of one target written line by line with ``metrics.sample`` (the plain way)."""
    out: dict[str, list[str]] = {}

    def add(spec: MetricSpec, prefix: str, extra: tuple[tuple[str, str], ...], value: float) -> None:
        out.setdefault(spec.name, []).append(m.sample(spec.name, prefix, extra, value))

    static = m.label_text(report.labels)
    for obs in report.observations:
        base = m.label_text((("source", obs.source), ("target", obs.target), ("address", obs.address)))
        prefix = f"{base},{static}" if static else base
        add(m.PROBE_SUCCESS, prefix, (), 1.0 if obs.success else 0.0)
        add(m.PROBE_DURATION, prefix, (), obs.duration)
        chain = obs.chain
        assert chain is not None
        add(m.VERIFY_OK, prefix, (), 1.0 if chain.verdict is Verdict.OK else 0.0)
        add(m.VERIFY_VERDICT, prefix, (("verdict", chain.verdict.value),), 1)
        if chain.expiry is not None:
            add(m.CHAIN_EXPIRY, prefix, (), chain.expiry.timestamp())
        for position, (f, role) in enumerate(zip(chain.facts, chain.roles, strict=True)):
            pos = (("position", str(position)), ("role", role.value))
            add(m.CERT_NOT_BEFORE, prefix, pos, f.not_before.timestamp())
            add(m.CERT_NOT_AFTER, prefix, pos, f.not_after.timestamp())
            add(m.CERT_WEAK, prefix, pos, 1.0 if f.weak_crypto else 0.0)
            add(m.CERT_INFO, prefix, (
                *pos, ("subject", f.subject), ("issuer", f.issuer), ("serial", f.serial),
                ("dns_names", ",".join(f.names)), ("fingerprint_sha256", f.fingerprint_sha256),
                ("key_type", f.key_type), ("key_bits", str(f.key_bits)),
                ("signature_algorithm", f.signature_algorithm)), 1)
    return {name: "".join(lines).encode() for name, lines in out.items()}


def test_render_equals_line_by_line_samples() -> None:
    """Per-certificate remembered lines give byte-identical exposition, escaping included, for any target."""
    pki = Pki(now=NOW, name='odd "quoted" \\ name')
    trust = TrustStore([pki.root])
    caches = ExporterCaches()
    chains = [
        [pki.leaf(["shop.example", "127.0.0.1"]).cert, pki.intermediate.cert, pki.root],
        [pki.leaf(["other.example"]).cert, pki.intermediate.cert],
        [pki.self_signed(["self.example"]).cert],
    ]
    for chain in chains:
        for target, labels in (("/etc/ssl/a.pem", ()), ('/odd/"x"\\.pem', (("team", "web"), ("env", 'a"b')))):
            for reuse in (False, True, True):  # the last one reuses what the one before remembered
                obs = Observation("file", target, "", True, 0.00123,
                                  chain=assess(chain, trust=trust, at=NOW, caches=caches))
                report = TargetReport("file", target, labels, (obs,))
                assert render(report, caches, reuse=reuse) == _reference_render(report)
    assert len(caches.chain_lines) == 6  # three chains, two targets each
