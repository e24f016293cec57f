"""``/metrics``: one process's registry, or every worker's with ``--workers N``.

With several workers ``wacanon serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` (a fresh
directory) before the workers start, so prometheus-client keeps every worker's values in
files there and any worker's ``/metrics`` adds them up (counters and histograms summed;
gauges as each declares: the spool summed over live workers, the store's figures their
maximum). The ``process_*`` metrics are per process; there every live worker's appear
with a ``pid`` label, so CPU and memory alerts see all of them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_PID_FILE = re.compile(r"_(\d+)\.db$")


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def exposition(registry: CollectorRegistry) -> bytes:
    """The text format of ``/metrics``."""
    directory = multiprocess_dir()
    if directory is None:
        return generate_latest(registry)
    combined = CollectorRegistry()
    MultiProcessCollector(combined, path=directory)  # type: ignore[no-untyped-call]
    combined.register(WorkerProcesses(directory))
    return generate_latest(combined)


def worker_exited() -> None:
    """A worker going away: its live gauges (the spool) stop counting."""
    directory = multiprocess_dir()
    if directory is not None:
        mark_process_dead(os.getpid(), path=directory)  # type: ignore[no-untyped-call]


def _fixed(pid: int) -> Callable[[], int]:
    return lambda: pid


class WorkerProcesses(Collector):
    """``process_*`` of every live worker, labelled ``pid``."""

    def __init__(self, directory: str) -> None:
        self._directory = Path(directory)

    def _pids(self) -> list[int]:
        found = set()
        for path in self._directory.glob("*.db"):
            match = _PID_FILE.search(path.name)
            if match and Path(f"/proc/{match.group(1)}").exists():
                found.add(int(match.group(1)))
        return sorted(found)

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        for pid in self._pids():
            collector = ProcessCollector(pid=_fixed(pid), registry=None)
            for family in collector.collect():
                merged = families.setdefault(
                    family.name, Metric(family.name, family.documentation, family.type)
                )
                for sample in family.samples:
                    merged.add_sample(sample.name, {**sample.labels, "pid": str(pid)}, sample.value)
        yield from families.values()
