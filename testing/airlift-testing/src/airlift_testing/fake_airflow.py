"""An in-process fake of Airflow's REST API, Airflow 2 (``/api/v1``) or Airflow 3 (``/api/v2``).

For unit tests and scale benchmarks only (integration tests use real Airflow). It serves the
endpoints Airlift reads with the response shapes of Airflow 2.11 / 3.3 (checked against Airflow's
own OpenAPI spec by ``tests/test_fake_airflow_openapi.py``), the audit log (``GET /eventLogs``) with the
rows each generation writes when task tries run and when task instances are marked or cleared (see
:class:`FakeEventLog`), Airflow's paging cap
(``maximum_page_limit``), its auth behaviour (basic auth → 403 on Airflow 2, bearer JWT from
``/auth/token`` → 401 on Airflow 3), optional latency per request, injected faults, and counts
requests.

>>> state = FakeAirflowState.generate(dags=3, tasks_per_dag=2)
>>> with FakeAirflow(state, generation=3) as fake:  # doctest: +SKIP
...     fake.url
"""

from __future__ import annotations

import base64
import bisect
import json
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from airlift_testing.loopback import LoopbackServer

__all__ = ["FakeAirflow", "FakeAirflowState", "FakeDag", "FakeDataset", "FakeDatasetEvent", "FakeEventLog", "FakeRun", "FakeTask",
           "FakeTaskInstance", "iso"]

EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)
FINISHED_STATES = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})


def iso(value: datetime | None, generation: int = 2) -> str | None:
    """Airflow's timestamp format: ``+00:00`` on Airflow 2, ``Z`` on Airflow 3."""
    if value is None:
        return None
    text = value.astimezone(timezone.utc).isoformat()
    return text.replace("+00:00", "Z") if generation == 3 else text


