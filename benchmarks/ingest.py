"""How fast ``wacanon serve`` ingests: the real server over loopback, durable, for a fixed time.

Default mode (``compare``, issue #6 section 5): in one run, three servers started the same
way — uvicorn, 1 worker, ``log_level="warning"``, no access log, uvicorn's automatic
loop choice (uvloop when installed) and its httptools protocol (``wacanon serve`` adds its
limits on top of it, see ``wacanon.api.limits``) — are driven in turn with distinct
unsigned Cloud API text webhooks (``POST /webhooks/cloud_api``):

* a bare Starlette app that reads the body, parses it with orjson and answers a small JSON;
* ``wacanon serve`` on SQLite and on PostgreSQL (``allow_unsigned = true`` for cloud_api,
  the account mapped to a shopper, ``WHATSAPP_CANONICAL_SHADOW_MODE=false`` so every event
  is durably stored before the reply);
* the same, with ``WHATSAPP_ROUTING_ENABLED=true`` (issue #7 §7): its rate as a ratio to the
  routing-off server of the same backend, and the p99 of the routing lag (from receipt to
  the event's conversation being committed, ``wacanon_routing_lag_seconds``); leave it out
  with ``--no-routing``;
* the same again with four SKMs in ``[[skms]]`` (issue #8 §6: assignment on, the
  ``default`` policy): its rate as a ratio to the routing-off server of the same backend,
  and the assignment latency p50/p99 from a conversation's first message's receipt to its
  ``whatsapp.thread.assigned`` (from the stored events).

Every target gets the same stream: messages of ``--customers`` customers (default 5,000)
in turn, so the first ones each open (and, with SKMs, assign) a conversation and the rest
join one; ``--customers 1`` is issue #7's stream (one conversation).

The load is wrk (``-t1 -c16 -d10s --latency``, a Lua script putting a counter in each
message id) when ``wrk`` is on PATH (Debian: ``apt-get install wrk``), else the raw-socket
generator below. It prints webhooks/s and p50/p99 per target, medians of ``--runs``
rounds (the three targets alternate within a round), and the ratio wacanon/bare.

``--mode health`` keeps the earlier measurement: the simulated generator (10 % exact
redeliveries) against ``GET /health`` of the same server.

    python benchmarks/ingest.py [--duration 10] [--runs 3] [--backends sqlite,postgresql]
        [--workers N] [--switch-intervals 0.00005,0.0005]

``--workers N`` gives the bare app N workers too. ``--switch-intervals`` adds, per
backend, a wacanon target with each GIL switch interval (``gil_switch_interval_seconds``),
each on its own database, in the same rounds.
    python benchmarks/ingest.py --mode health [--duration 10] [--connections 32]

PostgreSQL: ``--postgres-url`` (default postgresql+psycopg://postgres@127.0.0.1:5432/test);
a scratch database is created and dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa

from wacanon.simulate import SimulationOptions, generate

TOKEN = "bench-token"
HOST = "127.0.0.1"
CLOUD_PATH = "/webhooks/cloud_api"
CLOUD_ACCOUNT = "106540352242922"
#: How many customers the stream cycles through (one conversation each).
CUSTOMERS = 5000
#: A Cloud API text webhook (tests/fixtures/cloud_api/text_single.json); ``{id}`` makes
#: each one distinct, ``{customer}`` (4 digits) names its sender.
CLOUD_TEXT = (
    '{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":'
    '[{"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":'
    f'"5511940028922","phone_number_id":"{CLOUD_ACCOUNT}"}},"contacts":[{{"profile":'
    '{"name":"Ana Souza"},"wa_id":"551198765{customer}"}],"messages":[{"from":'
    '"551198765{customer}","id":"wamid.bench-{id}","timestamp":"1772366400","type":"text",'
    '"text":{"body":"Oi! Vocês têm esse tênis no tamanho 38? 👟"}}]},"field":"messages"}]}]}'
)
WRK_SCRIPT = """
local head, middle, tail = [==[HEAD]==], [==[MIDDLE]==], [==[TAIL]==]
local prefix, counter, threads = "", 0, 0
local headers = {["Content-Type"] = "application/json"}
function setup(thread) thread:set("tid", threads); threads = threads + 1 end
function init(args) prefix = args[1] .. tid .. "-" end
function request()
  counter = counter + 1
  local customer = string.format("%04d", counter % CUSTOMERS)
  return wrk.format("POST", "PATH", headers,
    head .. customer .. middle .. customer .. tail1 .. prefix .. counter .. tail)
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK_RESULT %d %d %d %d %d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99),
    e.status + e.connect + e.read + e.write + e.timeout))
