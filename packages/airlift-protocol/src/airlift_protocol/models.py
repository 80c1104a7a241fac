"""Normalized models of the Airflow objects Airlift reads over REST.

Airflow 2 serves its stable REST API under ``/api/v1`` and Airflow 3 under ``/api/v2``. The two
generations name a few fields differently (``execution_date`` vs ``logical_date``, ``is_active`` vs
``is_stale``, list-of-dicts tags, ...). Every model here is built with ``from_rest(raw, api=...)``
from the raw JSON dict of either generation, so callers never need to know where it came from. The
raw dict is kept unchanged on ``raw`` for display and debugging.

Example::

    >>> run = DagRun.from_rest(
    ...     {"dag_id": "d", "dag_run_id": "manual__1", "state": "success",
    ...      "logical_date": None, "start_date": "2026-01-01T00:00:00Z",
    ...      "end_date": "2026-01-01T00:01:00Z", "run_type": "manual"},
    ...     api=ApiVersion.V2,
    ... )
    >>> run.is_success, run.logical_date
    (True, None)
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any

from airlift_protocol.errors import RestPayloadError

__all__ = [
    "FINISHED_DAG_RUN_STATES",
    "FINISHED_TASK_INSTANCE_STATES",
    "AirflowDataset",
    "AirflowImportError",
    "ApiVersion",
    "DagInfo",
    "DagRun",
    "DagRunState",
    "DagTimetable",
    "DatasetEvent",
    "EventLog",
    "TaskInfo",
    "TaskInstance",
    "TaskInstanceState",
    "parse_airflow_datetime",
    "with_upstream_task_ids",
]


class ApiVersion(str, enum.Enum):
    """The generation of Airflow's stable REST API: ``v1`` (Airflow 2) or ``v2`` (Airflow 3)."""

    V1 = "v1"
    V2 = "v2"

    @property
    def base_path(self) -> str:
        """Path of the API below the webserver URL, e.g. ``/api/v2``."""
        return f"/api/{self.value}"

    @property
    def airflow_major(self) -> int:
        """The Airflow major version that serves this API generation."""
        return 2 if self is ApiVersion.V1 else 3


class DagRunState(str, enum.Enum):
    """States of a DAG run (identical in Airflow 2 and 3)."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"


FINISHED_DAG_RUN_STATES: frozenset[str] = frozenset({DagRunState.SUCCESS, DagRunState.FAILED})


class TaskInstanceState(str, enum.Enum):
    """States of a task instance. ``None`` (no state yet) is represented as ``None`` on models."""

    REMOVED = "removed"
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    RESTARTING = "restarting"
    FAILED = "failed"
    UP_FOR_RETRY = "up_for_retry"
    UP_FOR_RESCHEDULE = "up_for_reschedule"
    UPSTREAM_FAILED = "upstream_failed"
    SKIPPED = "skipped"
    DEFERRED = "deferred"


FINISHED_TASK_INSTANCE_STATES: frozenset[str] = frozenset(
    {
        TaskInstanceState.SUCCESS,
        TaskInstanceState.FAILED,
        TaskInstanceState.SKIPPED,
        TaskInstanceState.UPSTREAM_FAILED,
        TaskInstanceState.REMOVED,
    }
)

_TZ_SUFFIX = re.compile(r"Z$")


def parse_airflow_datetime(value: Any, *, what: str = "date") -> datetime | None:
    """Parse an ISO-8601 timestamp as Airflow's REST API returns it; ``None`` stays ``None``.

    Both ``...+00:00`` (Airflow 2) and ``...Z`` (Airflow 3) are accepted; naive values are taken as UTC.

    >>> parse_airflow_datetime("2026-11-24T04:10:00.123456Z").isoformat()
    '2026-11-24T04:10:00.123456+00:00'
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        text = _TZ_SUFFIX.sub("+00:00", value.strip())
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            # Python 3.10 accepts only 0, 3 or 6 fractional digits; normalize to microseconds.
            match = re.match(r"^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(.*)$", text)
            if not match:
                raise RestPayloadError(f"{what}: {value!r} is not an ISO-8601 timestamp") from None
            head, frac, tail = match.groups()
            frac = ((frac or "") + "000000")[:6]
            try:
                parsed = datetime.fromisoformat(f"{head}.{frac}{tail}")
            except ValueError:
                raise RestPayloadError(f"{what}: {value!r} is not an ISO-8601 timestamp") from None
    else:
        raise RestPayloadError(f"{what}: expected an ISO-8601 string, got {type(value).__name__}")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


