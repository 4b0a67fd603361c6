"""A small loopback HTTP load generator: POST bodies over keep-alive connections, time each request.

    python -m tests.renewer.loadgen --url http://127.0.0.1:10794/api/v1/alertmanager --token T \\
        --requests 5000 --connections 32 --certificates 20

Used by the replicas test and to measure webhook intake throughput and p99 latency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit


def alert_payload(certificate: str, starts_at: datetime, n: int = 0) -> bytes:
    """An Alertmanager v4 payload with one firing expiry alert for ``certificate``."""
    return json.dumps({
        "version": "4", "groupKey": f'{{}}:{{certificate="{certificate}"}}', "truncatedAlerts": 0,
        "status": "firing", "receiver": "certloop-renewer", "groupLabels": {"certificate": certificate},
        "commonLabels": {"alertname": "CertloopCertificateExpiringSoon", "certificate": certificate},
        "commonAnnotations": {}, "externalURL": "http://127.0.0.1:9093",
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "CertloopCertificateExpiringSoon", "certificate": certificate,
                       "severity": "critical"},
            "annotations": {"summary": f"delivery {n}"},
            "startsAt": starts_at.isoformat().replace("+00:00", "Z"), "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://127.0.0.1:9090/graph", "fingerprint": f"{n:016x}",
        }],
    }).encode()


@dataclass(frozen=True)
class Result:
    statuses: list[int]
    latencies: list[float]
    seconds: float

    @property
    def rate(self) -> float:
        return len(self.statuses) / self.seconds if self.seconds else 0.0

    def quantile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0

    def summary(self) -> str:
        mean = statistics.fmean(self.latencies or [0])
        return (f"{len(self.statuses)} requests in {self.seconds:.2f}s = {self.rate:.0f} req/s; latency p50 "
                f"{self.quantile(0.5) * 1000:.1f} ms, p99 {self.quantile(0.99) * 1000:.1f} ms, max "
                f"{max(self.latencies, default=0) * 1000:.1f} ms, mean {mean * 1000:.1f} ms")


async def _connection(host: str, port: int, path: str, token: str, bodies: list[tuple[int, bytes]],
                      statuses: list[int], latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while bodies:
            _, body = bodies.pop()
            head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
            started = time.perf_counter()
            writer.write(head + body)
            status_line = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            statuses.append(int(status_line.split()[1]))
    finally:
        writer.close()


async def post_all(urls: Sequence[str], token: str, bodies: Sequence[bytes], connections: int = 16) -> Result:
    """POST every body to every URL (``connections`` keep-alive connections per URL)."""
    statuses: list[int] = []
    latencies: list[float] = []
    tasks = []
    started = time.perf_counter()
    for url in urls:
        parts = urlsplit(url)
        queue = list(enumerate(bodies))[::-1]
        tasks += [_connection(parts.hostname or "127.0.0.1", parts.port or 80, parts.path, token, queue,
                              statuses, latencies) for _ in range(connections)]
    await asyncio.gather(*tasks)
    return Result(statuses, latencies, time.perf_counter() - started)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--url", action="append", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--requests", type=int, default=5000)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--certificates", type=int, default=20)
    args = p.parse_args()
    starts = datetime.now(UTC) - timedelta(minutes=1)
    bodies = [alert_payload(f"cert{i % args.certificates}", starts, i) for i in range(args.requests)]
    result = asyncio.run(post_all(args.url, args.token, bodies, args.connections))
    codes = {c: result.statuses.count(c) for c in sorted(set(result.statuses))}
    print(f"{result.summary()}; status codes {codes}")


if __name__ == "__main__":
    main()