end
"""


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

    def figures(self) -> Figures:
        rate = self.requests / self.seconds
        return Figures(rate, self.pct(0.5), self.pct(0.99), self.errors, self.requests)


@dataclass
class Figures:
    """One timed run of one target: the numbers compare mode prints."""

    rate: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int


def post_request(
    host: str, port: int, body: bytes, path: str = "/webhooks/simulated", token: str = TOKEN
) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{auth}"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
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


def cloud_requests(host: str, port: int, prefix: str) -> Iterator[bytes]:
    counter = 0
    while True:
        counter += 1
        customer = f"{counter % CUSTOMERS:04d}"
        body = CLOUD_TEXT.replace("{id}", f"{prefix}{counter}").replace("{customer}", customer)
        body = body.encode()
        yield post_request(host, port, body, CLOUD_PATH, token="")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_listening(process: subprocess.Popen[bytes], port: int) -> subprocess.Popen[bytes]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with socket.create_connection((HOST, port), timeout=0.2):
                time.sleep(0.5)
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"the server on port {port} did not start")


#: The SKMs of the assignment target: room for every customer of the stream.
BENCH_SKMS = 4


def server_config(
    workdir: Path,
    url: str,
    mode: str,
    switch_interval: float | None = None,
    skms: bool = False,
    legacy: str | None = None,
) -> Path:
    config = workdir / "wacanon.toml"
    text = f'database_url = "{url}"\nlog_level = "WARNING"\nspool_path = "{workdir / "spool"}"\n'
    if switch_interval is not None:
        text += f"gil_switch_interval_seconds = {switch_interval!r}\n"
    if mode == "health":
        text += f'default_shopper_id = "shop-1"\n[providers.simulated]\ntoken = "{TOKEN}"\n'
    else:
        text += (
            "[providers.cloud_api]\nallow_unsigned = true\n"
            f'[[accounts]]\nprovider = "cloud_api"\naccount_id = "{CLOUD_ACCOUNT}"\n'
            'shopper_id = "shop-1"\n'
        )
    for n in range(BENCH_SKMS if skms else 0):
        text += (
            f'[[skms]]\nid = "skm-{n}"\nshopper_id = "shop-1"\nname = "SKM {n}"\n'
            f'wa_ids = ["55119111100{n:02d}"]\ncapacity = {CUSTOMERS}\n'
        )
    if legacy is not None:
        text += f'[legacy]\ncloud_api = "{legacy}"\n'
    config.write_text(text)
    return config


def start_server(
    workdir: Path,
    url: str,
    port: int,
    workers: int,
    mode: str = "health",
    switch_interval: float | None = None,
    routing: bool = False,
    skms: bool = False,
    legacy: str | None = None,
) -> subprocess.Popen[bytes]:
    config = server_config(workdir, url, mode, switch_interval, skms, legacy)
    env = {
        **os.environ,
        "WHATSAPP_CANONICAL_SHADOW_MODE": "false",
        "WHATSAPP_ROUTING_ENABLED": "true" if routing else "false",
    }
    command = [sys.executable, "-m", "wacanon", "serve", "--config", str(config),
               "--port", str(port), "--workers", str(workers)]  # fmt: skip
    if url.startswith("postgresql"):
        subprocess.run([sys.executable, "-m", "wacanon", "db", "upgrade", "--config", str(config)],
                       check=True, capture_output=True)  # fmt: skip
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    return wait_listening(process, port)


def start_bare(port: int, workers: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, __file__, "--serve-bare", str(port), "--workers", str(workers)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return wait_listening(process, port)


def bare_app() -> Any:
    """The yardstick: a Starlette app doing only what any JSON webhook endpoint must."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def webhook(request: Request) -> Response:
        payload = orjson.loads(await request.body())
        answer = {"received": True, "entries": len(payload.get("entry", ()))}
        return Response(orjson.dumps(answer), media_type="application/json")

    return Starlette(routes=[Route(CLOUD_PATH, webhook, methods=["POST"])])


