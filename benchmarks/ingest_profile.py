"""Where a webhook's microseconds go: ``wacanon serve`` under wrk, seen from outside.

``benchmarks/ingest.py`` says how fast; this says why. The same servers (1 worker,
durable, distinct unsigned Cloud API text webhooks, ``wrk -t1 -c16``) and, in the same
run, the bare Starlette app, each driven for ``--duration`` seconds after a warm-up,
while the script reads:

* CPU per webhook of every thread of the server process (``/proc/<pid>/task``), of the
  database server's processes (PostgreSQL) and of the load generator;
* how idle the machine was (``/proc/stat``) — a server that is neither busy nor fast is
  waiting on something;
* the group commits (``/metrics``): webhooks per commit, milliseconds per commit and per
  webhook's wait for its commit;
* bytes written to disk per webhook (``/proc/<pid>/io``: the WAL, checkpoints, the spool);
* with ``--py-spy`` (``pip install py-spy``): the share of time each thread held the
  interpreter lock, and the event loop's heaviest functions.

    python benchmarks/ingest_profile.py [--backends sqlite,postgresql] [--duration 8] [--py-spy]

Figures differ between machines; compare targets of one run (the bare app is the
yardstick, see docs/operations.md "Capacity").
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).parent))
import ingest  # this directory's benchmark module, for its servers

TICKS = os.sysconf("SC_CLK_TCK")
COMMIT_SERIES = (
    "wacanon_commit_batch_webhooks_sum",
    "wacanon_commit_batch_webhooks_count",
    "wacanon_commit_seconds_sum",
    "wacanon_persist_seconds_sum",
    "wacanon_persist_seconds_count",
)


def thread_cpu(pid: int) -> dict[int, float]:
    """Seconds of CPU (user + system) of each thread of ``pid``."""
    found = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found[int(tid)] = (int(fields[11]) + int(fields[12])) / TICKS
    return found


def processes_cpu(pattern: str) -> float:
    """Seconds of CPU of every process whose command line matches ``pattern``."""
    pids = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout
    total = 0.0
    for pid in pids.split():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / TICKS
    return total


def written_bytes(pattern: str | None, pid: int | None = None) -> int:
    """Bytes these processes caused to be written to storage."""
    if pid is not None:
        pids = [str(pid)]
    else:
        out = subprocess.run(["pgrep", "-f", str(pattern)], capture_output=True, text=True)
        pids = out.stdout.split()
    total = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/io").read_text().splitlines():
                if line.startswith("write_bytes:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def machine_idle() -> tuple[int, int]:
    """(idle + iowait, total) jiffies of all CPUs."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return fields[3] + fields[4], sum(fields)


def commit_figures(port: int) -> dict[str, float]:
    try:
        text = urllib.request.urlopen(f"http://{ingest.HOST}:{port}/metrics", timeout=5).read()
    except OSError:
        return {}
    values = {}
    for line in text.decode().splitlines():
        name, _, value = line.partition(" ")
        if name in COMMIT_SERIES:
            values[name] = float(value)
    return values


@dataclass
class Reading:
    label: str
    rate: float
    p99_ms: float
    threads: list[tuple[str, float]]  # (name, µs per webhook), busiest first
    database_us: float | None
    load_us: float
    idle: float
    commit: dict[str, float]
    disk_kib: float
    gil: dict[str, float]
    hot: list[tuple[float, str]]


