"""certloop.verify (+ truststore, hostnames): verdicts per class of broken chain, RFC 6125 coverage, expiry, caching."""

from __future__ import annotations

import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType

import pytest

from certloop import verify
from certloop.caches import Caches
from certloop.errors import TrustStoreError
from certloop.facts import Role, chain_roles, facts
from certloop.hostnames import covers, uncovered
from certloop.truststore import TrustStore
from certloop.verify import Verdict, earliest_expiry, verify_chain
from tests.support.pki import Issued, Pki, build_cert, new_key, openssl_sha1_leaf

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def _chain(issued: Issued) -> list:  # type: ignore[type-arg]
    return [issued.cert, *issued.chain]


@pytest.fixture(params=["ec256", "rsa2048"])
def fixed_pki(request: pytest.FixtureRequest) -> Pki:
    """A PKI built around a fixed clock, once with ECDSA keys and once with RSA keys."""
    return Pki(now=NOW, key_kind=request.param)


def _expiry(chain: list, caches: Caches) -> datetime | None:  # type: ignore[type-arg]
    return earliest_expiry([facts(c, caches) for c in chain], chain_roles(chain, caches))


def _trust(pki: Pki) -> TrustStore:
    return TrustStore([pki.root])


def test_valid_chain_is_ok(fixed_pki: Pki, caches: Caches) -> None:
    """A complete chain to a trusted root, within its dates and covering the name, is ok."""
    leaf = fixed_pki.leaf(["shop.example"], key_kind="rsa2048")
    trust = _trust(fixed_pki)
    assert verify_chain(_chain(leaf), trust=trust, at=NOW, hostname="shop.example", caches=caches) is Verdict.OK
    assert verify_chain(_chain(leaf), trust=trust, at=NOW, caches=caches) is Verdict.OK
    # the root may be sent too
    assert verify_chain([*_chain(leaf), fixed_pki.root], trust=trust, at=NOW, caches=caches) is Verdict.OK


def test_expired_and_not_yet_valid_leaf(fixed_pki: Pki, caches: Caches) -> None:
    """Before not_before the leaf is not_yet_valid, after not_after expired; both ends are inclusive."""
    leaf = fixed_pki.leaf(["shop.example"], not_before=NOW - timedelta(days=1), not_after=NOW + timedelta(days=5))
    trust, chain = _trust(fixed_pki), _chain(leaf)
    na, nb = facts(leaf.cert, caches).not_after, facts(leaf.cert, caches).not_before
    assert verify_chain(chain, trust=trust, at=na, caches=caches) is Verdict.OK
    assert verify_chain(chain, trust=trust, at=na + timedelta(seconds=1), caches=caches) is Verdict.EXPIRED
    assert verify_chain(chain, trust=trust, at=nb, caches=caches) is Verdict.OK
    assert verify_chain(chain, trust=trust, at=nb - timedelta(seconds=1), caches=caches) is Verdict.NOT_YET_VALID


def test_self_signed_leaf(fixed_pki: Pki, caches: Caches) -> None:
    """A self-signed leaf is self_signed, unless it is itself in the trust store (pinned)."""
    ss = fixed_pki.self_signed(["self.example"])
    assert verify_chain([ss.cert], trust=_trust(fixed_pki), at=NOW, caches=caches) is Verdict.SELF_SIGNED
    pinned = TrustStore([ss.cert])
    assert verify_chain([ss.cert], trust=pinned, at=NOW, hostname="self.example", caches=caches) is Verdict.OK


def test_unknown_authority(fixed_pki: Pki, caches: Caches) -> None:
    """A chain from a CA the store does not hold is unknown_authority, with or without its root sent."""
    other = Pki(now=NOW, name="other")
    leaf = other.leaf(["shop.example"])
    trust = _trust(fixed_pki)
    assert verify_chain(_chain(leaf), trust=trust, at=NOW, caches=caches) is Verdict.UNKNOWN_AUTHORITY
    assert verify_chain([*_chain(leaf), other.root], trust=trust, at=NOW, caches=caches) is Verdict.UNKNOWN_AUTHORITY


def test_missing_intermediate_is_incomplete_chain(fixed_pki: Pki, caches: Caches) -> None:
    """A leaf sent without its intermediate, whose issuer the store lacks, is incomplete_chain."""
    leaf = fixed_pki.leaf(["shop.example"])
    assert verify_chain([leaf.cert], trust=_trust(fixed_pki), at=NOW, caches=caches) is Verdict.INCOMPLETE_CHAIN
    # a store that holds the intermediate itself completes the chain
    both = TrustStore([fixed_pki.root, fixed_pki.intermediate.cert])
    assert verify_chain([leaf.cert], trust=both, at=NOW, caches=caches) is Verdict.OK