def serve_bare(port: int, workers: int = 1) -> None:
    """The bare app with as many workers as wacanon gets (an import string, so uvicorn's
    worker processes can import it); otherwise as ``wacanon serve`` runs uvicorn."""
    import uvicorn

    uvicorn.run(
        "ingest:bare_app",
        factory=True,
        app_dir=str(Path(__file__).parent),
        host=HOST,
        port=port,
        workers=workers,
        log_level="warning",
        access_log=False,
    )


def median_run(runs: list[Run]) -> Run:
    """The run with the median request rate (its latencies are quoted with it)."""
    ordered = sorted(runs, key=lambda r: r.requests / r.seconds)
    return ordered[len(ordered) // 2]


def bench_backend(name: str, url: str, args: argparse.Namespace) -> None:
    """``--mode health``: simulated webhooks beside ``GET /health`` of the same server."""
    workdir = Path(tempfile.mkdtemp(prefix=f"wacanon-bench-{name}-"))
    port = free_port()
    server = start_server(workdir, url, port, args.workers)
    trivial: list[Run] = []
    webhooks: list[Run] = []
    stream = simulated_requests(HOST, port, 1)
    try:
        asyncio.run(drive(HOST, port, health_requests(HOST, port), 1.0, 8))
        for _ in range(args.runs):
            trivial.append(asyncio.run(
                drive(HOST, port, health_requests(HOST, port), args.duration, args.connections)
            ))  # fmt: skip
            webhooks.append(asyncio.run(
                drive(HOST, port, stream, args.duration, args.connections)
            ))  # fmt: skip
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)
    t, w = median_run(trivial), median_run(webhooks)
    print(f"{name}: {args.workers} worker(s), {args.connections} connections, "
          f"median of {args.runs} runs of {args.duration:g} s")  # fmt: skip
    for run in webhooks:
        print(f"    run: {run.requests / run.seconds:,.0f} webhooks/s, p99 {run.pct(0.99):.2f} ms")
    print(t.line("trivial GET /health"))
    print(w.line("POST /webhooks/simulated"))
    ratio = (w.requests / w.seconds) / (t.requests / t.seconds)
    print(f"  webhook rate / trivial rate: {ratio:.2f}; duplicates answered {w.duplicates}")


# -- compare mode ---------------------------------------------------------------------------


@dataclass
class Target:
    label: str
    port: int
    process: subprocess.Popen[bytes]
    url: str | None = None  # wacanon's database, to count what it stored
    runs: list[Figures] = field(default_factory=list)
    answered: int = 0  # every 200 counted by the load generator, warm-up included
    routing: bool = False
    baseline: str | None = None  # routing on: the label of the same backend, routing off
    lag_p99: float | None = None  # routing on: seconds from receipt to conversation
    assignment: bool = False
    legacy: bool = False  # every webhook also forwarded to the bare app
    #: assignment on: seconds from a conversation's first message to its assignment
    assigned: tuple[float, float, int] | None = None  # p50, p99, conversations

    def load(self, prefix: str, seconds: float, args: argparse.Namespace) -> Figures:
        figures = load(self, prefix, seconds, args)
        self.answered += figures.requests - figures.errors
        return figures


def wrk_script(workdir: Path) -> Path:
    head, middle, rest = CLOUD_TEXT.split("{customer}")
    tail1, tail = rest.split("{id}")
    text = (
        WRK_SCRIPT.replace("HEAD", head)
        .replace("MIDDLE", middle)
        .replace("tail1 ..", f"[==[{tail1}]==] ..")
        .replace("TAIL", tail)
        .replace("PATH", CLOUD_PATH)
        .replace("CUSTOMERS", str(CUSTOMERS))
    )
    path = workdir / "cloud_text.lua"
    path.write_text(text, encoding="utf-8")
    return path


