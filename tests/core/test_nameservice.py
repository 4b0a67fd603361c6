"""The system path: /etc/hosts, nsswitch's order and resolv.conf read by certloop, not by glibc per call.

The files are private (a temp dir, and in the last test a mount namespace with them bind-mounted
over /etc); DNS is a real dnsmasq on port 53 of a spare loopback address, since resolv.conf has no
port. glibc's own answer is asked beside ours where the two must agree.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from certloop.errors import FailureReason, ProbeError
from certloop.nameservice import HostsFile, NameserverSet, SystemNames, hosts_order, parse_hosts, parse_resolv_conf
from certloop.resolve import AddressCache, Resolver
from stack.dnsmasq import Dnsmasq

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def dns53(tmp_path: Path) -> Iterator[Dnsmasq]:
    """dnsmasq on 127.a.b.c:53 (random, so parallel runs do not meet), query log on."""
    rng = random.Random()
    listen = f"127.{rng.randrange(1, 250)}.{rng.randrange(1, 250)}.{rng.randrange(2, 250)}"
    server = Dnsmasq(tmp_path / "dns", {"dns-only.test": ["127.0.0.20"], "both.test": ["127.0.0.21"]},
                     listen=listen, port=53, ttl=60, log_queries=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_hosts_file_parsing() -> None:
    """Comments, aliases, several lines per name, case, bad addresses and zones: as glibc reads them."""
    table = parse_hosts(textwrap.dedent("""\
        # comment
        127.0.0.1   localhost Shop.Test   # trailing comment
        192.0.2.1   shop.test www.test
        2001:db8::1 shop.test
        fe80::1%lo  link.test
        300.1.1.1   bad.test
        192.0.2.9
        \x00garbage
    """).encode())
    assert table["shop.test"] == ("127.0.0.1", "192.0.2.1", "2001:db8::1")
    assert table["www.test"] == ("192.0.2.1",)
    assert table["link.test"] == ("fe80::1",)
    assert "bad.test" not in table


@pytest.mark.parametrize(("line", "order"), [
    ("hosts: files dns", ("files", "dns")),
    ("hosts:\tdns files", ("dns", "files")),
    ("hosts: files mdns4_minimal [NOTFOUND=return] dns myhostname", ("files",)),
    ("hosts: files [NOTFOUND=return] dns", ("files",)),
    ("hosts: resolve [!UNAVAIL=return] files dns", ()),
    ("passwd: files", ("dns", "files")),  # no hosts line: glibc's default
])
def test_nsswitch_prefix(line: str, order: tuple[str, ...]) -> None:
    """Only the leading files/dns services are answered here; anything after the first other word is glibc's."""
    assert hosts_order(f"# x\n{line}\n".encode()) == order


def test_resolv_conf_parsing() -> None:
    """Nameservers (at most three, IPs only), the last search/domain line, ndots/timeout/attempts options."""
    conf = parse_resolv_conf(b"domain a.test\nsearch b.test c.test.\nnameserver 127.0.0.1\nnameserver dns.test\n"
                             b"nameserver ::1\nnameserver 10.0.0.1\nnameserver 10.0.0.2\n"
                             b"options ndots:2 timeout:3 attempts:9 rotate\n")
    assert conf == NameserverSet(("127.0.0.1", "::1", "10.0.0.1"), ("b.test", "c.test"), 2, 3.0, 5)
    assert parse_resolv_conf(b"search x.test\n") == NameserverSet((), ("x.test",))


def _system(tmp_path: Path, dns: Dnsmasq, *, order: str = "files dns", hosts: str = "") -> SystemNames:
    (tmp_path / "hosts").write_text(hosts)
    (tmp_path / "nsswitch.conf").write_text(f"hosts: {order}\n")
    (tmp_path / "resolv.conf").write_text(f"nameserver {dns.listen}\noptions timeout:1\n")
    return SystemNames(hosts=str(tmp_path / "hosts"), nsswitch=str(tmp_path / "nsswitch.conf"),
                       resolv_conf=str(tmp_path / "resolv.conf"), recheck=0)