def _require(raw: Mapping[str, Any], key: str, what: str) -> Any:
    if not isinstance(raw, Mapping):
        raise RestPayloadError(f"{what}: expected a JSON object, got {type(raw).__name__}")
    try:
        value = raw[key]
    except KeyError:
        raise RestPayloadError(
            f"{what}: the response has no {key!r} field (fields: {sorted(raw)[:20]})"
        ) from None
    if value is None:
        raise RestPayloadError(f"{what}: field {key!r} is null")
    return value


def _state(value: Any) -> str | None:
    if value is None or value == "" or value == "none":
        return None
    return str(value).lower()


def _names(values: Any) -> tuple[str, ...]:
    """Tags come as ``[{"name": ...}]`` (both generations); tolerate plain strings too."""
    out: list[str] = []
    for item in values or ():
        if isinstance(item, Mapping):
            name = item.get("name")
            if name is not None:
                out.append(str(name))
        elif item is not None:
            out.append(str(item))
    return tuple(out)


def _schedule(raw: Mapping[str, Any]) -> str | None:
    for key in ("timetable_summary", "timetable_description"):
        if raw.get(key):
            return str(raw[key])
    interval = raw.get("schedule_interval")
    if isinstance(interval, Mapping):
        value = interval.get("value")
        if value is not None:
            return str(value)
        if interval.get("days") is not None or interval.get("seconds") is not None:
            return f"{interval.get('days', 0)}d {interval.get('seconds', 0)}s"
    elif interval is not None:
        return str(interval)
    return None


@dataclass(frozen=True)
class DagInfo:
    """A DAG as listed by ``GET /dags``.

    ``file_token`` is what ``/api/v1/dagSources/{file_token}`` needs (Airflow 3 reads sources by dag
    id instead). ``is_active`` is ``False`` for DAGs whose file is gone (v1 ``is_active``, v2
    ``is_stale``).
    """

    dag_id: str
    api: ApiVersion
    display_name: str
    file_token: str | None
    fileloc: str | None
    tags: tuple[str, ...]
    is_paused: bool
    is_active: bool
    owners: tuple[str, ...]
    description: str | None
    schedule: str | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_rest(cls, raw: Mapping[str, Any], *, api: ApiVersion) -> DagInfo:
        """Parse one item of ``GET /dags`` (or ``GET /dags/{dag_id}``) of either API generation."""
        dag_id = str(_require(raw, "dag_id", "DAG"))
        what = f"DAG {dag_id!r}"
        if api is ApiVersion.V2:
            is_active = not bool(raw.get("is_stale", False))
        else:
            is_active = bool(raw.get("is_active", True))
        return cls(
            dag_id=dag_id,
            api=api,
            display_name=str(raw.get("dag_display_name") or dag_id),
            file_token=raw.get("file_token"),
            fileloc=raw.get("fileloc"),
            tags=_names(raw.get("tags")),
            is_paused=bool(raw.get("is_paused", False)),
            is_active=is_active,
            owners=tuple(str(o) for o in raw.get("owners") or ()),
            description=raw.get("description"),
            schedule=_schedule(raw) if isinstance(raw, Mapping) else None,
            raw=_check_mapping(raw, what),
        )


