"""``/metrics`` (issue #9 §5): every worker's values with ``--workers N``, the store's
gauges (table sizes, disk, queue, stored twice), the host and process figures the
alerts divide by, and the response and normalization counters the KPIs are built from."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.api.conftest import SIM_TOKEN, bearer, sim_body, sim_message
from tests.conftest import _clean
from tests.ingest.test_durability import _free_port, serve_config


def serve_workers(
    config: Path, tmp_path: Path, env: dict[str, str], workers: int = 2
) -> tuple[subprocess.Popen[bytes], str]:
    """``wacanon serve --workers N`` in a process of its own, once ``/ready`` says 200;
    the process and its URL (its log: ``tmp_path / "serve.log"``)."""
    port = _free_port()
    with (tmp_path / "serve.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "wacanon", "serve", "--config", str(config),
             "--port", str(port), "--workers", str(workers)],
            stdout=subprocess.DEVNULL, stderr=log, cwd=tmp_path, env={**os.environ, **env},
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{base}/ready", timeout=1).status_code == 200:
                return process, base
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError((tmp_path / "serve.log").read_text()[-2000:])
        time.sleep(0.2)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def total(text: str, name: str, **labels: str) -> float:
    return sum(
        value
        for (sample, found), value in samples(text).items()
        if sample == name and all((k, v) in found for k, v in labels.items())
    )


def stored_by_worker(values: Path) -> dict[str, float]:
    """Webhooks stored by each worker, read from its own counter file alone."""
    found = {}
    for path in values.glob("counter_*.db"):
        alone = values.parent / f"alone-{path.stem}"
        alone.mkdir(exist_ok=True)
        shutil.copy(path, alone / path.name)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(alone))
        text = generate_latest(registry).decode()
        count = total(text, "wacanon_webhooks_total", outcome="stored")
        if count:
            found[path.stem.removeprefix("counter_")] = count
    return found


def test_every_workers_webhooks_are_in_each_scrape(postgres_server: str, tmp_path: Path) -> None:
    _clean(postgres_server)
    config = serve_config(tmp_path, postgres_server)
    values = tmp_path / "metrics"  # the workers' value files, one per pid
    env = {"WHATSAPP_CANONICAL_SHADOW_MODE": "false", "PROMETHEUS_MULTIPROC_DIR": str(values)}
    process, base = serve_workers(config, tmp_path, env)
    try:
        sent = 0
        # A new connection each, until both workers have stored some: otherwise one
        # worker's own figures would pass for the sum.
        while len(stored_by_worker(values)) < 2 or sent < 40:
            assert sent < 400, f"one worker took every webhook: {stored_by_worker(values)}"
            body = sim_body(sim_message(f"MP-{sent}", sender=f"55119700{sent:05d}"))
            reply = httpx.post(f"{base}/webhooks/simulated", content=body, headers=bearer())
            assert reply.status_code == 200
            sent += 1
        assert sum(stored_by_worker(values).values()) == sent
        scrapes = [httpx.get(f"{base}/metrics").text for _ in range(8)]
        for text in scrapes:
            assert total(text, "wacanon_webhooks_total", outcome="stored") == sent
            assert total(text, "wacanon_webhook_responses_total", status="200") == sent
            assert total(text, "wacanon_webhook_seconds_count") == sent
        pids = {
            dict(found)["pid"]
            for (name, found) in samples(scrapes[-1])
            if name == "process_resident_memory_bytes"
        }
        assert len(pids) == 2  # both workers' memory, for the alert
    finally:
        process.terminate()
        process.wait(20)


def test_the_store_and_host_gauges_and_the_kpi_counters(make_client: Any) -> None:
    client = make_client()
    ok = sim_body(sim_message("G-1"))
    bad = orjson.dumps({"account": "sim-store-1", "events": [{"type": "bogus", "id": "x"}]})
    assert client.post("/webhooks/simulated", content=ok, headers=bearer()).status_code == 200
    assert client.post("/webhooks/simulated", content=bad, headers=bearer()).status_code == 200
    wrong = {"Authorization": "Bearer nope", "Content-Type": "application/json"}
    assert client.post("/webhooks/simulated", content=ok, headers=wrong).status_code == 401
    text = client.get("/metrics").text
    assert total(text, "wacanon_normalized_webhooks_total", result="ok") == 1
    assert total(text, "wacanon_normalized_webhooks_total", result="failed") == 1
    assert total(text, "wacanon_webhook_responses_total", status="401") == 1
    for name in (
        "wacanon_host_cpus",
        "wacanon_host_memory_bytes",
        "wacanon_disk_free_bytes",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    ):
        assert total(text, name) > 0, name
    assert 0 < total(text, "wacanon_disk_free_ratio") <= 1
    for table in ("events", "conversations", "webhook_journal"):  # measured at start-up
        assert ("wacanon_table_rows", (("table", table),)) in samples(text)
    assert total(text, "wacanon_database_bytes") > 0
    assert total(text, "wacanon_events_stored_twice") == 0
    assert ("wacanon_queue_oldest_wait_seconds", ()) in samples(text)
    assert SIM_TOKEN not in text
