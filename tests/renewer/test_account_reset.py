"""The ACME server forgot the account (``accountDoesNotExist``): a real pebble is restarted under a
running renewer, which loses every account it knew. The next renewal registers a new account once,
logged, and succeeds in the same attempt - for the built-in client, lego and certbot."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from stack.process import wait_until
from tests.renewer.conftest import RenewerProcess, Setup
from tests.renewer.standins.peers import AcmeStack, acme_stack_fixture  # noqa: F401  # fixture

FIRING = (Path(__file__).parent / "fixtures" / "firing.json").read_bytes()


def _issuer(kind: str, stack: AcmeStack) -> dict[str, object]:
    common = {"directory": stack.pebble.directory_url, "ca_bundle": str(stack.pebble.ca_bundle_path),
              "email": "ops@shop.example"}
    if kind == "acme":
        return {"type": "acme", **common, "http01": {"webroot": str(stack.webroot)}, "poll_timeout": "20s"}
    return {"type": kind, **common, "webroot": str(stack.webroot)}


def _last_job(proc: RenewerProcess) -> dict[str, object]:
    jobs = proc.get("/api/v1/jobs?certificate=shop").json()["jobs"]
    return jobs[0] if jobs else {}


@pytest.mark.parametrize("kind", ["acme", "lego", "certbot"])
def test_a_ca_that_forgot_the_account_gets_a_new_one_and_the_renewal_succeeds(
    acme_stack: AcmeStack, make_setup: Callable[..., Setup], start_renewer: Callable[..., RenewerProcess],
    kind: str,
) -> None:
    setup = make_setup(["shop"])
    spec = acme_stack.spec_data(_issuer(kind, acme_stack))
    spec["trust_bundle"] = None  # pebble mints a new root on every start
    setup.data["certificates"] = [spec]
    proc = start_renewer(setup.write())
    assert proc.post("/api/v1/alertmanager", FIRING).status_code == 202
    wait_until(lambda: _last_job(proc).get("state") == "succeeded", 60, "the first renewal")
    first = _last_job(proc)["id"]

    acme_stack.pebble.stop()  # pebble keeps accounts in memory: a restart is a CA reset
    acme_stack.pebble.start()
    assert proc.post("/api/v1/certificates/shop/renew?force=true").status_code == 202
    wait_until(lambda: _last_job(proc).get("id") != first and _last_job(proc).get("state") in ("succeeded", "failed"),
               90, "the renewal after the CA reset")
    job = _last_job(proc)
    assert job["state"] == "succeeded", job
    assert job["attempt"] == 1  # in the same attempt: no backoff, no second order counted
    log = proc.log.read_text()
    assert log.count("accountDoesNotExist") == 1, log[-3000:]
    warning = next(line for line in log.splitlines() if "accountDoesNotExist" in line)
    assert "level=warn " in warning, warning
