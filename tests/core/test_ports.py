"""The daemons' default ports collide with no exporter an operator runs beside certloop."""

from __future__ import annotations

from certloop.exporter.cli import DEFAULT_LISTEN
from certloop.renewer.config import RenewerConfig

# Defaults of the exporters certloop replaces or runs beside (their documentation), and Prometheus' own.
TAKEN = {9090: "prometheus", 9093: "alertmanager", 9100: "node_exporter", 9115: "blackbox_exporter",
         9219: "ssl_exporter", 9793: "x509-certificate-exporter"}


def test_defaults_are_outside_the_allocated_exporter_range_and_distinct() -> None:
    exporter = int(DEFAULT_LISTEN.rpartition(":")[2])
    renewer = int(RenewerConfig.model_fields["listen"].default.rpartition(":")[2])
    assert (exporter, renewer) == (10793, 10794)
    for port in (exporter, renewer):
        assert port not in TAKEN and not 9100 <= port <= 9999, port
