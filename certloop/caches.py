"""Everything the core remembers between calls, in one object that its owner makes and passes down.

    caches = Caches()                                            # one per daemon or ``certloop check`` run
    chain = load_der_chain(presented.chain_der, caches)          # certloop.x509
    verdict = verify_chain(chain, trust=trust, at=now, caches=caches)   # certloop.verify

Parsing, describing and verifying a certificate are pure functions of their inputs, and the same inputs come
back all the time: an endpoint re-probed every minute serves the same chain, an intermediate sits in every
fullchain file. What they remember lives here, in plain dictionaries kept bounded by
:func:`certloop.bounded.remember`, and not in module globals: the exporter's engine, ``certloop check`` and
the renewer each make one, a test makes a fresh one, and nothing resets state by name. Every entry is keyed by
exactly what its answer depends on (see each module), so sharing one object between threads and config reloads
changes costs, never answers. A forked file worker inherits its parent's object, copy-on-write.

Each module declares what it needs as a protocol (:class:`certloop.facts.FactsCaches`,
:class:`certloop.x509.ParseCaches`, :class:`certloop.truststore.TrustCaches`,
:class:`certloop.verify.VerifyCaches`); this class is all of them.

What must stay true, because ``/probe`` and a first sweep of many files run through here per
certificate: a hit costs what a module-global dictionary hit cost. So the maps are exact ``dict``
objects (a subclass loses the interpreter's fast path for ``dict.get``), a hot function reads a map
from its slot once per call, and loops that pass ``caches`` along are written as loops: a
comprehension naming it makes it a closure cell, allocated on every call of the enclosing function.
"""

from __future__ import annotations

from itertools import count

from cryptography import x509

from certloop.der import TbsFields
from certloop.facts import CertFacts
from certloop.truststore import TrustStore
from certloop.verify import UpperChain, Verdict
from certloop.x509 import Parsed

__all__ = ["Caches"]


class Caches:
    """The maps of :mod:`certloop.facts`, :mod:`certloop.x509`, :mod:`certloop.truststore` and
    :mod:`certloop.verify`, each bounded (:mod:`certloop.bounded`); ``len()`` of a map and
    :attr:`paths_built` show them at work."""

    __slots__ = (
        "content", "der", "der_by_id", "facts_by_der", "facts_by_id", "key_info", "name_text", "path_builds",
        "pem", "signature_params", "system_trust", "tbs_by_der", "upper", "upper_info", "verdicts",
    )

    def __init__(self) -> None:
        # certloop.facts
        self.facts_by_id: dict[int, tuple[x509.Certificate, CertFacts]] = {}
        self.facts_by_der: dict[bytes, CertFacts] = {}
        self.der_by_id: dict[int, tuple[x509.Certificate, bytes, TbsFields | None]] = {}
        self.tbs_by_der: dict[bytes, TbsFields | None] = {}
        self.name_text: dict[bytes, str] = {}
        self.key_info: dict[bytes, tuple[str, int]] = {}
        # certloop.x509
        self.der: dict[bytes, x509.Certificate] = {}
        self.pem: dict[bytes, x509.Certificate] = {}
        self.content: dict[tuple[bytes, bytes | None], Parsed] = {}
        # certloop.truststore
        self.system_trust: TrustStore | None = None
        # certloop.verify
        self.verdicts: dict[tuple[object, ...], Verdict] = {}
        self.upper: dict[tuple[object, ...], Verdict] = {}
        self.upper_info: dict[tuple[object, ...], UpperChain] = {}
        self.signature_params: dict[bytes, object] = {}
        self.path_builds = count()  # advanced by certloop.verify; read it as paths_built

    @property
    def paths_built(self) -> int:
        """How often the full path builder ran, exact also with threads sharing the object: each build is one
        ``next()`` on :attr:`path_builds`, a single call into C that holds the GIL throughout (a ``+= 1`` on
        an attribute is a read and a write that a thread switch may separate)."""
        # a count has no read but its repr, "count(N)": N is the number of next() calls so far
        return int(repr(self.path_builds)[len("count("):-1])
