"""moto's server (``moto_server`` from PyPI, the ``moto[server]`` dev extra): a local S3 and SNS on loopback.

    moto = MotoServer(workdir)
    moto.start()
    env = moto.aws_env()          # AWS_ENDPOINT_URL, region and throw-away credentials for boto3/Alertmanager
    moto.sent_sms()               # every SMS published through SNS: [{"phone_number": ..., "message": ...}]

Nothing real can play AWS here, so this is the stand-in both the backup tests (S3) and the notification
tests (SNS) talk to over HTTP, as a separate process like any other peer. Its state lives in memory and
dies with the process, which is how a test "loses" the off-site copy when it wants to.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests

from stack.process import LOOPBACK, HttpPeer, PeerApiError, require_binary

START_TIMEOUT = 30.0
REGION = "us-east-1"


class MotoError(PeerApiError):
    peer = "moto"


class MotoServer(HttpPeer):
    def __init__(self, workdir: Path) -> None:
        self.binary = require_binary("moto_server", "moto[server] (PyPI, the dev extra)")
        self.workdir = workdir.resolve()
        super().__init__("moto", self.workdir / "moto.log")

    def start(self, timeout: float = START_TIMEOUT) -> None:
        self.serve(lambda port: [self.binary, "-H", LOOPBACK, "-p", str(port)], "/moto-api/", timeout)

    def aws_env(self) -> dict[str, str]:
        """The standard AWS variables that point boto3 (and the aws CLI) at this server."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",  # moto accepts any credentials
            "AWS_DEFAULT_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def _data(self) -> dict[str, Any]:
        try:
            response = requests.get(f"{self.url}/moto-api/data.json", timeout=10)
        except requests.RequestException as exc:
            raise MotoError("/moto-api/data.json", None, str(exc)) from exc
        if response.status_code != 200:
            raise MotoError("/moto-api/data.json", response.status_code, response.text[:200])
        data: dict[str, Any] = response.json()
        return data

    def sent_sms(self) -> list[dict[str, Any]]:
        """The SMS published to phone numbers through SNS, oldest first, as moto's backend records them."""
        sms: list[dict[str, Any]] = self._data().get("sns", {}).get("SMS", [])
        return sms
