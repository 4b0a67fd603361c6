"""A real pebble (Debian's ACME test server) on loopback, with its own minted HTTPS certificate.

    pebble = Pebble(workdir, dns_server=challtestsrv.dns_address, http_port=nginx_http_port)
    pebble.start()
    pebble.directory_url        # https://127.0.0.1:PORT/dir
    pebble.ca_bundle_path       # trusts pebble's HTTPS endpoint (give it to ACME clients)
    pebble.root_pem()           # the issuing root of *this run* (pebble makes a new one per start)
    pebble.trust_bundle_path    # that root written to a file, for verifying issued certificates

Debian's pebble ships no test certificates, so a throwaway CA and a 127.0.0.1/localhost server
certificate are minted with ``cryptography`` in ``workdir``. Validation talks to ``http_port`` /
``tls_port`` on the address the DNS server returns. ``certificate_validity`` (seconds) sets pebble's
``certificateValidityPeriod`` (supported by the installed 2.4.0) for short-lived test certificates.
"""

from __future__ import annotations

import ipaddress
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from stack.process import LOOPBACK, Peer, PeerApiError, Process, answers_ok, free_port, require_binary

START_TIMEOUT = 15.0


class PebbleError(PeerApiError):
    """pebble's management or ACME endpoint answered with an error."""

    peer = "pebble"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def mint_server_certificate(directory: Path) -> tuple[Path, Path, Path]:
    """Write ``ca.pem``, ``server.pem`` and ``server.key`` for 127.0.0.1/localhost; return their paths."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("certloop stack pebble HTTPS CA"))
        .issuer_name(_name("certloop stack pebble HTTPS CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.DNSName("pebble"), x509.IPAddress(ipaddress.ip_address(LOOPBACK))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    paths = (directory / "ca.pem", directory / "server.pem", directory / "server.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].touch(mode=0o600)
    paths[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


class Pebble(Peer):
    """pebble with ACME on a free port and the management interface on another; restartable."""

    def __init__(
        self,
        workdir: Path,
        dns_server: str,
        http_port: int = 5002,
        tls_port: int = 5001,
        *,
        always_valid: bool = False,
        certificate_validity: int | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.binary = require_binary("pebble", "pebble")
        self.workdir = workdir.resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.dns_server = dns_server
        self.http_port = http_port
        self.tls_port = tls_port
        self.always_valid = always_valid
        self.certificate_validity = certificate_validity
        self.extra_env = dict(extra_env or {})
        self.port = free_port()
        self.management_port = free_port()
        self.config_path = self.workdir / "pebble-config.json"
        self.ca_bundle_path, self._cert_path, self._key_path = mint_server_certificate(self.workdir / "https")
        self.trust_bundle_path = self.workdir / "issuing-root.pem"

    @property
    def directory_url(self) -> str:
        return f"https://{LOOPBACK}:{self.port}/dir"

    @property
    def management_url(self) -> str:
        return f"https://{LOOPBACK}:{self.management_port}"

    def config(self) -> dict[str, object]:
        conf: dict[str, object] = {
            "listenAddress": f"{LOOPBACK}:{self.port}",
            "managementListenAddress": f"{LOOPBACK}:{self.management_port}",
            "certificate": str(self._cert_path),
            "privateKey": str(self._key_path),
            "httpPort": self.http_port,
            "tlsPort": self.tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }
        if self.certificate_validity is not None:
            conf["certificateValidityPeriod"] = self.certificate_validity
        return {"pebble": conf}

    def env(self) -> dict[str, str]:
        env = {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", **self.extra_env}
        if self.always_valid:
            env["PEBBLE_VA_ALWAYS_VALID"] = "1"
        return env

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start (again) on the same ports; wait until the directory answers; save this run's root."""
        self.config_path.write_text(json.dumps(self.config(), indent=2))
        argv = [self.binary, "-config", str(self.config_path), "-dnsserver", self.dns_server]
        self.process = Process(argv, name="pebble", log_path=self.workdir / "pebble.log", env=self.env()).start()
        self.process.wait_until(self._ready, timeout, f"{self.directory_url} over HTTPS")
        self.trust_bundle_path.write_bytes(self.root_pem())

    def _ready(self) -> bool:
        return answers_ok(self.directory_url, verify=str(self.ca_bundle_path))

    def directory(self) -> dict[str, object]:
        """The ACME directory object."""
        directory: dict[str, object] = self._get(self.directory_url).json()
        return directory

    def _get(self, url: str) -> requests.Response:
        try:
            response = requests.get(url, verify=str(self.ca_bundle_path), timeout=5)
        except requests.RequestException as exc:
            raise PebbleError(url, None, str(exc)) from exc
        if response.status_code != 200:
            raise PebbleError(url, response.status_code, response.text)
        return response

    def root_pem(self) -> bytes:
        """The issuing root pebble generated at this start (``/roots/0``)."""
        return self._get(f"{self.management_url}/roots/0").content

    def intermediate_pem(self) -> bytes:
        """The issuing intermediate of this start (``/intermediates/0``)."""
        return self._get(f"{self.management_url}/intermediates/0").content
