"""What differs between Airflow's REST generations, in one place per generation.

``V1Rest`` (Airflow 2, ``/api/v1``) and ``V2Rest`` (Airflow 3, ``/api/v2``) implement the same small
interface: request shapes (paths, query and body fields) and UI links. Everything else — sending,
retrying, paging, parsing — is shared code in :mod:`airlift_client.instance`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

from airlift_protocol import ApiVersion, DagInfo
from airlift_protocol.links import ui_links_for

__all__ = ["GenerationRest", "V1Rest", "V2Rest", "rest_for"]


def _q(value: str) -> str:
    return quote(value, safe="")


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"give a timezone-aware datetime (e.g. datetime.now(timezone.utc)), not {value!r}")
    return value.isoformat()


def _drop_none(body: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if v is not None}


class GenerationRest:
    """Request shapes and UI links of one REST generation."""

    api: ApiVersion
    #: Order of ``POST /dags/~/dagRuns/list`` pages: the run's primary key, unique in both
    #: generations and growing with new runs, so pages neither overlap nor shift when runs are
    #: added. (Airflow 2 sorts by the one column it is given, so ``end_date`` ties would make
    #: pages overlap at random.)
    runs_order_by: str = "id"

    def __init__(self, webserver_url: str) -> None:
        self.webserver_url = webserver_url

    @property
    def base(self) -> str:
        return self.webserver_url + self.api.base_path

    # ---- DAGs
    #: Query parameter (true by default on the server) that hides DAGs whose file is gone.
    hide_inactive_param: str

    def dags_params(
        self, *, dag_id_pattern: str | None, tags: Sequence[str], paused: bool | None, include_inactive: bool
    ) -> dict[str, Any]:
        return _drop_none(
            {
                "order_by": "dag_id",
                "dag_id_pattern": dag_id_pattern,
                "tags": list(tags) or None,
                "paused": None if paused is None else str(paused).lower(),
                self.hide_inactive_param: "false" if include_inactive else "true",
            }
        )

    def source_request(self, dag: DagInfo) -> tuple[str, dict[str, str]]:
        """(path, headers) of the request returning the DAG file's source."""
        raise NotImplementedError

    # ---- runs and task instances (batch endpoints)
    def runs_body(
        self,
        *,
        dag_ids: Sequence[str] | None,
        states: Sequence[str] | None,
        end_date_gte: datetime | None,
        end_date_lte: datetime | None,
        start_date_gte: datetime | None,
    ) -> dict[str, Any]:
        return _drop_none(
            {
                "order_by": self.runs_order_by,
                "dag_ids": list(dag_ids) if dag_ids is not None else None,
                "states": list(states) if states is not None else None,
                "end_date_gte": _iso(end_date_gte),
                "end_date_lte": _iso(end_date_lte),
                "start_date_gte": _iso(start_date_gte),
            }
        )

    #: ``order_by`` of the batch task-instance list (None: the server takes no order there).
    task_instances_order_by: str | None = None

    def task_instances_body(
        self,
        *,
        dag_ids: Sequence[str] | None,
        run_ids: Sequence[str] | None,
        task_ids: Sequence[str] | None,
        states: Sequence[str] | None,
        end_date_gte: datetime | None,
        end_date_lte: datetime | None,
    ) -> dict[str, Any]:
        return _drop_none(
            {
                "dag_ids": list(dag_ids) if dag_ids is not None else None,
                "dag_run_ids": list(run_ids) if run_ids is not None else None,
                "task_ids": list(task_ids) if task_ids is not None else None,
                "state": list(states) if states is not None else None,
                "end_date_gte": _iso(end_date_gte),
                "end_date_lte": _iso(end_date_lte),
                "order_by": self.task_instances_order_by,
            }
        )

    def trigger_body(
        self, *, conf: Mapping[str, Any] | None, run_id: str | None, logical_date: datetime | None
    ) -> dict[str, Any]:
        raise NotImplementedError

    #: Stable page order of ``GET /dags/~/dagRuns/~/taskInstances`` (None: the server has no
    #: ``order_by`` there; the pager then detects overlapping pages and rescans).
    updated_tis_order_by: str | None = None

    def updated_params(
        self, *, updated_at_gte: datetime, updated_at_lte: datetime, states: Sequence[str] | None, order_by: str | None
    ) -> dict[str, Any]:
        """Query of the ``GET`` lists of DAG runs / task instances changed in ``[gte, lte]``: both
        generations filter on the row's ``updated_at`` (Airflow 2.6+, 3.x), which moves when a task
        is cleared, re-run or marked, unlike the end date."""
        return _drop_none(
            {
                "updated_at_gte": _iso(updated_at_gte),
                "updated_at_lte": _iso(updated_at_lte),
                "state": list(states) if states is not None else None,
                "order_by": order_by,
            }
        )

    # ---- datasets (Airflow 2) / assets (Airflow 3)
    #: Path and list key of the dataset list and of the dataset event list.
    datasets_path: str
    datasets_key: str
    dataset_events_path: str
    dataset_events_key: str
    #: True when the event list filters on ``timestamp`` itself (else it is read newest first and
    #: the reader stops at the window's lower bound).
    dataset_events_filter_by_time: bool = True

    def datasets_params(self, *, uri_pattern: str | None, dag_ids: Sequence[str] | None) -> dict[str, Any]:
        return _drop_none({"order_by": "id", "uri_pattern": uri_pattern, "dag_ids": ",".join(dag_ids) if dag_ids else None})

    def dataset_events_params(self, *, timestamp_gte: datetime, timestamp_lte: datetime) -> dict[str, Any]:
        return {"order_by": "timestamp", "timestamp_gte": _iso(timestamp_gte), "timestamp_lte": _iso(timestamp_lte)}

    # ---- the audit log (table ``log``)
    #: Page order of ``GET /eventLogs``: the row's primary key, so pages neither overlap nor skip
    #: (rows added while paging land at the end). Airflow 2 accepts it only as ``event_log_id``
    #: (``id`` is a 400 there); Airflow 3 documents ``id`` (its default).
    event_logs_order_by: str
    #: the ordering on the rows' time (``dttm``): Airflow's ``idx_log_dttm`` serves a time window
    #: in that order, where ordering by id can make the database walk the primary key instead
    event_logs_time_order: str

    #: The oldest release whose ``GET /eventLogs`` serves :meth:`AirflowInstance.iter_event_logs`
    #: (empty: every release of the generation).
    event_logs_min_release: tuple[int, ...] = ()

    def event_logs_params(
        self, *, after: datetime, before: datetime, dag_id: str | None, events: Sequence[str] | None,
        skip_events: Sequence[str] | None = None, by_time: bool = False,
    ) -> dict[str, Any]:
        """Query of ``GET /eventLogs``: rows with ``after < when < before`` (Airflow applies both
        bounds strictly), of one DAG (``dag_id``: the one DAG filter either generation has), of
        the given event names and not of ``skip_events``."""
        return _drop_none(
            {
                "order_by": self.event_logs_time_order if by_time else self.event_logs_order_by,
                "after": _iso(after),
                "before": _iso(before),
                "dag_id": dag_id,
                "included_events": self._included_events(events) if events else None,
                "excluded_events": self._included_events(skip_events) if skip_events else None,
            }
        )

    def _included_events(self, events: Sequence[str]) -> Any:
        raise NotImplementedError

    # ---- UI links (one implementation, in airlift_protocol.links)
    def dag_url(self, dag_id: str) -> str:
        return ui_links_for(self.api, self.webserver_url).dag_url(dag_id)

    def run_url(self, dag_id: str, run_id: str) -> str:
        return ui_links_for(self.api, self.webserver_url).run_url(dag_id, run_id)

    def task_instance_url(self, dag_id: str, run_id: str, task_id: str, *, map_index: int = -1) -> str:
        return ui_links_for(self.api, self.webserver_url).task_instance_url(dag_id, run_id, task_id, map_index=map_index)

    def log_url(self, dag_id: str, run_id: str, task_id: str, *, try_number: int, map_index: int = -1) -> str:
        return ui_links_for(self.api, self.webserver_url).log_url(dag_id, run_id, task_id, try_number=try_number,
                                                                   map_index=map_index)