def load(target: Target, prefix: str, seconds: float, args: argparse.Namespace) -> Figures:
    """One timed run against one target: wrk if available, else the Python generator."""
    if not args.wrk:
        stream = cloud_requests(HOST, target.port, prefix)
        return asyncio.run(drive(HOST, target.port, stream, seconds, args.connections)).figures()
    command = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{seconds:g}s",
               "--latency", "-s", str(args.wrk), f"http://{HOST}:{target.port}", "--",
               prefix]  # fmt: skip
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    line = next(x for x in output.splitlines() if x.startswith("WRK_RESULT "))
    requests, duration_us, p50_us, p99_us, errors = map(int, line.split()[1:])
    return Figures(requests / (duration_us / 1e6), p50_us / 1000, p99_us / 1000, errors, requests)


def stored_events(url: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(sa.text("SELECT count(*) FROM events")).scalar_one())
    finally:
        engine.dispose()


def median_figures(runs: list[Figures]) -> Figures:
    """Each figure's median over the runs (the rate's and each percentile's on its own)."""
    return Figures(
        statistics.median(r.rate for r in runs),
        statistics.median(r.p50_ms for r in runs),
        statistics.median(r.p99_ms for r in runs),
        sum(r.errors for r in runs),
        sum(r.requests for r in runs),
    )


def uvicorn_choice() -> str:
    """What uvicorn's ``loop="auto"``/``http="auto"`` pick in this environment."""
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return f"loop={loop} http={http}"