def test_files_then_dns_in_nsswitch_order(tmp_path: Path, dns53: Dnsmasq) -> None:
    """``files dns``: the hosts file wins for a name it lists, DNS answers the rest, neither: dns failure."""
    system = _system(tmp_path, dns53, hosts="127.0.0.30 both.test\n127.0.0.31 hosts-only.test\n")
    resolver = Resolver(system=system, cache=AddressCache())
    assert asyncio.run(resolver.resolve("both.test")) == ["127.0.0.30"]
    assert asyncio.run(resolver.resolve("hosts-only.test")) == ["127.0.0.31"]
    assert asyncio.run(resolver.resolve("dns-only.test")) == ["127.0.0.20"]
    with pytest.raises(ProbeError) as caught:
        asyncio.run(resolver.resolve("neither.test"))
    assert caught.value.reason is FailureReason.DNS and caught.value.detail == "neither.test: name not found"
    assert dns53.queries("both.test") == [] and dns53.queries("hosts-only.test") == []


def test_malformed_names_are_dns_failures_on_the_system_path(tmp_path: Path, dns53: Dnsmasq) -> None:
    """Names DNS cannot carry, asked through the system path: ProbeError(dns), nothing raised past it."""
    resolver = Resolver(timeout=1.0, system=_system(tmp_path, dns53), cache=AddressCache())
    for name in ("a..b.test", "x" * 64 + ".test", "a\x00b.test"):
        with pytest.raises(ProbeError) as caught:
            asyncio.run(resolver.resolve(name))
        assert caught.value.reason is FailureReason.DNS, name


def test_dns_first_when_nsswitch_says_so(tmp_path: Path, dns53: Dnsmasq) -> None:
    """``dns files``: DNS's answer wins for a name both know; the hosts file still answers the rest."""
    system = _system(tmp_path, dns53, order="dns files", hosts="127.0.0.30 both.test\n127.0.0.31 hosts-only.test\n")
    resolver = Resolver(system=system, cache=AddressCache())
    assert asyncio.run(resolver.resolve("both.test")) == ["127.0.0.21"]
    assert asyncio.run(resolver.resolve("hosts-only.test")) == ["127.0.0.31"]


def test_hosts_file_edits_are_picked_up(tmp_path: Path, dns53: Dnsmasq) -> None:
    """An in-place edit and an editor's rename over the file are both seen once the cache entry lapses
    (hosts answers are kept ``recheck`` seconds; 0 here)."""
    system = _system(tmp_path, dns53, hosts="127.0.0.30 moving.test\n")
    resolver = Resolver(system=system, cache=AddressCache())
    assert asyncio.run(resolver.resolve("moving.test")) == ["127.0.0.30"]
    (tmp_path / "hosts").write_text("127.0.0.32 moving.test\n")
    assert asyncio.run(resolver.resolve("moving.test")) == ["127.0.0.32"]
    (tmp_path / "hosts.new").write_text("127.0.0.33 moving.test # renamed over\n")
    (tmp_path / "hosts.new").replace(tmp_path / "hosts")
    assert asyncio.run(resolver.resolve("moving.test")) == ["127.0.0.33"]
    assert system.hosts.file.loads == 3


def test_an_edit_is_seen_once_recheck_seconds_have_passed(tmp_path: Path) -> None:
    """The file is not looked at again within ``recheck`` seconds of the last look, and an edit is seen at
    the first look after them (the clock is injected: the bound is exact, not slept out)."""
    now = [100.0]
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.30 moving.test\n")
    table = HostsFile(str(hosts), recheck=1.0, clock=lambda: now[0])
    assert table.lookup("moving.test") == ["127.0.0.30"]
    hosts.write_text("127.0.0.32 moving.test\n")
    now[0] += 0.999
    assert table.lookup("moving.test") == ["127.0.0.30"] and table.file.loads == 1
    now[0] += 0.001
    assert table.lookup("moving.test") == ["127.0.0.32"] and table.file.loads == 2


def test_resolv_conf_change_switches_servers(tmp_path: Path, dns53: Dnsmasq) -> None:
    """A new resolv.conf is followed: another server's answer, then a server nobody runs is a dns failure."""
    system = _system(tmp_path, dns53)
    resolver = Resolver(timeout=1.0, system=system, cache=AddressCache(max_entries=1))
    assert asyncio.run(resolver.resolve("both.test")) == ["127.0.0.21"]
    other = Dnsmasq(tmp_path / "other", {"both.test": ["127.0.0.22"]}, listen=_spare_address(dns53.listen),
                    port=53)
    other.start()
    try:
        (tmp_path / "resolv.conf").write_text(f"nameserver {other.listen}\n")
        resolver.cache.put("both.test", [], 0)  # forget the cached answer; the file is re-read (recheck 0)
        assert asyncio.run(resolver.resolve("both.test")) == ["127.0.0.22"]
    finally:
        other.stop()
    (tmp_path / "resolv.conf").write_text(f"nameserver {other.listen}\n# nobody listens any more\n")
    with pytest.raises(ProbeError) as caught:
        asyncio.run(resolver.resolve("dns-only.test"))
    assert caught.value.reason is FailureReason.DNS and "not found" not in caught.value.detail


