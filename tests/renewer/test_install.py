"""Install, reload, verify and roll back against a real nginx (reloaded for real with `nginx -s reload`).

Material is minted per test with tests/support/pki.py; validation is pure and runs first.
"""

from __future__ import annotations

import asyncio
import dataclasses
import grp
import json
import os
import pwd
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from certloop import atomicfile
from certloop.caches import Caches
from certloop.config import validate_model
from certloop.renewer import install, pipeline
from certloop.renewer.context import RenewalContext
from certloop.renewer.errors import DeployError, RollbackFailed, RolledBack, ValidationError, VerifyError
from certloop.renewer.keystore import Keystore
from certloop.renewer.material import IssuedMaterial
from certloop.renewer.spec import CertificateSpec
from certloop.truststore import TrustStore
from stack.challtestsrv import ChallTestSrv
from stack.nginx import Nginx
from stack.process import free_port, wait_until
from tests.support.pki import Issued, Pki

DOMAIN = "shop.example"


def _material(issued: Issued) -> IssuedMaterial:
    return IssuedMaterial(cert_pem=issued.pem, chain_pem=issued.chain_pem, key_pem=issued.key_pem)


@dataclass
class Served:
    nginx: Nginx
    port: int
    live: dict[str, Path]
    old: Issued
    ctx: RenewalContext
    tmp: Path

    def spec(self, *, deploy: list[object] | None = None, timeout: str = "5s", **extra: object) -> CertificateSpec:
        doc: dict[str, object] = {
            "id": "shop",
            "domains": [DOMAIN],
            "issuer": {"type": "command", "argv": ["true"]},
            "outputs": {"fullchain": str(self.live["fullchain"]), "key": str(self.live["key"])},
            "deploy": deploy if deploy is not None else [self.nginx.argv_for("test"), self.nginx.argv_for("reload")],
            "verify": {
                "endpoints": [{"endpoint": f"127.0.0.1:{self.port}", "server_name": DOMAIN}],
                "timeout": timeout,
            },
        }
        doc.update(extra)
        return validate_model(CertificateSpec, doc)

    def served(self) -> str:
        return asyncio.run(install.served_fingerprint("127.0.0.1", self.port, DOMAIN, 5))

    def wait_served(self, fingerprint: str, within: float = 10) -> None:
        """Wait (bounded) until nginx serves ``fingerprint``: a reload signalled elsewhere takes a moment."""
        wait_until(lambda: self.served() == fingerprint, within, f"nginx to serve {fingerprint[:16]}")


@pytest.fixture
def served(tmp_path: Path, nginx: Nginx, pki: Pki) -> Served:
    old = pki.leaf([DOMAIN], days=2)
    live = old.write(tmp_path / "live", "shop")
    port = free_port()
    nginx.add_site([DOMAIN], live["fullchain"], live["key"], listen=[("127.0.0.1", port)], default=True)
    nginx.start()
    ctx = RenewalContext(
        data_dir=tmp_path / "data", clock=lambda: datetime.now(UTC), keystore=Keystore(b"s" * 32)
    )
    return Served(nginx, port, live, old, ctx, tmp_path)


def test_deploy_installs_reloads_and_verifies_the_new_leaf(served: Served, pki: Pki) -> None:
    """A good deploy: files replaced atomically with the configured modes, the old kept, nginx serves
    the new leaf, the journal is gone and the worker saw installing then verifying."""
    new = pki.leaf([DOMAIN], days=90)
    assert served.served() == served.old.fingerprint
    stages: list[str] = []

    async def record(stage: str) -> None:
        stages.append(stage)

    result = asyncio.run(install.deploy(_material(new), served.spec(), served.ctx, on_stage=record))
    assert result.fingerprint == new.fingerprint
    assert served.served() == new.fingerprint
    assert stages == ["installing", "verifying"]
    assert served.live["fullchain"].read_bytes() == new.fullchain_pem
    assert served.live["key"].stat().st_mode & 0o777 == 0o600
    assert served.live["fullchain"].stat().st_mode & 0o777 == 0o644
    prev = served.live["fullchain"].with_name("shop.fullchain.pem" + install.PREV_SUFFIX)
    assert prev.read_bytes() == served.old.fullchain_pem
    assert not (served.ctx.data_dir / "journal" / "shop.json").exists()
    assert [p.name for p in served.live["key"].parent.iterdir() if p.name.endswith(".tmp")] == []


