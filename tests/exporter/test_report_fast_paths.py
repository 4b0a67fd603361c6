"""certloop.exporter.report renders each certificate's lines once and reuses them: the text stays byte-identical."""

from __future__ import annotations

import re
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


def test_a_probe_answer_kept_around_its_duration_equals_a_fresh_render() -> None:
    """/probe's kept answer text (certloop.exporter.probe.probe_body) is byte-identical to rendering the
    report afresh, for any duration and whatever else varies, labels that look like a sample included;
    and a change in anything shown other than the duration gives a different answer, not a stale one."""
    from certloop.exporter.probe import probe_body, render_probe

    pki = Pki(now=NOW)
    trust = TrustStore([pki.root])
    caches = ExporterCaches()
    chains = [[pki.leaf(["shop.example"]).cert, pki.intermediate.cert], [pki.self_signed(["self.example"]).cert]]
    seen: set[bytes] = set()
    for chain in chains:
        judged = assess(chain, trust=trust, at=NOW, hostname="shop.example", caches=caches)
        for labels in ((), (("team", "} 0.125\n"), ("env", 'a"b'))):
            for tls in (("TLS 1.3", "TLS_AES_128_GCM_SHA256"), ("TLS 1.2", "ECDHE-ECDSA-AES256-GCM-SHA384")):
                for hostname_match in (True, False):
                    for duration in (0.125, 0.0023, 1.0, 7.5e-05, 0.125):
                        obs = Observation("endpoint", "127.0.0.1:443", "127.0.0.1", True, duration, chain=judged,
                                          hostname_match=hostname_match, tls_version=tls[0], cipher=tls[1])
                        report = TargetReport("endpoint", "127.0.0.1:443", labels, (obs,), True)
                        fresh = render_probe(render(report, ExporterCaches(), reuse=True))
                        assert probe_body(report, caches) == fresh
                        seen.add(re.sub(rb"(certloop_probe_duration_seconds\{[^\n]*\} )[^\n]*", rb"\1D", fresh))
    assert len(seen) == 2 * 2 * 2 * 2  # every combination other than the duration answered differently
    assert 0 < len(caches.probe_bodies) <= len(seen)