def _parse(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass
class FakeTask:
    task_id: str
    downstream: list[str] = field(default_factory=list)
    operator: str = "PythonOperator"
    is_mapped: bool = False
    retries: int = 0
    doc_md: str | None = None


@dataclass
class FakeDag:
    dag_id: str
    tasks: list[FakeTask] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    is_paused: bool = True
    owners: list[str] = field(default_factory=lambda: ["airflow"])
    description: str | None = None
    fileloc: str = ""
    source: str = ""
    #: Served by ``GET /dags/{id}/details`` (Airflow 2).
    doc_md: str | None = None
    #: The stack trace of Airflow's import error for this DAG's file (``None``: the file imports).
    import_error: str | None = None
    #: Left out of ``GET /dags`` (Airflow 3 right after a failed parse; Airflow 2 once the file has
    #: not produced the DAG for ``dag_stale_not_seen_duration``); ``GET /dags/{id}`` still serves it.
    stale: bool = False
    #: Timetable fields as Airflow serves them (``schedule_interval``/``timetable_summary``, ``catchup``,
    #: ``start_date``, ``dataset_expression``/``asset_expression``, ...), over the defaults of a DAG
    #: without a schedule; ``GET /dags`` shows those it lists, ``GET /dags/{id}/details`` all of them.
    timetable: dict[str, Any] = field(default_factory=dict)

    @property
    def file_token(self) -> str:
        return base64.urlsafe_b64encode(self.fileloc.encode()).decode().rstrip("=")


@dataclass
class FakeRun:
    dag_id: str
    run_id: str
    state: str = "success"
    start_date: datetime | None = None
    end_date: datetime | None = None
    logical_date: datetime | None = None
    run_type: str = "manual"
    conf: dict[str, Any] = field(default_factory=dict)
    #: When the row last changed (Airflow's ``updated_at``: filterable, not returned by the API).
    updated_at: datetime | None = None


@dataclass
class FakeTaskInstance:
    dag_id: str
    run_id: str
    task_id: str
    map_index: int = -1
    try_number: int = 1
    #: REST ``max_tries``: the task's retries when its first try ran; Airflow raises it when the task is cleared.
    max_tries: int = 0
    state: str | None = "success"
    start_date: datetime | None = None
    end_date: datetime | None = None
    operator: str = "PythonOperator"
    #: When the row last changed (Airflow's ``updated_at``: filterable, not returned by the API).
    updated_at: datetime | None = None


@dataclass
class FakeDataset:
    """An Airflow 2 dataset / Airflow 3 asset: the tasks producing it and the DAGs consuming it."""

    uri: str
    producing_tasks: list[tuple[str, str]] = field(default_factory=list)
    consuming_dags: list[str] = field(default_factory=list)
    consuming_tasks: list[tuple[str, str]] = field(default_factory=list)
    name: str | None = None


@dataclass
class FakeDatasetEvent:
    """One update of a dataset / asset, by a task try (``source_*``) or from outside."""

    uri: str
    timestamp: datetime
    source_dag_id: str | None = None
    source_task_id: str | None = None
    source_run_id: str | None = None
    source_map_index: int = -1
    extra: dict[str, Any] = field(default_factory=dict)


#: Task-instance states a worker reaches, each written to the audit log when a try gets there (the
#: scheduler sets the others, e.g. upstream_failed, without a row).
TRY_LOG_STATES = frozenset({"running", "success", "failed", "up_for_retry"})
#: Audit-log events of REST actions, as Airflow 3 names them (Airflow 2 prefixes ``api.``).
MARK_EVENT, CLEAR_EVENT, BATCH_READ_EVENT = "patch_task_instance", "post_clear_task_instances", "get_task_instances_batch"
#: Audit-log events airlift-airflow's run-event listener writes (``airlift_protocol.RUN_EVENTS``; this
#: package also serves Airflow-side environments, which have no airlift-protocol).
RUN_RUNNING, RUN_SUCCESS, RUN_FAILED = "airlift.run.running", "airlift.run.success", "airlift.run.failed"


@dataclass(slots=True)
class FakeEventLog:
    """One row of Airflow's audit log (table ``log``) as the fake keeps it; ``GET /eventLogs`` serves
    it as each generation writes it (:meth:`FakeAirflow.event_log_json`), as the contract tests on
    real Airflow 2.9, 2.11 and 3.3 found:

    - a try writes ``running`` when it starts and the state it ends in, with the DAG, run, task, map
      index and try number; a try that goes up for retry is logged ``up_for_retry`` by Airflow 3 and
      ``failed`` by Airflow 2 (stored here as ``up_for_retry``);
    - a REST mark (``PATCH`` of a task instance) writes ``patch_task_instance`` (Airflow 2:
      ``api.patch_task_instance``) naming the DAG, run and task, no map index or try, and no
      state-named row;
    - a REST clear writes ``post_clear_task_instances`` (Airflow 2: ``api.``...) naming the DAG and,
      on Airflow 3 only, the run;
    - Airflow 3 audits each task-instance batch read (``get_task_instances_batch``) with DAG and run
      ``"~"``, which its REST API never lists (it lists rows of DAGs the user may read, or of none);
    - Airflow before 2.10 returns neither map index nor try number over REST.
    """

    when: datetime
    event: str
    dag_id: str | None = None
    task_id: str | None = None
    run_id: str | None = None
    map_index: int | None = None
    try_number: int | None = None
    owner: str | None = None
    extra: str | None = None


@dataclass
class FakeAirflowState:
    """What the fake serves. Mutate it between requests to simulate a live Airflow."""

    dags: list[FakeDag] = field(default_factory=list)
    runs: list[FakeRun] = field(default_factory=list)
    task_instances: list[FakeTaskInstance] = field(default_factory=list)
    datasets: list[FakeDataset] = field(default_factory=list)
    dataset_events: list[FakeDatasetEvent] = field(default_factory=list)
    #: The audit log; a row's ``event_log_id`` is its position + 1.
    event_logs: list[FakeEventLog] = field(default_factory=list)
    #: True: airlift-airflow's run-event listener runs in this Airflow's scheduler: a run's start and
    #: end write :data:`airlift_protocol.RUN_EVENTS` rows (:data:`RUN_RUNNING` ...; :meth:`add_run`, :meth:`touch`).
    run_events: bool = False
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _index: dict[str, Any] = field(default_factory=dict, repr=False)
    _touches: int = field(default=0, repr=False)

    def _indexed(self, name: str, items: list[Any], key: Any) -> dict[Any, list[tuple[int, Any]]]:
        """An index of ``items`` by ``key`` (position kept, for stable paging), rebuilt when the list is
        replaced or changes length (like a database index, so large fakes answer in time that does not
        grow with history). Renaming ids in place after the first request needs a new state."""
        stamp = (id(items), len(items))
        cached = self._index.get(name)
        if cached is None or cached[0] != stamp:
            index: dict[Any, list[tuple[int, Any]]] = {}
            for position, item in enumerate(items):
                index.setdefault(key(item), []).append((position, item))
            cached = self._index[name] = (stamp, index)
        return cached[1]  # type: ignore[no-any-return]

    def task_instances_of(self, dag_ids: Iterable[str], run_ids: Iterable[str]) -> list[FakeTaskInstance]:
        """Task instances of the given DAG ids x run ids, in insertion order."""
        index = self._indexed("tis", self.task_instances, lambda t: (t.dag_id, t.run_id))
        found = [entry for d in set(dag_ids) for r in set(run_ids) for entry in index.get((d, r), ())]
        return [ti for _, ti in sorted(found, key=lambda e: e[0])]

    def changed_between(self, name: str, gte: str | None, lte: str | None) -> list[Any]:
        """Runs (``name="runs"``) or task instances (``"tis"``) whose ``updated_at`` is in the window,
        in insertion order, through an index sorted by ``updated_at`` (rebuilt when rows are added or
        :meth:`touch` changed one)."""
        items: Sequence[FakeRun | FakeTaskInstance] = self.runs if name == "runs" else self.task_instances
        stamp = (id(items), len(items), self._touches)
        cached = self._index.get("updated:" + name)
        if cached is None or cached[0] != stamp:
            far = datetime.min.replace(tzinfo=timezone.utc)
            ordered = sorted(((item.updated_at or far, position, item) for position, item in enumerate(items)), key=lambda e: e[:2])
            cached = self._index["updated:" + name] = (stamp, ordered, [e[0] for e in ordered])
        _, ordered, keys = cached
        low = bisect.bisect_left(keys, _parse(gte)) if gte else 0
        high = bisect.bisect_right(keys, _parse(lte)) if lte else len(keys)
        return [item for _, _, item in sorted(ordered[low:high], key=lambda e: e[1])]

    def touch(self, row: FakeRun | FakeTaskInstance, when: datetime, *, by_scheduler: bool = False, **changes: Any) -> None:
        """Change a run or task instance as Airflow would (clear, re-run, mark): apply ``changes``
        and set its ``updated_at`` to ``when``. A task instance's change is written to the audit log
        as Airflow writes it: a higher ``try_number`` is a try that ran (``running`` at its
        ``start_date``, then its state at its ``end_date``, else at ``when``); a new state within the
        same try is a mark (a finished state) or a clear (``None``), unless ``by_scheduler`` (e.g.
        ``upstream_failed``: the scheduler writes no audit-log row)."""
        with self.lock:
            old_try, old_state = (row.try_number, row.state) if isinstance(row, FakeTaskInstance) else (0, None)
            for key, value in changes.items():
                setattr(row, key, value)
            row.updated_at = when
            self._touches += 1
            if isinstance(row, FakeRun) and "state" in changes and self.run_events:
                self.log_run_event(row, when)
            if not isinstance(row, FakeTaskInstance) or by_scheduler:
                return
            if row.try_number > old_try:
                self.log_try(row, start=row.start_date or when, end=row.end_date or when)
            elif "state" in changes and row.state != old_state:
                if row.state is None:
                    self.log_event(FakeEventLog(when, CLEAR_EVENT, dag_id=row.dag_id, run_id=row.run_id))
                elif row.state in FINISHED_STATES:
                    self.log_event(FakeEventLog(when, MARK_EVENT, dag_id=row.dag_id, run_id=row.run_id, task_id=row.task_id))

    def event_logs_between(self, after: datetime | None, before: datetime | None) -> list[int]:
        """Positions (in id order) of the audit-log rows with ``after < when < before``, through an
        index sorted by ``when`` (Airflow's ``idx_log_dttm``; rebuilt when rows were added)."""
        stamp = (id(self.event_logs), len(self.event_logs))
        cached = self._index.get("event_logs")
        if cached is None or cached[0] != stamp:
            ordered = sorted((row.when, position) for position, row in enumerate(self.event_logs))
            cached = self._index["event_logs"] = (stamp, ordered, [when for when, _ in ordered])
        _, ordered, keys = cached
        low = bisect.bisect_right(keys, after) if after is not None else 0
        high = bisect.bisect_left(keys, before) if before is not None else len(keys)
        return sorted(position for _, position in ordered[low:high])

    def log_event(self, row: FakeEventLog) -> FakeEventLog:
        """Append a row to the audit log (its id is the next one, as in Airflow's table)."""
        with self.lock:
            self.event_logs.append(row)
        return row

    def log_run_event(self, run: FakeRun, when: datetime) -> None:
        """The row airlift-airflow's run-event listener writes when ``run`` reached its state (running,
        success, failed), in the transaction of that state: ``extra`` carries the run as it was then
        (``airlift_protocol.run_event_extra``, format 1)."""
        event = {"running": RUN_RUNNING, "success": RUN_SUCCESS, "failed": RUN_FAILED}.get(str(run.state))
        if event is None:
            return
        dates = {name: iso(getattr(run, name)) for name in ("start_date", "end_date", "logical_date")}
        if run.state == "running":
            dates["end_date"] = None
        view = {"dag_id": run.dag_id, "dag_run_id": run.run_id, "state": run.state, "run_type": run.run_type, **dates,
                "execution_date": dates["logical_date"], "data_interval_start": dates["logical_date"],
                "data_interval_end": dates["logical_date"]}
        extra = json.dumps({"v": 1, "state": run.state, "msg": "", "run": view}, separators=(",", ":"))
        self.log_event(FakeEventLog(when, event, dag_id=run.dag_id, run_id=run.run_id, owner="airlift", extra=extra))

    def log_try(self, ti: FakeTaskInstance, *, start: datetime | None, end: datetime | None) -> None:
        """The rows a worker writes for the current try of ``ti``: ``running`` at ``start``, then
        ``ti.state`` at ``end`` (when the try reached a state a worker writes)."""
        if ti.state not in TRY_LOG_STATES:
            return
        events = [(start, "running")] + ([(end, str(ti.state))] if ti.state != "running" else [])
        with self.lock:
            self.event_logs.extend(
                FakeEventLog(when, event, dag_id=ti.dag_id, task_id=ti.task_id, run_id=ti.run_id, map_index=ti.map_index,
                             try_number=ti.try_number, owner="airflow")
                for when, event in events if when is not None
            )

    def tis_of_run(self, run: FakeRun) -> list[FakeTaskInstance]:
        return self.task_instances_of([run.dag_id], [run.run_id])

    def run_of(self, dag_id: str, run_id: str) -> FakeRun | None:
        entries = self._indexed("runs", self.runs, lambda r: (r.dag_id, r.run_id)).get((dag_id, run_id))
        return entries[-1][1] if entries else None

    @classmethod
    def generate(cls, *, dags: int, tasks_per_dag: int, runs_per_dag: int = 0, prefix: str = "dag") -> FakeAirflowState:
        """``dags`` DAGs of ``tasks_per_dag`` chained tasks, each with ``runs_per_dag`` successful runs."""
        state = cls()
        for d in range(dags):
            dag_id = f"{prefix}_{d:05d}"
            tasks = [
                FakeTask(task_id=f"task_{t:03d}", downstream=[f"task_{t + 1:03d}"] if t + 1 < tasks_per_dag else [])
                for t in range(tasks_per_dag)
            ]
            source = f"# DAG {dag_id}\nfrom airflow import DAG\n"
            state.dags.append(FakeDag(dag_id=dag_id, tasks=tasks, fileloc=f"/dags/{dag_id}.py", source=source, tags=["generated"]))
            for r in range(runs_per_dag):
                state.add_run(dag_id, start=EPOCH + timedelta(minutes=d * runs_per_dag + r))
        return state

    def dag(self, dag_id: str) -> FakeDag | None:
        return next((d for d in self.dags if d.dag_id == dag_id), None)

    def add_run(self, dag_id: str, *, start: datetime, state: str = "success", duration: timedelta = timedelta(seconds=30),
                task_state: str = "success", map_count: int = 0, committed_at: datetime | None = None) -> FakeRun:
        """Add a finished (or running) run with one task instance per task. Rows get ``updated_at`` =
        their end (or start) date, or ``committed_at`` for all of them (a late commit)."""
        dag = self.dag(dag_id)
        assert dag is not None, dag_id
        with self.lock:
            run = FakeRun(
                dag_id=dag_id, run_id=f"manual__{start.isoformat()}", state=state, start_date=start,
                end_date=start + duration if state in ("success", "failed") else None, logical_date=start,
            )
            run.updated_at = committed_at or run.end_date or start
            self.runs.append(run)
            step = duration / max(1, len(dag.tasks))
            for i, task in enumerate(dag.tasks):
                indexes = range(map_count) if task.is_mapped and map_count else [-1]
                for map_index in indexes:
                    ti_end = start + step * (i + 1) if task_state in ("success", "failed") else None
                    ti = FakeTaskInstance(
                        dag_id=dag_id, run_id=run.run_id, task_id=task.task_id, map_index=map_index,
                        state=task_state, start_date=start + step * i, end_date=ti_end, operator=task.operator,
                        updated_at=committed_at or ti_end or start + step * i,
                    )
                    self.task_instances.append(ti)
                    self.log_try(ti, start=ti.start_date, end=committed_at or ti_end)
            if self.run_events:
                final = run.state
                run.state = "running"
                self.log_run_event(run, start)
                run.state = final
                if run.end_date is not None:
                    self.log_run_event(run, committed_at or run.end_date)
        return run


class FakeAirflow(LoopbackServer):
    """Serve a :class:`FakeAirflowState` over HTTP on 127.0.0.1 as Airflow ``generation`` 2 or 3."""

    def __init__(
        self,
        state: FakeAirflowState,
        *,
        generation: int = 3,
        username: str = "admin",
        password: str = "admin",
        maximum_page_limit: int = 100,
        latency: float = 0.0,
        token_lifetime: float = 3600.0,
    ) -> None:
        self.state = state
        self.generation = generation
        self.username = username
        self.password = password
        self.maximum_page_limit = maximum_page_limit
        self.latency = latency
        self.token_lifetime = token_lifetime
        self.requests: Counter[str] = Counter()
        self.request_log: list[tuple[str, str, Any]] = []
        #: the most requests served at once (a client's concurrency), and those being served now
        self.peak_in_flight = 0
        self._in_flight = 0
        self._in_flight_lock = threading.Lock()
        self.faults: list[tuple[re.Pattern[str], int, dict[str, str]]] = []
        self.login_page = False
        #: Airflow 2 only: answer the login form's POST with 429, like Flask-AppBuilder's login rate limit.
        self.login_rate_limited = False
        #: Airflow 2 only: the webserver's form login (``/login/``) gives a session cookie that the REST API
        #: accepts, as with ``AIRFLOW__API__AUTH_BACKENDS=...basic_auth,...session``. False: no session backend.
        self.session_backend = True
        #: What ``/version`` answers. An Airflow 2 release before 2.7.1 also rejects the task-instance
        #: batch body filters that release added (``dag_run_ids``, ``task_ids``) with a 400, as
        #: Airflow 2.6's marshmallow schema does.
        self.airflow_version = "2.11.2" if generation == 2 else "3.3.2"
        #: False: the user may not read the audit log (``GET /eventLogs`` answers 403, as for a user
        #: without "can read on Audit Logs", which only Airflow 2's Admin role has).
        self.audit_log_readable = True
        self._sessions: set[str] = set()
        self._tokens: dict[str, float] = {}
        self._token_seq = 0
        self._server = None
        self._thread = None

    # ---------------------------------------------------------------- lifecycle
    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def api(self) -> str:
        return "v1" if self.generation == 2 else "v2"

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    def start(self) -> FakeAirflow:
        handler = _handler_for(self)
        self._listen(handler, name="fake-airflow")
        return self

    def fail_next(self, path_pattern: str, status: int, *, times: int = 1, headers: dict[str, str] | None = None) -> None:
        """Answer the next ``times`` requests whose path matches with ``status``."""
        for _ in range(times):
            self.faults.append((re.compile(path_pattern), status, dict(headers or {})))

    def break_dag(self, dag_id: str, stack_trace: str = "SyntaxError: invalid syntax") -> None:
        """Make a DAG's file fail to import, as each Airflow does: an import error names the file; Airflow 3
        marks the DAG stale at once (it leaves ``GET /dags``), Airflow 2 keeps listing it (``has_import_errors``).
        :meth:`fix_dag` undoes it."""
        dag = self.state.dag(dag_id)
        if dag is None:
            raise KeyError(dag_id)
        dag.import_error, dag.stale = stack_trace, self.generation == 3

    def fix_dag(self, dag_id: str) -> None:
        dag = self.state.dag(dag_id)
        if dag is None:
            raise KeyError(dag_id)
        dag.import_error, dag.stale = None, False

    def expire_sessions(self) -> None:
        """Forget every Airflow 2 web session (the next cookie request gets 403, like an expired session)."""
        self._sessions.clear()

    def expire_tokens(self) -> None:
        """Make every issued Airflow 3 token invalid (the next request answers 401)."""
        self._tokens.clear()

    # ---------------------------------------------------------------- response shapes
    def dag_json(self, dag: FakeDag) -> dict[str, Any]:
        g = self.generation
        tags = [{"name": t} if g == 2 else {"name": t, "dag_id": dag.dag_id, "dag_display_name": dag.dag_id} for t in dag.tags]
        body: dict[str, Any] = {
            "dag_id": dag.dag_id, "dag_display_name": dag.dag_id, "description": dag.description,
            "file_token": dag.file_token, "fileloc": dag.fileloc, "is_paused": dag.is_paused,
            "owners": list(dag.owners), "tags": tags, "has_import_errors": dag.import_error is not None,
            "has_task_concurrency_limits": False, "max_active_runs": 16, "max_active_tasks": 16,
            "max_consecutive_failed_dag_runs": 0, "last_expired": None,
            "last_parsed_time": iso(EPOCH, g), "next_dagrun_data_interval_start": None,
            "next_dagrun_data_interval_end": None, "timetable_description": "Never, external triggers only",
        }
        if g == 2:
            body.update({"is_active": not dag.stale, "is_subdag": False, "default_view": "grid", "last_pickled": None,
                         "pickle_id": None, "root_dag_id": None, "scheduler_lock": None, "next_dagrun": None,
                         "next_dagrun_create_after": None, "schedule_interval": None})
        else:
            body.update({"is_stale": dag.stale, "bundle_name": "dags-folder", "bundle_version": None,
                         "relative_fileloc": dag.fileloc.rsplit("/", 1)[-1], "timetable_summary": None,
                         "last_parse_duration": 0.01, "next_dagrun_logical_date": None, "next_dagrun_run_after": None,
                         "is_backfillable": False, "allowed_run_types": None, "timetable_partitioned": False,
                         "timetable_periodic": False})
        body.update({k: v for k, v in dag.timetable.items() if k in body})
        return body

    def dag_details_json(self, dag: FakeDag) -> dict[str, Any]:
        """``GET /dags/{id}/details``: the DAG with its doc, timetable and run settings."""
        g = self.generation
        body = self.dag_json(dag)
        body.update({"doc_md": dag.doc_md, "catchup": False, "concurrency": 16, "dag_run_timeout": None,
                     "start_date": iso(EPOCH, g), "end_date": None, "timezone": "UTC", "is_paused_upon_creation": None,
                     "last_parsed": iso(EPOCH, g), "orientation": "LR", "render_template_as_native_obj": False,
                     "params": {}})
        if g == 2:
            body.update({"dataset_expression": None, "template_searchpath": None})
        else:
            body.update({"asset_expression": None, "template_search_path": None, "default_args": {}, "owner_links": {},
                         "active_runs_count": 0, "is_favorite": False, "latest_dag_version": None,
                         "rerun_with_latest_version": None})
        body.update(dag.timetable)
        return body

    def task_json(self, dag: FakeDag, task: FakeTask) -> dict[str, Any]:
        module = "airflow.operators.python" if self.generation == 2 else "airflow.providers.standard.operators.python"
        body: dict[str, Any] = {
            "task_id": task.task_id, "task_display_name": task.task_id, "owner": dag.owners[0],
            "start_date": iso(EPOCH, self.generation), "end_date": None, "trigger_rule": "all_success",
            "depends_on_past": False, "wait_for_downstream": False, "retries": float(task.retries),
            "queue": "default", "pool": "default_pool", "pool_slots": 1.0, "execution_timeout": None,
            "retry_delay": {"__type": "TimeDelta", "days": 0, "seconds": 300, "microseconds": 0},
            "retry_exponential_backoff": False, "priority_weight": 1.0, "weight_rule": "downstream",
            "ui_color": "#ffefeb", "ui_fgcolor": "#000", "template_fields": [], "downstream_task_ids": list(task.downstream),
            "doc_md": task.doc_md, "operator_name": task.operator, "is_mapped": task.is_mapped,
            "class_ref": {"class_name": task.operator, "module_path": module}, "extra_links": [], "params": {},
        }
        if self.generation == 3:
            body["retry_exponential_backoff"] = 0.0  # a multiplier in Airflow 3.3
        elif _release(self.airflow_version) < (2, 10, 0):
            del body["doc_md"]  # the task schema gained doc_md in Airflow 2.10
        return body

    def run_json(self, run: FakeRun) -> dict[str, Any]:
        g = self.generation
        body: dict[str, Any] = {
            "dag_id": run.dag_id, "dag_run_id": run.run_id, "state": run.state, "run_type": run.run_type,
            "start_date": iso(run.start_date, g), "end_date": iso(run.end_date, g),
            "logical_date": iso(run.logical_date, g), "data_interval_start": iso(run.logical_date, g),
            "data_interval_end": iso(run.logical_date, g), "last_scheduling_decision": iso(run.end_date, g),
            "conf": run.conf, "note": None,
        }
        if g == 2:
            body.update({"execution_date": iso(run.logical_date, g), "external_trigger": True})
        else:
            body.update({"run_after": iso(run.logical_date or run.start_date, g), "queued_at": iso(run.start_date, g),
                         "triggered_by": "rest_api", "dag_versions": [], "bundle_version": None,
                         "dag_display_name": run.dag_id, "duration": None, "triggering_user_name": "admin",
                         "partition_key": None, "partition_date": None})
        return body

    def dataset_json(self, position: int, dataset: FakeDataset) -> dict[str, Any]:
        g = self.generation
        stamp = iso(EPOCH, g)
        producing = [{"dag_id": d, "task_id": t, "created_at": stamp, "updated_at": stamp} for d, t in dataset.producing_tasks]
        consuming = [{"dag_id": d, "created_at": stamp, "updated_at": stamp} for d in dataset.consuming_dags]
        body: dict[str, Any] = {"id": position + 1, "uri": dataset.uri, "extra": {}, "created_at": stamp, "updated_at": stamp,
                                "producing_tasks": producing}
        if g == 2:
            body["consuming_dags"] = consuming
        else:
            body.update({"name": dataset.name or dataset.uri, "group": "asset", "scheduled_dags": consuming,
                         "consuming_tasks": [{"dag_id": d, "task_id": t, "created_at": stamp, "updated_at": stamp}
                                             for d, t in dataset.consuming_tasks],
                         "aliases": [], "watchers": [], "last_asset_event": None})
        return body

    def dataset_event_json(self, position: int, event: FakeDatasetEvent) -> dict[str, Any]:
        g = self.generation
        ids = {d.uri: i + 1 for i, d in enumerate(self.state.datasets)}
        body: dict[str, Any] = {
            "extra": event.extra, "source_dag_id": event.source_dag_id, "source_task_id": event.source_task_id,
            "source_run_id": event.source_run_id, "source_map_index": event.source_map_index, "created_dagruns": [],
            "timestamp": iso(event.timestamp, g),
        }
        if g == 2:
            body.update({"dataset_id": ids.get(event.uri, 0), "dataset_uri": event.uri})
        else:
            dataset = next((d for d in self.state.datasets if d.uri == event.uri), None)
            body.update({"id": position + 1, "asset_id": ids.get(event.uri, 0), "uri": event.uri,
                         "name": (dataset.name if dataset else None) or event.uri, "group": "asset", "partition_key": None})
        return body

    def event_log_json(self, position: int, row: FakeEventLog) -> dict[str, Any]:
        """One ``GET /eventLogs`` item as this generation writes the row (see :class:`FakeEventLog`)."""
        g = self.generation
        event, run_id = row.event, row.run_id
        if g == 2:
            if event == "up_for_retry":
                event = "failed"  # Airflow 2's handle_failure logs FAILED before it decides to retry
            elif event in (MARK_EVENT, CLEAR_EVENT, BATCH_READ_EVENT):
                event = f"api.{event}"
                if row.event == CLEAR_EVENT:
                    run_id = None  # Airflow 2 takes the run from the URL only; the clear names it in the body
        run = self.state.run_of(row.dag_id, row.run_id) if row.dag_id and row.run_id and row.try_number is not None else None
        body: dict[str, Any] = {
            "event_log_id": position + 1, "when": iso(row.when, g), "dag_id": row.dag_id, "task_id": row.task_id,
            "run_id": run_id, "map_index": row.map_index, "try_number": row.try_number, "event": event,
            "owner": row.owner, "extra": row.extra,
        }
        logical = iso(run.logical_date, g) if run is not None else None
        if g == 2:
            body["execution_date"] = logical
            if _release(self.airflow_version) < (2, 10, 0):
                del body["map_index"], body["try_number"]  # the REST schema gained them in Airflow 2.10
        else:
            body.update({"logical_date": logical, "dag_display_name": row.dag_id, "task_display_name": row.task_id})
        return body

    def ti_json(self, ti: FakeTaskInstance, run: FakeRun | None) -> dict[str, Any]:
        g = self.generation
        body: dict[str, Any] = {
            "dag_id": ti.dag_id, "dag_run_id": ti.run_id, "task_id": ti.task_id, "map_index": ti.map_index,
            "try_number": ti.try_number, "state": ti.state, "start_date": iso(ti.start_date, g),
            "end_date": iso(ti.end_date, g), "duration": 1.0, "hostname": "localhost", "unixname": "airflow",
            "max_tries": ti.max_tries, "pool": "default_pool", "pool_slots": 1, "queue": "default", "priority_weight": 1,
            "operator": ti.operator, "queued_when": iso(ti.start_date, g), "pid": 1, "executor": None,
            "executor_config": "{}", "note": None, "rendered_fields": {}, "rendered_map_index": None,
            "trigger": None, "triggerer_job": None, "task_display_name": ti.task_id,
        }
        logical = run.logical_date if run else None
        if g == 2:
            body.update({"execution_date": iso(logical, g), "sla_miss": None})
        else:
            body.update({"id": f"0190{abs(hash(ti.dag_id + ti.run_id + ti.task_id + str(ti.map_index))) % 10**28:028d}",
                         "logical_date": iso(logical, g), "run_after": iso(logical, g), "dag_version": None,
                         "operator_name": ti.operator, "scheduled_when": iso(ti.start_date, g), "dag_display_name": ti.dag_id})
        return body


def _page(items: list[Any], offset: int, limit: int, cap: int) -> list[Any]:
    return items[offset: offset + min(limit, cap)]


def _in_window(value: datetime | None, gte: str | None, lte: str | None) -> bool:
    if gte is None and lte is None:
        return True
    if value is None:
        return False
    low, high = _parse(gte), _parse(lte)
    return (low is None or value >= low) and (high is None or value <= high)


def _handler_for(fake: FakeAirflow) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            # headers and body are separate writes: without this, Nagle + delayed ACK add ~40 ms per request
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: Any, headers: dict[str, str] | None = None, content_type: str = "application/json") -> None:
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if "json" in (self.headers.get("Content-Type") or ""):
                return json.loads(raw or b"null")
            return parse_qs(raw.decode())

        def do_GET(self) -> None:
            self._dispatch("GET")

        def do_POST(self) -> None:
            self._dispatch("POST")

        def do_PATCH(self) -> None:
            self._dispatch("PATCH")

        def _dispatch(self, method: str) -> None:
            parsed = urlparse(self.path)
            path = parsed.path
            query = parse_qs(parsed.query)
            body = self._body() if method in ("POST", "PATCH") else None
            if path == "/__bench/requests":  # control endpoint for benchmarks; not counted
                self._send(200, {"total": fake.total_requests})
                return
            fake.requests[f"{method} {re.sub(r'/dags/[^/~]+', '/dags/{id}', path)}"] += 1
            fake.request_log.append((method, self.path, body))
            with fake._in_flight_lock:
                fake._in_flight += 1
                fake.peak_in_flight = max(fake.peak_in_flight, fake._in_flight)
            try:
                self._answer(method, path, query, body)
            finally:
                with fake._in_flight_lock:
                    fake._in_flight -= 1

        def _answer(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> None:
            if fake.latency:
                time.sleep(fake.latency)
            for i, (pattern, status, headers) in enumerate(fake.faults):
                if pattern.search(path):
                    del fake.faults[i]
                    self._send(status, {"detail": "injected fault", "status": status}, headers)
                    return
            try:
                self._route(method, path, query, body)
            except _HttpError as e:
                self._send(e.status, {"detail": e.detail, "status": e.status, "title": e.detail} if fake.generation == 2 else {"detail": e.detail})

        def _authorized(self) -> bool:
            header = self.headers.get("Authorization") or ""
            if fake.generation == 2:
                cookie = re.search(r"(?:^|;\s*)session=([^;]+)", self.headers.get("Cookie") or "")
                if not header and cookie and fake.session_backend and cookie.group(1) in fake._sessions:
                    return True
                expected = base64.b64encode(f"{fake.username}:{fake.password}".encode()).decode()
                return header == f"Basic {expected}"
            token = header.removeprefix("Bearer ")
            expiry = fake._tokens.get(token)
            return expiry is not None and expiry > time.time()

        def _route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> None:
            g = fake.generation
            api = f"/api/{fake.api}"
            if (path == "/api/v2/monitor/health" and g == 3) or (path == "/api/v1/health" and g == 2):
                self._send(200, {"metadatabase": {"status": "healthy"}, "scheduler": {"status": "healthy", "latest_scheduler_heartbeat": iso(EPOCH, g)}})
                return
            if path == "/auth/token" and g == 3 and method == "POST":
                if body and body.get("username") == fake.username and body.get("password") == fake.password:
                    fake._token_seq += 1
                    exp = time.time() + fake.token_lifetime
                    payload = base64.urlsafe_b64encode(json.dumps({"sub": fake.username, "exp": int(exp), "n": fake._token_seq}).encode()).decode().rstrip("=")
                    token = f"eyJhbGciOiJIUzUxMiJ9.{payload}.sig"
                    fake._tokens[token] = exp
                    self._send(201, {"access_token": token})
                else:
                    self._send(401, {"detail": "Invalid credentials"})
                return
            if path == "/login/" and g == 2:
                if method == "GET":
                    self._send(200, '<form method="post"><input id="csrf_token" name="csrf_token" type="hidden" value="fake-csrf">'
                                    '<input name="username"><input name="password" type="password"></form>', content_type="text/html")
                    return
                if fake.login_rate_limited:
                    self._send(429, "Too Many Requests", content_type="text/html")
                    return
                form = {k: v[0] for k, v in (body or {}).items()} if isinstance(body, dict) else {}
                if form.get("csrf_token") != "fake-csrf":
                    self._send(400, "The CSRF token is missing.", content_type="text/html")
                    return
                cookie = f"s{len(fake._sessions) + 1}"
                if form.get("username") == fake.username and form.get("password") == fake.password:
                    fake._sessions.add(cookie)  # a wrong password still gets an (anonymous) session
                self._send(302, "", {"Location": "/home" if cookie in fake._sessions else "/login/",
                                     "Set-Cookie": f"session={cookie}; HttpOnly; Path=/"}, content_type="text/html")
                return
            if not path.startswith(api):
                self._send(404, "<html><body>Not Found</body></html>", content_type="text/html")
                return
            if fake.login_page:
                self._send(200, "<!DOCTYPE html><html><body><form action='/login'>Sign in</form></body></html>", content_type="text/html; charset=utf-8")
                return
            if not self._authorized():
                if g == 2:
                    raise _HttpError(403, "Forbidden")
                raise _HttpError(401, "Not authenticated")
            rest = path[len(api):]
            state = fake.state
            with state.lock:
                self._route_api(method, rest, query, body, state)

        def _route_api(self, method: str, rest: str, query: dict[str, list[str]], body: Any, state: FakeAirflowState) -> None:
            g = fake.generation
            cap = fake.maximum_page_limit
            if rest == "/version":
                self._send(200, {"version": fake.airflow_version, "git_version": None})
                return
            if rest == ("/datasets" if g == 2 else "/assets") and method == "GET":  # Airflow 2 datasets / Airflow 3 assets
                pattern = query.get("uri_pattern", [""])[0].lower()
                dataset_dags = set(",".join(query.get("dag_ids", [])).split(",")) - {""}
                found = [(i, d) for i, d in enumerate(state.datasets) if pattern in d.uri.lower()
                         and (not dataset_dags or dataset_dags & ({p for p, _ in d.producing_tasks} | set(d.consuming_dags)))]
                page = _page(found, int(query.get("offset", ["0"])[0]), int(query.get("limit", ["100"])[0]), cap)
                self._send(200, {rest.strip("/"): [fake.dataset_json(i, d) for i, d in page], "total_entries": len(found)})
                return
            if rest == ("/datasets/events" if g == 2 else "/assets/events") and method == "GET":
                if g == 2 and any(k.startswith("timestamp") for k in query):  # Airflow 2 cannot filter events by time
                    raise _HttpError(400, "unknown query parameter")
                events = [(i, e) for i, e in enumerate(state.dataset_events)
                          if _in_window(e.timestamp, query.get("timestamp_gte", [None])[0], query.get("timestamp_lte", [None])[0])]
                order = query.get("order_by", ["timestamp"])[0]
                events.sort(key=lambda item: (item[1].timestamp, item[0]), reverse=order.startswith("-"))
                page = _page(events, int(query.get("offset", ["0"])[0]), int(query.get("limit", ["100"])[0]), cap)
                self._send(200, {"dataset_events" if g == 2 else "asset_events": [fake.dataset_event_json(i, e) for i, e in page],
                                 "total_entries": len(events)})
                return
            if rest == "/importErrors" and method == "GET":
                broken = [d for d in sorted(state.dags, key=lambda d: d.dag_id) if d.import_error is not None]
                files = list({(d.fileloc if g == 2 else d.fileloc.rsplit("/", 1)[-1]): d for d in broken}.items())
                page = _page(files, int(query.get("offset", ["0"])[0]), int(query.get("limit", ["100"])[0]), cap)
                errors = [{"import_error_id": i + 1, "filename": name, "stack_trace": d.import_error, "timestamp": iso(EPOCH, g),
                           **({"bundle_name": "dags-folder"} if g == 3 else {})} for i, (name, d) in enumerate(page)]
                self._send(200, {"import_errors": errors, "total_entries": len(files)})
                return
            if rest == "/eventLogs" and method == "GET":
                self._event_logs(query, state)
                return
            if rest == "/dags" and method == "GET":
                dags = sorted(state.dags, key=lambda d: d.dag_id)
                stale_too = query.get("only_active" if g == 2 else "exclude_stale", ["true"])[0] == "false"
                dags = [d for d in dags if stale_too or not d.stale]
                if "tags" in query:
                    dags = [d for d in dags if set(d.tags) & set(query["tags"])]
                if "paused" in query:
                    wanted = query["paused"][0] == "true"
                    dags = [d for d in dags if d.is_paused == wanted]
                if "dag_id_pattern" in query:
                    pattern = query["dag_id_pattern"][0].lower()
                    dags = [d for d in dags if pattern in d.dag_id.lower()]
                offset = int(query.get("offset", ["0"])[0])
                limit = int(query.get("limit", ["100"])[0])
                page = _page(dags, offset, limit, cap)
                self._send(200, {"dags": [fake.dag_json(d) for d in page], "total_entries": len(dags)})
                return
            if rest == "/dags/~/dagRuns/list" and method == "POST":
                wanted_dags = set(body["dag_ids"]) if body.get("dag_ids") is not None else None
                runs = [r for r in state.runs
                        if (wanted_dags is None or r.dag_id in wanted_dags)
                        and (body.get("states") is None or r.state in body["states"])
                        and _in_window(r.end_date, body.get("end_date_gte"), body.get("end_date_lte"))
                        and _in_window(r.start_date, body.get("start_date_gte"), None)]
                order = (body.get("order_by") or "id").lstrip("-")
                if order == "execution_date" and g == 3:
                    raise _HttpError(400, "Ordering with 'execution_date' is disallowed")
                if order == "end_date":
                    far = datetime.max.replace(tzinfo=timezone.utc)
                    runs.sort(key=lambda r: (r.end_date or far))
                page = _page(runs, int(body.get("page_offset", 0)), int(body.get("page_limit", 100)), cap)
                self._send(200, {"dag_runs": [fake.run_json(r) for r in page], "total_entries": len(runs)})
                return
            if rest in ("/dags/~/dagRuns", "/dags/~/dagRuns/~/taskInstances") and method == "GET":
                # Airflow 2.6+ and 3.x filter these lists on the rows' updated_at
                is_runs = rest == "/dags/~/dagRuns"
                rows = state.changed_between("runs" if is_runs else "tis", query.get("updated_at_gte", [None])[0],
                                             query.get("updated_at_lte", [None])[0])
                if "state" in query:
                    rows = [r for r in rows if r.state in query["state"]]
                page = _page(rows, int(query.get("offset", ["0"])[0]), int(query.get("limit", ["100"])[0]), cap)
                if is_runs:
                    self._send(200, {"dag_runs": [fake.run_json(r) for r in page], "total_entries": len(rows)})
                else:
                    self._send(200, {"task_instances": [fake.ti_json(t, state.run_of(t.dag_id, t.run_id)) for t in page],
                                     "total_entries": len(rows)})
                return
            if rest == "/dags/~/dagRuns/~/taskInstances/list" and method == "POST":
                if g == 3:  # Airflow 3 audits this read, naming DAG "~" and run "~" (GET /eventLogs never shows it)
                    state.log_event(FakeEventLog(datetime.now(timezone.utc), BATCH_READ_EVENT, dag_id="~", run_id="~",
                                                 owner=fake.username, extra=json.dumps({**body, "method": "POST"})))
                unknown = sorted(set(body) & {"dag_run_ids", "task_ids"})
                if g == 2 and unknown and _release(fake.airflow_version) < (2, 7, 1):
                    raise _HttpError(400, str({field: ["Unknown field."] for field in unknown}))
                states = body.get("state")
                dag_ids, run_ids, task_ids = (set(body[k]) if body.get(k) is not None else None
                                              for k in ("dag_ids", "dag_run_ids", "task_ids"))
                candidates = (state.task_instances if dag_ids is None or run_ids is None
                              else state.task_instances_of(dag_ids, run_ids))
                tis = [t for t in candidates
                       if (dag_ids is None or t.dag_id in dag_ids)
                       and (run_ids is None or t.run_id in run_ids)
                       and (task_ids is None or t.task_id in task_ids)
                       and (states is None or t.state in states)
                       and _in_window(t.end_date, body.get("end_date_gte"), body.get("end_date_lte"))]
                order = str(body.get("order_by") or "id")
                if g == 3 and order.lstrip("-") not in ("id", "state", "duration", "start_date", "end_date", "map_index"):
                    raise _HttpError(400, f"Ordering with '{order.lstrip('-')}' is disallowed or the attribute does not exist on the model")
                if order.lstrip("-") == "map_index":  # then by id (the rows' order here), as Airflow 3 adds its key
                    tis.sort(key=lambda t: t.map_index, reverse=order.startswith("-"))
                page = _page(tis, int(body.get("page_offset", 0)), int(body.get("page_limit", 100)), cap)
                self._send(200, {"task_instances": [fake.ti_json(t, state.run_of(t.dag_id, t.run_id)) for t in page],
                                 "total_entries": len(tis)})
                return
            match = re.fullmatch(r"/dagSources/([^/]+)", rest)
            if match and method == "GET":
                key = unquote(match.group(1))
                dag = next((d for d in state.dags if (d.file_token if g == 2 else d.dag_id) == key), None)
                if dag is None:
                    raise _HttpError(404, "Dag source not found")
                if g == 2 and "json" not in (self.headers.get("Accept") or ""):
                    self._send(200, dag.source, content_type="text/plain")
                elif g == 2:
                    self._send(200, {"content": dag.source})
                else:
                    self._send(200, {"content": dag.source, "dag_id": dag.dag_id, "version_number": 1, "dag_display_name": dag.dag_id})
                return
            match = re.fullmatch(r"/dags/([^/~]+)/dagRuns/([^/~]+)/taskInstances/([^/]+)", rest)
            if match and method == "PATCH":
                self._mark(unquote(match.group(1)), unquote(match.group(2)), unquote(match.group(3)), body or {}, state)
                return
            match = re.fullmatch(r"/dags/([^/~]+)/clearTaskInstances", rest)
            if match and method == "POST":
                self._clear(unquote(match.group(1)), body or {}, state)
                return
            match = re.fullmatch(r"/dags/([^/]+)(/tasks|/details|/dagRuns|/dagRuns/([^/]+))?", rest)
            if not match:
                raise _HttpError(404, f"no route {rest}")
            dag = state.dag(unquote(match.group(1)))
            if dag is None:
                raise _HttpError(404, f"The DAG with dag_id: {unquote(match.group(1))} was not found")
            suffix, run_id = match.group(2), match.group(3)
            if suffix is None and method == "GET":
                self._send(200, fake.dag_json(dag))
            elif suffix is None and method == "PATCH":
                if "is_paused" in (body or {}):
                    dag.is_paused = bool(body["is_paused"])
                self._send(200, fake.dag_json(dag))
            elif suffix == "/details" and method == "GET":
                self._send(200, fake.dag_details_json(dag))
            elif suffix == "/tasks":
                self._send(200, {"tasks": [fake.task_json(dag, t) for t in dag.tasks], "total_entries": len(dag.tasks)})
            elif suffix == "/dagRuns" and method == "POST":
                if g == 3 and "logical_date" not in (body or {}):
                    raise _HttpError(422, "Field required: logical_date")
                if g == 3 and "execution_date" in (body or {}):
                    raise _HttpError(422, "Extra inputs are not permitted: execution_date")
                now = datetime.now(timezone.utc)
                run = FakeRun(dag_id=dag.dag_id, run_id=(body or {}).get("dag_run_id") or f"manual__{now.isoformat()}",
                              state="queued", logical_date=_parse((body or {}).get("logical_date")) or (now if g == 2 else None),
                              conf=dict((body or {}).get("conf") or {}))
                state.runs.append(run)
                self._send(200, fake.run_json(run))
            elif run_id is not None:
                one_run = next((r for r in state.runs if r.dag_id == dag.dag_id and r.run_id == unquote(run_id)), None)
                if one_run is None:
                    raise _HttpError(404, f"DAGRun with DAG ID: '{dag.dag_id}' and DagRun ID: '{unquote(run_id)}' not found")
                self._send(200, fake.run_json(one_run))
            else:
                raise _HttpError(405, "Method not allowed")

        def _event_logs(self, query: dict[str, list[str]], state: FakeAirflowState) -> None:
            """``GET /eventLogs``: Airflow's filters (``after`` and ``before`` strict), orderings and paging."""
            g = fake.generation
            if not fake.audit_log_readable:
                raise _HttpError(403, "Forbidden" if g == 3 else "You do not have permission to access this resource (Audit Logs).")
            order = query.get("order_by", ["event_log_id" if g == 2 else "id"])[-1]
            allowed = {"event_log_id", "when", "dag_id", "task_id", "run_id", "event", "execution_date", "owner", "extra"}
            if g == 3:
                allowed = (allowed - {"execution_date"}) | {"id", "dttm", "logical_date"}
            if order.lstrip("-") not in allowed:
                raise _HttpError(400, f"Ordering with '{order.lstrip('-')}' is disallowed or the attribute does not exist on the model")

            def listed(name: str) -> set[str] | None:
                values = query.get(name)
                if not values:
                    return None
                return {v for value in values for v in value.split(",")} if g == 2 else set(values)

            if g == 2 and _release(fake.airflow_version) < (2, 9, 0) and {"included_events", "excluded_events"} & set(query):
                # new in Airflow 2.9; before, its strict validation refuses a parameter the spec lacks
                raise _HttpError(400, "Extra query parameter(s) included_events not in spec")
            included, excluded = listed("included_events"), listed("excluded_events")
            after, before = _parse(query.get("after", [None])[0]), _parse(query.get("before", [None])[0])
            exact = {k: query[k][0] for k in ("dag_id", "task_id", "run_id", "event", "owner") if k in query}
            numbers = {k: int(query[k][0]) for k in ("map_index", "try_number") if k in query}
            rows = [(i, fake.event_log_json(i, state.event_logs[i])) for i in state.event_logs_between(after, before)
                    if state.event_logs[i].dag_id != "~"]  # Airflow 3 lists rows of readable DAGs (or none) only
            rows = [(i, item) for i, item in rows
                    if all(item.get(k) == v for k, v in exact.items()) and all(item.get(k) == v for k, v in numbers.items())
                    and (included is None or item["event"] in included) and (excluded is None or item["event"] not in excluded)]
            key = {"id": "event_log_id", "dttm": "when"}.get(order.lstrip("-"), order.lstrip("-"))
            if key == "when":
                rows.sort(key=lambda entry: state.event_logs[entry[0]].when)
            elif key != "event_log_id":  # Airflow sorts on that one column (ties: the database's order, here the id)
                rows.sort(key=lambda entry: str(entry[1].get(key) or ""))
            if order.startswith("-"):
                rows.reverse()
            page = _page(rows, int(query.get("offset", ["0"])[0]), int(query.get("limit", ["100"])[0]), fake.maximum_page_limit)
            self._send(200, {"event_logs": [item for _, item in page], "total_entries": len(rows)})

        def _mark(self, dag_id: str, run_id: str, task_id: str, body: dict[str, Any], state: FakeAirflowState) -> None:
            """``PATCH`` of an (unmapped) task instance's state: the REST mark."""
            g = fake.generation
            ti = next((t for t in state.task_instances_of([dag_id], [run_id]) if t.task_id == task_id and t.map_index == -1), None)
            if ti is None:
                raise _HttpError(404, f"Task instance not found for task {task_id!r} of run {run_id!r} of DAG {dag_id!r}")
            new_state = body.get("new_state")
            if new_state not in ("success", "failed", "skipped"):
                raise _HttpError(400 if g == 2 else 422, f"'{new_state}' is not one of ['success', 'failed', 'skipped']")
            now = datetime.now(timezone.utc)
            # Both generations log the action before it runs (Airflow 2 even for a dry run, its default)
            state.log_event(FakeEventLog(now, MARK_EVENT, dag_id=dag_id, run_id=run_id, task_id=task_id, owner=fake.username,
                                         extra=json.dumps(body)))
            if g == 3 or not body.get("dry_run", True):
                with state.lock:  # no state-named row: a mark is not a try
                    ti.state, ti.end_date, ti.updated_at = new_state, ti.end_date or now, now
                    state._touches += 1
            run = state.run_of(dag_id, run_id)
            if g == 2:
                self._send(200, {"task_id": task_id, "dag_id": dag_id, "dag_run_id": run_id,
                                 "execution_date": iso(run.logical_date if run else None, g)})
            else:
                self._send(200, {"task_instances": [fake.ti_json(ti, run)], "total_entries": 1})

        def _clear(self, dag_id: str, body: dict[str, Any], state: FakeAirflowState) -> None:
            """``POST /dags/{dag_id}/clearTaskInstances`` (the tasks ``task_ids`` of run ``dag_run_id``): one
            audit row (Airflow 3 skips it for a dry run, its default; Airflow 2 writes it either way)."""
            g = fake.generation
            dry = bool(body.get("dry_run", True))
            run_id, task_ids = body.get("dag_run_id"), body.get("task_ids")
            now = datetime.now(timezone.utc)
            if g == 2 or not dry:
                state.log_event(FakeEventLog(now, CLEAR_EVENT, dag_id=dag_id, run_id=run_id, owner=fake.username,
                                             extra=json.dumps(body)))
            tis = [t for t in state.task_instances if t.dag_id == dag_id and (run_id is None or t.run_id == run_id)
                   and (task_ids is None or t.task_id in task_ids)]
            if not dry:
                with state.lock:
                    for ti in tis:
                        ti.state, ti.end_date, ti.updated_at = None, None, now
                        state._touches += 1
            if g == 2:
                self._send(200, {"task_instances": [
                    {"task_id": t.task_id, "dag_id": t.dag_id, "dag_run_id": t.run_id,
                     "execution_date": iso(getattr(state.run_of(t.dag_id, t.run_id), "logical_date", None), g)} for t in tis]})
            else:
                self._send(200, {"task_instances": [fake.ti_json(t, state.run_of(t.dag_id, t.run_id)) for t in tis],
                                 "total_entries": len(tis)})

    return Handler


def _release(version: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else 0 for p in version.split(".")[:3])


class _HttpError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def all_paths(fake: FakeAirflow) -> Iterable[str]:
    """Request paths seen so far (for assertions)."""
    return (path for _, path, _ in fake.request_log)
