"""``AirflowInstance``: one Airflow deployment, read and driven through its REST API."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import quote

import requests
import requests.adapters

from airlift_client._generations import GenerationRest, rest_for
from airlift_client._transport import Transport
from airlift_client.auth import AuthBackend
from airlift_client.errors import AirflowResponseError, AirflowRunTimeoutError
from airlift_client.retry import RetryPolicy
from airlift_protocol import (
    ApiVersion,
    DagInfo,
    DagRun,
    RestPayloadError,
    TaskInfo,
    TaskInstance,
    with_upstream_task_ids,
)

__all__ = ["AirflowInstance"]

log = logging.getLogger("airlift_client")

T = TypeVar("T")
#: How often a paged scan starts over when the total changed under it or pages overlapped.
MAX_RESCANS = 8
#: Airflow 2 releases before this one reject the task-instance batch body Airlift sends
#: (its ``dag_run_ids`` and ``task_ids`` filters are new in 2.7.1).
MIN_AIRFLOW_2 = (2, 7, 1)


def _q(value: str) -> str:
    return quote(value, safe="")


def _pooled_session(connections: int) -> requests.Session:
    """A session whose connection pool fits the worker pool (requests' default keeps only 10)."""
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=connections, pool_maxsize=connections)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


class AirflowInstance:
    """An Airflow deployment, for Airflow 2 (``/api/v1``) and Airflow 3 (``/api/v2``) alike.

    The REST generation is detected on first use and cached; every read returns airlift-protocol
    models. Idempotent requests retry (connection errors, 429, 5xx) per ``retry_policy``; triggers
    are never retried blindly. Lists are read page by page without dropping or repeating items.

    >>> from airlift_client import AirflowInstance, BasicAuthBackend
    >>> airflow_instance = AirflowInstance(
    ...     auth_backend=BasicAuthBackend(webserver_url="http://localhost:8080", username="admin", password="admin"),
    ...     name="airflow_instance_one",
    ... )
    >>> airflow_instance
    AirflowInstance(name='airflow_instance_one', auth_backend=BasicAuthBackend(webserver_url='http://localhost:8080', username='admin'))
    """

    def __init__(
        self,
        *,
        auth_backend: AuthBackend,
        name: str,
        timeout: float = 30.0,
        retry_policy: RetryPolicy | None = None,
        page_size: int = 100,
        max_workers: int = 16,
        api_version: ApiVersion | str | None = None,
        session_factory: Callable[[], requests.Session] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not name or not all(c.isalnum() or c == "_" for c in name):
            raise ValueError(
                f"AirflowInstance name {name!r} must be letters, digits and underscores "
                "(it becomes part of Dagster asset keys and sensor names)"
            )
        if page_size < 1 or max_workers < 1:
            raise ValueError("page_size and max_workers must be at least 1")
        self.name = name
        self.auth_backend = auth_backend
        self.page_size = page_size
        self.max_workers = max_workers
        self._clock = clock
        self._sleep = sleep
        self._transport = Transport(
            auth_backend,
            timeout=timeout,
            retry_policy=retry_policy or RetryPolicy(),
            session_factory=session_factory or functools.partial(_pooled_session, max_workers),
        )
        self._forced_api = ApiVersion(api_version) if api_version is not None else None
        self._rest: GenerationRest | None = None
        self._detect_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"AirflowInstance(name={self.name!r}, auth_backend={self.auth_backend!r})"

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_detect_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._detect_lock = threading.Lock()

    @property
    def webserver_url(self) -> str:
        """The webserver's base URL, without a trailing slash."""
        return self.auth_backend.webserver_url

    @property
    def request_count(self) -> int:
        """HTTP requests sent so far (including retries and auth refreshes)."""
        return self._transport.request_count

    # ------------------------------------------------------------------ generation
    def assume_api_version(self, api: ApiVersion) -> None:
        """Use ``api`` without probing (e.g. known from cached state); ignored once detected."""
        if self._rest is None and self._forced_api is None:
            self._forced_api = api

    @property
    def api_version(self) -> ApiVersion:
        """``ApiVersion.V1`` (Airflow 2) or ``ApiVersion.V2`` (Airflow 3), detected once."""
        return self._generation().api

    def _generation(self) -> GenerationRest:
        if self._rest is None:
            with self._detect_lock:
                if self._rest is None:
                    api = self._forced_api or self.auth_backend.detect_api_version(timeout=self._transport.timeout)
                    api = api or self._probe_api_version()
                    self._transport.bind(api)
                    self._rest = rest_for(api, self.webserver_url)
        return self._rest

    def _probe_api_version(self) -> ApiVersion:
        # Both health endpoints are public. Airflow 3 serves /api/v2/monitor/health and answers 404 on
        # /api/v1; Airflow 2 has no /api/v2.
        url = self.webserver_url
        v2 = self._transport.raw("GET", f"{url}/api/v2/monitor/health")
        if v2.status_code == 200 and "json" in v2.headers.get("Content-Type", ""):
            return ApiVersion.V2
        v1 = self._transport.raw("GET", f"{url}/api/v1/health")
        if v1.status_code == 200 and "json" in v1.headers.get("Content-Type", ""):
            return ApiVersion.V1
        if v2.status_code in (401, 403):
            return ApiVersion.V2
        if v1.status_code in (401, 403):
            return ApiVersion.V1
        raise AirflowResponseError(
            f"{url} does not look like an Airflow webserver: /api/v2/monitor/health answered "
            f"{v2.status_code} and /api/v1/health answered {v1.status_code}. Check webserver_url, or pass "
            "api_version='v1' (Airflow 2) or 'v2' (Airflow 3) to AirflowInstance.",
            status=v1.status_code,
        )

    def _call(self, method: str, path: str, *, what: str, idempotent: bool = True, **kwargs: Any) -> Any:
        rest = self._generation()
        return self._transport.request(method, rest.base + path, what=what, idempotent=idempotent, **kwargs)

    def _parse(self, parser: Callable[[], T], what: str) -> T:
        try:
            return parser()
        except RestPayloadError as e:
            raise AirflowResponseError(f"{self.webserver_url}: unexpected response for {what}: {e}") from e

    # ------------------------------------------------------------------ paging
    def _paged(
        self,
        fetch: Callable[[int, int], Mapping[str, Any]],
        items_key: str,
        identity: Callable[[Mapping[str, Any]], Hashable],
    ) -> Iterator[Mapping[str, Any]]:
        """Yield every item of a paged list exactly once.

        The offset advances by the number of items actually received (servers cap ``limit`` at their
        ``maximum_page_limit``). Items are de-duplicated by identity. The scan starts over (yielding
        only items not yet seen) when the total changes during it (items inserted or removed before
        the offset) or when it saw fewer distinct items than the total (pages overlapped: the server
        has no stable order for this list, e.g. Airflow 2's task instance batch endpoint), so an item
        that moved to an earlier page is not lost.
        """
        seen: set[Hashable] = set()
        for _ in range(MAX_RESCANS + 1):
            offset = 0
            first_total: int | None = None
            total: Any = None
            shifted = False
            this_pass: set[Hashable] = set()
            while True:
                page = fetch(offset, self.page_size)
                items = page.get(items_key)
                if not isinstance(items, list):
                    raise AirflowResponseError(f"{self.webserver_url}: a page of {items_key} has no list {items_key!r}")
                total = page.get("total_entries")
                if first_total is None:
                    first_total = total
                elif total != first_total:
                    shifted = True
                for item in items:
                    key = identity(item)
                    this_pass.add(key)
                    if key not in seen:
                        seen.add(key)
                        yield item
                offset += len(items)
                if not items or (isinstance(total, int) and offset >= total):
                    break
            if isinstance(total, int) and len(this_pass) < total:
                shifted = True
            if not shifted:
                return
        log.warning(
            "%s: the list of %s kept changing while it was read; gave up after %d scans with %d item(s)",
            self.webserver_url, items_key, MAX_RESCANS + 1, len(seen),
        )

    # ------------------------------------------------------------------ DAGs and tasks
    def iter_dags(
        self,
        *,
        dag_id_pattern: str | None = None,
        tags: Sequence[str] = (),
        paused: bool | None = None,
        include_inactive: bool = False,
    ) -> Iterator[DagInfo]:
        """Every DAG (all pages). ``dag_id_pattern`` is Airflow's substring match; ``tags`` keeps DAGs
        with any of the tags; ``paused`` filters on the paused flag; stale DAGs are left out unless
        ``include_inactive``."""
        rest = self._generation()
        params = rest.dags_params(dag_id_pattern=dag_id_pattern, tags=tags, paused=paused, include_inactive=include_inactive)

        def fetch(offset: int, limit: int) -> Mapping[str, Any]:
            return dict(self._call("GET", "/dags", what="the DAG list", params={**params, "limit": limit, "offset": offset}))

        for raw in self._paged(fetch, "dags", lambda d: d.get("dag_id")):
            yield self._parse(lambda raw=raw: DagInfo.from_rest(raw, api=rest.api), "a DAG")  # type: ignore[misc]

    def list_dags(self, **filters: Any) -> list[DagInfo]:
        """:meth:`iter_dags` as a list."""
        return list(self.iter_dags(**filters))

    def get_dag(self, dag_id: str) -> DagInfo:
        """One DAG by id (:class:`AirflowNotFoundError` names it if it does not exist)."""
        raw = self._call("GET", f"/dags/{_q(dag_id)}", what=f"DAG {dag_id!r}")
        return self._parse(lambda: DagInfo.from_rest(raw, api=self.api_version), f"DAG {dag_id!r}")

    def list_tasks(self, dag_id: str) -> list[TaskInfo]:
        """The tasks of a DAG, with ``upstream_task_ids`` filled in."""
        body = self._call("GET", f"/dags/{_q(dag_id)}/tasks", what=f"the tasks of DAG {dag_id!r}")
        api = self.api_version
        return self._parse(
            lambda: with_upstream_task_ids(TaskInfo.from_rest(raw, dag_id=dag_id, api=api) for raw in body["tasks"]),
            f"the tasks of DAG {dag_id!r}",
        )

    def _concurrently(self, keys: Sequence[str], work: Callable[[str], T]) -> dict[str, T]:
        if not keys:
            return {}
        self._generation()  # detect once, before the threads start
        with ThreadPoolExecutor(max_workers=min(self.max_workers, len(keys)), thread_name_prefix="airlift") as pool:
            return dict(zip(keys, pool.map(work, keys), strict=True))

    def list_tasks_for_dags(self, dag_ids: Iterable[str]) -> dict[str, list[TaskInfo]]:
        """Tasks of many DAGs, read concurrently (at most ``max_workers`` requests at once)."""
        return self._concurrently(list(dict.fromkeys(dag_ids)), self.list_tasks)

    def get_dag_source(self, dag: DagInfo | str) -> str:
        """The source code of the file that defines a DAG."""
        info = dag if isinstance(dag, DagInfo) else self.get_dag(dag)
        path, headers = self._generation().source_request(info)
        body = self._call("GET", path, what=f"the source of DAG {info.dag_id!r}", headers=headers)
        if isinstance(body, Mapping):
            return str(body.get("content") or "")
        return str(body or "")

    def get_dag_sources(self, dags: Iterable[DagInfo]) -> dict[str, str]:
        """Sources of many DAGs (one request per file, concurrently; DAGs sharing a file share it)."""
        dag_list = list(dags)
        by_file: dict[str, DagInfo] = {}
        for dag in dag_list:
            by_file.setdefault(self._source_key(dag), dag)
        sources = self._concurrently(list(by_file), lambda key: self.get_dag_source(by_file[key]))
        return {dag.dag_id: sources[self._source_key(dag)] for dag in dag_list}

    def _source_key(self, dag: DagInfo) -> str:
        if self.api_version is ApiVersion.V1 and dag.file_token:
            return dag.file_token
        return f"dag:{dag.dag_id}"

    # ------------------------------------------------------------------ runs and task instances
    def iter_dag_runs(
        self,
        *,
        dag_ids: Sequence[str] | None = None,
        states: Sequence[str] | None = None,
        end_date_gte: datetime | None = None,
        end_date_lte: datetime | None = None,
        start_date_gte: datetime | None = None,
    ) -> Iterator[DagRun]:
        """DAG runs across DAGs through the batch endpoint ``POST /dags/~/dagRuns/list``, in the order
        Airflow created them (sort by ``end_date`` yourself if you need it). Datetimes must be
        timezone-aware (``ValueError`` otherwise). Pass an ``end_date_lte`` to scan a fixed window.

        >>> from datetime import datetime, timedelta, timezone
        >>> now = datetime.now(timezone.utc)
        >>> finished = airflow_instance.iter_dag_runs(  # doctest: +SKIP
        ...     states=["success", "failed"], end_date_gte=now - timedelta(hours=1), end_date_lte=now
        ... )
        """
        rest = self._generation()
        body = rest.runs_body(
            dag_ids=dag_ids, states=states, end_date_gte=end_date_gte, end_date_lte=end_date_lte, start_date_gte=start_date_gte
        )
        if dag_ids is not None and not dag_ids:
            return

        def fetch(offset: int, limit: int) -> Mapping[str, Any]:
            page_body = {**body, "page_offset": offset, "page_limit": limit}
            return dict(self._call("POST", "/dags/~/dagRuns/list", what="the DAG run list", json=page_body))

        for raw in self._paged(fetch, "dag_runs", lambda r: (r.get("dag_id"), r.get("dag_run_id"))):
            yield self._parse(lambda raw=raw: DagRun.from_rest(raw, api=rest.api), "a DAG run")  # type: ignore[misc]

    def iter_task_instances(
        self,
        *,
        dag_ids: Sequence[str] | None = None,
        run_ids: Sequence[str] | None = None,
        task_ids: Sequence[str] | None = None,
        states: Sequence[str] | None = None,
        end_date_gte: datetime | None = None,
        end_date_lte: datetime | None = None,
    ) -> Iterator[TaskInstance]:
        """Task instances (every map index, latest try) through the batch endpoint
        ``POST /dags/~/dagRuns/~/taskInstances/list``."""
        rest = self._generation()
        if any(v is not None and not v for v in (dag_ids, run_ids, task_ids)):
            return
        body = rest.task_instances_body(
            dag_ids=dag_ids, run_ids=run_ids, task_ids=task_ids, states=states, end_date_gte=end_date_gte, end_date_lte=end_date_lte
        )

        def fetch(offset: int, limit: int) -> Mapping[str, Any]:
            page_body = {**body, "page_offset": offset, "page_limit": limit}
            try:
                return dict(self._call("POST", "/dags/~/dagRuns/~/taskInstances/list", what="the task instance list", json=page_body))
            except AirflowResponseError as e:
                if e.status == 400 and rest.api is ApiVersion.V1:
                    self._raise_if_too_old(e)
                raise

        identity: Callable[[Mapping[str, Any]], Hashable] = lambda t: (  # noqa: E731
            t.get("dag_id"), t.get("dag_run_id"), t.get("task_id"), t.get("map_index"),
        )
        for raw in self._paged(fetch, "task_instances", identity):
            yield self._parse(lambda raw=raw: TaskInstance.from_rest(raw, api=rest.api), "a task instance")  # type: ignore[misc]

    def _raise_if_too_old(self, error: AirflowResponseError) -> None:
        """After a 400 from an Airflow 2 batch endpoint: read ``/version`` and, on a release older than
        :data:`MIN_AIRFLOW_2`, raise an error that names the version instead of the bare 400."""
        try:
            version = str(self._call("GET", "/version", what="the Airflow version").get("version") or "")
        except AirflowResponseError:
            return
        parts = tuple(int(p) if p.isdigit() else 0 for p in version.split("+")[0].split(".")[:3])
        if parts and parts < MIN_AIRFLOW_2:
            raise AirflowResponseError(
                f"{self.webserver_url} runs Airflow {version}; its task-instance batch endpoint does not accept "
                "the dag_run_ids and task_ids filters (new in Airflow 2.7.1). Airlift supports Airflow 2.7.1 and "
                "later: upgrade Airflow (on MWAA, the environment's Airflow version).",
                status=error.status,
            ) from error

    def get_dag_run(self, dag_id: str, run_id: str) -> DagRun:
        """One DAG run."""
        what = f"run {run_id!r} of DAG {dag_id!r}"
        raw = self._call("GET", f"/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}", what=what)
        return self._parse(lambda: DagRun.from_rest(raw, api=self.api_version), what)

    def trigger_dag(
        self,
        dag_id: str,
        *,
        conf: Mapping[str, Any] | None = None,
        run_id: str | None = None,
        logical_date: datetime | None = None,
    ) -> DagRun:
        """Start a DAG run. Not retried on errors (a retry could start a second run)."""
        rest = self._generation()
        body = rest.trigger_body(conf=conf, run_id=run_id, logical_date=logical_date)
        raw = self._call("POST", f"/dags/{_q(dag_id)}/dagRuns", what=f"DAG {dag_id!r}", json=body, idempotent=False)
        return self._parse(lambda: DagRun.from_rest(raw, api=rest.api), f"the new run of DAG {dag_id!r}")

    def set_dag_paused(self, dag_id: str, *, paused: bool) -> DagInfo:
        """Pause or unpause a DAG (Airflow creates DAGs paused by default)."""
        raw = self._call(
            "PATCH", f"/dags/{_q(dag_id)}", what=f"DAG {dag_id!r}", json={"is_paused": paused}, params={"update_mask": "is_paused"}
        )
        return self._parse(lambda: DagInfo.from_rest(raw, api=self.api_version), f"DAG {dag_id!r}")

    def unpause_dag(self, dag_id: str) -> DagInfo:
        """Unpause a DAG."""
        return self.set_dag_paused(dag_id, paused=False)

    def wait_for_run(self, dag_id: str, run_id: str, *, timeout: float = 300.0, poll_interval: float = 2.0) -> DagRun:
        """Poll a run until it succeeded or failed; :class:`AirflowRunTimeoutError` after ``timeout`` s."""
        deadline = self._clock() + timeout
        while True:
            run = self.get_dag_run(dag_id, run_id)
            if run.is_finished:
                return run
            if self._clock() >= deadline:
                raise AirflowRunTimeoutError(
                    f"run {run_id!r} of DAG {dag_id!r} is still {run.state!r} after {timeout:.0f}s: {self.run_url(dag_id, run_id)}"
                )
            self._sleep(poll_interval)

    # ------------------------------------------------------------------ UI links
    def dag_url(self, dag_id: str) -> str:
        """Link to the DAG in the Airflow UI."""
        return self._generation().dag_url(dag_id)

    def run_url(self, dag_id: str, run_id: str) -> str:
        """Link to a DAG run in the Airflow UI."""
        return self._generation().run_url(dag_id, run_id)

    def task_instance_url(self, dag_id: str, run_id: str, task_id: str, *, map_index: int = -1) -> str:
        """Link to a task instance in the Airflow UI."""
        return self._generation().task_instance_url(dag_id, run_id, task_id, map_index=map_index)

    def log_url(self, dag_id: str, run_id: str, task_id: str, *, try_number: int, map_index: int = -1) -> str:
        """Link to a task instance's log (one try) in the Airflow UI."""
        return self._generation().log_url(dag_id, run_id, task_id, try_number=try_number, map_index=map_index)

