"""Translate an Airflow DAG's timetable (as its REST ``/dags/{id}/details`` describes it) into a
:class:`DagSchedule` Dagster can run, or refuse it with one clear reason (pure: no I/O).

Supported: no schedule (manual runs only), ``@once`` (a job without a schedule), cron presets
(``@hourly``, ``@daily``, ``@weekly``, ``@monthly``, ``@quarterly``, ``@yearly``/``@annually``),
five-field cron strings, ``timedelta`` schedules of whole minutes, with or without a data interval
(Airflow 2's default covers the previous interval; Airflow 3's default triggers at the tick with an
empty interval), ``catchup``, start and end dates, the timezone, and dataset/asset triggers that are
one dataset, or all of / any of a flat list of datasets. Refused: ``@continuous``, relativedelta
schedules, custom timetables, cron strings with seconds, timedeltas that are not whole minutes,
nested or alias dataset conditions, and "dataset or time" schedules.

>>> s = schedule_from_timetable(DagTimetable(dag_id="d", api=ApiVersion.V1, schedule="@daily", description=None,
...     timezone="UTC", catchup=False, is_paused=False))
>>> (s.kind, s.cron, s.data_interval)
('cron', '0 0 * * *', True)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dagster import TimeWindowPartitionsDefinition

from airlift_dagster.errors import AirliftDagsterError
from airlift_protocol import ApiVersion, DagTimetable

__all__ = ["CRON_PRESETS", "DagSchedule", "TimetableNotSupportedError", "schedule_from_timetable"]

#: Airflow's cron presets and the cron strings they stand for.
CRON_PRESETS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@quarterly": "0 0 1 */3 *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}

KINDS = ("manual", "cron", "interval", "assets")
_CRON_FIELD = re.compile(r"^[\d*/,\-A-Za-z?LW#]+$")
#: ``str(timedelta)`` as Airflow 3 summarises a timedelta schedule: "0:05:00", "7 days, 0:00:00".
_TIMEDELTA_TEXT = re.compile(r"^(?:(?P<days>-?\d+) days?, )?(?P<h>\d+):(?P<m>\d\d):(?P<s>\d\d)(?:\.(?P<us>\d+))?$")
_TZ_REPR = re.compile(r"""^Timezone\(['"](?P<name>[^'"]+)['"]\)$""")


class TimetableNotSupportedError(AirliftDagsterError):
    """The DAG's timetable has no faithful Dagster equivalent (the message says why and what to do)."""


@dataclass(frozen=True)
class DagSchedule:
    """When a decommissioned DAG runs, in terms Dagster can evaluate.

    ``kind`` is ``manual`` (no schedule: a job launched by hand), ``cron`` (``cron`` in ``timezone``),
    ``interval`` (every ``interval_seconds`` from ``start``) or ``assets`` (when the datasets ``uris``
    are updated: ``any`` of them, or ``all`` of them since the last run). ``data_interval`` says
    whether a run covers the interval that ends at its tick (Airflow's data interval) or only the tick
    (Airflow's trigger timetables); ``catchup`` whether every missed interval since the last run is
    run, or only the latest.
    """

    kind: str
    source: str
    cron: str | None = None
    interval_seconds: int | None = None
    timezone: str = "UTC"
    start: datetime | None = None
    end: datetime | None = None
    catchup: bool = False
    data_interval: bool = False
    uris: tuple[str, ...] = ()
    condition: str = "any"
    notes: tuple[str, ...] = field(default=())

    def describe(self) -> str:
        """One line for people.

        >>> DagSchedule(kind="cron", source="@daily", cron="0 0 * * *").describe()
        "cron '0 0 * * *' (UTC), runs at each tick, latest interval only"
        """
        if self.kind == "manual":
            return "no schedule (launch the job by hand)"
        if self.kind == "assets":
            return f"when {self.condition} of {', '.join(self.uris)} is updated"
        when = f"cron {self.cron!r} ({self.timezone})" if self.kind == "cron" else f"every {timedelta(seconds=self.interval_seconds or 0)} from {self.start}"
        covers = "each run covers the interval ending at its tick" if self.data_interval else "runs at each tick"
        return f"{when}, {covers}, {'every missed interval (catchup)' if self.catchup else 'latest interval only'}"