def _spare_address(taken: str) -> str:
    a, b, c, d = taken.split(".")
    return f"{a}.{b}.{c}.{int(d) % 240 + 3}"


NAMESPACE_SCRIPT = """
import asyncio, json, socket
from certloop.errors import ProbeError
from certloop.resolve import AddressCache, Resolver
from stack.process import wait_until

def answer(resolver, name):
    try:
        return asyncio.run(resolver.resolve(name))
    except ProbeError as exc:
        return [type(exc).__name__, str(exc.reason)]

def found(resolver, name):  # the addresses, or None while the name is unknown (a miss is not cached)
    got = answer(resolver, name)
    return None if got[0] == "ProbeError" else got

resolver = Resolver(cache=AddressCache())
out = {"ours": answer(resolver, "ns-a.test"),
       "glibc": sorted({i[4][0] for i in socket.getaddrinfo("ns-a.test", None, type=socket.SOCK_STREAM)}),
       "dns": answer(resolver, "dns-only.test")}
with open("/etc/hosts", "a") as f:  # in place, through the bind mount
    f.write("127.0.0.41 ns-b.test\\n")
# Seen once the default recheck (1 s) passes: asked until then (a miss is not cached), bounded.
out["edited"] = wait_until(lambda: found(resolver, "ns-b.test"), 15, "the edit of /etc/hosts to be seen")
out["missing"] = answer(resolver, "missing.test")
# a service certloop does not implement comes first: everything goes to glibc, which here has no dns
with open("/etc/nsswitch.conf", "w") as f:
    f.write("hosts: mdns4_minimal files\\n")
with open("/etc/hosts", "a") as f:
    f.write("127.0.0.42 ns-c.test\\n")
fresh = Resolver(cache=AddressCache())  # reads the three files anew
out["delegated"] = answer(fresh, "ns-c.test")
out["no_dns"] = answer(fresh, "dns-only.test")
print(json.dumps(out))
"""


def test_system_path_inside_a_mount_namespace(tmp_path: Path, dns53: Dnsmasq) -> None:
    """The default resolver in a mount namespace with private /etc/hosts, /etc/resolv.conf and
    /etc/nsswitch.conf bind-mounted over the real ones: it sees the private files (as glibc does
    there), follows an edit of the hosts file, asks the private DNS server, and reports a name
    nobody knows as a dns failure. With a service it does not implement first in nsswitch.conf,
    it leaves the whole lookup to glibc, so DNS is not asked when nsswitch does not list it."""
    unshare = shutil.which("unshare")
    assert unshare is not None, "util-linux's unshare is needed (Debian: util-linux)"
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "hosts").write_text("127.0.0.1 localhost\n127.0.0.40 ns-a.test\n")
    (etc / "resolv.conf").write_text(f"nameserver {dns53.listen}\noptions timeout:1\n")
    (etc / "nsswitch.conf").write_text("hosts: files dns\n")
    mounts = " && ".join(f"mount --bind {etc / name} /etc/{name}" for name in ("hosts", "resolv.conf", "nsswitch.conf"))
    done = subprocess.run(
        [unshare, "--mount", "--propagation", "private", "sh", "-c", f'{mounts} && exec "$0" -c "$1"',
         sys.executable, NAMESPACE_SCRIPT],
        capture_output=True, text=True, timeout=60, cwd=ROOT, check=False,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out == {"ours": ["127.0.0.40"], "glibc": ["127.0.0.40"], "dns": ["127.0.0.20"],
                   "edited": ["127.0.0.41"], "missing": ["ProbeError", "dns"],
                   "delegated": ["127.0.0.42"], "no_dns": ["ProbeError", "dns"]}
    assert "ns-a.test" not in Path("/etc/hosts").read_text()  # the real file never saw it
