"""``certloop check --config`` and the exporter on one config give the same verdict for every endpoint
and every file.

Both read the exporter's config model; endpoints are probed through `certloop.probe`, files listed and
judged by the exporter's own file source, so a target and address (or a file) the exporter judges
``expired`` (or ``hostname_mismatch``, ``refused``, ``incomplete_chain``, ``not_found``...) is judged so
by check too. Real TLS servers (Python's ssl on 127.0.0.1, one per served chain) and the real exporter
(engine and HTTP server in a thread for endpoints; ``certloop exporter`` as a child process for files),
scraped over HTTP.
"""

from __future__ import annotations

import io
import json
import os
from datetime import datetime, timedelta
from pathlib import Path

import requests

from certloop.exporter.check import run
from stack.process import free_port, wait_until
from tests.exporter.support import ExporterProcess, exporter, samples, write_config
from tests.exporter.test_check import tls_server
from tests.support.pki import Pki

Judged = dict[tuple[str, str], str]


def _from_exporter(text: str, targets: list[str]) -> Judged:
    """(target, address) -> the verdict, or the failure reason, from the exporter's /metrics."""
    found: Judged = {}
    for labels, value in samples(text, "certloop_verify_verdict", source="endpoint"):
        if value == 1 and labels.get("position", "0") == "0":
            found[(labels["target"], labels["address"])] = labels["verdict"]
    for labels, value in samples(text, "certloop_probe_failure_reason", source="endpoint"):
        if value == 1:
            found[(labels["target"], labels["address"])] = labels["reason"]
    return {k: v for k, v in found.items() if k[0] in targets}


def _from_check(config: Path) -> tuple[int, Judged]:
    out = io.StringIO()
    code = run(["--config", str(config), "--output", "json"], stdout=out, stderr=io.StringIO())
    rows = json.loads(out.getvalue())["results"]
    return code, {(str(r["target"]), str(r["address"] or "")): str(r["verdict"] or r["reason"]) for r in rows}


def test_check_and_the_exporter_agree_on_every_endpoint(tmp_path: Path) -> None:
    """One config with a trusted, an expired, a mismatched, an untrusted (but trusted by its module's
    ca_file), an IP target without server_name, and a closed port: check's verdict per target and
    address equals the exporter's. Before this step check verified IP targets against the literal
    (hostname_mismatch where the exporter said ok) and ignored modules' ca_file and ip_protocol."""
    pki, other = Pki(), Pki()
    ca, other_ca = pki.write_root(tmp_path / "ca.pem"), other.write_root(tmp_path / "other.pem")
    good = pki.leaf(["shop.example"])
    expired = pki.leaf(["old.example"], not_before=pki.now - timedelta(days=100),
                       not_after=pki.now - timedelta(days=1))
    foreign = other.leaf(["c.example"])
    closed = free_port()
    with tls_server({None: good}, tmp_path / "a") as a, tls_server({None: expired}, tmp_path / "b") as b, \
            tls_server({None: foreign}, tmp_path / "c") as c:
        targets = [f"127.0.0.1:{a}", f"localhost:{a}", f"127.0.0.1:{b}", f"127.0.0.1:{c}", f"localhost:{c}",
                   f"127.0.0.1:{closed}"]
        config = write_config(tmp_path / "exporter.yml", {
            "global": {"ca_file": str(ca), "jitter": "0s", "connect_timeout": "2s", "handshake_timeout": "2s"},
            "modules": {"other": {"ca_file": str(other_ca), "server_name": "c.example", "ip_protocol": "ip4"}},
            "endpoints": [
                {"targets": [f"127.0.0.1:{a}"], "server_name": "shop.example"},  # ok
                {"targets": [f"localhost:{a}"]},  # a name the leaf does not cover
                {"targets": [f"127.0.0.1:{b}", f"127.0.0.1:{c}", f"127.0.0.1:{closed}"]},  # IP: no name
                {"targets": [f"localhost:{c}"], "module": "other"},  # trusted by the module's bundle
            ],
        })
        with exporter(config_path=config) as exp:
            judged: Judged = {}

            def swept() -> bool:
                judged.update(_from_exporter(requests.get(f"{exp.url}/metrics", timeout=10).text, targets))
                return {t for t, _ in judged} == set(targets)

            wait_until(swept, 30, "the exporter's first sweep")
        code, checked = _from_check(config)
    assert checked == judged
    assert code == 2
    assert judged[(f"127.0.0.1:{a}", "127.0.0.1")] == "ok"
    assert judged[(f"localhost:{a}", "127.0.0.1")] == "hostname_mismatch"
    assert judged[(f"127.0.0.1:{b}", "127.0.0.1")] == "expired"
    assert judged[(f"127.0.0.1:{c}", "127.0.0.1")] == "unknown_authority"
    assert judged[(f"localhost:{c}", "127.0.0.1")] == "ok"
    assert [k for k in judged if k[0] == f"localhost:{c}"] == [(f"localhost:{c}", "127.0.0.1")]  # ip4 only
    assert judged[(f"127.0.0.1:{closed}", "127.0.0.1")] == "refused"


