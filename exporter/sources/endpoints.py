"""TLS endpoints: resolve every address of a name, fetch each presented chain, judge it offline.

:func:`probe_endpoint` is shared by the inventory sweep (:class:`EndpointSource`) and ``/probe``.
It never raises for a peer's behaviour: DNS, connect, timeout and handshake failures become an
:class:`~exporter.report.Observation` with ``success=False`` and a reason from
:class:`certloop.errors.FailureReason`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from certloop.errors import FailureReason, ProbeError
from certloop.hostnames import covers, parse_ip
from certloop.tls import Presented, fetch
from certloop.truststore import TrustStore
from certloop.x509 import load_der_chain
from exporter.config import DEFAULT_MODULE, ModuleConfig, split_target
from exporter.report import Observation, TargetReport, assess, consistency, render
from exporter.sources.base import Context, Put
from exporter.sources.files import leaf_fingerprint
from exporter.sources.paths import StatKey

__all__ = ["EndpointSource", "EndpointSpec", "probe_endpoint", "spec_for"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EndpointSpec:
    """Everything needed to probe one ``host:port``."""

    target: str
    host: str
    port: int
    server_name: str | None  # SNI and the name verified; None for an IP target without server_name
    starttls: str | None
    connect_timeout: float
    handshake_timeout: float
    ip_protocol: str
    trust: TrustStore
    labels: tuple[tuple[str, str], ...] = ()
    expect_file: str | None = None


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
    name = server_name or module.server_name or (None if parse_ip(host) is not None else host)
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


def _family_ok(address: str, ip_protocol: str) -> bool:
    return ip_protocol == "both" or (":" in address) == (ip_protocol == "ip6")


async def _addresses(spec: EndpointSpec, ctx: Context) -> Sequence[str]:
    literal = parse_ip(spec.host)
    if literal is not None:
        return [str(literal)]
    found = [a for a in await ctx.resolver.resolve(spec.host) if _family_ok(a, spec.ip_protocol)]
    if not found:
        raise ProbeError(FailureReason.DNS, f"no {spec.ip_protocol} address for {spec.host}")
    return found


async def probe_endpoint(
    spec: EndpointSpec,
    ctx: Context,
    *,
    expected: dict[str, tuple[StatKey, str | None]] | None = None,
) -> TargetReport:
    """Probe every address of ``spec`` and judge each presented chain at ``ctx.clock()``."""
    started = time.perf_counter()
    try:
        addresses = await _addresses(spec, ctx)
    except ProbeError as exc:
        obs = Observation("endpoint", spec.target, "", False, time.perf_counter() - started, reason=str(exc.reason))
        ctx.counter.add("endpoint", False)
        return TargetReport("endpoint", spec.target, spec.labels, (obs,))
    want: str | None = None
    if spec.expect_file is not None:
        want = leaf_fingerprint(spec.expect_file, expected if expected is not None else {},
                                ctx.config.global_.max_file_bytes)
    if len(addresses) == 1:
        observations: tuple[Observation, ...] = (await _probe_address(spec, ctx, addresses[0], want, started),)
    else:
        observations = tuple(await asyncio.gather(*(_probe_address(spec, ctx, a, want, started) for a in addresses)))
    return TargetReport("endpoint", spec.target, spec.labels, observations, consistency(observations))


async def _probe_address(
    spec: EndpointSpec, ctx: Context, address: str, want: str | None, started: float
) -> Observation:
    try:
        presented: Presented = await fetch(
            address, spec.port, server_name=spec.server_name, starttls=spec.starttls,
            connect_timeout=spec.connect_timeout, handshake_timeout=spec.handshake_timeout,
        )
        chain_certs = load_der_chain(presented.chain_der)
        # malformed fields surface lazily (names, extensions) as ValueError: data, not a bug
        chain = assess(chain_certs, trust=spec.trust, at=ctx.clock(), hostname=spec.server_name)
    except ProbeError as exc:
        ctx.counter.add("endpoint", False)
        return Observation("endpoint", spec.target, address, False, time.perf_counter() - started,
                           reason=str(exc.reason))
    except ValueError:  # a presented certificate that does not decode
        log.debug("undecodable certificate from %s at %s", spec.target, address, exc_info=True)
        ctx.counter.add("endpoint", False)
        return Observation("endpoint", spec.target, address, False, time.perf_counter() - started,
                           reason=FailureReason.HANDSHAKE.value)
    ctx.counter.add("endpoint", True)
    return Observation(
        "endpoint", spec.target, address, True, time.perf_counter() - started,
        chain=chain,
        hostname_match=covers(chain_certs[0], spec.server_name) if spec.server_name else None,
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
                    put(spec.target, render(await probe_endpoint(spec, self.ctx, expected=self._expected)))
                except Exception:  # a bug for one target must not blind the exporter to all others
                    log.exception("probe of %s failed unexpectedly; keeping its last result", spec.target)

        workers = min(self.concurrency, len(self.specs))
        if workers:
            async with asyncio.TaskGroup() as tg:
                for _ in range(workers):
                    tg.create_task(worker())
        return {spec.target for spec in self.specs}