def _refuse(dag_id: str, what: str, hint: str) -> TimetableNotSupportedError:
    return TimetableNotSupportedError(f"DAG {dag_id!r}: cannot decommission a DAG scheduled by {what}: {hint}; nothing changed.")


def _timezone(raw: Any, dag_id: str) -> str:
    name = str(raw or "UTC")
    match = _TZ_REPR.match(name)
    if match:
        name = match["name"]
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise _refuse(dag_id, f"a timetable in timezone {name!r}", "Dagster needs an IANA timezone name") from e
    return name


def _cron(expression: str, dag_id: str) -> str | None:
    """The five-field cron string of a preset or cron expression (``None``: not a cron at all)."""
    text = expression.strip()
    if text in CRON_PRESETS:
        return CRON_PRESETS[text]
    fields = text.split()
    if not fields or not all(_CRON_FIELD.match(f) for f in fields):
        return None
    if len(fields) != 5:
        raise _refuse(dag_id, f"cron {text!r}", "Dagster schedules take five-field cron strings (no seconds or years)")
    return text


def _whole_minutes(delta: timedelta, dag_id: str) -> int:
    seconds = delta.total_seconds()
    if seconds <= 0 or seconds % 60:
        raise _refuse(dag_id, f"timedelta {delta}", "only positive whole numbers of minutes can be scheduled")
    return int(seconds)


def _delta_from_text(text: str) -> timedelta | None:
    match = _TIMEDELTA_TEXT.match(text.strip())
    if not match:
        return None
    return timedelta(days=int(match["days"] or 0), hours=int(match["h"]), minutes=int(match["m"]), seconds=int(match["s"]),
                     microseconds=int((match["us"] or "0").ljust(6, "0")[:6]))


def _dataset_uri(node: Any) -> str | None:
    if isinstance(node, str):
        return node
    if isinstance(node, Mapping):
        inner = node.get("asset", node.get("dataset"))
        if isinstance(inner, Mapping) and inner.get("uri"):
            return str(inner["uri"])
        if isinstance(inner, str):
            return inner
        if node.get("uri") and not ({"any", "all", "alias", "asset_ref"} & set(node)):
            return str(node["uri"])
    return None


def _dataset_condition(expression: Any, dag_id: str) -> tuple[str, tuple[str, ...]]:
    """``(any|all, uris)`` of a one-level dataset condition (Airflow 2 ``dataset_expression``, Airflow 3
    ``asset_expression``)."""
    single = _dataset_uri(expression)
    if single is not None:
        return "all", (single,)
    if isinstance(expression, Mapping) and len(expression) == 1:
        (op, items), = expression.items()
        if op in ("any", "all") and isinstance(items, list) and items:
            uris = [_dataset_uri(i) for i in items]
            if all(u is not None for u in uris):
                return str(op), tuple(str(u) for u in uris)
    raise _refuse(dag_id, f"the dataset condition {expression!r}",
                  "only one dataset, or all of / any of a flat list of datasets, maps to Dagster automation")


def _has_data_interval(timetable: DagTimetable) -> tuple[bool, str | None]:
    """Whether runs cover an interval (Airflow's data interval timetables) or only their tick (trigger
    timetables), read from the next run's interval; the major's default when Airflow has none planned."""
    start, end = timetable.next_data_interval_start, timetable.next_data_interval_end
    if start is not None and end is not None:
        return start != end, None
    default = timetable.api is ApiVersion.V1
    kind = "a data interval (Airflow 2's default)" if default else "no data interval (Airflow 3's default)"
    return default, f"Airflow has no next run planned: assumed {kind}"