class V1Rest(GenerationRest):
    """Airflow 2: ``/api/v1``, grid-view UI links."""

    api = ApiVersion.V1
    hide_inactive_param = "only_active"
    datasets_path = "/datasets"
    datasets_key = "datasets"
    dataset_events_path = "/datasets/events"
    dataset_events_key = "dataset_events"
    dataset_events_filter_by_time = False
    event_logs_order_by = "event_log_id"
    event_logs_time_order = "when"

    #: Before Airflow 2.9 the list's rows have no ``run_id``, its ``total_entries`` counts every
    #: row whatever the filters (2.8), and it has no filters at all (2.7), nor ``included_events``.
    event_logs_min_release = (2, 9)

    def _included_events(self, events: Sequence[str]) -> Any:
        return ",".join(events)  # one comma-separated value

    def dataset_events_params(self, *, timestamp_gte: datetime, timestamp_lte: datetime) -> dict[str, Any]:
        # /api/v1/datasets/events has no time filter: newest first, the reader stops below the window.
        for value in (timestamp_gte, timestamp_lte):
            _iso(value)
        return {"order_by": "-timestamp"}

    def source_request(self, dag: DagInfo) -> tuple[str, dict[str, str]]:
        if not dag.file_token:
            raise ValueError(f"DAG {dag.dag_id!r} has no file_token; Airflow 2 needs it to read the source")
        return f"/dagSources/{_q(dag.file_token)}", {"Accept": "application/json"}

    def trigger_body(
        self, *, conf: Mapping[str, Any] | None, run_id: str | None, logical_date: datetime | None
    ) -> dict[str, Any]:
        return _drop_none({"conf": dict(conf or {}), "dag_run_id": run_id, "logical_date": _iso(logical_date)})