@dataclass(frozen=True)
class DagTimetable:
    """When a DAG runs, as ``GET /dags/{dag_id}/details`` of either generation describes it.

    ``schedule`` is Airflow 2's ``schedule_interval`` value (cron, preset, ``"Dataset"``, a custom
    timetable's summary) or Airflow 3's ``timetable_summary``; ``schedule_delta`` Airflow 2's
    ``TimeDelta`` interval; ``schedule_relativedelta`` Airflow 2's ``RelativeDelta`` one. ``datasets``
    is the dataset (Airflow 2) or asset (Airflow 3) condition of a data-aware schedule, as Airflow
    serialises it. The next run's data interval tells trigger timetables (an empty interval) from data
    interval ones.

    >>> t = DagTimetable.from_rest({"dag_id": "d", "schedule_interval": {"__type": "TimeDelta", "days": 0,
    ...     "seconds": 3600, "microseconds": 0}, "catchup": True, "timezone": "UTC"}, api=ApiVersion.V1)
    >>> t.schedule_delta, t.catchup
    (datetime.timedelta(seconds=3600), True)
    """

    dag_id: str
    api: ApiVersion
    schedule: str | None
    description: str | None
    timezone: str
    catchup: bool
    is_paused: bool
    start_date: datetime | None = None
    end_date: datetime | None = None
    schedule_delta: timedelta | None = None
    schedule_relativedelta: Mapping[str, Any] | None = None
    datasets: Any = None
    next_data_interval_start: datetime | None = None
    next_data_interval_end: datetime | None = None
    #: When Airflow plans to start the next run (v1 ``next_dagrun_create_after``, v2 ``next_dagrun_run_after``).
    next_run_after: datetime | None = None
    fileloc: str | None = None

    @classmethod
    def from_rest(cls, raw: Mapping[str, Any], *, api: ApiVersion) -> DagTimetable:
        """Parse ``GET /dags/{dag_id}/details`` of either API generation."""
        dag_id = str(_require(raw, "dag_id", "DAG details"))
        what = f"the details of DAG {dag_id!r}"
        schedule: str | None = None
        delta: timedelta | None = None
        relative: Mapping[str, Any] | None = None
        if api is ApiVersion.V2:
            summary = raw.get("timetable_summary")
            schedule = None if summary is None else str(summary)
        else:
            interval = raw.get("schedule_interval")
            if isinstance(interval, Mapping):
                kind = interval.get("__type")
                if kind == "TimeDelta":
                    delta = timedelta(days=interval.get("days") or 0, seconds=interval.get("seconds") or 0,
                                      microseconds=interval.get("microseconds") or 0)
                elif kind == "RelativeDelta":
                    relative = {k: v for k, v in interval.items() if k != "__type" and v}
                elif interval.get("value") is not None:
                    schedule = str(interval["value"])
            elif interval is not None:
                schedule = str(interval)
        return cls(
            dag_id=dag_id,
            api=api,
            schedule=schedule,
            description=raw.get("timetable_description"),
            timezone=str(raw.get("timezone") or "UTC"),
            catchup=bool(raw.get("catchup", False)),
            is_paused=bool(raw.get("is_paused", False)),
            start_date=parse_airflow_datetime(raw.get("start_date"), what=f"{what}: start_date"),
            end_date=parse_airflow_datetime(raw.get("end_date"), what=f"{what}: end_date"),
            schedule_delta=delta,
            schedule_relativedelta=relative,
            datasets=raw.get("asset_expression" if api is ApiVersion.V2 else "dataset_expression"),
            next_data_interval_start=parse_airflow_datetime(raw.get("next_dagrun_data_interval_start"), what=what),
            next_data_interval_end=parse_airflow_datetime(raw.get("next_dagrun_data_interval_end"), what=what),
            next_run_after=parse_airflow_datetime(
                raw.get("next_dagrun_run_after" if api is ApiVersion.V2 else "next_dagrun_create_after"), what=what),
            fileloc=raw.get("fileloc"),
        )


@dataclass(frozen=True)
class AirflowImportError:
    """A DAG file Airflow failed to import (``GET /importErrors``). Airflow 2 names the file by its
    absolute path; Airflow 3 by its path inside its bundle (``bundle_name``).

    >>> err = AirflowImportError.from_rest({"filename": "sales.py", "bundle_name": "dags-folder",
    ...     "stack_trace": "Traceback ...\\n  File \\"/dags/sales.py\\", line 3\\nSyntaxError: invalid syntax\\n",
    ...     "timestamp": "2026-11-24T05:53:16Z"}, api=ApiVersion.V2)
    >>> err.summary
    'SyntaxError: invalid syntax'
    """

    filename: str
    stack_trace: str
    timestamp: datetime | None
    bundle_name: str | None = None

    @classmethod
    def from_rest(cls, raw: Mapping[str, Any], *, api: ApiVersion) -> AirflowImportError:
        filename = str(_require(raw, "filename", "import error"))
        return cls(filename=filename, stack_trace=str(raw.get("stack_trace") or ""),
                   timestamp=parse_airflow_datetime(raw.get("timestamp"), what=f"import error of {filename!r} timestamp"),
                   bundle_name=raw.get("bundle_name") if api is ApiVersion.V2 else None)

    @property
    def summary(self) -> str:
        """The last line of the stack trace (the exception), or a fixed text when Airflow gave none."""
        lines = [line.strip() for line in self.stack_trace.splitlines() if line.strip()]
        return lines[-1] if lines else "Airflow could not import the file"

    def is_file_of(self, dag: DagInfo) -> bool:
        """Whether this error is about the file that defines ``dag`` (matched as each generation names files)."""
        raw = dag.raw
        if dag.api is ApiVersion.V2 and raw.get("relative_fileloc") is not None:
            same_bundle = self.bundle_name is None or raw.get("bundle_name") in (None, self.bundle_name)
            return same_bundle and str(raw["relative_fileloc"]) == self.filename
        return dag.fileloc is not None and dag.fileloc == self.filename


