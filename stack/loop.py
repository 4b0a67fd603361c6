"""The whole closed loop on loopback, with no Docker: the code behind `make demo` and the end-to-end tests.

    loop = ClosedLoop(workdir)
    loop.start()                         # DNS, pebble, nginx (expiring certificate), exporter, renewer,
                                         # Prometheus with the certloop rules, Alertmanager with the renewal route
    report = loop.watch_until_closed(timeout=60)
    loop.stop()

Every peer is a real process from Debian's packages (nginx, pebble, pebble-challtestsrv, Prometheus,
Alertmanager) or certloop itself (`certloop exporter`, `certloop renewer`), on 127.0.0.1 with free ports,
stopped by PID. Alert rules are the mixin's own, rendered with short `for:` durations so the loop closes
in seconds instead of the production quarter hour.
"""

from __future__ import annotations

import secrets
import socket
import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bcrypt
import requests
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from stack.alertmanager import Alertmanager
from stack.challtestsrv import ChallTestSrv
from stack.nginx import Nginx
from stack.pebble import Pebble
from stack.process import LOOPBACK, Process, ProcessGroup, StackError, answers_ok, free_port
from stack.prometheus import Prometheus
from stack.receiver import Receiver

__all__ = ["CERT_ID", "DOMAIN", "ClosedLoop", "Event", "LoopTimeout"]

DOMAIN = "shop.demo"
CERT_ID = "shop"
# The alerts the renewal route sends to the renewer (the renewer's own default list, see renewer/config.py).
RENEWAL_ALERTS = "CertloopCertificateExpiring|CertloopCertificateExpiringSoon|CertloopCertificateExpired"

# Mixin overrides for a loop that closes in seconds: conditions fire on their first evaluation.
FAST_RULES_PATCH: dict[str, Any] = {
    "for": {
        name: "0s"
        for name in (
            "expiring", "expiringSoon", "expired", "renewalFailed", "renewalRolledBack", "probeFailing",
            "servedDiffersFromFile",
        )
    },
}


class LoopTimeout(StackError):
    """The loop did not reach the awaited state in time; carries what was seen."""

    def __init__(self, waiting_for: str, events: list[Event]) -> None:
        self.waiting_for = waiting_for
        self.events = events
        seen = "; ".join(f"{e.kind}: {e.text}" for e in events[-8:]) or "nothing"
        super().__init__(f"timed out waiting for {waiting_for}; last seen: {seen}")


@dataclass(frozen=True)
class Event:
    at: float  # seconds since the watch started
    kind: str  # observed | alert | notify | renewal | served | resolved
    text: str


_CA_USAGE = x509.KeyUsage(
    digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
    key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
)
_LEAF_USAGE = x509.KeyUsage(
    digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
    key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False,
)