# ------------------------------------------------------------------------------------------ files


def _files_from_exporter(text: str) -> dict[str, tuple[str, float | None, str | None]]:
    """path -> (verdict or failure reason, chain expiry, leaf fingerprint) from the exporter's /metrics."""
    verdicts = {labels["target"]: labels["verdict"]
                for labels, value in samples(text, "certloop_verify_verdict", source="file") if value == 1}
    verdicts.update({labels["target"]: labels["reason"]
                     for labels, value in samples(text, "certloop_probe_failure_reason", source="file") if value == 1})
    expiry = {labels["target"]: value for labels, value in samples(text, "certloop_chain_expiry_timestamp_seconds",
                                                                   source="file")}
    leaf = {labels["target"]: labels["fingerprint_sha256"]
            for labels, _ in samples(text, "certloop_cert_info", source="file", position="0")}
    return {path: (verdict, expiry.get(path), leaf.get(path)) for path, verdict in verdicts.items()}


def _files_from_check(config: Path) -> tuple[int, dict[str, tuple[str, float | None, str | None]], list[str]]:
    """check's exit code, path -> (verdict or reason, expiry, leaf fingerprint), and the statuses."""
    out = io.StringIO()
    code = run(["--config", str(config), "--output", "json"], stdout=out, stderr=io.StringIO())
    rows = [r for r in json.loads(out.getvalue())["results"] if r["kind"] == "file"]
    assert len({r["target"] for r in rows}) == len(rows), "one row per file"
    judged = {
        str(r["target"]): (
            str(r["verdict"] or r["reason"]),
            datetime.fromisoformat(r["not_after"]).timestamp() if r["not_after"] else None,
            r["fingerprint_sha256"],
        )
        for r in rows
    }
    return code, judged, [f"{Path(r['target']).name} {r['status']}" for r in rows]


