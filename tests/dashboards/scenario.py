"""A small real estate for the dashboards: nginx sites, certificate files, DNS, exporter and renewer configs.

Every state a dashboard panel shows is produced by the real components:
- `shop.test` resolves (via pebble-challtestsrv DNS) to 127.0.0.1 and 127.0.0.2; nginx serves an
  expiring leaf on .1 and an expired one on .2 -> expiring, expired, addresses inconsistent; the group's
  `expect_file` holds a third leaf -> drift;
- `weak.test` serves a self-signed certificate -> invalid verdict (self_signed);
- `wrong.test` serves a leaf the test CA issued for another name -> hostname_mismatch;
- `down.test` points at a port nobody listens on -> probe failure `refused`;
- a directory of certificate files, one with an RSA-1024 key -> `source="file"` series, weak crypto
  (nginx's OpenSSL refuses to serve a 1024-bit key, so the weak key is observed as a file);
- the renewer's output files, seeded with expiring leaves and watched as files labelled with the renewer's
  certificate ids: the mixin's expiry alerts fire for them and Alertmanager sends them to the renewer,
  which renews them (see `renewer_config` for how each ends). The loop is closed: nothing posts alerts
  by hand.
"""

from __future__ import annotations

import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import requests
import yaml

from stack.challtestsrv import ChallTestSrv
from stack.loop import FAST_RULES_PATCH, RENEWAL_ALERTS
from stack.nginx import Nginx
from stack.pebble import Pebble
from stack.process import LOOPBACK, Process, free_port
from tests.support.pki import Pki

SHOP, WEAK, DOWN, WRONG = "shop.test", "weak.test", "down.test", "wrong.test"
# The renewer's certificates and the result each renewal must end with (see renewer_config).
RENEWALS: Mapping[str, str] = {"renewed": "succeeded", "unreachable-ca": "failed", "not-served": "rolled_back",
                               "deploy-fails": "rolled_back"}


@dataclass(frozen=True)
class Estate:
    exporter_config: Path
    tls_port: int
    root_ca: Path


def renewer_outputs(workdir: Path) -> Path:
    """Where the renewer installs (`<id>.pem`, `<id>.key`) and the exporter watches."""
    return workdir / "renewer-out"


def build_estate(workdir: Path, pki: Pki, nginx: Nginx, dns: ChallTestSrv, extra_trust: bytes) -> Estate:
    """Write certificates, configure and start nginx, publish DNS records, write the exporter config.

    `extra_trust` (pebble's root) joins the test CA in the exporter's trust bundle, so a renewed
    certificate verifies as the renewer installed it.
    """
    certs = workdir / "certs"
    certs.mkdir(parents=True)
    files = workdir / "files"
    files.mkdir()
    port, refused = free_port(), free_port()

    expiring = pki.leaf([SHOP], not_before=pki.now - timedelta(days=85), not_after=pki.now + timedelta(days=5))
    expired = pki.leaf([SHOP], not_before=pki.now - timedelta(days=91), not_after=pki.now - timedelta(days=1))
    on_disk = pki.leaf([SHOP], days=90)  # renewed on disk but never reloaded
    weak = pki.self_signed([WEAK])
    elsewhere = pki.leaf(["elsewhere.test"], days=60)  # valid chain, but not for the name asked
    served = {name: issued.write(certs, name) for name, issued in
              (("expiring", expiring), ("expired", expired), ("on_disk", on_disk), ("weak", weak),
               ("elsewhere", elsewhere))}
    pki.leaf(["files.test"], days=60).write(files, "app")
    pki.leaf(["legacy.test"], days=60, key_kind="rsa1024").write(files, "legacy")
    out = renewer_outputs(workdir)
    out.mkdir()
    for cert_id in RENEWALS:
        due = pki.leaf([f"{cert_id}.test"], not_before=pki.now - timedelta(days=85),
                       not_after=pki.now + timedelta(days=5))
        (out / f"{cert_id}.pem").write_bytes(due.fullchain_pem)
        (out / f"{cert_id}.key").write_bytes(due.key_pem)
        (out / f"{cert_id}.key").chmod(0o600)
    # nginx serves the seeded `not-served` leaf and is never reloaded: the renewed leaf does not verify, the
    # restored one does -> rolled back.
    nginx.add_site(["not-served.test"], out / "not-served.pem", out / "not-served.key", [(LOOPBACK, port)])

    nginx.add_site([SHOP], served["expiring"]["fullchain"], served["expiring"]["key"], [(LOOPBACK, port)])
    nginx.add_site([SHOP], served["expired"]["fullchain"], served["expired"]["key"], [("127.0.0.2", port)])
    nginx.add_site([WEAK], served["weak"]["fullchain"], served["weak"]["key"], [(LOOPBACK, port)], default=True)
    nginx.add_site([WRONG], served["elsewhere"]["fullchain"], served["elsewhere"]["key"], [(LOOPBACK, port)])
    nginx.start()
    dns.add_a(SHOP, [LOOPBACK, "127.0.0.2"])
    dns.add_a(WEAK, [LOOPBACK])
    dns.add_a(DOWN, [LOOPBACK])
    dns.add_a(WRONG, [LOOPBACK])

    root = pki.write_root(workdir / "root.pem")
    root.write_bytes(root.read_bytes() + extra_trust)
    config: dict[str, Any] = {
        "global": {"interval": "1s", "files_interval": "1s", "jitter": "0s", "connect_timeout": "2s",
                   "handshake_timeout": "2s", "ca_file": str(root), "resolver": [dns.dns_address]},
        "endpoints": [
            {"targets": [f"{SHOP}:{port}"], "expect_file": str(served["on_disk"]["fullchain"]),
             "labels": {"certificate": "shop", "team": "web"}},
            {"targets": [f"{WEAK}:{port}"], "labels": {"certificate": "weak", "team": "web"}},
            {"targets": [f"{DOWN}:{refused}"], "labels": {"team": "ops"}},
            {"targets": [f"{WRONG}:{port}"], "labels": {"certificate": "wrong", "team": "web"}},
        ],
        "files": [{"paths": [str(files)], "include": ["*.fullchain.pem"],
                   "labels": {"certificate": "app", "team": "ops"}},
                  *({"paths": [str(out / f"{cert_id}.pem")], "labels": {"certificate": cert_id, "team": "renew"}}
                    for cert_id in RENEWALS)],
    }
    path = workdir / "exporter.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return Estate(path, port, root)


