"""The decommission file: ``<folder>/<dag_id>.yaml``, written by ``airlift decommission`` and read by
:func:`airlift_dagster.load_decommissioned_defs`. It records what Dagster runs in place of the DAG
and what ``airlift decommission --undo`` restores; unknown keys are rejected and errors name the
file and the key.

>>> from airlift_dagster.decommission.timetable import DagSchedule
>>> plan = DecommissionPlan(dag_id="d", airflow_instance="af", dag_asset_key=("af", "dag", "d"),
...     airflow_was_paused=False, schedule=DagSchedule(kind="manual", source="None"))
>>> load_decommission_plan_text(dump_decommission_plan(plan), "d.yaml") == plan
True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from airlift_dagster.decommission.timetable import KINDS, DagSchedule
from airlift_dagster.errors import AirliftDagsterError

__all__ = ["DecommissionFileError", "DecommissionPlan", "dump_decommission_plan", "load_decommission_plan",
           "load_decommission_plan_text"]


class DecommissionFileError(AirliftDagsterError):
    """A decommission file that cannot be read (the message names the file and the key)."""


@dataclass(frozen=True)
class DecommissionPlan:
    """What a decommissioned DAG became in Dagster, and how to undo it."""

    dag_id: str
    airflow_instance: str
    dag_asset_key: tuple[str, ...]
    airflow_was_paused: bool
    schedule: DagSchedule
    #: Intervals ending at or before this instant ran (or were due) in Airflow; Dagster runs the later ones.
    catchup_from: datetime | None = None
    airflow_cleanup: tuple[str, ...] = field(default=())


_HEADER = (
    "# Written by `airlift decommission {dag_id}`: Dagster now runs the assets of the Airflow DAG {dag_id!r}\n"
    "# (load_decommissioned_defs turns this file into a job and its schedule or automation).\n"
    "# `airlift decommission --undo {dag_id}` unpauses the DAG in Airflow and removes this file.\n"
)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def dump_decommission_plan(plan: DecommissionPlan) -> str:
    """The file's text (a comment header, then YAML)."""
    data = _plain(asdict(plan))
    data["schedule"].pop("notes", None)
    return _HEADER.format(dag_id=plan.dag_id) + yaml.safe_dump(data, sort_keys=False, default_flow_style=False)


def _when(value: Any, where: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value))
    except ValueError as e:
        raise DecommissionFileError(f"{where}: {value!r} is not an ISO date-time") from e


def _check_keys(data: Mapping[str, Any], allowed: set[str], where: str, required: set[str]) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise DecommissionFileError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(allowed))})")
    missing = sorted(required - set(data))
    if missing:
        raise DecommissionFileError(f"{where}: missing key {missing[0]!r}")


def load_decommission_plan_text(text: str, source: str) -> DecommissionPlan:
    """Parse a decommission file's text (``source`` names it in errors)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise DecommissionFileError(f"{source}: not valid YAML ({str(e).splitlines()[0]})") from e
    if not isinstance(data, Mapping):
        raise DecommissionFileError(f"{source}: expected a mapping with 'dag_id' and 'schedule'")
    top = {f.name for f in fields(DecommissionPlan)}
    _check_keys(data, top, source, {"dag_id", "airflow_instance", "dag_asset_key", "schedule"})
    raw = data["schedule"]
    if not isinstance(raw, Mapping):
        raise DecommissionFileError(f"{source}, schedule: expected a mapping")
    allowed = {f.name for f in fields(DagSchedule)} - {"notes"}
    _check_keys(raw, allowed, f"{source}, schedule", {"kind"})
    if raw["kind"] not in KINDS:
        raise DecommissionFileError(f"{source}, schedule.kind: {raw['kind']!r} is not one of {', '.join(KINDS)}")
    sched = dict(raw)
    for key in ("start", "end"):
        sched[key] = _when(sched.get(key), f"{source}, schedule.{key}")
    sched["uris"] = tuple(str(u) for u in sched.get("uris") or ())
    sched.setdefault("source", sched["kind"])
    key = data["dag_asset_key"]
    if not isinstance(key, list) or not key or not all(isinstance(p, str) for p in key):
        raise DecommissionFileError(f"{source}, dag_asset_key: expected a list of strings")
    return DecommissionPlan(
        dag_id=str(data["dag_id"]),
        airflow_instance=str(data["airflow_instance"]),
        dag_asset_key=tuple(key),
        airflow_was_paused=bool(data.get("airflow_was_paused", False)),
        schedule=DagSchedule(**sched),
        catchup_from=_when(data.get("catchup_from"), f"{source}, catchup_from"),
        airflow_cleanup=tuple(str(c) for c in data.get("airflow_cleanup") or ()),
    )


def load_decommission_plan(path: Path) -> DecommissionPlan:
    """Read one decommission file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise DecommissionFileError(f"{path}: cannot read the decommission file ({e.strerror or e})") from e
    plan = load_decommission_plan_text(text, str(path))
    if path.stem != plan.dag_id:
        raise DecommissionFileError(f"{path}: the file of DAG {plan.dag_id!r} must be named {plan.dag_id}.yaml")
    return plan