def mint_expiring(
    directory: Path, *, lifetime: timedelta, left: timedelta, domain: str = DOMAIN, name: str = CERT_ID
) -> tuple[Path, Path, Path]:
    """A demo CA and a leaf for `domain` with `left` of its `lifetime` remaining. Returns (chain, key, ca)."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "certloop demo CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_CA_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    not_after = now + left
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(not_after - lifetime).not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_LEAF_USAGE, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    chain_path, key_path, ca_path = directory / f"{name}.pem", directory / f"{name}.key", directory / f"{name}-ca.pem"
    pem = serialization.Encoding.PEM
    chain_path.write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    key_path.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    ca_path.write_bytes(ca.public_bytes(pem))
    return chain_path, key_path, ca_path


@dataclass
class ClosedLoop:
    """Everything certloop needs to close the loop, on 127.0.0.1."""

    workdir: Path
    say: Callable[[str], None] = field(default=lambda text: None)
    lifetime: timedelta = timedelta(days=30)
    left: timedelta = timedelta(days=2)
    max_attempts: int = 20  # per phase, inside one renewal job
    repeat_interval: str = "10s"  # Alertmanager re-sends a firing alert this often (a new job if the last failed)
    log_format: str = "logfmt"  # both daemons' --log.format
    # People sign in to the renewer's status page: a viewer and an operator with generated passwords
    # (bcrypt hashes in a --web.config.file); Prometheus then scrapes the renewer with the token.
    people: bool = False

    def __post_init__(self) -> None:
        self.workdir = self.workdir.resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.group = ProcessGroup()
        self.token = secrets.token_urlsafe(24)
        self.tls_port = free_port()
        self.http_port = free_port()
        self.exporter_port = free_port()
        self.renewer_port = free_port()
        self.live = self.workdir / "live"
        self.webroot = self.workdir / "webroot"
        self.python = sys.executable
        self.users = {"viewer": secrets.token_urlsafe(12), "operator": secrets.token_urlsafe(12)} if self.people else {}

    # -- start --------------------------------------------------------------------------------

    def start(self) -> None:
        """Start every peer; nginx serves a certificate with `left` of `lifetime` remaining."""
        w = self.workdir
        self.dns = self.group.add(ChallTestSrv(free_port(), free_port(), workdir=w / "dns"))
        self.dns.start()
        self.dns.add_a(DOMAIN, [LOOPBACK])

        self.pebble = self.group.add(Pebble(w / "pebble", self.dns.dns_address, http_port=self.http_port))
        self.pebble.start()

        self.chain_path, self.key_path, self.demo_ca = mint_expiring(self.live, lifetime=self.lifetime, left=self.left)
        self.nginx = self.group.add(Nginx(w / "nginx"))
        self.nginx.add_site([DOMAIN], self.chain_path, self.key_path, [(LOOPBACK, self.tls_port)], default=True)
        self.nginx.add_http_site([DOMAIN], self.webroot, [(LOOPBACK, self.http_port)], default=True)
        self.nginx.start()
        self.initial_fingerprint = self.served_fingerprint()

        self.trust_path = w / "trust.pem"
        self.write_trust()
        self.exporter = self._start_exporter()
        self.renewer = self._start_renewer()

        self.oncall = self.group.add(Receiver())
        self.oncall.start()
        self.alertmanager = self.group.add(Alertmanager(w / "alertmanager", self.alertmanager_config()))
        self.alertmanager.start()

        rules = self.render_rules()
        self.prometheus = self.group.add(
            Prometheus(
                w / "prometheus",
                [
                    _static("certloop-exporter", self.exporter_port),
                    self._renewer_scrape(),
                ],
                [rules],
                self.alertmanager.url,
            )
        )
        self.prometheus.start()

    def _renewer_scrape(self) -> dict[str, Any]:
        job = _static("certloop-renewer", self.renewer_port)
        if self.people:  # the renewer's /metrics then needs credentials too
            job["authorization"] = {"type": "Bearer", "credentials_file": str(self.workdir / "renewer.token")}
        return job

    def write_trust(self) -> None:
        """The exporter's trust bundle: the demo CA plus this pebble run's issuing root."""
        self.trust_path.write_bytes(self.demo_ca.read_bytes() + self.pebble.root_pem())

    def render_rules(self) -> Path:
        """The mixin's rules with short `for:` durations, written as a Prometheus rule file."""
        from certloop.alerting.build import evaluate  # the rules the product ships, not a copy

        path = self.workdir / "certloop.rules.yml"
        path.write_text(yaml.safe_dump(evaluate(FAST_RULES_PATCH), sort_keys=False))
        return path

    def alertmanager_config(self) -> str:
        token_file = self.workdir / "renewer.token"
        token_file.write_text(self.token)
        token_file.chmod(0o600)
        conf = {
            "route": {
                "receiver": "oncall",
                "group_by": ["alertname", "certificate"],
                "group_wait": "1s",
                "group_interval": "1s",
                "repeat_interval": self.repeat_interval,
                "routes": [
                    {
                        "receiver": "certloop-renewer",
                        "matchers": [f'alertname=~"{RENEWAL_ALERTS}"', 'certificate!=""'],
                        "continue": True,
                    },
                    {"receiver": "oncall"},
                ],
            },
            # A critical alert silences the warning about the same certificate.
            "inhibit_rules": [
                {
                    "source_matchers": ["severity=critical"],
                    "target_matchers": ["severity=~warning|info"],
                    "equal": ["certificate", "target"],
                }
            ],
            "receivers": [
                {
                    "name": "certloop-renewer",
                    "webhook_configs": [
                        {
                            "url": f"http://{LOOPBACK}:{self.renewer_port}/api/v1/alertmanager",
                            "send_resolved": False,
                            "http_config": {"authorization": {"type": "Bearer", "credentials_file": str(token_file)}},
                        }
                    ],
                },
                {"name": "oncall", "webhook_configs": [{"url": f"{self.oncall.url}/oncall", "send_resolved": True}]},
            ],
        }
        return yaml.safe_dump(conf, sort_keys=False)

    def _certloop(self, name: str, args: list[str], port: int) -> Process:
        proc = self.group.add(
            Process([self.python, "-m", "certloop.cli", *args, f"--log.format={self.log_format}"], name=name,
                    log_path=self.workdir / f"{name}.log")
        )
        proc.start()
        proc.wait_until(lambda: answers_ok(f"http://{LOOPBACK}:{port}/-/healthy"), 30, f"{name} healthy")
        return proc

    def _start_exporter(self) -> Process:
        conf = {
            "global": {
                "interval": "1s", "files_interval": "1s", "jitter": "0s", "ca_file": str(self.trust_path),
                "resolver": [self.dns.dns_address],
            },
            "endpoints": [
                {
                    "targets": [f"{DOMAIN}:{self.tls_port}"],
                    "expect_file": str(self.chain_path),
                    "labels": {"certificate": CERT_ID, "team": "web"},
                }
            ],
            "files": [{"paths": [str(self.chain_path)], "labels": {"certificate": CERT_ID, "team": "web"}}],
        }
        path = self.workdir / "exporter.yml"
        path.write_text(yaml.safe_dump(conf, sort_keys=False))
        return self._certloop(
            "exporter",
            ["exporter", "--config.file", str(path), "--web.listen-address", f"{LOOPBACK}:{self.exporter_port}",
             "--web.enable-lifecycle"],  # reload_exporter() re-reads its trust bundle over HTTP
            self.exporter_port,
        )

    def renewer_config(self) -> dict[str, Any]:
        keyfile = self.workdir / "keystore.key"
        if not keyfile.exists():
            keyfile.write_text(secrets.token_hex(32))
            keyfile.chmod(0o600)
        return {
            "listen": f"{LOOPBACK}:{self.renewer_port}",
            "auth": {"token_file": str(self.workdir / "renewer.token"), **({"users": {u: u for u in self.users}}
                                                                          if self.users else {})},
            "data_dir": str(self.workdir / "renewer-data"),
            "keystore": {"key_file": str(keyfile)},
            "worker": {"concurrency": 1, "backoff_base": "1s", "backoff_max": "3s", "poll_interval": "250ms",
                       "max_attempts": self.max_attempts},
            # The safety net is covered by its own tests; here the alert path must do the work.
            "scheduler": {"enabled": False},
            "certificates": [
                {
                    "id": CERT_ID,
                    "domains": [DOMAIN],
                    "issuer": {
                        "type": "acme",
                        "directory": self.pebble.directory_url,
                        "ca_bundle": str(self.pebble.ca_bundle_path),
                        "email": f"ops@{DOMAIN}",
                        "http01": {"webroot": str(self.webroot)},
                        "poll_timeout": "30s",
                    },
                    "outputs": {"fullchain": str(self.chain_path), "key": str(self.key_path)},
                    "deploy": [self.nginx.argv_for("test"), self.nginx.argv_for("reload")],
                    "verify": {
                        "endpoints": [{"endpoint": f"{LOOPBACK}:{self.tls_port}", "server_name": DOMAIN}],
                        "timeout": "20s",
                    },
                    "renew_before": "1/3",
                    "min_lifetime": "1h",
                }
            ],
        }

    def _start_renewer(self) -> Process:
        (self.workdir / "renewer.token").write_text(self.token)
        path = self.workdir / "renewer.yml"
        path.write_text(yaml.safe_dump(self.renewer_config(), sort_keys=False))
        args = ["renewer", "--config.file", str(path), "--web.listen-address", f"{LOOPBACK}:{self.renewer_port}"]
        if self.users:
            web = self.workdir / "renewer-web.yml"
            hashes = {u: bcrypt.hashpw(p.encode(), bcrypt.gensalt(rounds=10)).decode() for u, p in self.users.items()}
            web.write_text(yaml.safe_dump({"basic_auth_users": hashes}))
            web.chmod(0o600)
            args.append(f"--web.config.file={web}")
        return self._certloop("renewer", args, self.renewer_port)

    def stop(self) -> None:
        self.group.stop_all()

    # -- observe ------------------------------------------------------------------------------

    @property
    def urls(self) -> dict[str, str]:
        return {
            "prometheus": self.prometheus.url,
            "alertmanager": self.alertmanager.url,
            "exporter": f"http://{LOOPBACK}:{self.exporter_port}/metrics",
            "renewer API": f"http://{LOOPBACK}:{self.renewer_port}/api/v1/certificates  (Bearer token in "
            f"{self.workdir / 'renewer.token'})",
            **({"status page": f"http://{LOOPBACK}:{self.renewer_port}/status"} if self.users else {}),
            "nginx": f"https://{DOMAIN}:{self.tls_port}/  (resolves to {LOOPBACK} via DNS {self.dns.dns_address})",
            "pebble": self.pebble.directory_url,
        }

    def served_fingerprint(self) -> str:
        """SHA-256 of the leaf nginx serves for DOMAIN right now."""
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with socket.create_connection((LOOPBACK, self.tls_port), timeout=5) as raw, ctx.wrap_socket(
            raw, server_hostname=DOMAIN
        ) as tls:
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der).fingerprint(hashes.SHA256()).hex()

    def renewer_api(self, path: str) -> Any:
        r = requests.get(
            f"http://{LOOPBACK}:{self.renewer_port}{path}", headers={"Authorization": f"Bearer {self.token}"}, timeout=5
        )
        r.raise_for_status()
        return r.json()

    def firing(self) -> dict[str, dict[str, str]]:
        """Alerts firing in Prometheus for our certificate, by alert name -> labels."""
        out: dict[str, dict[str, str]] = {}
        for a in self.prometheus.alerts():
            labels = a.get("labels", {})
            if a.get("state") == "firing" and labels.get("certificate") == CERT_ID:
                out[labels["alertname"]] = labels
        return out

    def watch(
        self,
        until: Callable[[ClosedLoop, list[Event]], str | None],
        *,
        timeout: float,
        waiting_for: str,
        events: list[Event] | None = None,
    ) -> list[Event]:
        """Poll every peer, narrate each change through `say`, return when `until` gives a final message."""
        events = events if events is not None else []
        start = time.monotonic()
        seen_alerts: set[str] = set()
        seen_jobs: dict[str, str] = {}
        seen_notes = 0
        fingerprint = None

        def emit(kind: str, text: str) -> None:
            ev = Event(round(time.monotonic() - start, 1), kind, text)
            events.append(ev)
            self.say(f"[{ev.at:5.1f}s] {kind:<9} {text}")

        deadline = start + timeout
        while True:
            firing = self.firing()
            for name in sorted(set(firing) - seen_alerts):
                emit("alert", f"{name} firing (severity={firing[name].get('severity')}, certificate={CERT_ID})")
            for name in sorted(seen_alerts - set(firing)):
                emit("resolved", f"{name} resolved")
            seen_alerts = set(firing)
            for note in self.oncall.requests[seen_notes:]:
                body = note.json()
                names = sorted({a["labels"].get("alertname", "?") for a in body.get("alerts", [])})
                emit("notify", f"on-call receiver got {body.get('status')}: {', '.join(names)}")
            seen_notes = len(self.oncall.requests)
            for job in self.renewer_api("/api/v1/jobs").get("jobs", []):
                key = str(job.get("id"))
                state = str(job.get("state"))
                if seen_jobs.get(key) != state:
                    reason = job.get("last_error") or job.get("reason") or job.get("trigger") or ""
                    emit("renewal", f"job {key} for {job.get('certificate')}: {state} {reason}".rstrip())
                    seen_jobs[key] = state
            fp = self.served_fingerprint()
            if fp != fingerprint:
                label = "the seeded expiring certificate" if fp == self.initial_fingerprint else "a NEW certificate"
                emit("served", f"nginx serves {label} sha256={fp[:16]}…")
                fingerprint = fp
            final = until(self, events)
            if final is not None:
                emit("done", final)
                return events
            if time.monotonic() > deadline:
                raise LoopTimeout(waiting_for, events)
            time.sleep(0.5)

    def watch_until_closed(self, timeout: float = 60.0) -> list[Event]:
        """From the seeded certificate to: alert fired, renewed, new leaf served, alert resolved."""

        def closed(loop: ClosedLoop, events: list[Event]) -> str | None:
            fired = {e.text.split()[0] for e in events if e.kind == "alert" and "CertificateExpir" in e.text}
            resolved = {e.text.split()[0] for e in events if e.kind == "resolved"}
            renewed = any(e.kind == "served" and "NEW" in e.text for e in events)
            if fired and renewed and fired <= resolved:
                return "loop closed: expiry noticed, alert fired, certificate renewed and served, alert resolved"
            return None

        return self.watch(closed, timeout=timeout, waiting_for="the loop to close")


def _static(job: str, port: int) -> dict[str, Any]:
    return {"job_name": job, "static_configs": [{"targets": [f"{LOOPBACK}:{port}"]}]}



def reload_exporter(loop: ClosedLoop) -> None:
    """Re-read the exporter's config (and its trust bundle) through its lifecycle endpoint."""
    r = requests.post(f"http://{LOOPBACK}:{loop.exporter_port}/-/reload", timeout=10)
    r.raise_for_status()