def test_nginx_t_failure_rolls_back_and_old_leaf_stays_served(served: Served, pki: Pki) -> None:
    """`nginx -t` rejects a key that does not match: files restored, old leaf served, RolledBack."""
    new, other = pki.leaf([DOMAIN], days=90), pki.leaf([DOMAIN], days=90)
    bad = IssuedMaterial(cert_pem=new.pem, chain_pem=new.chain_pem, key_pem=other.key_pem)
    with pytest.raises(RolledBack) as info:
        asyncio.run(install.deploy(bad, served.spec(), served.ctx))
    assert isinstance(info.value.cause, DeployError)
    assert info.value.cause.step[-1] == "-t"
    assert served.live["fullchain"].read_bytes() == served.old.fullchain_pem
    assert served.live["key"].read_bytes() == served.old.key_pem
    assert served.served() == served.old.fingerprint
    assert not (served.ctx.data_dir / "journal" / "shop.json").exists()


def test_reload_failure_rolls_back(served: Served, pki: Pki) -> None:
    """A reload step that fails (once) triggers the rollback; the rerun succeeds and the old leaf is served."""
    marker = served.tmp / "reload-failed-once"
    flaky = [sys.executable, "-c", f"import os,sys; p={str(marker)!r}; "
             "sys.exit(0) if os.path.exists(p) else (open(p,'w').close(), sys.exit(3))"]
    spec = served.spec(deploy=[served.nginx.argv_for("test"), flaky, served.nginx.argv_for("reload")])
    with pytest.raises(RolledBack) as info:
        asyncio.run(install.deploy(_material(pki.leaf([DOMAIN])), spec, served.ctx))
    assert isinstance(info.value.cause, DeployError) and info.value.cause.returncode == 3
    assert served.served() == served.old.fingerprint
    assert served.live["fullchain"].read_bytes() == served.old.fullchain_pem


def test_verify_timeout_rolls_back(served: Served, pki: Pki) -> None:
    """Without a reload nginx keeps serving the old leaf: verify times out, files are restored."""
    spec = served.spec(deploy=[served.nginx.argv_for("test")], timeout="1s")
    started = time.monotonic()
    with pytest.raises(RolledBack) as info:
        asyncio.run(install.deploy(_material(pki.leaf([DOMAIN])), spec, served.ctx))
    assert isinstance(info.value.cause, VerifyError)
    assert time.monotonic() - started < 5
    assert served.live["fullchain"].read_bytes() == served.old.fullchain_pem


def _reload_with_pid_elsewhere(served: Served) -> list[str]:
    """``nginx -s reload`` reading a config whose pid file is not the running master's: it fails
    ("open() ... nginx.pid failed") on every run, the way a reload step written for another layout does."""
    conf = served.tmp / "elsewhere.conf"
    conf.write_text(served.nginx.render().replace(str(served.nginx.pid_path), str(served.tmp / "elsewhere.pid")))
    argv = served.nginx.argv_for("reload")
    return [*argv[: argv.index("-c") + 1], str(conf), *argv[argv.index("-c") + 2 :]]