def test_intermediate_expiring_before_the_leaf(fixed_pki: Pki, caches: Caches) -> None:
    """An intermediate expiring before the leaf: ok before, intermediate_expired after it ends."""
    short = fixed_pki.issue_intermediate(days=10, name="short-lived intermediate")
    leaf = fixed_pki.leaf(["shop.example"], issuer=short, days=60)
    trust = _trust(fixed_pki)
    assert verify_chain(_chain(leaf), trust=trust, at=NOW + timedelta(days=5), caches=caches) is Verdict.OK
    later = NOW + timedelta(days=11)
    assert verify_chain(_chain(leaf), trust=trust, at=later, caches=caches) is Verdict.INTERMEDIATE_EXPIRED
    assert _expiry(_chain(leaf), caches) == facts(short.cert, caches).not_after


def test_hostname_mismatch(fixed_pki: Pki, caches: Caches) -> None:
    """A valid chain for another name is hostname_mismatch; the verdict for the right name is ok."""
    leaf = fixed_pki.leaf(["shop.example", "*.cdn.example.net"])
    trust = _trust(fixed_pki)
    assert verify_chain(_chain(leaf), trust=trust, at=NOW, hostname="other.example",
                        caches=caches) is Verdict.HOSTNAME_MISMATCH
    assert verify_chain(_chain(leaf), trust=trust, at=NOW, hostname="a.cdn.example.net", caches=caches) is Verdict.OK
    assert verify_chain(_chain(leaf), trust=trust, at=NOW, hostname="SHOP.example.", caches=caches) is Verdict.OK


def test_expiry_takes_precedence_over_hostname(fixed_pki: Pki, caches: Caches) -> None:
    """An expired leaf for the wrong name reports expired: the date problem comes first."""
    leaf = fixed_pki.leaf(["shop.example"], days=1)
    assert verify_chain(_chain(leaf), trust=_trust(fixed_pki), at=NOW + timedelta(days=2),
                        hostname="nope.example", caches=caches) is Verdict.EXPIRED


def test_weak_signature_is_invalid(tmp_path: Path, caches: Caches) -> None:
    """A SHA-1 signed leaf under a trusted root is invalid (the library refuses SHA-1), and weak."""
    pki = Pki()
    cert = openssl_sha1_leaf(pki.intermediate, ["sha1.example"], tmp_path)
    assert facts(cert, caches).signature_algorithm == "sha1-ecdsa"
    assert facts(cert, caches).weak_crypto
    chain = [cert, pki.intermediate.cert]
    assert verify_chain(chain, trust=_trust(pki), at=datetime.now(UTC), caches=caches) is Verdict.INVALID


def test_forged_issuer_is_invalid(caches: Caches) -> None:
    """A leaf naming the presented intermediate (name and key id) but signed by another key is invalid."""
    pki = Pki(now=NOW)
    impostor = new_key()
    cert = build_cert(
        subject="forged.example", key=new_key(), issuer_cert=pki.intermediate.cert, issuer_key=impostor,
        not_before=NOW - timedelta(days=1), not_after=NOW + timedelta(days=30), ca=False,
        names=["forged.example"],
    )
    verdict = verify_chain([cert, pki.intermediate.cert], trust=_trust(pki), at=NOW, caches=caches)
    assert verdict is Verdict.INVALID


def test_empty_chain_and_naive_time(fixed_pki: Pki, caches: Caches) -> None:
    """No certificate is invalid; a naive datetime is refused."""
    assert verify_chain([], trust=_trust(fixed_pki), at=NOW, caches=caches) is Verdict.INVALID
    with pytest.raises(ValueError, match="aware"):
        verify_chain([fixed_pki.root], trust=_trust(fixed_pki), at=datetime(2026, 1, 1), caches=caches)


def test_cached_verdict_never_outlives_a_boundary(caches: Caches) -> None:
    """The verdict cache hits for the same window but recomputes across a not_after boundary."""
    pki = Pki(now=NOW)
    leaf = pki.leaf(["cache.example"], days=3)
    trust, chain = _trust(pki), _chain(leaf)
    assert verify_chain(chain, trust=trust, at=NOW, caches=caches) is Verdict.OK
    assert verify_chain(chain, trust=trust, at=NOW + timedelta(hours=1), caches=caches) is Verdict.OK
    assert len(caches.verdicts) == 1  # same window: one entry
    assert caches.paths_built == 1
    end = facts(leaf.cert, caches).not_after
    assert verify_chain(chain, trust=trust, at=end, caches=caches) is Verdict.OK
    assert verify_chain(chain, trust=trust, at=end + timedelta(seconds=1), caches=caches) is Verdict.EXPIRED
    assert len(caches.verdicts) == 3  # the boundary itself is a window, and after it another