def _check_mapping(raw: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise RestPayloadError(f"{what}: expected a JSON object, got {type(raw).__name__}")
    return raw


@dataclass(frozen=True)
class TaskInfo:
    """A task of a DAG as listed by ``GET /dags/{dag_id}/tasks``.

    The REST API only returns downstream ids; :func:`with_upstream_task_ids` fills
    ``upstream_task_ids`` for a whole DAG's task list (the client does this for you).
    """

    dag_id: str
    task_id: str
    api: ApiVersion
    operator: str | None
    downstream_task_ids: tuple[str, ...]
    upstream_task_ids: tuple[str, ...]
    is_mapped: bool
    retries: int | None
    doc_md: str | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_rest(cls, raw: Mapping[str, Any], *, dag_id: str, api: ApiVersion) -> TaskInfo:
        """Parse one item of ``GET /dags/{dag_id}/tasks`` of either API generation."""
        task_id = str(_require(raw, "task_id", f"task of DAG {dag_id!r}"))
        class_ref = raw.get("class_ref") or {}
        operator = raw.get("operator_name") or (
            class_ref.get("class_name") if isinstance(class_ref, Mapping) else None
        )
        retries = raw.get("retries")
        return cls(
            dag_id=dag_id,
            task_id=task_id,
            api=api,
            operator=str(operator) if operator is not None else None,
            downstream_task_ids=tuple(str(t) for t in raw.get("downstream_task_ids") or ()),
            upstream_task_ids=(),
            is_mapped=bool(raw.get("is_mapped", False)),
            retries=int(retries) if isinstance(retries, (int, float)) else None,
            doc_md=raw.get("doc_md"),
            raw=raw,
        )


def with_upstream_task_ids(tasks: Iterable[TaskInfo]) -> list[TaskInfo]:
    """Return the tasks of one DAG with ``upstream_task_ids`` derived from downstream links.

    >>> a = TaskInfo("d", "a", ApiVersion.V1, None, ("b",), (), False, None, None, {})
    >>> b = TaskInfo("d", "b", ApiVersion.V1, None, (), (), False, None, None, {})
    >>> [t.upstream_task_ids for t in with_upstream_task_ids([a, b])]
    [(), ('a',)]
    """
    task_list = list(tasks)
    upstream: dict[str, list[str]] = {t.task_id: [] for t in task_list}
    for task in task_list:
        for downstream_id in task.downstream_task_ids:
            upstream.setdefault(downstream_id, []).append(task.task_id)
    return [replace(t, upstream_task_ids=tuple(sorted(upstream[t.task_id]))) for t in task_list]


@dataclass(frozen=True)
class DagRun:
    """A DAG run. ``logical_date`` is v1's ``execution_date``/``logical_date`` or v2's ``logical_date``
    (which Airflow 3 allows to be null); ``run_after`` is Airflow 3's scheduling key (falls back to the
    logical date on Airflow 2)."""

    dag_id: str
    run_id: str
    api: ApiVersion
    state: str | None
    run_type: str | None
    logical_date: datetime | None
    run_after: datetime | None
    start_date: datetime | None
    end_date: datetime | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)
    data_interval_start: datetime | None = None
    data_interval_end: datetime | None = None

    @classmethod
    def from_rest(cls, raw: Mapping[str, Any], *, api: ApiVersion) -> DagRun:
        """Parse one DAG run of either API generation."""
        dag_id = str(_require(raw, "dag_id", "DAG run"))
        run_id = str(_require(raw, "dag_run_id", f"DAG run of {dag_id!r}"))
        what = f"DAG run {dag_id}/{run_id}"
        logical = raw.get("logical_date")
        if logical is None and api is ApiVersion.V1:
            logical = raw.get("execution_date")
        logical_date = parse_airflow_datetime(logical, what=f"{what} logical_date")
        run_after = parse_airflow_datetime(raw.get("run_after"), what=f"{what} run_after")
        return cls(
            dag_id=dag_id,
            run_id=run_id,
            api=api,
            state=_state(raw.get("state")),
            run_type=raw.get("run_type"),
            logical_date=logical_date,
            run_after=run_after or logical_date,
            start_date=parse_airflow_datetime(raw.get("start_date"), what=f"{what} start_date"),
            end_date=parse_airflow_datetime(raw.get("end_date"), what=f"{what} end_date"),
            raw=raw,
            data_interval_start=parse_airflow_datetime(raw.get("data_interval_start"), what=f"{what} data_interval_start"),
            data_interval_end=parse_airflow_datetime(raw.get("data_interval_end"), what=f"{what} data_interval_end"),
        )

    @property
    def is_finished(self) -> bool:
        """True once the run succeeded or failed."""
        return self.state in FINISHED_DAG_RUN_STATES

    @property
    def is_success(self) -> bool:
        """True when the run succeeded."""
        return self.state == DagRunState.SUCCESS


