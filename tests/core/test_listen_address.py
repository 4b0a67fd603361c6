"""Where a daemon listens: one rule for both daemons' --web.listen-address and the renewer's `listen`."""

from __future__ import annotations

import pytest

from certloop.config import parse_listen_address


@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.1:10793", ("127.0.0.1", 10793)),
    ("localhost:0", ("localhost", 0)),  # port 0: a free one
    (":10794", ("0.0.0.0", 10794)),  # every interface, as Prometheus reads it
    ("[::1]:10794", ("::1", 10794)),
    ("[fe80::1%eth0]:8443", ("fe80::1%eth0", 8443)),
    (" exporter.internal:9000 ", ("exporter.internal", 9000)),
])
def test_accepted(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen_address(text) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("nowhere", 'expected "host:port"'),
    ("127.0.0.1:99999", 'expected "host:port"'),  # not wrapped around to 34463
    ("127.0.0.1:abc", 'expected "host:port"'),
    ("::1:80", "an IPv6 address goes in brackets"),
    ("[nope]:80", "expected an IPv6 address in brackets"),
    ("bad host!:80", "invalid host"),
])
def test_refused_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_listen_address(text)
