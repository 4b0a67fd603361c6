"""dnsmasq as an authoritative-only DNS server on loopback, answering names from a hosts-format file.

    dns = Dnsmasq(tmp / "dns", {"shop.test": ["127.0.0.1", "::1"]}, ttl=2, log_queries=True)
    dns.start()
    dns.address                  # "127.0.0.1:PORT": certloop's `resolver:` form
    dns.set_names({...}); dns.reload()        # SIGHUP, and wait until dnsmasq has re-read the file
    dns.queries("shop.test")     # [("A", "shop.test"), ("AAAA", "shop.test")] from the query log

Nothing is forwarded (``--no-resolv``, every domain local): a name the file does not list is
NXDOMAIN, a listed name without an address of the asked family is NODATA. dnsmasq reads neither
/etc/dnsmasq.conf nor /etc/hosts. It binds only the given address (``--bind-interfaces``), so
several instances, or one on port 53 of a spare loopback address, live side by side.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path

from stack.process import LOOPBACK, Peer, Process, free_port, port_open, require_binary

START_TIMEOUT = 10.0
_QUERY = re.compile(r"query\[(\w+)\] (\S+) from ")


class Dnsmasq(Peer):
    """DNS over UDP and TCP on ``listen:port`` for the names in ``names`` (name -> addresses)."""

    def __init__(
        self,
        workdir: Path,
        names: Mapping[str, Sequence[str]],
        *,
        listen: str = LOOPBACK,
        port: int | None = None,
        ttl: int = 300,
        log_queries: bool = False,
    ) -> None:
        self.binary = require_binary("dnsmasq", "dnsmasq-base")
        self.workdir = workdir.resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.listen = listen
        self.port = port if port is not None else free_port(listen)
        self.ttl = ttl
        self.log_queries = log_queries
        self.hosts_path = self.workdir / "names.hosts"
        self.log_path = self.workdir / "dnsmasq.log"
        self.set_names(names)

    @property
    def address(self) -> str:
        return f"{self.listen}:{self.port}"

    def set_names(self, names: Mapping[str, Sequence[str]]) -> None:
        """Rewrite the names file (seen after :meth:`reload`, or at start)."""
        lines = [f"{address} {name}" for name, addresses in names.items() for address in addresses]
        self.hosts_path.write_text("".join(line + "\n" for line in lines))

    def argv(self) -> list[str]:
        return [
            self.binary, "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
            f"--addn-hosts={self.hosts_path}", f"--listen-address={self.listen}", "--bind-interfaces",
            f"--port={self.port}", f"--local-ttl={self.ttl}", "--local=/#/", "--user=root", "--group=root",
            "--pid-file=", "--cache-size=0", f"--log-facility={self.log_path}",
            *(["--log-queries"] if self.log_queries else []),
        ]

    def start(self, timeout: float = START_TIMEOUT) -> None:
        self.process = Process(self.argv(), name="dnsmasq", log_path=self.workdir / "dnsmasq.out").start()
        self.process.wait_until(lambda: port_open(self.listen, self.port), timeout, f"DNS {self.address} (tcp)")

    def reload(self, timeout: float = START_TIMEOUT) -> None:
        """SIGHUP, then wait until dnsmasq logs that it re-read the names file."""
        if self.process is None:
            return
        before = self._reads()
        self.process.signal(signal.SIGHUP)
        self.process.wait_until(lambda: self._reads() > before, timeout, f"dnsmasq to re-read {self.hosts_path}")

    def _reads(self) -> int:
        try:
            return self.log_path.read_text(errors="replace").count(f"read {self.hosts_path} ")
        except FileNotFoundError:
            return 0

    def queries(self, name: str | None = None) -> list[tuple[str, str]]:
        """(type, name) of every query logged so far (``log_queries=True``), optionally for one name."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return []
        found = [(m.group(1), m.group(2)) for m in _QUERY.finditer(text)]
        return [q for q in found if name is None or q[1] == name]