def test_a_reload_step_that_always_fails_rolls_back_while_the_old_leaf_is_served(
    served: Served, pki: Pki
) -> None:
    """The rollback reruns the same broken reload step, which fails again; the probe then sees the old,
    valid leaf still served: RolledBack (retryable), not RollbackFailed. The journal is gone."""
    spec = served.spec(deploy=[served.nginx.argv_for("test"), _reload_with_pid_elsewhere(served)], timeout="2s")
    with pytest.raises(RolledBack) as info:
        asyncio.run(install.deploy(_material(pki.leaf([DOMAIN])), spec, served.ctx))
    assert isinstance(info.value.cause, DeployError) and info.value.cause.returncode == 1
    assert "elsewhere.pid" in str(info.value.cause)
    assert "previous leaf is still served" in info.value.reason
    assert served.live["fullchain"].read_bytes() == served.old.fullchain_pem
    assert served.served() == served.old.fingerprint
    assert not (served.ctx.data_dir / "journal" / "shop.json").exists()


def test_rollback_failed_only_when_the_probe_proves_the_old_leaf_is_not_served(served: Served, pki: Pki) -> None:
    """A deploy step that stops nginx: after restoring, nothing answers on the endpoint, which the probe
    proves - RollbackFailed (page someone), with the probe's finding in the reason."""
    spec = served.spec(deploy=[served.nginx.argv_for("stop")], timeout="1s")
    with pytest.raises(RollbackFailed) as info:
        asyncio.run(install.deploy(_material(pki.leaf([DOMAIN])), spec, served.ctx))
    assert "the previous leaf is not served" in info.value.reason
    assert served.live["fullchain"].read_bytes() == served.old.fullchain_pem  # files restored anyway


def test_rollback_rewrites_only_the_files_the_install_replaced(served: Served, pki: Pki) -> None:
    """An install that fails before any rename (unknown owner) leaves the live files untouched, and the
    rollback does not rewrite them either: same inode, same mtime."""
    before = {role: served.live[role].stat() for role in ("fullchain", "key")}
    spec = served.spec(outputs={"fullchain": str(served.live["fullchain"]), "key": str(served.live["key"]),
                                "owner": "certloop-no-such-user"})
    with pytest.raises(RolledBack) as info:
        asyncio.run(install.deploy(_material(pki.leaf([DOMAIN])), spec, served.ctx))
    assert "unknown owner" in info.value.reason
    for role, st in before.items():
        now = served.live[role].stat()
        assert (now.st_ino, now.st_mtime_ns) == (st.st_ino, st.st_mtime_ns), role


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Any:
    """A 64 KiB tmpfs mounted for this test (we are root): a real filesystem that can be filled."""
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_is_reported_as_no_space_left_and_rolled_back(
    small_tmpfs: Path, nginx: Nginx, pki: Pki, tmp_path: Path
) -> None:
    """Live files on a real, full tmpfs: the snapshots fit, the new files do not (ENOSPC). The error says
    "no space left on device", not "timed out"; nothing was replaced so nothing is rewritten, the old leaf
    stays served and the result is RolledBack."""
    old = pki.leaf([DOMAIN], days=2)
    live = old.write(small_tmpfs, "shop")
    port = free_port()
    nginx.add_site([DOMAIN], live["fullchain"], live["key"], listen=[("127.0.0.1", port)], default=True)
    nginx.start()
    ctx = RenewalContext(data_dir=tmp_path / "data", clock=lambda: datetime.now(UTC),
                                  keystore=Keystore(b"s" * 32))
    served = Served(nginx, port, live, old, ctx, tmp_path)
    spec = served.spec(outputs={"fullchain": str(live["fullchain"]), "key": str(live["key"])})
    for extra in [p for p in small_tmpfs.iterdir() if p not in (live["fullchain"], live["key"])]:
        extra.unlink()
    # leave exactly two free blocks: the two snapshots fit, the installer's two temp files do not
    st = os.statvfs(small_tmpfs)
    (small_tmpfs / "filler").write_bytes(b"\0" * (st.f_bavail - 2) * st.f_bsize)
    with pytest.raises(RolledBack) as info:
        asyncio.run(install.deploy(_material(pki.leaf([DOMAIN], days=90)), spec, ctx))
    cause = info.value.cause
    assert isinstance(cause, DeployError), cause
    assert "no space left on device" in str(cause) and "timed out" not in str(cause)
    assert "no space left on device" in info.value.reason
    assert live["fullchain"].read_bytes() == old.fullchain_pem and live["key"].read_bytes() == old.key_pem
    assert served.served() == old.fingerprint
    assert not (ctx.data_dir / "journal" / "shop.json").exists()


