"""What a doctor check reports: held, found something (with its fix), or not checked."""

from __future__ import annotations

from dataclasses import dataclass

OK, FOUND, SKIP = "ok", "found", "skip"

#: The seed's troubleshooting headings, in its order, and where the rest goes.
AREAS = {
    "schema": "schema",
    "duplicates": "duplicated events",
    "latency": "high latency",
    "normalization": "normalization errors",
    "conversations": "conversations not created",
    "server": "the running server",
}


@dataclass(frozen=True, slots=True)
class Diagnosis:
    area: str
    name: str
    status: str
    measured: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return {
            "id": f"{self.area}.{self.name}",
            "area": self.area,
            "name": self.name,
            "status": self.status,
            "measured": self.measured,
            "fix": self.fix,
        }


def held(area: str, name: str, measured: str) -> Diagnosis:
    return Diagnosis(area, name, OK, measured)


def found(area: str, name: str, measured: str, fix: str) -> Diagnosis:
    return Diagnosis(area, name, FOUND, measured, fix)


def skipped(area: str, name: str, why: str) -> Diagnosis:
    return Diagnosis(area, name, SKIP, why)
