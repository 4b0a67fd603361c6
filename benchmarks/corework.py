"""Instruction counts of certloop's per-certificate core work, for A/B between two trees.

    python -m benchmarks.corework --tree /tmp/before --tree .
    python -m benchmarks.corework --quick --tree .     # a smoke run: the harness works, numbers are rough

Two workloads, each run under callgrind at two sizes so that start-up and set-up cancel out:

* ``probe``: what ``/probe`` does with a presented chain once everything is remembered (decode the DER
  chain, assess it, render it with ``reuse``), for 200 leaves under one intermediate;
* ``files``: a first read of new fullchain files through the file source's batch reader (read, parse,
  facts, one signature check, render), 200 files.

Why: on the shared box the wall clock of ``/probe`` moves by 20 % between identical runs, so a change of
a few microseconds per probe cannot show there; instruction counts (``PYTHONHASHSEED=0``, the same
certificates for every tree, minted once per run) do not move. Each tree runs with itself as the
working directory and ``PYTHONPATH``. Trees from before :class:`certloop.caches.Caches` (module-global
caches) run too, so the change that introduced it can be compared with its parent.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple


class Size(NamedTuple):
    """How much work each of the two runs per workload does; their difference is what is reported."""

    leaves: int  # chains presented to the probe workload, and files in each set
    passes: tuple[int, int]  # probe: passes over the chains
    sets: tuple[int, int]  # files: sets of new files read


FULL = Size(200, (5, 15), (2, 3))  # differences: 2,000 probes, 200 files
QUICK = Size(10, (1, 2), (1, 2))  # differences: 10 probes, 10 files (tests/benchmarks/test_corework.py)

_WORKLOAD = r'''
import inspect, pathlib, sys
from datetime import UTC, datetime
from cryptography.hazmat.primitives.serialization import Encoding
from certloop import x509 as x
from certloop.truststore import TrustStore
from certloop.exporter import report as r
from certloop.exporter.sources import filebatch as fb
from certloop.exporter.sources.paths import stat_key

mode, size, work = sys.argv[1], int(sys.argv[2]), pathlib.Path(sys.argv[3])
explicit = "caches" in inspect.signature(x.load_der_chain).parameters  # else a tree with module globals
caches = r.ExporterCaches() if explicit else None
extra = (caches,) if explicit else ()
now = datetime.now(UTC)
if mode == "probe":  # the chains of the first set of files, as a server would present them
    from cryptography import x509 as cx
    def ders(path):
        return tuple(c.public_bytes(Encoding.DER) for c in cx.load_pem_x509_certificates(path.read_bytes()))
    chains = [ders(p) for p in sorted((work / "set0").glob("*.fullchain.pem"))]
    trust = TrustStore.from_pem((work / "root.pem").read_bytes(), *extra)
    def one(ders):
        chain = x.load_der_chain(ders, *extra)
        kw = {"caches": caches} if explicit else {}
        judged = r.assess(chain, trust=trust, at=now, hostname=None, **kw)
        obs = r.Observation("endpoint", "t:443", "127.0.0.1", True, 0.01, chain=judged)
        report = r.TargetReport("endpoint", "t:443", (), (obs,), True)
        return r.render(report, caches, reuse=True) if explicit else r.render(report, cache=True)
    for ders in chains:  # remembered from here on
        one(ders)
    for _ in range(size):
        for ders in chains:
            one(ders)
else:
    reader = fb.Reader(TrustStore.from_pem((work / "root.pem").read_bytes(), *extra), 65536, *extra)
    for s in range(size):
        paths = sorted(str(p) for p in (work / f"set{s}").glob("*.fullchain.pem"))
        results = reader.batch([fb.Job(p, stat_key(p), (("team", "web"),), None) for p in paths], now)
        assert all(res.success for res in results)
'''

_FILES = r'''
import pathlib, sys
from tests.support.pki import Pki
work, sets, leaves = pathlib.Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
pki = Pki()
for s in range(sets):
    for i in range(leaves):
        pki.leaf([f"s{s}-{i}.example"]).write(work / f"set{s}", f"f{i}")
(work / "root.pem").write_bytes(pki.root_pem)
'''


def instructions(tree: Path, mode: str, size: int, work: Path) -> int:
    """Instructions callgrind counts for one run of the workload in ``tree``."""
    out = work / f"callgrind.{os.getpid()}"
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONHASHSEED": "0"}
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-c", _WORKLOAD,
         mode, str(size), str(work)],
        cwd=tree, env=env, capture_output=True, text=True, timeout=1800, check=True,
    )
    out.unlink()
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise RuntimeError(f"no callgrind total in: {done.stderr[-500:]}")
    return int(found.group(1))


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.corework", description=__doc__.split("\n")[0])
    p.add_argument("--tree", action="append", required=True, type=Path, help="a certloop checkout (repeatable)")
    p.add_argument("--quick", action="store_true",
                   help=f"tiny sizes ({QUICK.leaves} leaves, a difference of one pass and one set): a smoke run")
    args = p.parse_args()
    size = QUICK if args.quick else FULL
    with tempfile.TemporaryDirectory(prefix="corework-") as tmp:
        work = Path(tmp)
        subprocess.run([sys.executable, "-c", _FILES, str(work), str(max(size.sets)), str(size.leaves)],
                       cwd=args.tree[0], check=True, timeout=600, env={**os.environ, "PYTHONPATH": str(args.tree[0])})
        for tree in args.tree:
            probe = [instructions(tree.resolve(), "probe", n, work) for n in size.passes]
            files = [instructions(tree.resolve(), "files", n, work) for n in size.sets]
            per_probe = (probe[1] - probe[0]) / ((size.passes[1] - size.passes[0]) * size.leaves)
            per_file = (files[1] - files[0]) / ((size.sets[1] - size.sets[0]) * size.leaves)
            print(f"{tree}: {per_probe:,.0f} instructions per probe's core work, {per_file:,.0f} per file first read")


if __name__ == "__main__":
    main()