def test_a_deploy_step_that_cannot_start_says_so(served: Served, pki: Pki) -> None:
    """A missing program is "cannot start: No such file or directory", not "timed out"."""
    spec = served.spec(deploy=[["/nonexistent/certloop-reload"]])
    with pytest.raises(RolledBack) as info:
        asyncio.run(install.deploy(_material(pki.leaf([DOMAIN])), spec, served.ctx))
    assert "cannot start: No such file or directory" in str(info.value.cause)
    assert "timed out" not in str(info.value.cause)


def test_interrupted_install_is_recovered(served: Served, pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash between the renames of the key and the certificate leaves a mismatched pair and a journal;
    recover() restores the previous pair, reruns the deploy steps and confirms the old leaf."""
    real_replace = os.replace
    pair = ("fullchain", "key")  # the spec's outputs
    live = {str(served.live[role]) for role in pair}
    before = {role: served.live[role].read_bytes() for role in pair}

    def die_after_first_live_file(src: Any, dst: Any) -> None:
        real_replace(src, dst)
        if str(dst) in live:
            raise KeyboardInterrupt  # not caught by deploy: stands in for the process dying here

    monkeypatch.setattr(atomicfile.os, "replace", die_after_first_live_file)
    spec = served.spec()
    with pytest.raises(KeyboardInterrupt):
        asyncio.run(install.deploy(_material(pki.leaf([DOMAIN])), spec, served.ctx))
    monkeypatch.setattr(atomicfile.os, "replace", real_replace)
    changed = [role for role in pair if served.live[role].read_bytes() != before[role]]
    assert len(changed) == 1  # half-installed: one file new, the other old
    assert asyncio.run(install.recover(spec, served.ctx)) is True
    assert served.live["key"].read_bytes() == served.old.key_pem
    assert served.live["fullchain"].read_bytes() == served.old.fullchain_pem
    assert served.served() == served.old.fingerprint
    assert asyncio.run(install.recover(spec, served.ctx)) is False


def test_the_pair_is_renamed_back_to_back(served: Served, pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both temp files are written and fsync'ed before the first rename: no fsync falls between the
    certificate's rename and the key's, so the mismatched window is microseconds, not milliseconds."""
    calls: list[str] = []
    real_replace, real_fsync = os.replace, os.fsync
    live = {str(served.live["fullchain"]), str(served.live["key"])}  # the spec's outputs

    def replace(src: Any, dst: Any) -> None:
        calls.append("replace-live" if str(dst) in live else "replace")
        real_replace(src, dst)

    def fsync(fd: int) -> None:
        calls.append("fsync")
        real_fsync(fd)

    monkeypatch.setattr(atomicfile.os, "replace", replace)
    monkeypatch.setattr(atomicfile.os, "fsync", fsync)
    asyncio.run(install.deploy(_material(pki.leaf([DOMAIN])), served.spec(), served.ctx))
    monkeypatch.setattr(atomicfile.os, "replace", real_replace)
    monkeypatch.setattr(atomicfile.os, "fsync", real_fsync)
    first = calls.index("replace-live")
    assert calls[first : first + len(live)] == ["replace-live"] * len(live), calls


_CHILD = """
import asyncio, json, sys
from datetime import UTC, datetime
from pathlib import Path
from certloop.config import validate_model
from certloop.renewer import install
from certloop.renewer.context import RenewalContext
from certloop.renewer.keystore import Keystore
from certloop.renewer.material import IssuedMaterial
from certloop.renewer.spec import CertificateSpec
doc = json.loads(sys.argv[1])
spec = validate_model(CertificateSpec, doc["spec"])
ctx = RenewalContext(Path(doc["data_dir"]), lambda: datetime.now(UTC), Keystore(b"s" * 32))
m = IssuedMaterial(doc["cert"].encode(), doc["chain"].encode(), doc["key"].encode())
asyncio.run(install.deploy(m, spec, ctx))
"""


def test_kill_9_during_deploy_then_recover(served: Served, pki: Pki) -> None:
    """kill -9 of the renewer while a deploy step runs (new files live, not yet verified): on restart
    recover() puts the old pair back, reloads nginx and the old leaf is served again."""
    gate, started = served.tmp / "block", served.tmp / "step-started"
    gate.touch()
    block = [sys.executable, "-c", f"import os,time; g={str(gate)!r}; open({str(started)!r},'w').close()\n"
             "while os.path.exists(g): time.sleep(0.05)"]
    spec = served.spec(deploy=[served.nginx.argv_for("test"), served.nginx.argv_for("reload"), block])
    new = pki.leaf([DOMAIN])
    doc = {"spec": spec.model_dump(mode="json"), "data_dir": str(served.ctx.data_dir),
           "cert": new.pem.decode(), "chain": new.chain_pem.decode(), "key": new.key_pem.decode()}
    child = subprocess.Popen([sys.executable, "-c", _CHILD, json.dumps(doc)], cwd=Path(__file__).parents[2])
    try:
        def step_started() -> bool:
            assert child.poll() is None, "deploy child exited early"
            return started.exists()

        wait_until(step_started, 20, "the deploy step to start")
        os.kill(child.pid, signal.SIGKILL)
        child.wait(5)
    finally:
        gate.unlink(missing_ok=True)  # releases the orphaned step too
        if child.poll() is None:
            child.kill()
    assert served.live["fullchain"].read_bytes() == new.fullchain_pem  # crashed with new files live
    served.wait_served(new.fingerprint)  # the crashed run had already reloaded nginx
    assert asyncio.run(install.recover(spec, served.ctx)) is True
    assert served.live["fullchain"].read_bytes() == served.old.fullchain_pem
    assert served.served() == served.old.fingerprint


# --- validate: rejected before any live file is touched ------------------------------------------


def _spec_for(tmp_path: Path, **extra: object) -> CertificateSpec:
    doc: dict[str, object] = {
        "id": "shop", "domains": [DOMAIN, "www.shop.example"], "issuer": {"type": "command", "argv": ["x"]},
        "outputs": {"fullchain": str(tmp_path / "f.pem"), "key": str(tmp_path / "k.pem")},
    }
    doc.update(extra)
    return validate_model(CertificateSpec, doc)


def test_validate_accepts_good_material(tmp_path: Path, pki: Pki, caches: Caches) -> None:
    """A matching key, full coverage, enough lifetime and a chain to the trusted root pass."""
    good = pki.leaf([DOMAIN, "www.shop.example"], days=30)
    trust = TrustStore.from_pem(pki.root_pem, caches)
    pipeline.validate(_material(good), _spec_for(tmp_path), now=datetime.now(UTC), trust=trust)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("wrong_key", "does not match"),
        ("uncovered", "does not cover www.shop.example"),
        ("short", "less than min_lifetime"),
        ("future", "not valid yet"),
        ("broken_chain", "chain does not build"),
        ("untrusted", "does not verify to the configured trust"),
        ("garbage_key", "private key does not parse"),
        ("wrong_key_type", "key is rsa2048, but key_type is ec256"),
    ],
)
def test_validate_rejects(tmp_path: Path, pki: Pki, caches: Caches, case: str, message: str) -> None:
    """Each defect is rejected with a reason naming it."""
    names = [DOMAIN, "www.shop.example"]
    good = pki.leaf(names, days=30)
    m = _material(good)
    trust = None
    now = datetime.now(UTC)
    if case == "wrong_key":
        m = IssuedMaterial(good.pem, good.chain_pem, pki.leaf(names).key_pem)
    elif case == "uncovered":
        m = _material(pki.leaf([DOMAIN], days=30))
    elif case == "short":
        m = _material(pki.leaf(names, days=0.5))
    elif case == "future":
        m = _material(pki.leaf(names, not_before=now + timedelta(hours=1), not_after=now + timedelta(days=9)))
    elif case == "broken_chain":
        m = IssuedMaterial(good.pem, Pki().intermediate.pem, good.key_pem)
    elif case == "untrusted":
        trust = TrustStore.from_pem(Pki().root_pem, caches)
    elif case == "wrong_key_type":
        m = _material(pki.leaf(names, days=30, key_kind="rsa2048"))
    elif case == "garbage_key":
        m = IssuedMaterial(good.pem, good.chain_pem, b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ValidationError, match=message):
        pipeline.validate(m, _spec_for(tmp_path), now=now, trust=trust)