class V2Rest(GenerationRest):
    """Airflow 3: ``/api/v2``, the React UI's path-style links."""

    api = ApiVersion.V2
    hide_inactive_param = "exclude_stale"
    updated_tis_order_by = "id"
    # Airflow 3 orders the batch list by the primary key by default; with a page limit PostgreSQL may
    # then walk that index through the table, filtering for the runs asked (762,000 blocks for 20 pages
    # at 5,000,000 task instances, measured): ordered by map index (then id) no index serves the order,
    # so the asked runs' rows are found by ``task_instance (dag_id, run_id)`` and sorted.
    task_instances_order_by = "map_index"
    datasets_path = "/assets"
    datasets_key = "assets"
    dataset_events_path = "/assets/events"
    dataset_events_key = "asset_events"
    event_logs_order_by = "id"
    event_logs_time_order = "dttm"

    def _included_events(self, events: Sequence[str]) -> Any:
        return list(events)  # a repeated parameter

    def datasets_params(self, *, uri_pattern: str | None, dag_ids: Sequence[str] | None) -> dict[str, Any]:
        return _drop_none({"order_by": "id", "uri_pattern": uri_pattern, "dag_ids": list(dag_ids) if dag_ids else None})

    def source_request(self, dag: DagInfo) -> tuple[str, dict[str, str]]:
        return f"/dagSources/{_q(dag.dag_id)}", {"Accept": "application/json"}

    def trigger_body(
        self, *, conf: Mapping[str, Any] | None, run_id: str | None, logical_date: datetime | None
    ) -> dict[str, Any]:
        # Airflow 3 requires the logical_date key (null allowed) and rejects execution_date.
        body: dict[str, Any] = {"conf": dict(conf or {}), "logical_date": _iso(logical_date)}
        if run_id is not None:
            body["dag_run_id"] = run_id
        return body


def rest_for(api: ApiVersion, webserver_url: str) -> GenerationRest:
    """The request shapes of ``api`` for a webserver."""
    return (V1Rest if api is ApiVersion.V1 else V2Rest)(webserver_url)
