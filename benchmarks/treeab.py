"""Two certloop trees side by side on ``/probe``: the same nginx targets, the same wrk, interleaved rounds.

    git archive OLD_COMMIT | tar -x -C /tmp/old-tree
    python -m benchmarks.treeab --tree /tmp/old-tree --tree . --layout ports --key ecdsa --n 1000

Why: on a shared machine two separate benchmark runs differ by more than a change is worth; what a
change to certloop costs shows only when both versions run in the same minutes against the same
targets. Each tree's exporter is started with that tree as its working directory (``python -m
certloop.cli`` imports certloop from there); order alternates per round. Prints probes/s and exporter
CPU per probe per tree.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from benchmarks import procstat
from benchmarks.load import run_wrk
from benchmarks.peers import daemon_pid, start_exporter
from benchmarks.pki import Minter
from benchmarks.probe import CERTLOOP_SUCCESS, Variant, certloop_paths, serve_targets
from stack.daemons import CertloopDaemon


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.treeab", description=__doc__.split("\n")[0])
    p.add_argument("--tree", action="append", required=True, type=Path, help="a certloop checkout (twice)")
    p.add_argument("--layout", choices=["ports", "sni"], default="ports")
    p.add_argument("--key", choices=["ecdsa", "rsa"], default="ecdsa")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--seconds", type=int, default=5)
    args = p.parse_args()
    here = Path.cwd()
    work = Path(tempfile.mkdtemp(prefix="treeab-"))
    variant = Variant(args.layout, args.key, args.n)
    with serve_targets(variant, work, Minter(work / "pki")) as (targets, _):
        config = {"global": {"ca_file": str(targets.ca_path), "interval": "24h", "files_interval": "24h",
                             "jitter": "0s"}}
        daemons: dict[str, CertloopDaemon] = {}
        for i, tree in enumerate(args.tree):
            os.chdir(tree.resolve())
            daemons[f"{i}:{tree}"] = start_exporter(work / f"tree{i}", config)
        os.chdir(here)
        paths = certloop_paths(variant, targets)
        tally = {name: [0, 0.0] for name in daemons}
        try:
            for daemon in daemons.values():
                run_wrk(daemon.url, paths, seconds=1, workdir=work, success=CERTLOOP_SUCCESS)
            for r in range(args.rounds):
                for name in (list(daemons) if r % 2 == 0 else list(reversed(daemons))):
                    pid = daemon_pid(daemons[name])
                    cpu0 = procstat.cpu_seconds(pid)
                    load = run_wrk(daemons[name].url, paths, seconds=args.seconds, workdir=work,
                                   success=CERTLOOP_SUCCESS)
                    tally[name][0] += load.requests
                    tally[name][1] += procstat.cpu_seconds(pid) - cpu0
                    print(f"round {r + 1} {name}: {load.rate:.0f} probes/s, failures "
                          f"{load.failures + load.socket_errors}", flush=True)
        finally:
            for daemon in daemons.values():
                daemon.stop()
    for name, (probes, cpu) in tally.items():
        print(f"{name}: {probes / (args.rounds * args.seconds):.0f} probes/s, "
              f"exporter CPU {cpu / probes * 1000:.3f} ms/probe" if probes else f"{name}: no probes")


if __name__ == "__main__":
    main()