def test_validate_wildcard_domain_needs_the_wildcard_san(tmp_path: Path, pki: Pki) -> None:
    """A configured wildcard is covered only by that wildcard SAN, not by one name below it."""
    spec = _spec_for(tmp_path, domains=["*.shop.example"])
    pipeline.validate(_material(pki.leaf(["*.shop.example"])), spec, now=datetime.now(UTC))
    with pytest.raises(ValidationError):
        pipeline.validate(_material(pki.leaf(["www.shop.example"])), spec, now=datetime.now(UTC))


def test_material_is_saved_encrypted_and_loads_back(tmp_path: Path, pki: Pki) -> None:
    """save_material keeps no plaintext key on disk; load_material returns the same material."""
    ctx = RenewalContext(tmp_path, lambda: datetime.now(UTC), Keystore(b"m" * 32))
    m = _material(pki.leaf([DOMAIN]))
    path = pipeline.save_material(ctx, 42, m)
    assert b"PRIVATE KEY" not in path.read_bytes()
    assert path.stat().st_mode & 0o777 == 0o600
    assert pipeline.load_material(ctx, 42) == m
    assert pipeline.load_material(ctx, 43) is None
    pipeline.discard_material(ctx, 42)
    assert pipeline.load_material(ctx, 42) is None


def test_verify_resolves_names_through_the_configured_nameserver(
    served: Served, pki: Pki, challtestsrv: ChallTestSrv
) -> None:
    """A verify endpoint given by name is resolved through ctx.dns_resolver (challtestsrv here,
    which answers shop.example with 127.0.0.1; the system resolver knows no such name)."""
    challtestsrv.add_a(DOMAIN, ["127.0.0.1"])
    ctx = dataclasses.replace(served.ctx, dns_resolver=challtestsrv.dns_address)
    spec = served.spec(verify={"endpoints": [{"endpoint": f"{DOMAIN}:{served.port}"}], "timeout": "5s"})
    new = pki.leaf([DOMAIN])
    result = asyncio.run(install.deploy(_material(new), spec, ctx))
    assert result.fingerprint == new.fingerprint == served.served()


def test_all_outputs_with_owner_group_and_modes(served: Served, pki: Pki) -> None:
    """cert, chain, fullchain and key land with the configured owner, group and modes."""
    user = pwd.getpwuid(os.geteuid()).pw_name
    group = grp.getgrgid(os.getegid()).gr_name
    out = served.tmp / "more"
    out.mkdir()
    outputs = {
        "cert": str(out / "cert.pem"), "chain": str(out / "chain.pem"),
        "fullchain": str(served.live["fullchain"]), "key": str(served.live["key"]),
        "owner": user, "group": group, "mode": "0640", "key_mode": "0400",
    }
    new = pki.leaf([DOMAIN])
    asyncio.run(install.deploy(_material(new), served.spec(outputs=outputs), served.ctx))
    assert (out / "cert.pem").read_bytes() == new.pem
    assert (out / "chain.pem").read_bytes() == new.chain_pem
    for name, mode in ((out / "cert.pem", 0o640), (out / "chain.pem", 0o640), (served.live["key"], 0o400)):
        st = name.stat()
        assert (st.st_mode & 0o777, st.st_uid, st.st_gid) == (mode, os.geteuid(), os.getegid())