def test_check_and_the_exporter_agree_on_every_file(tmp_path: Path) -> None:
    """One config whose files are a valid chain, an expired leaf, an expired intermediate, a self-signed
    leaf, a foreign CA's chain, a leaf without its intermediate (PEM and DER), files of several
    certificates (a chain with its root, the same in reverse order), a PKCS#12 with a password file,
    garbage, an empty file, one over global.max_file_bytes, a missing file, a dangling symlink and a
    symlink loop, a recursive directory with include/exclude (a key in a .pem file among them) and a
    glob: check lists the same files as a real ``certloop exporter`` process and gives each the verdict
    (or failure reason), chain expiry and leaf that the exporter's /metrics carry. Before this step
    check judged files by their dates only: it called the self-signed, foreign and leaf-only files OK
    and skipped the key where the exporter reports ``no_certificate``."""
    pki, other = Pki(), Pki(name="other")
    ca = pki.write_root(tmp_path / "ca.pem")
    top, tree, globbed = tmp_path / "top", tmp_path / "tree", tmp_path / "globbed"
    for d in (top, tree / "sub", globbed):
        d.mkdir(parents=True)
    good = pki.leaf(["good.example"])
    expired = pki.leaf(["old.example"], not_before=pki.now - timedelta(days=100),
                       not_after=pki.now - timedelta(days=1))
    stale = pki.leaf(["stale.example"], issuer=pki.issue_intermediate(days=-1, name="expired intermediate"))
    contents = {
        "good.pem": good.fullchain_pem,  # ok
        "expired.pem": expired.fullchain_pem,  # expired
        "stale.pem": stale.fullchain_pem,  # intermediate_expired
        "self.pem": pki.self_signed(["self.example"]).pem,  # self_signed
        "foreign.pem": other.leaf(["foreign.example"]).fullchain_pem + other.root_pem,  # unknown_authority
        "leaf.crt": good.pem,  # incomplete_chain
        "leaf.der": good.der,  # incomplete_chain, DER
        "bundle.pem": good.fullchain_pem + pki.root_pem,  # several certificates: ok
        "reversed.pem": good.chain_pem + good.pem,  # several, the intermediate first: invalid
        "garbage.pem": b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",  # parse_error
        "text.pem": b"not a certificate at all\n",
        "empty.pem": b"",
        "big.pem": good.fullchain_pem + b"#" * 4096,  # too_large
    }
    for name, data in contents.items():
        (top / name).write_bytes(data)
    (top / "p.p12").write_bytes(good.pkcs12(b"secret"))
    (tmp_path / "p12-password").write_text("secret\n")
    os.symlink(top / "nowhere.pem", top / "dangling.pem")
    os.symlink(top / "loop.pem", top / "loop.pem")
    listed = good.write(tree, "a")  # a.crt, a.key (not included), a.chain.pem (excluded), a.fullchain.pem
    (tree / "privkey.pem").write_bytes(good.key_pem)  # a key in a .pem file: the exporter reports it
    (tree / "sub" / "deep.pem").write_bytes(expired.fullchain_pem)
    (globbed / "x.pem").write_bytes(good.fullchain_pem)
    (globbed / "y.pem").write_bytes(pki.self_signed(["y.example"]).pem)
    (globbed / "z.txt").write_bytes(good.fullchain_pem)  # not matched by the glob
    named = [*(str(top / n) for n in contents), str(top / "missing.pem"), str(top / "dangling.pem"),
             str(top / "loop.pem")]
    config = write_config(tmp_path / "exporter.yml", {
        "global": {"ca_file": str(ca), "max_file_bytes": 4096, "jitter": "0s"},
        "files": [
            {"paths": named},
            {"paths": [str(tree)], "recursive": True, "exclude": ["*.chain.pem"]},
            {"paths": [f"{globbed}/*.pem"]},
            {"paths": [str(top / "p.p12")], "password_file": str(tmp_path / "p12-password")},
        ],
    })
    expected_paths = {*named, str(listed["cert"]), str(listed["fullchain"]), str(tree / "privkey.pem"),
                      str(tree / "sub" / "deep.pem"), str(globbed / "x.pem"), str(globbed / "y.pem"),
                      str(top / "p.p12")}
    process = ExporterProcess(config, tmp_path).start()
    try:
        judged: dict[str, tuple[str, float | None, str | None]] = {}

        def swept() -> bool:
            judged.update(_files_from_exporter(process.metrics()))
            return set(judged) >= expected_paths

        wait_until(swept, 60, "the exporter's first file sweep")
    finally:
        process.stop()
    code, checked, statuses = _files_from_check(config)
    assert set(judged) == expected_paths
    assert checked == judged
    assert code == 2
    verdicts = {Path(path).relative_to(tmp_path).as_posix(): v[0] for path, v in judged.items()}
    assert verdicts == {
        "top/good.pem": "ok", "top/expired.pem": "expired", "top/stale.pem": "intermediate_expired",
        "top/self.pem": "self_signed", "top/foreign.pem": "unknown_authority", "top/leaf.crt": "incomplete_chain",
        "top/leaf.der": "incomplete_chain", "top/bundle.pem": "ok", "top/reversed.pem": "invalid",
        "top/garbage.pem": "parse_error", "top/text.pem": "no_certificate", "top/empty.pem": "empty",
        "top/big.pem": "too_large", "top/missing.pem": "not_found", "top/dangling.pem": "not_found",
        "top/loop.pem": "symlink_loop", "top/p.p12": "ok",
        "tree/a.crt": "incomplete_chain", "tree/a.fullchain.pem": "ok", "tree/privkey.pem": "no_certificate",
        "tree/sub/deep.pem": "expired", "globbed/x.pem": "ok", "globbed/y.pem": "self_signed",
    }
    # the status policy over those verdicts (exporter.table.decide), as check prints it: the file
    # alerts' policy, so a verification verdict alone (self_signed, unknown_authority,
    # incomplete_chain, invalid) is judged by the time left; expiry and what cannot be read are not
    assert dict(line.split(" ", 1) for line in statuses) == {
        "good.pem": "OK", "expired.pem": "EXPIRED", "stale.pem": "EXPIRED", "self.pem": "OK",
        "foreign.pem": "OK", "leaf.crt": "OK", "leaf.der": "OK", "bundle.pem": "OK", "reversed.pem": "OK",
        "garbage.pem": "INVALID", "text.pem": "INVALID", "empty.pem": "INVALID", "big.pem": "INVALID",
        "missing.pem": "UNREACHABLE", "dangling.pem": "UNREACHABLE", "loop.pem": "UNREACHABLE", "p.p12": "OK",
        "a.crt": "OK", "a.fullchain.pem": "OK", "privkey.pem": "INVALID", "deep.pem": "EXPIRED",
        "x.pem": "OK", "y.pem": "OK",
    }
