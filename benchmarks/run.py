"""Run the benchmarks and print ratios: ``python -m benchmarks.run [--scenario S ...] [--quick]``.

    python -m benchmarks.run --scenario all                      # the full run recorded in RESULTS.md
    python -m benchmarks.run --scenario probe --n 1000 --n 5000  # /probe at N=1,000 and 5,000
    python -m benchmarks.run --scenario probe --layout hosts --layout dns --key ecdsa  # name targets only
    python -m benchmarks.run --quick                             # every scenario, small N, a minute or two

Each scenario's table is printed when it finishes; ``--markdown FILE`` also writes all tables as
Markdown (with the machine description and the command line) for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import compileall
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks import files, probe, renewal, sweep, webhook
from benchmarks.pki import KeyKind
from benchmarks.report import Table
from certloop import __version__
from stack.process import install_signal_handlers

SCENARIOS = ("probe", "sweep", "files", "webhook", "renewal")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0])
    p.add_argument("--scenario", action="append", choices=[*SCENARIOS, "all"],
                   help="scenario to run (repeatable; default: all)")
    p.add_argument("--quick", action="store_true", help="small N and short rounds (a smoke run, not a result)")
    p.add_argument("--n", type=int, action="append", help="/probe target counts (default 1000 and 5000; quick 200)")
    p.add_argument("--rsa", action="store_true", help="also RSA leaves in /probe (default: ECDSA and RSA unless quick)")
    p.add_argument("--key", action="append", choices=["ecdsa", "rsa"],
                   help="/probe leaf key types (repeatable; overrides --rsa and the default)")
    p.add_argument("--probe-workers", type=int, default=0, metavar="N",
                   help="start certloop with --web.probe-workers N (default 0: one process, as shipped); CPU and "
                        "peak RSS then count every process")
    p.add_argument("--server-warm-passes", type=int, default=probe.SERVER_WARM_PASSES, metavar="K",
                   help=f"/probe: handshake every target K times before measuring (default "
                        f"{probe.SERVER_WARM_PASSES}; 0: nginx's first use of each key falls on the side that probes "
                        f"first, as before this flag)")
    p.add_argument("--layout", action="append", choices=list(probe.LAYOUTS),
                   help="/probe target layouts (repeatable; default all: ports, sni = IP targets; hosts, dns = "
                        "name targets resolved through a private hosts file or a DNS server)")
    p.add_argument("--rounds", type=int, help="interleaved A/B rounds per variant (default 3; quick 1)")
    p.add_argument("--seconds", type=int, help="seconds of load per round and side (default 5; quick 2)")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--sweep-n", type=int, help="inventory sweep endpoints (default 5000; quick 200)")
    p.add_argument("--files-n", type=int, help="certificate files (default 10000; quick 500)")
    p.add_argument("--webhook-certificates", type=int, help="managed certificates (default 200; quick 20)")
    p.add_argument("--workdir", type=Path, help="keep everything here (default: a temp dir, removed after)")
    p.add_argument("--markdown", type=Path, help="also write the tables as Markdown to this file")
    return p


def machine() -> list[str]:
    """nproc, CPU model, kernel, versions of the peers and tools."""
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "unknown")

    def version(argv: list[str]) -> str:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        except OSError:
            return "missing"
        text = (done.stdout + done.stderr).strip().splitlines()
        return text[0] if text else "unknown"

    return [
        f"CPU: {os.cpu_count()} x {model} (nproc {len(os.sched_getaffinity(0))}); kernel {platform.release()}",
        f"certloop {__version__}, Python {platform.python_version()}",
        f"blackbox: {version(['prometheus-blackbox-exporter', '--version'])}",
        f"nginx: {version(['nginx', '-v'])}",
        f"wrk: {version(['wrk', '-v'])}",
        f"load average at start: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}",
    ]


def compile_bytecode() -> None:
    """Write the daemons' bytecode before anything is timed, as an installed package has it.

    pip compiles a package when it installs it (the Docker image does); a checkout run with
    ``PYTHONDONTWRITEBYTECODE=1`` in the environment has no ``.pyc`` for certloop's own modules and
    compiles all of them on every start (~40 ms here), which the start-up figures would then include.
    """
    root = Path(__file__).resolve().parent.parent
    for package in ("certloop", "exporter", "renewer"):
        compileall.compile_dir(root / package, quiet=1)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    install_signal_handlers()
    chosen = SCENARIOS if not args.scenario or "all" in args.scenario else tuple(args.scenario)
    quick = args.quick
    rounds = args.rounds or (1 if quick else 3)
    seconds = args.seconds or (2 if quick else 5)
    ns = args.n or ([200] if quick else [1000, 5000])
    keys: list[KeyKind] = args.key or (["ecdsa", "rsa"] if (args.rsa or not quick) else ["ecdsa"])
    say: Callable[[str], None] = lambda text: print(text, flush=True)  # noqa: E731 - a one-line sink
    work = args.workdir or Path(tempfile.mkdtemp(prefix="certloop-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    compile_bytecode()
    head = machine()
    for line in head:
        say(line)
    tables: list[Table] = []
    started = time.monotonic()
    try:
        for name in chosen:
            say(f"\n### scenario {name}")
            t0 = time.monotonic()
            where = work / name
            if name == "probe":
                got = probe.run(where, ns=ns, keys=keys, rounds=rounds, seconds=seconds,
                                concurrency=args.concurrency, say=say, layouts=args.layout or probe.LAYOUTS,
                                probe_workers=args.probe_workers, server_warm_passes=args.server_warm_passes)
            elif name == "sweep":
                got = sweep.run(where, n=args.sweep_n or (200 if quick else 5000), rounds=rounds,
                                concurrency=args.concurrency, say=say)
            elif name == "files":
                got = files.run(where, n=args.files_n or (500 if quick else 10000), resweeps=2 if quick else 5,
                                first_starts=1 if quick else 3, say=say)
            elif name == "webhook":
                got = webhook.run(where, certificates=args.webhook_certificates or (20 if quick else 200),
                                  seconds=seconds if quick else 10, concurrencies=[8, args.concurrency], say=say)
            else:
                got = renewal.run(where, attempts=1 if quick else 3, say=say)
            for table in got:
                say(table.text())
            tables += got
            say(f"(scenario {name}: {time.monotonic() - t0:.0f} s)")
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    say(f"\nall done in {time.monotonic() - started:.0f} s")
    if args.markdown is not None:
        command = "python -m benchmarks.run " + " ".join(sys.argv[1:] if argv is None else argv)
        text = "\n".join([f"Command: `{command}`", "", *[f"- {line}" for line in head], ""])
        text += "\n" + "\n".join(t.markdown() for t in tables)
        args.markdown.write_text(text)
        say(f"wrote {args.markdown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
