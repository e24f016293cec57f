"""``wacanon doctor --url``: what only the running server knows — readiness, its latency
and error rate over the last 15 minutes, its spool and how full its connection pools are.

The window (``/metrics/window``) is the answering process's; ``/metrics`` adds up every
worker of a ``--workers N`` server. Thresholds are the alert rules' (p95 500 ms, error
rate 1 %), so the doctor and the alerts agree on what is wrong.
"""

from __future__ import annotations

from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from wacanon.doctor.findings import Diagnosis, found, held, skipped
from wacanon.errors import CouldNotCheck
from wacanon.rollout.check import require_health

WINDOW_SECONDS = 900
P95_MS = 500.0
ERROR_RATE = 0.01
NORMALIZATION_RATE = 0.99
POOL_USED = 0.8
READ_FROM_METRICS = ("wacanon_spool_depth", "wacanon_db_pool_in_use", "wacanon_db_pool_limit")


def live_checks(url: str, every_node: dict[str, Any] | None = None) -> list[Diagnosis]:
    """The server's checks; ``every_node``: the live window of every node added up (from
    ``node_windows``), judged instead of the answering process's own when given.
    Anything the server answers that cannot be read is :class:`CouldNotCheck`."""
    try:
        return _live_checks(url, every_node)
    except CouldNotCheck:
        raise
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        raise CouldNotCheck(f"server {url} answered what the doctor cannot read: {exc!r}") from None


def _live_checks(url: str, every_node: dict[str, Any] | None) -> list[Diagnosis]:
    area = "server"
    out = []
    with httpx.Client(base_url=url, timeout=10) as client:
        require_health(client, url)
        ready = client.get("/ready")
        if ready.status_code == 200:
            out.append(held(area, "ready", "/ready answers 200"))
        else:
            out.append(
                found(
                    area,
                    "ready",
                    f"/ready answers {ready.status_code}",
                    "the server's log says why (its 'not ready' line): an unreachable "
                    "database, a schema behind head (`wacanon db upgrade`) or a spool it "
                    "cannot write",
                )
            )
        if every_node is not None:
            out += _judged(
                every_node, f"over 5 min, {every_node['webhooks']} webhook(s), every node"
            )
        else:
            answer = client.get("/metrics/window", params={"seconds": WINDOW_SECONDS})
            if answer.status_code != 200:
                out.append(
                    skipped(area, "latency and errors", f"/metrics/window: {answer.status_code}")
                )
            else:
                w = answer.json()
                out += _judged(
                    w, f"over 15 min, {w['webhooks']} webhook(s) (the answering process)"
                )
        out += _metrics(client.get("/metrics"))
    return out


def _judged(w: dict[str, Any], span: str) -> list[Diagnosis]:
    """p95, error rate and normalization rate of a window (``/metrics/window``'s shape)."""
    area = "server"
    if not w["webhooks"]:
        return [skipped(area, "latency and errors", f"no webhook {span}")]
    out = []
    p95 = w["latency_ms"]["p95"]
    measured = f"p95 {p95:g} ms {span}"
    if p95 >= P95_MS:
        out.append(
            found(
                area,
                "p95 latency",
                measured,
                "see 'high latency' above (indexes, slow queries, connections, spool); "
                "`wacanon_commit_seconds` and `wacanon_normalize_seconds` on /metrics say "
                "which part is slow",
            )
        )
    else:
        out.append(held(area, "p95 latency", measured))
    rate = w["error_rate"]
    measured = (
        f"{rate:.2%} ({w['server_errors']} answered 5xx, "
        f"{w['normalization_failures']} not understood) {span}"
    )
    if rate >= ERROR_RATE:
        out.append(
            found(
                area,
                "error rate",
                measured,
                "5xx: the database or the spool (`/ready`, the log); not understood: the "
                "dead letters ('normalization errors' above)",
            )
        )
    else:
        out.append(held(area, "error rate", measured))
    normalized = w["normalization_rate"]
    if normalized is not None and normalized < NORMALIZATION_RATE:
        out.append(
            found(
                area,
                "normalization rate",
                f"{normalized:.2%} {span}",
                "`wacanon compare --from-journal --since …` lists what is not understood",
            )
        )
    elif normalized is not None:
        out.append(held(area, "normalization rate", f"{normalized:.2%} {span}"))
    return out


def _metrics(answer: httpx.Response) -> list[Diagnosis]:
    area = "server"
    if answer.status_code != 200:
        return [skipped(area, "spool and pools", f"/metrics: {answer.status_code}")]
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            if sample.name in (
                "wacanon_spool_depth",
                "wacanon_db_pool_in_use",
                "wacanon_db_pool_limit",
            ):
                values[sample.name] = values.get(sample.name, 0.0) + sample.value
    out = []
    depth = int(values.get("wacanon_spool_depth", 0))
    if depth:
        out.append(
            found(
                area,
                "server's spool empty",
                f"{depth} webhook(s) in the server's spool",
                "they drain once the database answers: `/ready`, and the log's 'database "
                "unusable; spooling webhooks' lines if it does not fall",
            )
        )
    else:
        out.append(held(area, "server's spool empty", "0 in the server's spool"))
    limit = values.get("wacanon_db_pool_limit", 0)
    if not limit:
        out.append(skipped(area, "connection pools", "the server exports no pool figures"))
        return out
    used = values.get("wacanon_db_pool_in_use", 0)
    measured = f"{used:g} of {limit:g} connections checked out"
    if used >= POOL_USED * limit:
        out.append(
            found(
                area,
                "connection pools",
                measured,
                "requests wait for connections: more --workers or nodes (see 'database "
                "connections' above for the server's own limit), or slower queries to fix",
            )
        )
    else:
        out.append(held(area, "connection pools", measured))
    return out
