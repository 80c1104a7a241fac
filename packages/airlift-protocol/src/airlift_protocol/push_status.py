"""The push status file: what push delivery did on one Airflow machine, for ``airlift doctor``.

airlift-airflow's push relay (and the scheduler's in-process queue) keep counters of their outcomes
and the last problems in ``push-status.json`` next to the relay's socket and log file
(``<tmp>/airlift-push-<uid>/``); ``airlift doctor --push-status PATH`` reads it on the Dagster side.
This module is the file's format, shared by both: the writer merges its new counts into the file
(:func:`merge_push_status`), the reader parses it (:func:`load_push_status`).

>>> status = merge_push_status(PushStatus(), {"delivered": 2}, [], now="2026-01-01T00:00:00+00:00")
>>> PushStatus.from_json(status.to_json()).counters["delivered"]
2
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airlift_protocol.errors import AirliftProtocolError

__all__ = [
    "COUNTERS",
    "DELIVERED",
    "DROPPED_QUEUE_FULL",
    "DROPPED_TOO_OLD",
    "FAILED",
    "LOG_FILE_NAME",
    "MAX_PROBLEMS",
    "SETTLE_TOO_SHORT",
    "STATUS_FILE_NAME",
    "UNRESOLVED_INSTANCE_NAME",
    "PushProblem",
    "PushStatus",
    "PushStatusError",
    "load_push_status",
    "merge_push_status",
]

STATUS_FILE_NAME = "push-status.json"
LOG_FILE_NAME = "push-relay.log"
#: Problems kept in the file (the newest).
MAX_PROBLEMS = 20

DELIVERED = "delivered"
DROPPED_TOO_OLD = "dropped_too_old"
DROPPED_QUEUE_FULL = "dropped_queue_full"
FAILED = "failed"
UNRESOLVED_INSTANCE_NAME = "unresolved_instance_name"
SETTLE_TOO_SHORT = "settle_too_short"
#: Counter -> what it counts (one Airflow event each: a task try's reports or a DAG run's).
COUNTERS: Mapping[str, str] = {
    DELIVERED: "delivered to Dagster",
    DROPPED_TOO_OLD: "dropped: could no longer land before the sensor reads the row (left to the sensor)",
    DROPPED_QUEUE_FULL: "dropped: queue full (left to the sensor)",
    FAILED: "failed: Dagster did not take it (left to the sensor)",
    UNRESOLVED_INSTANCE_NAME: "not sent: the DAG's Airflow instance name is unknown in Dagster (left to the sensor)",
    SETTLE_TOO_SHORT: "not sent: the Airlift sensor's settle leaves push no time to land first (left to the sensor)",
}


class PushStatusError(AirliftProtocolError):
    """A push status file that cannot be read (names the file)."""


@dataclass(frozen=True)
class PushProblem:
    """One event push did not deliver. ``actionable``: the user must change something (a setting, a
    token, the Dagster definitions) for push to deliver it; otherwise push gave way to the sensor."""

    at: str
    counter: str
    dag_id: str
    what: str
    reason: str
    actionable: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at, "counter": self.counter, "dag_id": self.dag_id, "what": self.what, "reason": self.reason,
                "actionable": self.actionable}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PushProblem:
        return cls(at=str(data["at"]), counter=str(data["counter"]), dag_id=str(data["dag_id"]), what=str(data["what"]),
                   reason=str(data["reason"]), actionable=bool(data.get("actionable", False)))


@dataclass(frozen=True)
class PushStatus:
    """Counters since ``since`` (the first write), the newest problems (oldest first), ``updated``."""

    counters: Mapping[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    problems: Sequence[PushProblem] = ()
    since: str | None = None
    updated: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"version": 1, "since": self.since, "updated": self.updated, "counters": dict(self.counters),
                "problems": [p.to_json() for p in self.problems]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PushStatus:
        counters = dict.fromkeys(COUNTERS, 0)
        counters.update({str(k): int(v) for k, v in (data.get("counters") or {}).items()})
        return cls(counters=counters, problems=tuple(PushProblem.from_json(p) for p in data.get("problems") or ()),
                   since=data.get("since"), updated=data.get("updated"))

    def problem_of(self, dag_id: str) -> PushProblem | None:
        """The newest actionable problem of ``dag_id`` still in the file (cleared once one of its events is delivered)."""
        for problem in reversed(self.problems):
            if problem.dag_id == dag_id and problem.actionable:
                return problem
        return None


def merge_push_status(
    current: PushStatus,
    counts: Mapping[str, int],
    problems: Iterable[PushProblem],
    *,
    now: str,
    delivered_dags: Iterable[str] = (),
) -> PushStatus:
    """``current`` plus new ``counts`` and ``problems``; the actionable problems of ``delivered_dags``
    (push delivered for them since: fixed) are dropped; the newest :data:`MAX_PROBLEMS` stay.

    >>> p = PushProblem("t", "failed", "d", "task d.t", "HTTP 401", actionable=True)
    >>> merge_push_status(PushStatus(problems=[p]), {}, [], now="t2", delivered_dags=["d"]).problems
    ()
    """
    delivered = set(delivered_dags)
    merged = dict(current.counters)
    for name, n in counts.items():
        merged[name] = merged.get(name, 0) + n
    kept = [p for p in current.problems if not (p.actionable and p.dag_id in delivered)] + list(problems)
    return PushStatus(counters=merged, problems=tuple(kept[-MAX_PROBLEMS:]), since=current.since or now, updated=now)


def load_push_status(path: str | Path) -> PushStatus:
    """Read a push status file; one clear error naming the file when it is missing or not one."""
    file = Path(path)
    try:
        data = json.loads(file.read_text())
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return PushStatus.from_json(data)
    except FileNotFoundError as e:
        raise PushStatusError(
            f"no push status file at {file}: the push relay writes {STATUS_FILE_NAME} in <tmp>/airlift-push-<uid>/ "
            "on each Airflow machine that pushes (copy it here, or run this where Airflow runs)"
        ) from e
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise PushStatusError(f"{file} is not a push status file: {e}") from e