def routing_lag_p99(port: int, stored: int, timeout: float = 30.0) -> float:
    """Once every stored event is routed, the p99 of ``wacanon_routing_lag_seconds`` (the
    upper bound of the bucket holding the 99th percentile, from the server's /metrics)."""
    deadline = time.monotonic() + timeout
    while True:
        with socket.create_connection((HOST, port)) as sock:
            sock.sendall(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        text = b"".join(chunks).decode()
        buckets = []
        routed = 0.0
        for line in text.splitlines():
            if line.startswith("wacanon_routing_lag_seconds_bucket"):
                bound = line.split('le="', 1)[1].split('"', 1)[0]
                buckets.append((float(bound), float(line.rsplit(" ", 1)[1])))
            elif line.startswith("wacanon_routed_events_total "):
                routed = float(line.rsplit(" ", 1)[1])
        if routed >= stored or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    total = buckets[-1][1] if buckets else 0.0
    for bound, count in buckets:
        if total and count >= 0.99 * total:
            return bound
    return float("inf")


def assignment_latency(url: str) -> tuple[float, float, int]:
    """p50 and p99 (seconds) from each conversation's first message's receipt to its first
    ``whatsapp.thread.assigned`` being stored, and how many conversations were assigned."""
    query = sa.text(
        "SELECT a.assigned, m.first FROM "
        "(SELECT conversation_id, MIN(received_at) AS assigned FROM events "
        " WHERE event_type = 'whatsapp.thread.assigned' GROUP BY conversation_id) a JOIN "
        "(SELECT conversation_id, MIN(received_at) AS first FROM events "
        " WHERE event_type = 'whatsapp.message.inbound' GROUP BY conversation_id) m "
        "ON a.conversation_id = m.conversation_id"
    )
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            rows = list(connection.execute(query))
    finally:
        engine.dispose()
    waits = sorted(max(0.0, (_time(a) - _time(f)).total_seconds()) for a, f in rows)
    if not waits:
        return (float("nan"), float("nan"), 0)
    pick = lambda share: waits[min(len(waits) - 1, int(share * len(waits)))]  # noqa: E731
    return (pick(0.50), pick(0.99), len(waits))


def _time(value: Any) -> datetime:
    """A stored time (SQLite gives text, PostgreSQL datetimes) as aware UTC."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def compare(args: argparse.Namespace, databases: list[tuple[str, str, float | None, str]]) -> None:
    """Each ``(label, database URL, GIL switch interval or None, routing)`` against the
    bare app; ``routing`` is ``off``, ``on``, ``assignment`` (on, with SKMs) or
    ``legacy`` (off, every webhook also forwarded to the bare app as the legacy handler)."""
    workdir = Path(tempfile.mkdtemp(prefix="wacanon-bench-"))
    args.wrk = wrk_script(workdir) if args.load != "python" and shutil.which("wrk") else None
    if args.load == "wrk" and not args.wrk:
        raise SystemExit("wrk is not on PATH (Debian: apt-get install wrk)")
    targets: list[Target] = []
    try:
        port = free_port()
        targets.append(Target("bare Starlette + orjson", port, start_bare(port, args.workers)))
        legacy_url = f"http://{HOST}:{port}{CLOUD_PATH}"
        for index, (name, url, interval, routing) in enumerate(databases):
            (workdir / str(index)).mkdir()
            port = free_port()
            on, skms = routing in ("on", "assignment"), routing == "assignment"
            forward = legacy_url if routing == "legacy" else None
            server = start_server(
                workdir / str(index), url, port, args.workers, "compare", interval, on, skms,
                forward,
            )  # fmt: skip
            suffix = {"off": "", "on": " + routing", "assignment": " + assignment",
                      "legacy": " + legacy forward"}[routing]  # fmt: skip
            label = f"wacanon {name}{suffix}"
            baseline = f"wacanon {name}" if routing != "off" else None
            targets.append(
                Target(
                    label, port, server, url, routing=on, baseline=baseline, assignment=skms,
                    legacy=forward is not None,
                )
            )  # fmt: skip
        for target in targets:  # warm up: imports, caches, first connections
            target.load("warm-", 1.0, args)
        for round_ in range(args.runs):  # the targets alternate, so drift hits them alike
            for i, target in enumerate(targets):
                target.runs.append(target.load(f"r{round_}t{i}-", args.duration, args))
        stored = {t.label: stored_events(t.url) for t in targets if t.url}
        for target in targets:
            if target.routing:
                target.lag_p99 = routing_lag_p99(target.port, stored[target.label])
            if target.assignment and target.url:
                target.assigned = assignment_latency(target.url)
    finally:
        for target in targets:
            target.process.terminate()
            target.process.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)
    report(args, targets, stored)


def report(args: argparse.Namespace, targets: list[Target], stored: dict[str, int]) -> None:
    generator = (
        f"wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s --latency"
        if args.wrk
        else f"Python raw-socket generator, {args.connections} connections, {args.duration:g} s"
    )
    print(f"distinct unsigned Cloud API text webhooks, POST {CLOUD_PATH}; load: {generator}")
    print(f"uvicorn {uvicorn_choice()}, {args.workers} worker(s); wacanon durable "
          f"(shadow mode off); median of {args.runs} run(s)")  # fmt: skip
    print(f"  {'target':<36}{'webhooks/s':>11}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}  runs")
    medians = {}
    for t in targets:
        m = medians[t.label] = median_figures(t.runs)
        rates = " ".join(f"{r.rate:,.0f}" for r in t.runs)
        print(f"  {t.label:<36}{m.rate:>11,.0f}{m.p50_ms:>9.2f}{m.p99_ms:>9.2f}{m.errors:>8}"
              f"  [{rates}]")  # fmt: skip
    bare = medians[targets[0].label]
    for t in targets[1:]:
        m = medians[t.label]
        if t.legacy and t.baseline in medians:
            off = medians[str(t.baseline)]
            added = f"p50 {m.p50_ms - off.p50_ms:+.2f} ms, p99 {m.p99_ms - off.p99_ms:+.2f} ms"
            print(
                f"  {t.label} / {t.baseline}: rate {m.rate / off.rate:.2f}; forwarding adds {added}"
            )
            continue
        if t.baseline is not None and t.baseline in medians:
            off = medians[t.baseline]
            ratio = m.rate / off.rate
            lag = f"{t.lag_p99:g} s" if t.lag_p99 is not None else "?"
            verdict = "meets" if ratio >= 0.70 and (t.lag_p99 or 99) <= 1.0 else "misses"
            print(f"  ratio {t.label} / {t.baseline}: {ratio:.2f}; routing lag p99 <= {lag} "
                  f"({verdict} the target of >= 0.70 with lag p99 <= 1 s)")  # fmt: skip
            if t.assigned is not None:
                p50, p99, n = t.assigned
                print(
                    f"    assignment latency (first message -> thread.assigned) over {n:,} "
                    f"conversations: p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms"
                )
            continue
        verdict = "meets" if m.rate / bare.rate >= 0.35 and m.p99_ms <= 20 else "misses"
        print(f"  ratio {t.label} / bare: {m.rate / bare.rate:.2f}  ({verdict} the target "
              f"of >= 0.35 with p99 <= 20 ms); events stored {stored[t.label]:,}, "
              f"webhooks answered 200 {t.answered:,}")  # fmt: skip


# -------------------------------------------------------------------------------------------


def scratch_postgres(admin_url: str) -> tuple[str, sa.Engine, str]:
    name = f"wacanon_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    return admin_url.rsplit("/", 1)[0] + f"/{name}", admin, name


def main() -> None:
    global CUSTOMERS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["compare", "health"], default="compare")
    parser.add_argument("--duration", "--seconds", type=float, default=10.0,
                        help="seconds per timed run")  # fmt: skip
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--connections", type=int, help="default 16 (compare), 32 (health)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (compare)")
    parser.add_argument("--load", choices=["auto", "wrk", "python"], default="auto",
                        help="compare mode's load generator (auto: wrk if on PATH)")  # fmt: skip
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument(
        "--switch-intervals",
        default="",
        help="compare mode: also run each backend with these GIL switch intervals "
        "(seconds, comma-separated, e.g. 0.00005,0.0005), each on its own database",
    )
    parser.add_argument(
        "--postgres-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    parser.add_argument(
        "--no-routing",
        dest="routing",
        action="store_false",
        help="compare mode: leave out the routing-on and assignment targets of each backend",
    )
    parser.add_argument(
        "--no-legacy",
        dest="legacy",
        action="store_false",
        help="compare mode: leave out the legacy-forwarding target of each backend",
    )
    parser.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--customers", type=int, default=CUSTOMERS, choices=range(1, 10001),
                        metavar="1..10000", help="customers the stream cycles through")  # fmt: skip
    args = parser.parse_args()
    CUSTOMERS = args.customers
    if args.serve_bare:
        serve_bare(args.serve_bare, args.workers)
        return
    if args.connections is None:
        args.connections = 16 if args.mode == "compare" else 32
    scratch: list[tuple[sa.Engine, str]] = []
    databases: list[tuple[str, str, float | None, str]] = []
    directory = Path(tempfile.mkdtemp(prefix="wacanon-bench-db-"))
    intervals: list[float | None] = [None]
    if args.mode == "compare" and args.switch_intervals:
        intervals += [float(x) for x in args.switch_intervals.split(",")]

    def fresh_database(backend: str) -> str:
        """A database of its own for each target: a new SQLite file or scratch database."""
        if backend == "sqlite":
            return f"sqlite:///{directory / f'bench-{len(databases)}.db'}"
        url, admin, name = scratch_postgres(args.postgres_url)
        scratch.append((admin, name))
        return url

    try:
        for backend in args.backends.split(","):
            for interval in intervals:
                label = "SQLite" if backend == "sqlite" else "PostgreSQL"
                if interval is not None:
                    label += f" (switch {interval * 1e6:g} µs)"
                databases.append((label, fresh_database(backend), interval, "off"))
                if args.mode == "compare" and interval is None and args.routing:
                    databases.append((label, fresh_database(backend), None, "on"))
                    databases.append((label, fresh_database(backend), None, "assignment"))
                if args.mode == "compare" and interval is None and args.legacy:
                    databases.append((label, fresh_database(backend), None, "legacy"))
        if args.mode == "compare":
            compare(args, databases)
        else:
            for name, url, _, _ in databases:
                bench_backend(name, url, args)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        for admin, name in scratch:
            with admin.connect() as connection:
                connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
