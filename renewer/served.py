"""What each certificate's endpoints serve now, next to the leaf the renewer installed.

    served = ServedLeaves(lambda: config().status_page, verify_resolver(None), clock)   # the daemon's one
    looks = await served.look(specs, {"shop": fingerprint})  # {certificate id: (EndpointLook, ...)}
    judge(installed.fingerprint_sha256, looks["shop"])      # Judgement(state=Served.DRIFT, drift=True, ...)

Where a certificate is served: its ``verify.endpoints``, the endpoints `renewer.install` proves a new
leaf on after every renewal, looked up with the same resolver (`install.verify_resolver`) and probed
through the one probe path, `certloop.probe.probe_all` (the same SNI and verified-name rule,
``target_names``, and every resolved address on its own: two addresses may serve two leaves). A
certificate without verify endpoints has no "served now": the page says so rather than guess a port.

Why a cache refreshed on demand and not a background refresher (the trade-off, accepted): nobody
looking costs nothing, where a refresher would shake hands with every endpoint every interval for a
page nobody reads; the price is that the first look after a quiet spell waits for the probes (at most
``probe_wait``) or shows the previous answer. How it stays bounded:

- an answer younger than ``probe_interval`` is shown from memory, unless the installed leaf changed
  since it was probed (a renewal); an older one starts one probe of that endpoint, shared by every
  request that asks meanwhile (one task per endpoint, never two);
- at most ``probe_concurrency`` endpoints are probed at once; each connect and handshake is bounded by
  ``probe_timeout`` and the whole probe, name lookup included, by ``2 x probe_timeout + 1s``;
- a request waits at most ``probe_wait``. A probe not done by then keeps running in the background and
  the request shows the previous answer (its ``probed_at`` says how old) or ``probing``; the next
  request shows the result. A dead endpoint therefore never holds a page for more than ``probe_wait``;
- answers for endpoints no longer configured are forgotten at the next look: memory follows the config.

What must stay true: a failed probe is data (a :class:`FailureReason` and a detail text for people),
never an exception for the page; the verdict (:func:`judge`) is a pure function of the installed
fingerprint and what was seen.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from certloop.caches import Caches
from certloop.errors import FailureReason, ProbeError
from certloop.facts import CertFacts, facts
from certloop.probe import Probed, Resolver, probe_all
from certloop.renewer.config import StatusPageConfig
from certloop.renewer.spec import CertificateSpec, VerifyEndpoint

__all__ = ["EndpointLook", "Judgement", "Served", "ServedAddress", "ServedLeaves", "judge"]

_Key = tuple[str, int, str | None]  # host, port, server_name: what a probe depends on


@dataclass(frozen=True)
class ServedAddress:
    """One address of an endpoint, probed once: the leaf it presented, or why there is none.

    ``address`` is None when the failure belongs to the whole endpoint (its name did not resolve, its
    server name cannot be sent, the probe ran out of time before an address answered)."""

    address: str | None
    leaf: CertFacts | None = None
    reason: FailureReason | None = None
    detail: str | None = None


@dataclass(frozen=True)
class EndpointLook:
    """What one verify endpoint serves, as far as this request knows.

    ``probed_at`` None: no probe has answered yet (``addresses`` is empty). ``probing``: a newer probe is
    running that this request did not wait for."""

    endpoint: str
    server_name: str | None
    probed_at: datetime | None
    addresses: tuple[ServedAddress, ...]
    probing: bool


class Served(StrEnum):
    """The verdict on a certificate's endpoints, most pressing first."""

    DRIFT = "drift"                        # some address serves another leaf than the one installed
    PROBE_FAILED = "probe_failed"          # some address (or the endpoint) could not be probed
    PROBING = "probing"                    # an endpoint has not answered yet
    SERVES_INSTALLED = "serves_installed"  # every address serves the installed leaf
    NO_ENDPOINTS = "no_endpoints"          # verify.endpoints is empty: nothing to look at


@dataclass(frozen=True)
class Judgement:
    state: Served
    drift: bool
    failed: bool


def judge(installed_fingerprint: str | None, endpoints: Sequence[EndpointLook]) -> Judgement:
    """The verdict (pure). Drift and a failed probe are reported together when both hold; ``state`` is
    the more pressing. Nothing installed while a leaf is served is drift too."""
    if not endpoints:
        return Judgement(Served.NO_ENDPOINTS, drift=False, failed=False)
    seen = [a for ep in endpoints for a in ep.addresses]
    drift = any(a.leaf is not None and a.leaf.fingerprint_sha256 != installed_fingerprint for a in seen)
    failed = any(a.leaf is None for a in seen)
    if drift:
        state = Served.DRIFT
    elif failed:
        state = Served.PROBE_FAILED
    elif any(ep.probed_at is None for ep in endpoints):
        state = Served.PROBING
    else:
        state = Served.SERVES_INSTALLED
    return Judgement(state, drift, failed)


def _key(ep: VerifyEndpoint) -> _Key:
    return (ep.host, ep.port, ep.server_name)


def _address(probed: Probed, caches: Caches) -> ServedAddress:
    if probed.error is not None:
        return ServedAddress(probed.address, reason=probed.error.reason, detail=probed.error.detail)
    if not probed.chain:
        return ServedAddress(probed.address, reason=FailureReason.NO_CERTIFICATE, detail="no certificate presented")
    return ServedAddress(probed.address, leaf=facts(probed.chain[0], caches))


