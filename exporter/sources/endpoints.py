"""TLS endpoints: every address probed through `certloop.probe`, each presented chain judged offline.

The names sent and verified, the addresses and the per-address failures are `certloop.probe`'s rules
(shared with ``certloop check`` and the renewer); what is here is the judgement into observations.
:func:`probe_endpoint` is shared by the inventory sweep (:class:`EndpointSource`) and ``/probe``.
It never raises for a peer's behaviour: DNS, connect, timeout and handshake failures become an
:class:`~exporter.report.Observation` with ``success=False`` and a reason from
:class:`certloop.errors.FailureReason`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Hashable
from dataclasses import dataclass

from certloop.bounded import VERDICTS, remember
from certloop.errors import FailureReason, ProbeError
from certloop.exporter.config import DEFAULT_MODULE, ModuleConfig, split_target
from certloop.exporter.report import Observation, TargetReport, assess, consistency, render
from certloop.exporter.sources.base import Context, Put
from certloop.exporter.sources.files import leaf_fingerprint
from certloop.exporter.sources.paths import StatKey
from certloop.hostnames import covers
from certloop.probe import Names, Probed, addresses_of, probe_addresses, target_names
from certloop.truststore import TrustStore

__all__ = ["EndpointSource", "EndpointSpec", "probe_endpoint", "spec_for"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EndpointSpec:
    """Everything needed to probe one ``host:port``."""

    target: str
    host: str
    port: int
    server_name: str | None  # the name verified (and sent, unless an IP): certloop.probe.target_names
    starttls: str | None
    connect_timeout: float
    handshake_timeout: float
    ip_protocol: str
    trust: TrustStore
    labels: tuple[tuple[str, str], ...] = ()
    expect_file: str | None = None

    @property
    def names(self) -> Names:
        """The SNI and verified name of this target (:func:`certloop.probe.target_names`)."""
        return target_names(self.host, self.server_name)


def spec_for(
    ctx: Context,
    target: str,
    module: ModuleConfig,
    *,
    server_name: str | None = None,
    starttls: str | None = None,
    labels: tuple[tuple[str, str], ...] = (),
    expect_file: str | None = None,
) -> EndpointSpec:
    """Combine a target with its module and the global defaults. Raises ValueError for a bad target."""
    host, port = split_target(target)
    g = ctx.config.global_
    name = target_names(host, server_name or module.server_name).verified
    return EndpointSpec(
        target=target,
        host=host,
        port=port,
        server_name=name,
        starttls=starttls or module.starttls,
        connect_timeout=(module.connect_timeout or g.connect_timeout).total_seconds(),
        handshake_timeout=(module.handshake_timeout or g.handshake_timeout).total_seconds(),
        ip_protocol=module.ip_protocol,
        trust=ctx.trust_for(module.ca_file),
        labels=labels,
        expect_file=expect_file,
    )


async def probe_endpoint(
    spec: EndpointSpec,
    ctx: Context,
    *,
    expected: dict[str, tuple[StatKey, str | None]] | None = None,
) -> TargetReport:
    """Probe every address of ``spec`` and judge each presented chain at ``ctx.clock()``."""
    started = time.perf_counter()
    try:
        addresses = await addresses_of(spec.host, ctx.resolver, spec.ip_protocol, spec.names)
    except ProbeError as exc:
        obs = Observation("endpoint", spec.target, "", False, time.perf_counter() - started, reason=str(exc.reason))
        ctx.counter.add("endpoint", False)
        return TargetReport("endpoint", spec.target, spec.labels, (obs,))
    want: str | None = None
    if spec.expect_file is not None:
        want = leaf_fingerprint(spec.expect_file, expected if expected is not None else {},
                                ctx.config.global_.max_file_bytes, ctx.caches)
    probed = await probe_addresses(addresses, spec.port, spec.names, ctx.caches, starttls=spec.starttls,
                                   connect_timeout=spec.connect_timeout, handshake_timeout=spec.handshake_timeout)
    observations = tuple(_observe(spec, ctx, p, want, started) for p in probed)
    return TargetReport("endpoint", spec.target, spec.labels, observations, consistency(observations))


def _observe(spec: EndpointSpec, ctx: Context, probed: Probed, want: str | None, started: float) -> Observation:
    """One probed address as an observation: the chain judged at ``ctx.clock()`` for the verified name."""
    if probed.error is not None or probed.presented is None:
        reason = probed.error.reason if probed.error is not None else FailureReason.HANDSHAKE
        ctx.counter.add("endpoint", False)
        return Observation("endpoint", spec.target, probed.address, False, probed.finished - started,
                           reason=str(reason))
    presented = probed.presented
    verified = probed.names.verified
    now = ctx.clock()
    # The judgement of a chain holds from when it was made until its valid_until (the next instant at
    # which a certificate or trust anchor of it starts or stops being valid): an endpoint re-probed
    # while it serves the same chain is judged by one dictionary hit.
    key = (presented.chain_der, spec.trust.token, verified)
    judged = ctx.caches.judged.get(key)
    if judged is not None and judged[2] <= now and (judged[0].valid_until is None or now < judged[0].valid_until):
        chain, match = judged[0], judged[1]
    else:
        try:
            chain = assess(probed.chain, trust=spec.trust, at=now, hostname=verified, caches=ctx.caches)
        except ValueError:  # a field that decodes lazily (names, extensions) and does not
            log.debug("undecodable certificate from %s at %s", spec.target, probed.address, exc_info=True)
            ctx.counter.add("endpoint", False)
            return Observation("endpoint", spec.target, probed.address, False, probed.finished - started,
                               reason=FailureReason.HANDSHAKE.value)
        match = covers(chain.facts[0], verified) if verified else None
        remember(ctx.caches.judged, key, (chain, match, now), VERDICTS)
    ctx.counter.add("endpoint", True)
    return Observation(
        "endpoint", spec.target, probed.address, True, probed.finished - started,
        chain=chain,
        hostname_match=match,
        tls_version=presented.tls_version,
        cipher=presented.cipher,
        expect_file=spec.expect_file,
        matches_file=None if want is None else chain.leaf_fingerprint == want,
    )


class EndpointSource:
    """The ``endpoints:`` groups of the config, probed with bounded concurrency."""

    kind = "endpoints"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.interval = ctx.config.global_.interval.total_seconds()
        self.concurrency = ctx.config.global_.concurrency
        self._expected: dict[str, tuple[StatKey, str | None]] = {}
        specs: dict[str, EndpointSpec] = {}
        for group in ctx.config.endpoints:
            module = ctx.config.module(group.module or DEFAULT_MODULE)
            labels = tuple(sorted(group.labels.items()))
            for target in group.targets:
                if target not in specs:  # listed twice: the first group's settings and labels win
                    specs[target] = spec_for(ctx, target, module, server_name=group.server_name,
                                             starttls=group.starttls, labels=labels, expect_file=group.expect_file)
        self.specs = tuple(specs.values())

    async def close(self) -> None:
        """Nothing to keep: endpoints are probed again after a restart (results are minutes old at most)."""

    async def sweep(self, put: Put) -> set[Hashable]:
        pending = iter(self.specs)

        async def worker() -> None:
            for spec in pending:  # shared iterator: each spec is taken by exactly one worker
                try:
                    report = await probe_endpoint(spec, self.ctx, expected=self._expected)
                    put(spec.target, render(report, self.ctx.caches))
                except Exception:  # a bug for one target must not blind the exporter to all others
                    log.exception("probe of %s failed unexpectedly; keeping its last result", spec.target)

        workers = min(self.concurrency, len(self.specs))
        if workers:
            async with asyncio.TaskGroup() as tg:
                for _ in range(workers):
                    tg.create_task(worker())
        return {spec.target for spec in self.specs}