def test_paths_built_is_exact_with_threads_sharing_the_caches() -> None:
    """Threads sharing one :class:`Caches` (the exporter's probe workers do) lose no count of a path build.

    CPython with the GIL switches threads only at calls and backward jumps, so the race in a ``+= 1`` on
    an attribute (read, add, write) hardly shows by itself. A per-instruction tracer in the verifier's
    frames hands the GIL over before every instruction: there a read-add-write count loses builds on
    every run, while one ``next()`` on a count, a single call into C, loses none."""
    pki = Pki(now=NOW)
    trust, chain = _trust(pki), _chain(pki.self_signed(["self.example"]))  # self-issued: always the full path
    caches = Caches()
    workers, each = 4, 50
    start = threading.Barrier(workers)

    def every_instruction(frame: FrameType, event: str, arg: object) -> object:
        time.sleep(0)  # before each instruction: the GIL goes to another thread if one waits
        return every_instruction

    def in_the_verifier(frame: FrameType, event: str, arg: object) -> object:
        if frame.f_code.co_filename != verify.__file__:
            return None
        frame.f_trace_opcodes = True
        return every_instruction

    def work(worker: int) -> None:
        start.wait(10)
        sys.settrace(in_the_verifier)
        try:
            for i in range(each):  # a name per call: a new verdict, so one full path build each
                name = f"w{worker}-{i}.example"
                assert verify_chain(chain, trust=trust, at=NOW, hostname=name, caches=caches) is Verdict.SELF_SIGNED
        finally:
            sys.settrace(None)

    with ThreadPoolExecutor(workers) as pool:
        for done in [pool.submit(work, w) for w in range(workers)]:
            done.result()
    assert len(caches.verdicts) == workers * each
    assert caches.paths_built == workers * each


def test_system_trust_store_loads_once() -> None:
    """The system store holds the Debian bundle's roots, loaded once per caches, and does not trust a test root."""
    caches = Caches()
    store = TrustStore.system(caches)
    assert store is TrustStore.system(caches) is caches.system_trust
    assert TrustStore.system(Caches()) is not store  # another process's caches read it again
    assert len(store) > 50
    pki = Pki(now=NOW)
    leaf = pki.leaf(["shop.example"])
    assert verify_chain([*_chain(leaf), pki.root], trust=store, at=NOW, caches=caches) is Verdict.UNKNOWN_AUTHORITY


def test_trust_store_from_file(tmp_path: Path, caches: Caches) -> None:
    """A CA bundle file is a trust store; a file without certificates is a TrustStoreError."""
    pki = Pki(now=NOW)
    store = TrustStore.from_file(pki.write_root(tmp_path / "ca.pem"), caches)
    assert verify_chain(_chain(pki.leaf(["f.example"])), trust=store, at=NOW, caches=caches) is Verdict.OK
    (tmp_path / "empty.pem").write_text("nothing")
    with pytest.raises(TrustStoreError):
        TrustStore.from_file(tmp_path / "empty.pem", caches)
    with pytest.raises(TrustStoreError):
        TrustStore.from_file(tmp_path / "missing.pem", caches)


@pytest.mark.parametrize(
    ("sans", "name", "expected"),
    [
        (["shop.example"], "shop.example", True),
        (["shop.example"], "SHOP.Example.", True),  # case-insensitive, trailing dot ignored
        (["shop.example."], "shop.example", True),
        (["*.example.com"], "www.example.com", True),
        (["*.example.com"], "WWW.EXAMPLE.COM", True),
        (["*.example.com"], "example.com", False),  # not the bare domain
        (["*.example.com"], "a.b.example.com", False),  # one label only
        (["*.example.com"], ".example.com", False),
        (["w*.example.com"], "www.example.com", False),  # no partial wildcards
        (["*w.example.com"], "www.example.com", False),
        (["www.*.com"], "www.example.com", False),  # only the left-most label
        (["*.*.example.com"], "a.b.example.com", False),
        (["*.com"], "example.com", False),  # a wildcard over a whole TLD is never honoured
        (["*"], "localhost", False),
        (["xn--bcher-kva.example"], "bücher.example", True),  # IDNA: U-label matches its A-label
        (["*.xn--bcher-kva.example"], "www.bücher.example", True),
        (["127.0.0.1"], "127.0.0.1", True),
        (["127.0.0.1"], "127.0.0.2", False),
        (["::1"], "[::1]", True),
        (["::1"], "0:0:0:0:0:0:0:1", True),
        (["shop.example"], "127.0.0.1", False),  # IPs match only IP SANs
        (["127.0.0.1"], "localhost", False),
        ([], "shop.example", False),
    ],
)
def test_covers_rfc6125(sans: list[str], name: str, expected: bool) -> None:
    """RFC 6125 matching: whole left-most wildcard label only, IDNA A-labels, IPs only against IP SANs."""
    assert covers(sans, name) is expected


