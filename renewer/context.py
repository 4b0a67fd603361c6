"""What a renewal needs from the daemon: where its state lives, the clock, the keystore.

Its own module so that `certloop.renewer.install` (which journals under ``data_dir`` and probes with
``dns_resolver``) and `certloop.renewer.pipeline` (which calls install) both depend on it and not on each
other: the install <-> pipeline import cycle is cut here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from certloop.renewer.keystore import Keystore

__all__ = ["RenewalContext"]


@dataclass(frozen=True)
class RenewalContext:
    """What the pipeline needs from the daemon: where its state lives, the clock, the keystore.

    ``dns_resolver``: optional nameserver ``host:port`` used to resolve verify endpoints' host names.
    """

    data_dir: Path
    clock: Callable[[], datetime]
    keystore: Keystore
    issuance_timeout: float = 300
    dns_resolver: str | None = None