def renewer_config(workdir: Path, pebble: Pebble, verify_endpoint: str) -> tuple[Path, str]:
    """A renewer config (sqlite in its data dir, bearer token) for four certificates, and the token.

    - `renewed`: pebble (validation disabled) issues, no deploy step -> succeeded;
    - `unreachable-ca`: its ACME directory is a closed port -> failed;
    - `not-served`: issued, but `verify_endpoint` keeps serving the previous leaf (nginx is not reloaded)
      -> rolled back, the previous leaf verified as served again;
    - `deploy-fails`: issued and installed, then its deploy (reload) step exits 3 -> rolled back.

    Let's Encrypt's default rate limits apply to Let's Encrypt's directories only, so the config sets a
    limit of its own for every CA (as a site with a private CA would): the headroom panels need one.
    """
    token = secrets.token_hex(16)
    data = workdir / "renewer-data"
    out = renewer_outputs(workdir)
    for d in (data, workdir / "webroot"):
        d.mkdir()

    def cert(cert_id: str, directory: str, **extra: Any) -> dict[str, Any]:
        return {"id": cert_id, "domains": [f"{cert_id}.test"],
                "issuer": {"type": "acme", "directory": directory, "ca_bundle": str(pebble.ca_bundle_path),
                           "http01": {"webroot": str(workdir / "webroot")}, "poll_timeout": "10s"},
                "outputs": {"fullchain": str(out / f"{cert_id}.pem"), "key": str(out / f"{cert_id}.key")},
                **extra}

    config = {
        "auth": {"token": token},
        "data_dir": str(data),
        # One job at a time: Alertmanager delivers the four alerts together, and concurrent first orders on
        # one new ACME account were seen to fail with a ConflictError from pebble (reported, not covered here).
        "worker": {"concurrency": 1, "max_attempts": 1, "poll_interval": "1s", "backoff_base": "1s",
                   "lease": "30s"},
        # Renewals start only from the test's alerts, after Prometheus has scraped the counters at 0: that
        # ordering is what shows a certificate's first failure reaching increase() (renewer/metrics.py declare).
        "scheduler": {"enabled": False},
        "rate_limits": [{"name": "orders_per_account", "scope": "account", "limit": 300, "window": "3h"}],
        "certificates": [
            cert("renewed", pebble.directory_url),
            cert("unreachable-ca", f"https://{LOOPBACK}:{free_port()}/dir"),
            cert("not-served", pebble.directory_url,
                 verify={"endpoints": [{"endpoint": verify_endpoint, "server_name": "not-served.test"}],
                         "timeout": "2s"}),
            cert("deploy-fails", pebble.directory_url,
                 deploy=[[sys.executable, "-c", "import sys; sys.exit(3)"]]),
        ],
    }
    path = workdir / "renewer.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path, token


def alertmanager_config(renewer_address: str, token_file: Path) -> str:
    """Alertmanager routing the mixin's renewal alerts to the renewer's webhook (as alerting/alertmanager
    does), everything else nowhere. `group_wait` leaves Prometheus several scrapes of the renewer's counters
    at 0 before the first renewal can start."""
    config = {
        "route": {"receiver": "nowhere", "group_by": ["alertname", "certificate"], "group_wait": "4s",
                  "group_interval": "5s", "repeat_interval": "1h",
                  "routes": [{"receiver": "certloop-renewer",
                              "matchers": [f'alertname=~"{RENEWAL_ALERTS}"', 'certificate!=""']}]},
        "receivers": [
            {"name": "nowhere"},
            {"name": "certloop-renewer", "webhook_configs": [{
                "url": f"http://{renewer_address}/api/v1/alertmanager", "send_resolved": False,
                "http_config": {"authorization": {"type": "Bearer", "credentials_file": str(token_file)}}}]},
        ],
    }
    return yaml.safe_dump(config, sort_keys=False)


def rule_file(workdir: Path) -> Path:
    """The mixin's recording and alerting rules with `for: 0s` (stack/loop.py's patch), as a rule file."""
    from certloop.alerting.build import evaluate  # the rules the product ships, not a copy

    path = workdir / "certloop.rules.yml"
    path.write_text(yaml.safe_dump(evaluate(FAST_RULES_PATCH), sort_keys=False))
    return path


def start_component(argv: list[str], name: str, workdir: Path) -> tuple[Process, str]:
    """Start `certloop <component> ...` on a free loopback port; wait until /metrics answers."""
    port = free_port()
    address = f"{LOOPBACK}:{port}"
    proc = Process([*argv, "--web.listen-address", address], name=name, log_path=workdir / f"{name}.log").start()

    def metrics_up() -> bool:
        try:
            return requests.get(f"http://{address}/metrics", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    proc.wait_until(metrics_up, 20, f"http://{address}/metrics answering")
    return proc, address