def test_covers_certificate_ignores_common_name(pki: Pki, caches: Caches) -> None:
    """A certificate's SANs decide coverage; a CN that is not also a SAN does not count."""
    leaf = pki.leaf(["a.example", "127.0.0.1"], cn="cn-only.example")
    assert covers(leaf.cert, "a.example")
    assert covers(facts(leaf.cert, caches), "127.0.0.1")
    assert not covers(leaf.cert, "cn-only.example")
    assert uncovered(leaf.cert, ["a.example", "b.example", "127.0.0.1", "::1"]) == ("b.example", "::1")


def test_earliest_expiry_excludes_presented_root(caches: Caches) -> None:
    """The earliest expiry covers leaf and intermediates but not a presented root (a trust anchor)."""
    pki = Pki(now=NOW)
    leaf = pki.leaf(["e.example"], days=30)
    chain = [leaf.cert, pki.intermediate.cert, pki.root]
    assert _expiry(chain, caches) == facts(leaf.cert, caches).not_after
    assert chain_roles(chain, caches) == (Role.LEAF, Role.INTERMEDIATE, Role.ROOT)
    assert earliest_expiry([], []) is None
    # a root presented at the end that expires first does not count
    old_root_pki = Pki(now=NOW - timedelta(days=3640))
    assert _expiry([leaf.cert, old_root_pki.root], caches) == facts(leaf.cert, caches).not_after


def test_hostile_chain_of_lookalike_issuers_is_cheap(caches: Caches) -> None:
    """A chain padded with 60 look-alike intermediates (the issuer's name, other keys) is judged
    quickly, and as incomplete: none of them is the leaf's issuer (key identifiers differ)."""
    import time

    pki = Pki(now=NOW)
    leaf = pki.leaf(["pad.example"])
    fakes = [
        build_cert(subject=facts(pki.intermediate.cert, caches).subject.removeprefix("CN="), key=new_key(),
                   issuer_cert=pki.root, issuer_key=pki.root_key, not_before=NOW - timedelta(days=1),
                   not_after=NOW + timedelta(days=30), ca=True, path_length=0)
        for _ in range(60)
    ]
    started = time.monotonic()
    verdict = verify_chain([leaf.cert, *fakes], trust=_trust(pki), at=NOW, caches=caches)
    assert time.monotonic() - started < 2
    assert verdict is Verdict.INCOMPLETE_CHAIN


def test_cache_keeps_ip_and_dns_spellings_apart(caches: Caches) -> None:
    """'127.0.0.1' (an IP, matched against IP SANs) and '127.0.0.1.' (a DNS name) are cached apart."""
    pki = Pki(now=NOW)
    leaf = pki.leaf(["127.0.0.1"])
    chain, trust = _chain(leaf), _trust(pki)
    assert verify_chain(chain, trust=trust, at=NOW, hostname="127.0.0.1", caches=caches) is Verdict.OK
    assert verify_chain(chain, trust=trust, at=NOW, hostname="127.0.0.1.", caches=caches) is Verdict.HOSTNAME_MISMATCH


def test_pinned_leaf_is_ok_whatever_its_extensions(fixed_pki: Pki, caches: Caches) -> None:
    """A leaf that is itself a trust anchor is ok, even when the Web PKI policy refuses it as a leaf
    (CA:TRUE and no key usage, as ``openssl req -x509`` makes it); dates and names still count."""
    key = new_key()
    pinned = build_cert(subject="internal.example", key=key, issuer_cert=None, issuer_key=key,
                        not_before=NOW - timedelta(days=1), not_after=NOW + timedelta(days=30), ca=True,
                        names=["internal.example"])
    trust = TrustStore([pinned])
    assert verify_chain([pinned], trust=_trust(fixed_pki), at=NOW, caches=caches) is Verdict.SELF_SIGNED
    assert verify_chain([pinned], trust=trust, at=NOW, hostname="internal.example", caches=caches) is Verdict.OK
    assert verify_chain([pinned], trust=trust, at=NOW, hostname="other.example",
                        caches=caches) is Verdict.HOSTNAME_MISMATCH
    assert verify_chain([pinned], trust=trust, at=NOW + timedelta(days=31), caches=caches) is Verdict.EXPIRED


def test_idna_2008_names() -> None:
    """Names are compared in IDNA 2008 (UTS 46) A-label form: ß is not ss."""
    from certloop.hostnames import server_name

    assert server_name("straße.example") == "xn--strae-oqa.example"
    assert server_name("Bücher.example.") == "xn--bcher-kva.example"
    assert covers(["xn--strae-oqa.example"], "straße.example")
    assert not covers(["strasse.example"], "straße.example")
    for bad in ("a..b", ".x", "x" * 64 + ".y", "a\x00b", "a b.example", ""):
        with pytest.raises(ValueError, match=r"."):
            server_name(bad)