def spy(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    binary = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(binary).exists():
        raise SystemExit("--py-spy: py-spy is not installed (pip install py-spy)")
    command = [binary, "record", "--pid", str(pid), "--rate", "400", "--format", "raw",
               "--threads", "--idle", "--nonblocking", "-o", str(out),
               "--duration", str(int(seconds))]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _samples(path: Path) -> list[tuple[int, str, list[str], int]]:
    """py-spy's raw lines: (thread id, thread name, frames, count)."""
    found = []
    for line in path.read_text().splitlines() if path.exists() else []:
        stack, _, count = line.rpartition(" ")
        head, _, rest = stack.partition(";")
        match = re.match(r"thread \((\d+)\): (.*)", head)
        if match:
            frames = [re.sub(r":\d+\)", ")", f) for f in rest.split(";")]
            found.append((int(match.group(1)), match.group(2), frames, int(count)))
    return found


def read_spy(
    every: Path, holding: Path
) -> tuple[dict[int, str], dict[str, float], list[tuple[float, str]]]:
    """Thread names by id; each thread's share of samples in which it held the GIL
    (``every``: all samples, idle ones too; ``holding``: only the GIL holder's); and
    where the event loop's Python time goes (inclusive share of its GIL samples, the
    package's own functions)."""
    names: dict[int, str] = {}
    totals: collections.Counter[str] = collections.Counter()
    for tid, name, _, count in _samples(every):
        names[tid] = name
        totals[name] += count
    held: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    for _, name, frames, count in _samples(holding):
        held[name] += count
        if name == "MainThread":
            for frame in set(frames):
                if (
                    "(wacanon/" in frame
                    and "(wacanon/cli/" not in frame
                    and "__main__" not in frame
                ):
                    inclusive[frame] += count
    gil = {name: held[name] / totals[name] for name in totals if totals[name]}
    main = held["MainThread"]
    hot = [(n / main, f) for f, n in inclusive.most_common(15)] if main else []
    return names, gil, hot


def children(pid: int) -> list[tuple[int, str]]:
    out = subprocess.run(["pgrep", "-a", "-P", str(pid)], capture_output=True, text=True).stdout
    return [(int(line.split(" ", 1)[0]), line.split(" ", 1)[1]) for line in out.splitlines()]


def serving_pid(pid: int) -> int:
    """The process that serves: ``pid`` itself, or its one uvicorn worker (``--workers``)."""
    workers = [p for p, command in children(pid) if "writer_process" not in command]
    return workers[0] if workers else pid


def writer_pid(pid: int) -> int | None:
    """The writer process of the serving process ``pid`` (``writer_process = true``)."""
    writers = [p for p, command in children(pid) if "writer_process" in command]
    return writers[0] if writers else None


def measure(label: str, port: int, pid: int, database: bool, args: argparse.Namespace,
            workdir: Path) -> Reading:  # fmt: skip
    # The load exactly as benchmarks/ingest.py drives it (wrk -t1 -c16, same script).
    target = ingest.Target(label, port, None)  # type: ignore[arg-type]
    options = argparse.Namespace(threads=1, connections=16, wrk=ingest.wrk_script(workdir))

    def wrk(seconds: float, prefix: str) -> ingest.Figures:
        return ingest.load(target, prefix, seconds, options)

    wrk(2, f"warm{port}-")
    pid = serving_pid(pid)
    writer = writer_pid(pid)
    spy_raw, spy_gil = workdir / f"spy-{port}.txt", workdir / f"gil-{port}.txt"
    spies = []
    if args.py_spy:
        spies = [spy(pid, args.duration, spy_raw)]
    threads0, db0, idle0 = thread_cpu(pid), processes_cpu("postgres:"), machine_idle()
    writer0 = thread_cpu(writer) if writer else {}
    disk0 = written_bytes("postgres:") if database else written_bytes(None, writer or pid)
    commit0, children0 = commit_figures(port), os.times()
    figures = wrk(args.duration, f"run{port}-")
    requests = figures.requests
    threads1, db1, idle1 = thread_cpu(pid), processes_cpu("postgres:"), machine_idle()
    writer1 = thread_cpu(writer) if writer else {}
    disk1 = written_bytes("postgres:") if database else written_bytes(None, writer or pid)
    commit1, children1 = commit_figures(port), os.times()
    for process in spies:
        if process is not None:
            process.wait()
    names: dict[int, str] = {}
    gil: dict[str, float] = {}
    hot: list[tuple[float, str]] = []
    if args.py_spy:  # a second, shorter run for the GIL share (py-spy --gil)
        binary = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        holder = subprocess.Popen(
            [binary, "record", "--pid", str(pid), "--rate", "400", "--format", "raw",
             "--threads", "--idle", "--gil", "--nonblocking", "-o", str(spy_gil),
             "--duration", str(int(args.duration))],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wrk(args.duration, f"gil{port}-")
        holder.wait()
        names, gil, hot = read_spy(spy_raw, spy_gil)
    per = 1e6 / requests
    threads = sorted(
        (
            (names.get(tid, "main" if tid == pid else f"thread {tid}"),
             (threads1[tid] - threads0.get(tid, 0.0)) * per)
            for tid in threads1
        ),
        key=lambda item: -item[1],
    )  # fmt: skip
    if writer:
        spent = sum(writer1.values()) - sum(writer0.get(t, 0.0) for t in writer1)
        threads.append(("writer process", spent * per))
    commit = {k: commit1.get(k, 0.0) - commit0.get(k, 0.0) for k in COMMIT_SERIES}
    idle = (idle1[0] - idle0[0]) / max(1, idle1[1] - idle0[1])
    load = (children1.children_user + children1.children_system
            - children0.children_user - children0.children_system)  # fmt: skip
    return Reading(
        label, figures.rate, figures.p99_ms, [t for t in threads if t[1] >= 0.5],
        (db1 - db0) * per if database else None, load * per, idle, commit,
        (disk1 - disk0) / requests / 1024, gil, hot,
    )  # fmt: skip


def show(reading: Reading, bare: Reading | None) -> None:
    ratio = (
        f", {reading.rate / bare.rate:.2f}× the bare app" if bare and bare is not reading else ""
    )
    print(f"\n{reading.label}: {reading.rate:,.0f} webhooks/s{ratio}, p99 {reading.p99_ms:.1f} ms, "
          f"machine idle {reading.idle:.0%}")  # fmt: skip
    for name, us in reading.threads:
        held = (
            f"  (holds the GIL {reading.gil[name]:.0%} of the time)" if name in reading.gil else ""
        )
        print(f"  {name:<24} {us:7.1f} µs CPU per webhook{held}")
    if reading.database_us is not None:
        print(f"  {'PostgreSQL processes':<24} {reading.database_us:7.1f} µs CPU per webhook")
    print(f"  {'load generator (wrk)':<24} {reading.load_us:7.1f} µs CPU per webhook")
    c = reading.commit
    if c.get("wacanon_commit_batch_webhooks_count"):
        commits = c["wacanon_commit_batch_webhooks_count"]
        waited = c["wacanon_persist_seconds_sum"] / max(1, c["wacanon_persist_seconds_count"])
        print(f"  group commits: {c['wacanon_commit_batch_webhooks_sum'] / commits:.1f} webhooks "
              f"each, {c['wacanon_commit_seconds_sum'] / commits * 1000:.2f} ms each; a webhook "
              f"waits {waited * 1000:.2f} ms for its commit")  # fmt: skip
    if reading.label != "bare Starlette + orjson":
        print(f"  written to disk: {reading.disk_kib:.1f} KiB per webhook")
    if reading.hot:
        print("  the event loop's Python time (inclusive), heaviest first:")
    for share, frame in reading.hot:
        print(f"    {share:5.1%}  {frame}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--py-spy", action="store_true", help="also sample the server with py-spy")
    parser.add_argument(
        "--postgres-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not on PATH (Debian: apt-get install wrk)")
    workdir = Path(tempfile.mkdtemp(prefix="wacanon-profile-"))
    scratch: list[tuple[sa.Engine, str]] = []
    readings: list[Reading] = []
    try:
        port = ingest.free_port()
        bare = ingest.start_bare(port, 1)
        try:
            readings.append(
                measure("bare Starlette + orjson", port, bare.pid, False, args, workdir)
            )
        finally:
            bare.terminate()
            bare.wait(10)
        for backend in args.backends.split(","):
            directory = workdir / backend
            directory.mkdir()
            if backend == "sqlite":
                url = f"sqlite:///{directory / 'profile.db'}"
            else:
                url, admin, name = ingest.scratch_postgres(args.postgres_url)
                scratch.append((admin, name))
            port = ingest.free_port()
            server = ingest.start_server(directory, url, port, 1, mode="compare")
            try:
                label = "wacanon SQLite" if backend == "sqlite" else "wacanon PostgreSQL"
                readings.append(
                    measure(label, port, server.pid, backend != "sqlite", args, directory)
                )
            finally:
                server.terminate()
                server.wait(10)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        for admin, name in scratch:
            with admin.connect() as connection:
                connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    for reading in readings:
        show(reading, readings[0])


if __name__ == "__main__":
    main()