class ServedLeaves:
    """The daemon's cache of what verify endpoints serve (see the module docstring for its bounds).

    ``settings`` is read at every look, so a reload changes the interval, timeout, wait and concurrency
    (probes already running keep the settings they started with)."""

    def __init__(self, settings: Callable[[], StatusPageConfig], resolver: Resolver,
                 clock: Callable[[], datetime]) -> None:
        self._settings = settings
        self._resolver = resolver
        self._clock = clock
        # monotonic time answered, the answer, the installed fingerprints it was probed for
        self._answers: dict[_Key, tuple[float, EndpointLook, frozenset[str | None]]] = {}
        self._running: dict[_Key, asyncio.Task[EndpointLook]] = {}
        self._limit: tuple[int, asyncio.Semaphore] | None = None
        self.probes_started = 0  # tests and profiles look at it
        self._caches = Caches()  # the same chains come back at every probe: decoded and described once

    def __len__(self) -> int:
        """How many endpoints' answers are remembered (bounded by the configured endpoints)."""
        return len(self._answers)

    async def look(self, specs: Iterable[CertificateSpec],
                   installed: Mapping[str, str | None]) -> dict[str, tuple[EndpointLook, ...]]:
        """What each certificate's verify endpoints serve, waiting at most ``probe_wait`` for probes.

        ``installed``: each certificate's installed leaf fingerprint. An answer given while another leaf
        was installed is stale whatever its age: right after a renewal the page shows the new leaf served
        (or real drift), not the answer from before the install."""
        cfg = self._settings()
        endpoints = {spec.id: spec.verify.endpoints for spec in specs}
        wanted: dict[_Key, tuple[VerifyEndpoint, frozenset[str | None]]] = {}
        for cert_id, eps in endpoints.items():
            for ep in eps:
                _, seen = wanted.get(_key(ep), (ep, frozenset()))
                wanted[_key(ep)] = (ep, seen | {installed.get(cert_id)})
        for stale in self._answers.keys() - wanted.keys():
            del self._answers[stale]
        now = time.monotonic()
        interval = cfg.probe_interval.total_seconds()
        waiting: list[asyncio.Task[EndpointLook]] = []
        for key, (ep, context) in wanted.items():
            answered = self._answers.get(key)
            if answered is None or now - answered[0] >= interval or answered[2] != context:
                task = self._running.get(key)
                if task is None:
                    task = self._start(key, ep, cfg, context)
                waiting.append(task)
        if waiting:
            await asyncio.wait(waiting, timeout=cfg.probe_wait.total_seconds())
        return {cert_id: tuple(self._known(ep) for ep in eps) for cert_id, eps in endpoints.items()}

    def _known(self, ep: VerifyEndpoint) -> EndpointLook:
        key = _key(ep)
        task = self._running.get(key)
        if task is not None and task.done():
            return task.result()  # a bug in the probe surfaces here (500), not as a silent blank
        answered = self._answers.get(key)
        probing = task is not None
        if answered is None:
            return EndpointLook(ep.endpoint, ep.server_name, None, (), probing=probing)
        look = answered[1]
        return look if not probing else EndpointLook(look.endpoint, look.server_name, look.probed_at,
                                                     look.addresses, probing=True)

    def _semaphore(self, size: int) -> asyncio.Semaphore:
        if self._limit is None or self._limit[0] != size:
            self._limit = (size, asyncio.Semaphore(size))
        return self._limit[1]

    def _start(self, key: _Key, ep: VerifyEndpoint, cfg: StatusPageConfig,
               context: frozenset[str | None]) -> asyncio.Task[EndpointLook]:
        self.probes_started += 1
        task = asyncio.create_task(self._probe(key, ep, cfg, self._semaphore(cfg.probe_concurrency)))
        self._running[key] = task
        task.add_done_callback(lambda done: self._finished(key, done, context))
        return task

    def _finished(self, key: _Key, task: asyncio.Task[EndpointLook], context: frozenset[str | None]) -> None:
        if self._running.get(key) is task:
            del self._running[key]
        if not task.cancelled() and task.exception() is None:
            self._answers[key] = (time.monotonic(), task.result(), context)

    async def _probe(self, key: _Key, ep: VerifyEndpoint, cfg: StatusPageConfig,
                     limit: asyncio.Semaphore) -> EndpointLook:
        timeout = cfg.probe_timeout.total_seconds()
        whole = 2 * timeout + 1
        async with limit:
            try:
                probed = await asyncio.wait_for(
                    probe_all(ep.host, ep.port, resolver=self._resolver, caches=self._caches,
                              server_name=ep.server_name, connect_timeout=timeout, handshake_timeout=timeout), whole)
                addresses = tuple(_address(p, self._caches) for p in probed)
            except ProbeError as exc:  # no address to blame: the name, the server name
                addresses = (ServedAddress(None, reason=exc.reason, detail=exc.detail),)
            except TimeoutError:
                addresses = (ServedAddress(None, reason=FailureReason.TIMEOUT,
                                           detail=f"probe timed out after {whole:g}s"),)
        return EndpointLook(ep.endpoint, ep.server_name, self._clock(), addresses, probing=False)

    async def close(self) -> None:
        """Cancel the probes still running (shutdown)."""
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
