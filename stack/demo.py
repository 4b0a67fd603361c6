"""`make demo` / `certloop demo`: certloop closing the loop live, on loopback, with no internet.

1. Demo certificates (healthy, expiring in 5 days, expired, wrong host) are served by a real nginx and
   shown with `certloop check`.
2. The closed loop starts: DNS, pebble (ACME), nginx with `shop.demo` about to expire, the certloop
   exporter and renewer, Prometheus with certloop's rules, Alertmanager with the renewal route.
3. The terminal narrates: what was seen, which alert fired, the renewal steps, the new certificate
   served, the alert resolved. Then the stack keeps running, URLs printed, until Ctrl-C; everything
   started is stopped by PID on exit.
"""

from __future__ import annotations

import shutil
import signal
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from certloop.exitcodes import ExitCode, UsageParser
from certloop.exporter.check import main as check_main
from stack.loop import DOMAIN, ClosedLoop, LoopTimeout, mint_expiring
from stack.process import LOOPBACK, free_port, install_signal_handlers

SAMPLES = (
    # (server name, days left, label)
    ("healthy.demo", 60, "healthy"),
    ("expiring.demo", 5, "expiring in 5 days"),
    ("expired.demo", -3, "expired"),
)


def _say(text: str) -> None:
    print(text, flush=True)


def _samples(loop: ClosedLoop, workdir: Path) -> tuple[list[str], Path]:
    """Serve the sample certificates from the loop's nginx on one port by SNI.

    Returns the `certloop check` targets and a trust bundle holding the samples' demo CAs.
    """
    port = free_port()
    targets = []
    cas = []
    for name, days, _ in SAMPLES:
        chain, key, ca = mint_expiring(workdir, lifetime=timedelta(days=90), left=timedelta(days=days),
                                        domain=name, name=name)
        loop.nginx.add_site([name], chain, key, [(LOOPBACK, port)])
        targets.append(f"{name}:{port}")
        cas.append(ca.read_bytes())
    # wrong host: nginx answers `wrong-host.demo` with healthy.demo's certificate
    loop.nginx.add_site(["wrong-host.demo"], workdir / "healthy.demo.pem", workdir / "healthy.demo.key",
                        [(LOOPBACK, port)])
    targets.append(f"wrong-host.demo:{port}")
    loop.nginx.reload()
    bundle = workdir / "trust.pem"
    bundle.write_bytes(b"".join(cas))
    return targets, bundle


def main(argv: Sequence[str] | None = None) -> int:
    p = UsageParser(prog="certloop demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", type=Path, default=Path(".demo"), help="state and logs (default .demo/)")
    p.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for the loop to close")
    p.add_argument("--no-wait", action="store_true", help="stop once the loop has closed (no Ctrl-C wait)")
    args = p.parse_args(argv)

    workdir = args.workdir.resolve()
    shutil.rmtree(workdir, ignore_errors=True)
    loop = ClosedLoop(workdir, say=_say, people=True)
    # SIGTERM/SIGHUP raise SystemExit (SIGINT raises KeyboardInterrupt), so `finally` stops every peer.
    # (Not an Event set from a signal handler: that can deadlock on the Event's own lock.)
    install_signal_handlers()
    loop_closed = False
    try:
        _say("== starting the stack on 127.0.0.1 (real nginx, pebble, Prometheus, Alertmanager, certloop)")
        loop.start()
        _say(f"   logs and state: {workdir}")
        _say("\n== certloop check over the demo certificates")
        targets, trust = _samples(loop, workdir / "samples")
        for name, _, _ in SAMPLES:
            loop.dns.add_a(name, [LOOPBACK])
        loop.dns.add_a("wrong-host.demo", [LOOPBACK])
        check_main([*targets, "--resolver", loop.dns.dns_address, "--ca-file", str(trust), "--warn", "21d",
                    "--crit", "7d"])
        _say(f"\n== the closed loop: {DOMAIN} has {loop.left.days} of {loop.lifetime.days} days left")
        try:
            loop.watch_until_closed(timeout=args.timeout)
            loop_closed = True
        except LoopTimeout as exc:
            _say(f"!! {exc}")
            _say(f"!! see the logs in {workdir}")
            return ExitCode.FAILURE
        _say("\n== the stack keeps running:")
        for name, url in loop.urls.items():
            _say(f"   {name:<13} {url}")
        _say("\n== sign in to the status page (HTTP basic auth; the browser asks):")
        for user, password in loop.users.items():
            _say(f"   {user:<13} user {user}, password {password}")
        if args.no_wait:
            return ExitCode.OK
        _say("\nPress Ctrl-C to stop everything.")
        while True:
            signal.pause()  # until Ctrl-C or SIGTERM ends us through the exceptions below
    except KeyboardInterrupt:
        return ExitCode.OK if loop_closed else ExitCode.INTERRUPTED
    except SystemExit as exc:
        return int(exc.code or 0) if not loop_closed else ExitCode.OK
    finally:
        _say("== stopping everything started")
        loop.stop()


if __name__ == "__main__":
    sys.exit(main())
