"""How fast ``wacanon serve`` ingests: the real server over loopback, durable, for a fixed time.

Starts ``wacanon serve`` as a subprocess on SQLite and on PostgreSQL, drives it with the
simulated generator (10 % exact redeliveries, shadow mode off so every event is
stored), and prints webhooks/s, events/s and p50/p95/p99 latency — beside the same
figures for a trivial endpoint (``GET /health``) of the same server, so wacanon's own
cost is a ratio in one run. The load generator is a small keep-alive HTTP/1.1 client on
raw asyncio streams (an HTTP library would cost more CPU than the server on 2 cores).

    python benchmarks/ingest.py [--seconds 10] [--connections 32] [--backends sqlite,postgresql]

PostgreSQL: ``--postgres-url`` (default postgresql+psycopg://postgres@127.0.0.1:5432/test);
a scratch database is created and dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import sqlalchemy as sa

from wacanon.simulate import SimulationOptions, generate

TOKEN = "bench-token"


@dataclass
class Run:
    requests: int = 0
    events: int = 0
    duplicates: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def pct(self, share: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000 if ordered else 0.0

    def line(self, label: str) -> str:
        rate = self.requests / self.seconds
        return (
            f"  {label:<28} {rate:>8,.0f} req/s {self.events / self.seconds:>8,.0f} events/s  "
            f"p50 {self.pct(0.5):6.2f} ms  p95 {self.pct(0.95):6.2f} ms  "
            f"p99 {self.pct(0.99):6.2f} ms  errors {self.errors}"
        )


def post_request(host: str, port: int, body: bytes) -> bytes:
    head = (
        f"POST /webhooks/simulated HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    return status, await reader.readexactly(length)


async def drive(
    host: str, port: int, requests: Iterator[bytes], seconds: float, connections: int
) -> Run:
    run = Run()
    deadline = time.perf_counter() + seconds

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while time.perf_counter() < deadline:
                request = next(requests)
                sent = time.perf_counter()
                writer.write(request)
                status, body = await read_response(reader)
                run.latencies.append(time.perf_counter() - sent)
                run.requests += 1
                if status != 200:
                    run.errors += 1
                elif body.startswith(b'{"correlation_id"'):
                    answer = orjson.loads(body)
                    run.events += answer["events"]
                    run.duplicates += answer["duplicates"]
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(connections)))
    run.seconds = time.perf_counter() - started
    return run


def simulated_requests(host: str, port: int, seed: int) -> Iterator[bytes]:
    options = SimulationOptions(count=10**9, seed=seed, shoppers=5, redelivery_rate=0.1)
    for body in generate(options):
        yield post_request(host, port, body)


def health_requests(host: str, port: int) -> Iterator[bytes]:
    request = f"GET /health HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    while True:
        yield request


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(workdir: Path, url: str, port: int, workers: int) -> subprocess.Popen[bytes]:
    config = workdir / "wacanon.toml"
    config.write_text(
        f'database_url = "{url}"\ndefault_shopper_id = "shop-1"\nlog_level = "WARNING"\n'
        f'spool_path = "{workdir / "spool"}"\n[providers.simulated]\ntoken = "{TOKEN}"\n'
    )
    env = {**os.environ, "WHATSAPP_CANONICAL_SHADOW_MODE": "false"}
    command = [sys.executable, "-m", "wacanon", "serve", "--config", str(config),
               "--port", str(port), "--workers", str(workers)]  # fmt: skip
    if url.startswith("postgresql"):
        subprocess.run([sys.executable, "-m", "wacanon", "db", "upgrade", "--config", str(config)],
                       check=True, capture_output=True)  # fmt: skip
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                time.sleep(0.5)
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("the server did not start")


def median_run(runs: list[Run]) -> Run:
    """The run with the median request rate (its latencies are quoted with it)."""
    ordered = sorted(runs, key=lambda r: r.requests / r.seconds)
    return ordered[len(ordered) // 2]


def bench_backend(name: str, url: str, args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix=f"wacanon-bench-{name}-"))
    port = free_port()
    server = start_server(workdir, url, port, args.workers)
    trivial: list[Run] = []
    webhooks: list[Run] = []
    stream = simulated_requests("127.0.0.1", port, 1)
    try:
        asyncio.run(drive("127.0.0.1", port, health_requests("127.0.0.1", port), 1.0, 8))
        for _ in range(args.runs):
            trivial.append(
                asyncio.run(
                    drive(
                        "127.0.0.1",
                        port,
                        health_requests("127.0.0.1", port),
                        args.seconds,
                        args.connections,
                    )
                )
            )
            webhooks.append(asyncio.run(
                drive("127.0.0.1", port, stream, args.seconds, args.connections)
            ))  # fmt: skip
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)
    t, w = median_run(trivial), median_run(webhooks)
    print(f"{name}: {args.workers} worker(s), {args.connections} connections, "
          f"median of {args.runs} runs of {args.seconds:.0f} s")  # fmt: skip
    for run in webhooks:
        print(f"    run: {run.requests / run.seconds:,.0f} webhooks/s, p99 {run.pct(0.99):.2f} ms")
    print(t.line("trivial GET /health"))
    print(w.line("POST /webhooks/simulated"))
    ratio = (w.requests / w.seconds) / (t.requests / t.seconds)
    print(f"  webhook rate / trivial rate: {ratio:.2f}; duplicates answered {w.duplicates}")


def scratch_postgres(admin_url: str) -> tuple[str, sa.Engine, str]:
    name = f"wacanon_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    return admin_url.rsplit("/", 1)[0] + f"/{name}", admin, name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument(
        "--postgres-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    args = parser.parse_args()
    for backend in args.backends.split(","):
        if backend == "sqlite":
            directory = Path(tempfile.mkdtemp(prefix="wacanon-bench-db-"))
            bench_backend("SQLite", f"sqlite:///{directory / 'bench.db'}", args)
            shutil.rmtree(directory, ignore_errors=True)
        else:
            url, admin, name = scratch_postgres(args.postgres_url)
            try:
                bench_backend("PostgreSQL", url, args)
            finally:
                with admin.connect() as connection:
                    connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