@dataclass(frozen=True)
class TaskInstance:
    """One try of one task (and map index) in one DAG run. ``map_index`` is -1 for unmapped tasks."""

    dag_id: str
    task_id: str
    run_id: str
    api: ApiVersion
    map_index: int
    try_number: int
    state: str | None
    operator: str | None
    logical_date: datetime | None
    start_date: datetime | None
    end_date: datetime | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)
    #: REST ``max_tries``: changes only when the task is cleared, so it names the current attempt.
    max_tries: int | None = None

    @classmethod
    def from_rest(cls, raw: Mapping[str, Any], *, api: ApiVersion) -> TaskInstance:
        """Parse one task instance of either API generation."""
        dag_id = str(_require(raw, "dag_id", "task instance"))
        task_id = str(_require(raw, "task_id", f"task instance of DAG {dag_id!r}"))
        run_id = str(_require(raw, "dag_run_id", f"task instance {dag_id}.{task_id}"))
        what = f"task instance {dag_id}/{run_id}/{task_id}"
        logical = raw.get("logical_date")
        if logical is None and api is ApiVersion.V1:
            logical = raw.get("execution_date")
        map_index = raw.get("map_index")
        try_number = raw.get("try_number")
        return cls(
            dag_id=dag_id,
            task_id=task_id,
            run_id=run_id,
            api=api,
            map_index=int(map_index) if isinstance(map_index, int) else -1,
            try_number=int(try_number) if isinstance(try_number, int) else 0,
            state=_state(raw.get("state")),
            operator=raw.get("operator_name") or raw.get("operator"),
            logical_date=parse_airflow_datetime(logical, what=f"{what} logical_date"),
            start_date=parse_airflow_datetime(raw.get("start_date"), what=f"{what} start_date"),
            end_date=parse_airflow_datetime(raw.get("end_date"), what=f"{what} end_date"),
            raw=raw,
            max_tries=raw["max_tries"] if isinstance(raw.get("max_tries"), int) else None,
        )

    @property
    def is_success(self) -> bool:
        """True when this try succeeded."""
        return self.state == TaskInstanceState.SUCCESS

    @property
    def is_finished(self) -> bool:
        """True when the task instance reached a terminal state."""
        return self.state in FINISHED_TASK_INSTANCE_STATES

    @property
    def key(self) -> tuple[str, str, str, int]:
        """Identity of the task instance across tries: (dag_id, run_id, task_id, map_index)."""
        return (self.dag_id, self.run_id, self.task_id, self.map_index)