def schedule_from_timetable(timetable: DagTimetable) -> DagSchedule:
    """The :class:`DagSchedule` of one DAG (raises :class:`TimetableNotSupportedError` with the reason).

    >>> schedule_from_timetable(DagTimetable(dag_id="d", api=ApiVersion.V2, schedule=None,
    ...     description="Never, external triggers only", timezone="UTC", catchup=False, is_paused=False)).kind
    'manual'
    """
    dag_id = timetable.dag_id
    base: dict[str, Any] = {
        "timezone": _timezone(timetable.timezone, dag_id),
        "start": timetable.start_date,
        "end": timetable.end_date,
        "catchup": timetable.catchup,
    }
    if timetable.schedule_relativedelta is not None:
        raise _refuse(dag_id, f"relativedelta {dict(timetable.schedule_relativedelta)}",
                      "give the DAG a cron schedule first (e.g. '@monthly')")
    text = timetable.schedule
    delta = timetable.schedule_delta
    if delta is None and text is not None:  # Airflow 3's summary; a Delta*Timetable's summary on Airflow 2
        delta = _delta_from_text(text)
    if delta is not None:
        seconds = _whole_minutes(delta, dag_id)
        if timetable.start_date is None:
            raise _refuse(dag_id, f"timedelta {delta}", "a timedelta schedule needs the DAG's start_date, which Airflow did not give")
        has_interval, note = _has_data_interval(timetable)
        return DagSchedule(kind="interval", source=str(delta), interval_seconds=seconds, data_interval=has_interval,
                           notes=(note,) if note else (), **base)
    if text is None or text == "None":
        if timetable.datasets:
            text = "Dataset"
        else:
            return DagSchedule(kind="manual", source=timetable.description or "None", **base)
    if text == "@once":
        return DagSchedule(kind="manual", source=text, notes=("@once: launch the job by hand if its one run has not happened",), **base)
    if text == "@continuous":
        raise _refuse(dag_id, "'@continuous'", "Dagster schedules start runs at ticks, not back to back")
    if text in ("Dataset", "Asset"):
        condition, uris = _dataset_condition(timetable.datasets, dag_id)
        return DagSchedule(kind="assets", source=text, uris=uris, condition=condition, **base)
    if timetable.datasets or text.lower().startswith(("dataset", "asset")):
        raise _refuse(dag_id, f"{text!r}", "a schedule that mixes datasets and time has no single Dagster equivalent")
    cron = _cron(text, dag_id)
    if cron is None:
        raise _refuse(dag_id, f"the timetable {text!r} ({timetable.description or 'custom'})",
                      "only cron presets, cron strings, timedeltas and dataset triggers are translated; "
                      "give the DAG one of those or write its Dagster schedule by hand")
    has_interval, note = _has_data_interval(timetable)
    schedule = DagSchedule(kind="cron", source=text, cron=cron, data_interval=has_interval, notes=(note,) if note else (), **base)
    _check_next_tick(schedule, timetable)
    return schedule


def _check_next_tick(schedule: DagSchedule, timetable: DagTimetable) -> None:
    """Refuse when Airflow's planned next run is not a tick of the translated cron in the DAG's timezone
    (a timetable with a timezone of its own, or a shape its summary does not show)."""
    planned = timetable.next_run_after
    if planned is None or schedule.cron is None:
        return
    windows = TimeWindowPartitionsDefinition(cron_schedule=schedule.cron, start=datetime(1970, 1, 1), timezone=schedule.timezone,
                                             fmt="%Y-%m-%dT%H:%M:%S")
    window = windows.get_prev_partition_window(planned, respect_bounds=False)
    if window is None or window.end.timestamp() != planned.timestamp():
        raise _refuse(timetable.dag_id, f"{schedule.source!r} ({timetable.description or 'custom'})",
                      f"Airflow's next run ({planned.isoformat()}) is not a tick of cron {schedule.cron!r} in the DAG's timezone "
                      f"{schedule.timezone}: the timetable has a timezone or shape of its own; write its Dagster schedule by hand")