@dataclass(frozen=True)
class AirflowDataset:
    """An Airflow 2 dataset (``GET /api/v1/datasets``) or Airflow 3 asset (``GET /api/v2/assets``).

    ``name`` is the Airflow 3 asset name (the URI on Airflow 2); ``producing_tasks``: the
    (dag_id, task_id) pairs that list it as an outlet; ``consuming_dags``: DAGs scheduled on it;
    ``consuming_tasks``: tasks listing it as an inlet (Airflow 3 only: Airflow 2's REST API does not
    report inlets).

    >>> d = AirflowDataset.from_rest({"uri": "s3://b/k", "producing_tasks": [{"dag_id": "p", "task_id": "t"}],
    ...                               "consuming_dags": [{"dag_id": "c"}]}, api=ApiVersion.V1)
    >>> d.name, d.producing_tasks, d.consuming_dags
    ('s3://b/k', (('p', 't'),), ('c',))
    """

    uri: str
    name: str
    group: str | None
    api: ApiVersion
    producing_tasks: tuple[tuple[str, str], ...]
    consuming_dags: tuple[str, ...]
    consuming_tasks: tuple[tuple[str, str], ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_rest(cls, raw: Mapping[str, Any], *, api: ApiVersion) -> AirflowDataset:
        """Parse one item of ``GET /datasets`` (v1) or ``GET /assets`` (v2)."""
        uri = str(_require(raw, "uri", "dataset" if api is ApiVersion.V1 else "asset"))
        consumers = raw.get("consuming_dags") if api is ApiVersion.V1 else raw.get("scheduled_dags")
        return cls(
            uri=uri,
            name=str(raw.get("name") or uri),
            group=raw.get("group"),
            api=api,
            producing_tasks=_task_refs(raw.get("producing_tasks")),
            consuming_dags=tuple(sorted({str(r["dag_id"]) for r in consumers or () if isinstance(r, Mapping) and r.get("dag_id")})),
            consuming_tasks=_task_refs(raw.get("consuming_tasks")),
            extra=dict(raw.get("extra") or {}),
        )

    @property
    def dag_ids(self) -> frozenset[str]:
        """Every DAG that produces or consumes it."""
        return frozenset({d for d, _ in self.producing_tasks} | set(self.consuming_dags) | {d for d, _ in self.consuming_tasks})

    def to_rest(self) -> dict[str, Any]:
        """A v1/v2-shaped dict that :meth:`from_rest` reads back (for cached state)."""
        refs = [{"dag_id": d} for d in self.consuming_dags]
        return {
            "uri": self.uri, "name": self.name, "group": self.group, "extra": dict(self.extra),
            "producing_tasks": [{"dag_id": d, "task_id": t} for d, t in self.producing_tasks],
            "consuming_tasks": [{"dag_id": d, "task_id": t} for d, t in self.consuming_tasks],
            "consuming_dags" if self.api is ApiVersion.V1 else "scheduled_dags": refs,
        }


def _task_refs(values: Any) -> tuple[tuple[str, str], ...]:
    refs = {(str(r["dag_id"]), str(r["task_id"])) for r in values or () if isinstance(r, Mapping) and r.get("dag_id") and r.get("task_id")}
    return tuple(sorted(refs))


@dataclass(frozen=True)
class DatasetEvent:
    """One dataset (Airflow 2) / asset (Airflow 3) event: an update of ``uri`` at ``timestamp``,
    by a task try (``source_*``) or from outside (REST API, sources ``None``).

    >>> e = DatasetEvent.from_rest({"dataset_uri": "s3://b/k", "timestamp": "2026-01-01T00:00:00+00:00",
    ...     "source_dag_id": "p", "source_task_id": "t", "source_run_id": "r", "source_map_index": -1}, api=ApiVersion.V1)
    >>> e.uri, e.source_task_id, e.timestamp.year
    ('s3://b/k', 't', 2026)
    """

    uri: str
    name: str
    api: ApiVersion
    timestamp: datetime
    source_dag_id: str | None
    source_task_id: str | None
    source_run_id: str | None
    source_map_index: int
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)
    created_run_ids: tuple[tuple[str, str], ...] = ()
    event_id: int | None = None

    @classmethod
    def from_rest(cls, raw: Mapping[str, Any], *, api: ApiVersion) -> DatasetEvent:
        """Parse one item of ``GET /datasets/events`` (v1) or ``GET /assets/events`` (v2)."""
        uri = str(_require(raw, "dataset_uri" if api is ApiVersion.V1 else "uri", "dataset event"))
        stamp = parse_airflow_datetime(_require(raw, "timestamp", f"dataset event of {uri!r}"), what=f"dataset event of {uri!r} timestamp")
        if stamp is None:
            raise RestPayloadError(f"dataset event of {uri!r}: field 'timestamp' is empty")
        map_index = raw.get("source_map_index")
        created = tuple(
            (str(r.get("dag_id")), str(r.get("run_id") or r.get("dag_run_id")))
            for r in raw.get("created_dagruns") or () if isinstance(r, Mapping)
        )
        event_id = raw.get("id")
        return cls(
            uri=uri,
            name=str(raw.get("name") or uri),
            api=api,
            timestamp=stamp,
            source_dag_id=raw.get("source_dag_id") or None,
            source_task_id=raw.get("source_task_id") or None,
            source_run_id=raw.get("source_run_id") or None,
            source_map_index=int(map_index) if isinstance(map_index, int) else -1,
            extra=dict(raw.get("extra") or {}),
            created_run_ids=created,
            event_id=int(event_id) if isinstance(event_id, int) else None,
        )


def _optional_int(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


def _optional_str(value: Any) -> str | None:
    return str(value) if value is not None and value != "" else None


@dataclass(frozen=True)
class EventLog:
    """One row of Airflow's audit log (table ``log``; ``GET /eventLogs`` in both REST generations):
    ``event`` happened at ``when``. Task tries write rows named after the state they reached
    (``running``, ``success``, ``failed``, ...) with the try's identity; REST and UI actions write
    rows named after the action (e.g. ``api.patch_task_instance`` on Airflow 2,
    ``patch_task_instance`` on Airflow 3) with the DAG, run and task of the request.

    ``map_index`` and ``try_number`` are ``None`` when the row has none, and always on Airflow
    before 2.10, whose REST API does not return them. ``logical_date`` is v1's ``execution_date``
    or v2's ``logical_date``.

    >>> e = EventLog.from_rest({"event_log_id": 7, "when": "2026-01-01T00:00:00.5+00:00", "event": "success",
    ...     "dag_id": "d", "task_id": "t", "run_id": "r", "map_index": -1, "try_number": 1,
    ...     "execution_date": None, "owner": "airflow", "extra": None}, api=ApiVersion.V1)
    >>> e.event, e.when.isoformat(), e.task_key
    ('success', '2026-01-01T00:00:00.500000+00:00', ('d', 'r', 't', -1))
    """

    event_log_id: int
    event: str
    when: datetime
    api: ApiVersion
    dag_id: str | None
    task_id: str | None
    run_id: str | None
    map_index: int | None
    try_number: int | None
    logical_date: datetime | None = None
    owner: str | None = None
    extra: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_rest(cls, raw: Mapping[str, Any], *, api: ApiVersion) -> EventLog:
        """Parse one item of ``GET /eventLogs`` (v1 or v2)."""
        event_log_id = _require(raw, "event_log_id", "event log")
        if not isinstance(event_log_id, int) or isinstance(event_log_id, bool):
            raise RestPayloadError(f"event log: 'event_log_id' is not an integer: {event_log_id!r}")
        what = f"event log {event_log_id}"
        when = parse_airflow_datetime(_require(raw, "when", what), what=f"{what} when")
        if when is None:
            raise RestPayloadError(f"{what}: field 'when' is empty")
        logical = raw.get("execution_date") if api is ApiVersion.V1 else raw.get("logical_date")
        return cls(
            event_log_id=event_log_id,
            event=str(_require(raw, "event", what)),
            when=when,
            api=api,
            dag_id=_optional_str(raw.get("dag_id")),
            task_id=_optional_str(raw.get("task_id")),
            run_id=_optional_str(raw.get("run_id")),
            map_index=_optional_int(raw.get("map_index")),
            try_number=_optional_int(raw.get("try_number")),
            logical_date=parse_airflow_datetime(logical, what=f"{what} logical_date"),
            owner=_optional_str(raw.get("owner")),
            extra=raw.get("extra") if isinstance(raw.get("extra"), str) else None,
            raw=raw,
        )

    @property
    def task_key(self) -> tuple[str | None, str | None, str | None, int]:
        """(dag_id, run_id, task_id, map_index) as :attr:`TaskInstance.key` names a task instance
        (a missing map index counts as -1, Airflow's value for unmapped tasks)."""
        return (self.dag_id, self.run_id, self.task_id, -1 if self.map_index is None else self.map_index)
