"""``AirflowInstance``: one Airflow deployment, read and driven through its REST API."""

from __future__ import annotations

import functools
import heapq
import logging
import re
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import requests
import requests.adapters

from airlift_client._generations import GenerationRest, rest_for
from airlift_client._schemas import SCHEMAS
from airlift_client._sessions import CredentialsSession
from airlift_client._transport import Transport
from airlift_client.auth import AuthBackend
from airlift_client.errors import (
    AirflowAuthError,
    AirflowBadResponseError,
    AirflowNotFoundError,
    AirflowResponseError,
    AirflowRunTimeoutError,
    AirflowUnreachableError,
    AirliftClientError,
    AuditLogForbiddenError,
    AuditLogUnavailableError,
)
from airlift_client.retry import RETRY_STATUSES, RetryPolicy
from airlift_protocol import (
    AirflowDataset,
    AirflowImportError,
    ApiVersion,
    DagInfo,
    DagRun,
    DagTimetable,
    DatasetEvent,
    EventLog,
    RestPayloadError,
    TaskInfo,
    TaskInstance,
    task_migration_doc,
    tasks_migrated_in_dag_doc,
    with_upstream_task_ids,
)

__all__ = ["AirflowInstance"]

log = logging.getLogger("airlift_client")

T = TypeVar("T")
A = TypeVar("A")
B = TypeVar("B")
#: How often a paged scan starts over when the total changed under it or pages overlapped.
MAX_RESCANS = 8
#: Airflow 2 releases before this one reject the task-instance batch body Airlift sends
#: (its ``dag_run_ids`` and ``task_ids`` filters are new in 2.7.1).
MIN_AIRFLOW_2 = (2, 7, 1)


#: What a user needs to read ``GET /eventLogs``, per REST generation.
_AUDIT_LOG_PERMISSION = {
    ApiVersion.V1: (
        "Grant the permission 'can read on Audit Logs' to the user's role (Security > List Roles; of the "
        "built-in roles only Admin has it, Viewer, User and Op do not), or use an Admin user."
    ),
    ApiVersion.V2: (
        "Airflow 3 asks the auth manager for read access to the DAGs' audit log (DagAccessEntity.AUDIT_LOG): "
        "with the FAB auth manager grant the permission 'can read on Audit Logs' next to 'can read on DAGs', or use "
        "an Admin user; with another auth manager, allow reading the DAGs' audit log."
    ),
}


def release_tuple(version: str) -> tuple[int, ...]:
    """An Airflow release string as numbers, for comparisons (local and pre-release parts count as 0).

    >>> release_tuple("2.9.3"), release_tuple("3.0.0rc1+astro.2") < (3, 0, 1)
    ((2, 9, 3), True)
    """
    return tuple(int(p) if p.isdigit() else 0 for p in version.split("+")[0].split(".")[:3]) if version else ()


#: Identity of an item of the changed-rows lists (paging drops repeats by it).
_UPDATED_IDENTITY: dict[str, Callable[[Mapping[str, Any]], Hashable]] = {
    "dag_runs": lambda r: (r.get("dag_id"), r.get("dag_run_id")),
    "task_instances": lambda t: (t.get("dag_id"), t.get("dag_run_id"), t.get("task_id"), t.get("map_index")),
}


def _replaying(first: Mapping[str, Any], fetch: Callable[[int, int], Mapping[str, Any]]) -> Callable[[int, int], Mapping[str, Any]]:
    """``fetch`` whose first call for offset 0 answers with the page already read."""
    pending = [first]

    def page(offset: int, limit: int) -> Mapping[str, Any]:
        if pending and offset == 0:
            return pending.pop()
        return fetch(offset, limit)

    return page


@dataclass(frozen=True)
class _UpdatedLists:
    """The first pages of :meth:`AirflowInstance.read_updated`'s lists (key, fetch, first page), and the
    rows they count together."""

    rest: GenerationRest
    lists: list[tuple[str, Callable[[int, int], Mapping[str, Any]], Mapping[str, Any]]]
    listed: int


_MICROSECOND = timedelta(microseconds=1)
#: The most time slices one audit-log read cuts its window into after its first page.
MAX_LOG_SLICES = 32
#: How many requests of one read (audit-log slices, task-instance groups) are asked at once: Airflow's
#: API server shares its few workers, and its database, with the UI and the running tasks. Measured at
#: 500,000 runs on Airflow 3.3 (bench_scale, a busy tick of 29 requests): 4 at once 185 ms of database time
#: at the median and 215 ms at p95, 2 at once 159 / 184 ms, 1 at a time 129 / 147 ms, the tick's wall time
#: the same (1.73-1.81 s median). ``AirflowInstance(max_workers=1)`` asks one at a time.
READS_AT_ONCE = 2


def _q(value: str) -> str:
    return quote(value, safe="")


def run_groups(runs: Iterable[tuple[str, str]]) -> list[tuple[list[str], list[str]]]:
    """(dag_ids, run_ids) requests whose cross products are exactly the given (dag_id, run_id)
    pairs: the DAGs with the same set of wanted run ids share a request, or the runs with the same
    set of DAGs do, whichever makes fewer requests.

    >>> run_groups([("a", "r1"), ("b", "r1"), ("a", "r2"), ("b", "r2"), ("c", "r3")])
    [(['a', 'b'], ['r1', 'r2']), (['c'], ['r3'])]
    >>> run_groups([("a", "r1"), ("b", "r1"), ("b", "r2"), ("c", "r2")])
    [(['a', 'b'], ['r1']), (['b', 'c'], ['r2'])]
    """
    by_dag: dict[str, set[str]] = {}
    by_run: dict[str, set[str]] = {}
    for dag_id, run_id in runs:
        by_dag.setdefault(dag_id, set()).add(run_id)
        by_run.setdefault(run_id, set()).add(dag_id)
    dag_groups: dict[frozenset[str], list[str]] = {}
    for dag_id, run_ids in by_dag.items():
        dag_groups.setdefault(frozenset(run_ids), []).append(dag_id)
    run_groups_: dict[frozenset[str], list[str]] = {}
    for run_id, dag_ids in by_run.items():
        run_groups_.setdefault(frozenset(dag_ids), []).append(run_id)
    if len(run_groups_) < len(dag_groups):
        return sorted((sorted(dags), sorted(run_ids)) for dags, run_ids in run_groups_.items())
    return sorted((sorted(dags), sorted(run_ids)) for run_ids, dags in dag_groups.items())


def page_sized(groups: Iterable[tuple[list[str], list[str]]], runs_per_request: int) -> list[tuple[list[str], list[str]]]:
    """The ``(dag_ids, run_ids)`` requests of :func:`run_groups`, split so that each names at most
    ``runs_per_request`` runs (of the DAGs, else of the runs; a request's rows are its DAGs' runs'
    rows, so each still names wanted runs only).

    >>> page_sized([(["a", "b", "c"], ["r1", "r2"]), (["d"], ["r1", "r2", "r3"])], 2)
    [(['a'], ['r1', 'r2']), (['b'], ['r1', 'r2']), (['c'], ['r1', 'r2']), (['d'], ['r1', 'r2']), (['d'], ['r3'])]
    """
    out: list[tuple[list[str], list[str]]] = []
    for dag_ids, run_ids in groups:
        if len(run_ids) <= runs_per_request:
            step = max(1, runs_per_request // len(run_ids))
            out.extend((dag_ids[i:i + step], run_ids) for i in range(0, len(dag_ids), step))
        else:
            out.extend(([dag_id], run_ids[i:i + runs_per_request]) for dag_id in dag_ids for i in range(0, len(run_ids), runs_per_request))
    return out


#: Task instances a run is taken to hold when a request names no tasks (to size requests to a page).
RUN_TASK_INSTANCES_GUESS = 10


@dataclass(frozen=True)
class TooManyRows:
    """What a sized read (:meth:`AirflowInstance.read_updated`, :meth:`AirflowInstance.read_event_logs`)
    returns instead of rows when Airflow counts more than its ``max_rows``: ``counted``, at least how many
    rows the window holds (the counts of the lists read before it stopped), so the caller can size the
    next window from it."""

    counted: int


class _PooledSession(CredentialsSession):
    """requests' session, reading the proxy and CA-bundle variables of the environment at most once a
    second per server instead of once per request (requests scans the whole environment each time:
    a third of the client's CPU per request when thousands of task lists are read at load)."""

    #: Seconds a reading of the environment is reused.
    ENV_TTL = 1.0

    def __init__(self) -> None:
        super().__init__()
        self._env_settings: dict[Hashable, tuple[float, Any]] = {}

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any) -> Any:
        if not self.trust_env:
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        parts = urlsplit(str(url))
        key = (parts.scheme, parts.netloc, tuple(sorted((proxies or {}).items())), stream, verify, cert,
               tuple(sorted(self.proxies.items())), self.stream, self.verify, self.cert)
        now = time.monotonic()
        cached = self._env_settings.get(key)
        if cached is None or now - cached[0] > self.ENV_TTL:
            cached = (now, super().merge_environment_settings(url, proxies, stream, verify, cert))
            self._env_settings[key] = cached
        return dict(cached[1])


def _pooled_session(connections: int) -> requests.Session:
    """A session whose connection pool fits the worker pool (requests' default keeps only 10)."""
    session = _PooledSession()
    adapter = requests.adapters.HTTPAdapter(pool_connections=connections, pool_maxsize=connections)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


_insecure_warned = threading.Event()


def _tls_session(factory: Callable[[], requests.Session], verify: bool | str) -> requests.Session:
    """A session from ``factory`` with the instance's certificate check. Standard proxy variables
    (``HTTPS_PROXY``, ``HTTP_PROXY``, ``NO_PROXY``) and ``REQUESTS_CA_BUNDLE`` stay honoured: the
    session trusts the environment unless the factory says otherwise."""
    session = factory()
    if verify is not True:
        session.verify = verify
    return session


def _model_for(api: ApiVersion, method: str, path: str) -> Any:
    """The response model of a REST path (one table for every call, so each body is checked)."""
    schemas = SCHEMAS[api]
    for pattern, verb, model in (
        (r"/dags", "GET", schemas.dags),
        (r"/dags/[^/]+", None, schemas.dag),
        (r"/dags/[^/]+/tasks", "GET", schemas.tasks),
        (r"/dags/[^/]+/details", "GET", schemas.dag),
        (r"/dags/~/dagRuns/list", "POST", schemas.runs),
        (r"/dags/~/dagRuns/~/taskInstances/list", "POST", schemas.task_instances),
        (r"/dags/[^/]+/dagRuns", "GET", schemas.runs),
        (r"/dags/[^/]+/dagRuns/[^/]+/taskInstances", "GET", schemas.task_instances),
        (r"/dags/[^/]+/dagRuns(/[^/]+)?", None, schemas.run),
        (r"/dagSources/[^/]+", "GET", schemas.source),
        (r"/version", "GET", schemas.version),
        (r"/(datasets|assets)", "GET", schemas.datasets),
        (r"/(datasets|assets)/events", "GET", schemas.dataset_events),
        (r"/importErrors", "GET", schemas.import_errors),
        (r"/eventLogs", "GET", schemas.event_logs),
    ):
        if (verb is None or verb == method) and re.fullmatch(pattern, path):
            return model
    return None


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
        verify: bool = True,
        ca_bundle: str | None = None,
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
        if not verify and ca_bundle:
            raise ValueError("give ca_bundle= or verify=False, not both")
        if not verify and not _insecure_warned.is_set():
            _insecure_warned.set()
            log.warning(
                "AirflowInstance %r: verify=False turns off TLS certificate checks; anyone on the network "
                "path can read the credentials. Prefer ca_bundle='/path/to/ca.pem'.", name,
            )
        self._transport = Transport(
            auth_backend,
            timeout=timeout,
            retry_policy=retry_policy or RetryPolicy(),
            session_factory=functools.partial(
                _tls_session,
                session_factory or functools.partial(_pooled_session, max_workers),
                ca_bundle or verify,
            ),
        )
        try:
            self._forced_api = ApiVersion(api_version) if api_version is not None else None
        except ValueError:
            raise ValueError(f"api_version={api_version!r}: use 'v1' (Airflow 2) or 'v2' (Airflow 3)") from None
        self._assumed_api: ApiVersion | None = None
        self._rest: GenerationRest | None = None
        #: The release ``GET /version`` reported when the generation was detected.
        self._airflow_version: str | None = None
        self._detect_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"AirflowInstance(name={self.name!r}, auth_backend={self.auth_backend!r})"

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_detect_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("_airflow_version", None)
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
        """Use ``api`` without probing (e.g. known from cached state); ignored once detected or when
        ``api_version=`` was given."""
        if self._rest is None and self._forced_api is None:
            self._assumed_api = api

    @property
    def api_version(self) -> ApiVersion:
        """``ApiVersion.V1`` (Airflow 2) or ``ApiVersion.V2`` (Airflow 3), detected once."""
        return self._generation().api

    def _generation(self) -> GenerationRest:
        if self._rest is None:
            with self._detect_lock:
                if self._rest is None:
                    api = self._choose_api()
                    self._transport.bind(api)
                    self._rest = rest_for(api, self.webserver_url)
        return self._rest

    def _choose_api(self) -> ApiVersion:
        if self._forced_api is not None:
            problem = self._confirm(self._forced_api)
            if problem is not None:
                other = ApiVersion.V2 if self._forced_api is ApiVersion.V1 else ApiVersion.V1
                raise AirflowResponseError(
                    f"api_version={self._forced_api.value!r} was given, but {problem}. If this is Airflow "
                    f"{3 if other is ApiVersion.V2 else 2}, pass api_version={other.value!r} (or leave it out "
                    "to detect it).",
                    url=self.webserver_url + self._forced_api.base_path,
                )
            return self._forced_api
        if self._assumed_api is not None:
            return self._assumed_api
        known = self.auth_backend.detect_api_version(timeout=self._transport.timeout)
        return known or self._detect_api_version()

    def _detect_api_version(self) -> ApiVersion:
        # The public health endpoints give a hint (Airflow 3 serves /api/v2/monitor/health, Airflow 2
        # /api/v1/health); the generation is only taken after an authenticated, validated
        # GET /version of it reports the matching major version. An auth proxy, a garbled answer or
        # a missing health endpoint cannot make it pick the wrong one.
        url = self.webserver_url
        hint: ApiVersion | None = None
        for api, path in ((ApiVersion.V2, "/api/v2/monitor/health"), (ApiVersion.V1, "/api/v1/health")):
            response = self._transport.raw("GET", url + path)
            if response is not None and response.status_code == 200 and "json" in response.headers.get("Content-Type", ""):
                hint = api
                break
        order = [ApiVersion.V2, ApiVersion.V1] if hint is not ApiVersion.V1 else [ApiVersion.V1, ApiVersion.V2]
        problems = []
        for api in order:
            try:
                problem = self._confirm(api)
            except AirliftClientError as e:
                if api is hint or isinstance(e, AirflowUnreachableError) or e.status in RETRY_STATUSES:
                    raise  # the server is down or busy: guessing the other generation would mislead
                problems.append(f"{api.base_path}: {e}")
                continue
            if problem is None:
                return api
            problems.append(problem)
        raise AirflowResponseError(
            f"{url} does not look like an Airflow 2 or 3 webserver: {'; '.join(problems)}. Check webserver_url, "
            "or pass api_version='v1' (Airflow 2) or 'v2' (Airflow 3) to AirflowInstance.",
            url=url,
        )

    def _confirm(self, api: ApiVersion) -> str | None:
        """None if an authenticated ``GET {base}/version`` says this is Airflow of ``api``'s
        generation; otherwise what it said instead."""
        self._transport.bind(api)
        url = f"{self.webserver_url}{api.base_path}/version"
        try:
            body = self._transport.request("GET", url, what="the Airflow version", model=SCHEMAS[api].version)
        except (AirflowNotFoundError, AirflowBadResponseError) as e:
            return f"{url} did not answer like Airflow ({type(e).__name__}, HTTP {e.status})"
        version = str(body["version"])
        expected = "2" if api is ApiVersion.V1 else "3"
        if version.split(".")[0] != expected:
            return f"{url} reports Airflow {version}"
        self._airflow_version = version
        return None

    def _call(self, method: str, path: str, *, what: str, idempotent: bool = True, **kwargs: Any) -> Any:
        rest = self._generation()
        kwargs.setdefault("model", _model_for(rest.api, method, path.split("?", 1)[0]))
        return self._transport.request(method, rest.base + path, what=what, idempotent=idempotent, **kwargs)

    def _parse(self, parser: Callable[[], T], what: str) -> T:
        try:
            return parser()
        except RestPayloadError as e:
            raise AirflowBadResponseError(
                f"{self.webserver_url}: unexpected response for {what}: {e}", url=self.webserver_url
            ) from None

    # ------------------------------------------------------------------ paging
    def _paged(
        self,
        fetch: Callable[[int, int], Mapping[str, Any]],
        items_key: str,
        identity: Callable[[Mapping[str, Any]], Hashable],
        *,
        strict: bool = False,
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
        if strict:
            raise AirflowResponseError(
                f"{self.webserver_url}: the list of {items_key} kept changing while it was read "
                f"({MAX_RESCANS + 1} scans, {len(seen)} item(s)); nothing was kept, read it again later"
            )
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

    def get_dag_timetable(self, dag_id: str) -> DagTimetable:
        """When a DAG runs: its schedule, catchup, dates and dataset condition (``GET /dags/{id}/details``)."""
        raw = self._call("GET", f"/dags/{_q(dag_id)}/details", what=f"the details of DAG {dag_id!r}")
        return self._parse(lambda: DagTimetable.from_rest(raw, api=self.api_version), f"the details of DAG {dag_id!r}")

    def list_tasks(self, dag_id: str) -> list[TaskInfo]:
        """The tasks of a DAG, with ``upstream_task_ids`` filled in.

        Airflow before 2.10 leaves ``doc_md`` out of the task list; there each task's ``doc_md`` says
        whether it is migrated as the DAG's own doc does (one more request, ``GET /dags/{id}/details``).
        """
        body = self._call("GET", f"/dags/{_q(dag_id)}/tasks", what=f"the tasks of DAG {dag_id!r}")
        api = self.api_version
        tasks = self._parse(
            lambda: with_upstream_task_ids(TaskInfo.from_rest(raw, dag_id=dag_id, api=api) for raw in body["tasks"]),
            f"the tasks of DAG {dag_id!r}",
        )
        if api is ApiVersion.V1 and body["tasks"] and not any("doc_md" in raw for raw in body["tasks"]):
            details = self._call("GET", f"/dags/{_q(dag_id)}/details", what=f"the details of DAG {dag_id!r}")
            migrated = tasks_migrated_in_dag_doc(details.get("doc_md"))
            tasks = [replace(t, doc_md=task_migration_doc(None) if t.task_id in migrated else None) for t in tasks]
        return tasks

    def _concurrently(self, keys: Sequence[str], work: Callable[[str], T], *, workers: int | None = None) -> dict[str, T]:
        if not keys:
            return {}
        if len(keys) == 1:
            return {keys[0]: work(keys[0])}
        self._generation()  # detect once, before the threads start
        at_once = min(self.max_workers, len(keys), workers or self.max_workers)
        with ThreadPoolExecutor(max_workers=at_once, thread_name_prefix="airlift") as pool:
            return dict(zip(keys, pool.map(work, keys), strict=True))

    def _both(self, first: Callable[[], A], second: Callable[[], B]) -> tuple[A, B]:
        """``first()`` and ``second()`` at once (one after the other when ``max_workers`` is 1)."""
        if self.max_workers == 1:
            return first(), second()
        self._generation()  # detect once, before the thread starts
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="airlift") as pool:
            pending = pool.submit(first)
            other = second()
            return pending.result(), other

    def get_dags(self, dag_ids: Iterable[str]) -> list[DagInfo]:
        """The DAGs of these ids that Airflow has (one request each, concurrently; an id Airflow
        does not know is left out), in the order given."""
        def one(dag_id: str) -> DagInfo | None:
            try:
                return self.get_dag(dag_id)
            except AirflowNotFoundError:
                return None

        found = self._concurrently(list(dict.fromkeys(dag_ids)), one)
        return [dag for dag in found.values() if dag is not None]

    def list_tasks_for_dags(self, dag_ids: Iterable[str]) -> dict[str, list[TaskInfo]]:
        """Tasks of many DAGs, read concurrently (at most ``max_workers`` requests at once)."""
        return self._concurrently(list(dict.fromkeys(dag_ids)), self.list_tasks)

    def get_dag_source(self, dag: DagInfo | str) -> str:
        """The source code of the file that defines a DAG."""
        info = dag if isinstance(dag, DagInfo) else self.get_dag(dag)
        path, headers = self._generation().source_request(info)
        body = self._call("GET", path, what=f"the source of DAG {info.dag_id!r}", headers=headers)
        return str(body.get("content") or "")

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

    def iter_import_errors(self) -> Iterator[AirflowImportError]:
        """The DAG files Airflow currently fails to import (``GET /importErrors``, all pages).

        >>> [e.summary for e in airflow_instance.iter_import_errors()]  # doctest: +SKIP
        ['SyntaxError: invalid syntax']
        """
        api = self.api_version

        def fetch(offset: int, limit: int) -> Mapping[str, Any]:
            return dict(self._call("GET", "/importErrors", what="the import errors", params={"limit": limit, "offset": offset}))

        for raw in self._paged(fetch, "import_errors", lambda e: e.get("import_error_id") or e.get("filename")):
            yield self._parse(lambda raw=raw: AirflowImportError.from_rest(raw, api=api), "an import error")  # type: ignore[misc]

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

    def iter_task_instances_of_runs(
        self, runs: Iterable[tuple[str, str]], *, task_ids: Sequence[str] | None = None, states: Sequence[str] | None = None,
    ) -> Iterator[TaskInstance]:
        """The task instances of the runs ``runs`` ((dag_id, run_id) pairs) and nothing else, through
        the batch list (Airflow's ``task_instance (dag_id, run_id)`` index serves it). The batch list
        filters ``dag_ids`` and ``run_ids`` apart, and DAGs on one schedule share run ids
        (``scheduled__<date>``): the pairs are sent in groups (:func:`run_groups`) whose cross
        product names wanted runs only, so no other run's rows are read. Each request names about a
        page of task instances (:func:`page_sized`: ``task_ids`` per run, else
        :data:`RUN_TASK_INSTANCES_GUESS`): Airflow counts, joins and sorts all of a request's rows
        for every page it serves, so a request of ten pages costs the database ten times its rows.
        With ``states`` (few rows match) the groups are sent whole. The requests are asked
        concurrently (at most :data:`READS_AT_ONCE` at once).

        >>> tis = airflow_instance.iter_task_instances_of_runs([("sales", "scheduled__2026-01-01T00:00:00+00:00")])  # doctest: +SKIP
        """
        requests = run_groups(runs)
        if states is None:
            per_run = len(task_ids) if task_ids else RUN_TASK_INSTANCES_GUESS
            requests = page_sized(requests, max(1, self.page_size // per_run))
        groups = {str(i): group for i, group in enumerate(requests)}
        read = self._concurrently(list(groups), lambda key: list(self.iter_task_instances(
            dag_ids=groups[key][0], run_ids=groups[key][1], task_ids=task_ids, states=states)), workers=READS_AT_ONCE)
        for key in groups:  # in the groups' order
            yield from read[key]

    def _updated_page(self, path: str, params: Mapping[str, Any], offset: int, limit: int, what: str) -> Mapping[str, Any]:
        return dict(self._call("GET", path, what=what, params={**params, "limit": limit, "offset": offset}))

    def iter_updated_dag_runs(
        self, *, updated_at_gte: datetime, updated_at_lte: datetime, states: Sequence[str] | None = None
    ) -> Iterator[DagRun]:
        """DAG runs of every DAG whose row changed (``updated_at``) in ``[updated_at_gte,
        updated_at_lte]``: finished, cleared, marked or re-run (``GET /dags/~/dagRuns``). A list that
        keeps changing while it is paged raises :class:`AirflowResponseError` (never a partial list).

        >>> from datetime import datetime, timedelta, timezone
        >>> now = datetime.now(timezone.utc)
        >>> changed = airflow_instance.iter_updated_dag_runs(  # doctest: +SKIP
        ...     updated_at_gte=now - timedelta(minutes=5), updated_at_lte=now
        ... )
        """
        rest = self._generation()
        params = rest.updated_params(updated_at_gte=updated_at_gte, updated_at_lte=updated_at_lte, states=states,
                                     order_by=rest.runs_order_by)
        fetch = functools.partial(self._updated_page, "/dags/~/dagRuns", params, what="the changed DAG runs")
        for raw in self._paged(fetch, "dag_runs", _UPDATED_IDENTITY["dag_runs"], strict=True):
            yield self._parse(lambda raw=raw: DagRun.from_rest(raw, api=rest.api), "a DAG run")  # type: ignore[misc]

    def iter_updated_task_instances(
        self, *, updated_at_gte: datetime, updated_at_lte: datetime, states: Sequence[str] | None = None
    ) -> Iterator[TaskInstance]:
        """Task instances (every map index, current try) of every DAG whose row changed in
        ``[updated_at_gte, updated_at_lte]`` (``GET /dags/~/dagRuns/~/taskInstances``); strict
        paging like :meth:`iter_updated_dag_runs`.

        >>> from datetime import datetime, timedelta, timezone
        >>> now = datetime.now(timezone.utc)
        >>> done = airflow_instance.iter_updated_task_instances(  # doctest: +SKIP
        ...     updated_at_gte=now - timedelta(minutes=5), updated_at_lte=now, states=["success"]
        ... )
        """
        rest = self._generation()
        params = rest.updated_params(updated_at_gte=updated_at_gte, updated_at_lte=updated_at_lte, states=states,
                                     order_by=rest.updated_tis_order_by)
        fetch = functools.partial(self._updated_page, "/dags/~/dagRuns/~/taskInstances", params, what="the changed task instances")
        for raw in self._paged(fetch, "task_instances", _UPDATED_IDENTITY["task_instances"], strict=True):
            yield self._parse(lambda raw=raw: TaskInstance.from_rest(raw, api=rest.api), "a task instance")  # type: ignore[misc]

    # ------------------------------------------------------------------ datasets / assets
    def iter_datasets(self, *, uri_pattern: str | None = None, dag_ids: Sequence[str] | None = None) -> Iterator[AirflowDataset]:
        """Airflow 2 datasets (``GET /api/v1/datasets``) or Airflow 3 assets (``GET /api/v2/assets``)
        with the tasks producing them and the DAGs consuming them. ``uri_pattern``: a substring of
        the URI (Airflow's ``uri_pattern``); ``dag_ids``: only those a listed DAG produces or consumes.

        >>> [d.uri for d in airflow_instance.iter_datasets(uri_pattern="s3://")]  # doctest: +SKIP
        ['s3://warehouse/orders']
        """
        rest = self._generation()
        if dag_ids is not None and not dag_ids:
            return
        params = rest.datasets_params(uri_pattern=uri_pattern, dag_ids=dag_ids)
        fetch = functools.partial(self._updated_page, rest.datasets_path, params, what="the dataset list")
        for raw in self._paged(fetch, rest.datasets_key, lambda d: d.get("uri")):
            yield self._parse(lambda raw=raw: AirflowDataset.from_rest(raw, api=rest.api), "a dataset")  # type: ignore[misc]

    def iter_dataset_events(self, *, timestamp_gte: datetime, timestamp_lte: datetime) -> Iterator[DatasetEvent]:
        """Dataset (Airflow 2) / asset (Airflow 3) events with ``timestamp`` in ``[timestamp_gte,
        timestamp_lte]`` (``GET /datasets/events`` / ``GET /assets/events``). Airflow 2 cannot filter
        that list by time: it is read newest first until the window's lower bound. A list that keeps
        changing while it is paged raises :class:`AirflowResponseError`.

        >>> from datetime import datetime, timedelta, timezone
        >>> now = datetime.now(timezone.utc)
        >>> events = airflow_instance.iter_dataset_events(  # doctest: +SKIP
        ...     timestamp_gte=now - timedelta(hours=1), timestamp_lte=now)
        """
        rest = self._generation()
        params = rest.dataset_events_params(timestamp_gte=timestamp_gte, timestamp_lte=timestamp_lte)
        fetch = functools.partial(self._updated_page, rest.dataset_events_path, params, what="the dataset events")
        parse: Callable[[Mapping[str, Any]], DatasetEvent] = lambda raw: self._parse(  # noqa: E731
            lambda: DatasetEvent.from_rest(raw, api=rest.api), "a dataset event")
        if rest.dataset_events_filter_by_time:
            for raw in self._paged(fetch, rest.dataset_events_key, lambda e: e.get("id"), strict=True):
                yield parse(raw)
            return
        # Newest first: events added while paging push older ones to later pages (seen twice, never
        # missed); the identity set drops the repeats.
        seen: set[Hashable] = set()
        offset = 0
        while True:
            page = fetch(offset, self.page_size)
            items = page.get(rest.dataset_events_key)
            if not isinstance(items, list):
                raise AirflowResponseError(f"{self.webserver_url}: a page of dataset events has no list {rest.dataset_events_key!r}")
            older = False
            for raw in items:
                event = parse(raw)
                if event.timestamp < timestamp_gte:
                    older = True
                    break
                key = (event.uri, event.timestamp, event.source_dag_id, event.source_run_id, event.source_task_id, event.source_map_index)
                if event.timestamp <= timestamp_lte and key not in seen:
                    seen.add(key)
                    yield event
            offset += len(items)
            total = page.get("total_entries")
            if older or not items or (isinstance(total, int) and offset >= total):
                return

    def read_updated(
        self, *, updated_at_gte: datetime, updated_at_lte: datetime, max_rows: int | None = None, task_instances: bool = True,
    ) -> tuple[list[DagRun], list[TaskInstance]] | TooManyRows:
        """The DAG runs and task instances of every DAG changed in ``[updated_at_gte, updated_at_lte]``
        (:meth:`iter_updated_dag_runs` and :meth:`iter_updated_task_instances`), or :class:`TooManyRows`
        as soon as Airflow counts more than ``max_rows`` of them: the count comes with each list's first page,
        so sizing a window costs no request of its own (an oversized window costs its first pages).
        ``task_instances=False``: the runs only (no task instance is read).

        >>> from datetime import datetime, timedelta, timezone
        >>> now = datetime.now(timezone.utc)
        >>> airflow_instance.read_updated(updated_at_gte=now - timedelta(minutes=1), updated_at_lte=now, max_rows=5000)  # doctest: +SKIP
        """
        first = self._updated_first_pages(updated_at_gte=updated_at_gte, updated_at_lte=updated_at_lte, max_rows=max_rows,
                                          task_instances=task_instances)
        return first if isinstance(first, TooManyRows) else self._updated_rest(first)

    def _updated_first_pages(self, *, updated_at_gte: datetime, updated_at_lte: datetime, max_rows: int | None,
                             task_instances: bool) -> _UpdatedLists | TooManyRows:
        """The first page of each list :meth:`read_updated` reads, with their counts (stops at the
        first count that passes ``max_rows``)."""
        rest = self._generation()
        lists: list[tuple[str, Callable[[int, int], Mapping[str, Any]], Mapping[str, Any]]] = []
        listed = 0
        for path, key, order_by, what in (
            ("/dags/~/dagRuns", "dag_runs", rest.runs_order_by, "the changed DAG runs"),
            ("/dags/~/dagRuns/~/taskInstances", "task_instances", rest.updated_tis_order_by, "the changed task instances"),
        )[:2 if task_instances else 1]:
            params = rest.updated_params(updated_at_gte=updated_at_gte, updated_at_lte=updated_at_lte, states=None, order_by=order_by)
            fetch = functools.partial(self._updated_page, path, params, what=what)
            first = fetch(0, self.page_size)
            total = first.get("total_entries")
            if not isinstance(total, int):
                raise AirflowResponseError(f"{self.webserver_url}: the list of {key} has no total_entries")
            listed += total
            if max_rows is not None and listed > max_rows:
                return TooManyRows(listed)
            lists.append((key, fetch, first))
        return _UpdatedLists(rest, lists, listed)

    def _updated_rest(self, first: _UpdatedLists) -> tuple[list[DagRun], list[TaskInstance]]:
        """Every row of the lists whose first pages ``first`` holds."""
        api = first.rest.api
        out = {key: list(self._paged(_replaying(page, fetch), key, _UPDATED_IDENTITY[key], strict=True)) for key, fetch, page in first.lists}
        return ([self._parse(lambda raw=raw: DagRun.from_rest(raw, api=api), "a DAG run") for raw in out["dag_runs"]],  # type: ignore[misc]
                [self._parse(lambda raw=raw: TaskInstance.from_rest(raw, api=api), "a task instance")  # type: ignore[misc]
                 for raw in out.get("task_instances", [])])

    def read_changes(self, *, after: datetime, before: datetime, updated_at_gte: datetime, updated_at_lte: datetime,
                     max_rows: int | None = None, skip_events: Sequence[str] | None = None,
                     ) -> tuple[list[EventLog], list[DagRun]] | TooManyRows:
        """What changed in a time window, as an audit-log reader sees it: the audit-log rows with
        ``after < when < before`` (:meth:`read_event_logs`) and the DAG runs changed in
        ``[updated_at_gte, updated_at_lte]`` (:meth:`read_updated` with ``task_instances=False``), or
        :class:`TooManyRows` when Airflow counts more than ``max_rows`` of the two together. The two
        lists' first pages are asked at once (each brings its count); the rest of them only when they
        fit ``max_rows``, again at once: the runs' list, whose filter Airflow serves by a scan of the
        runs table, is read while the audit log's pages are (one after the other with ``max_workers=1``).

        >>> from datetime import datetime, timedelta, timezone
        >>> now = datetime.now(timezone.utc)
        >>> airflow_instance.read_changes(after=now - timedelta(minutes=1), before=now,  # doctest: +SKIP
        ...                               updated_at_gte=now - timedelta(minutes=1), updated_at_lte=now, max_rows=5000)
        """
        runs, log_first = self._both(
            functools.partial(self._updated_first_pages, updated_at_gte=updated_at_gte, updated_at_lte=updated_at_lte,
                              max_rows=max_rows, task_instances=False),
            functools.partial(self._log_first_page, after=after, before=before, skip_events=skip_events))
        counted = log_first[2] + (runs.counted if isinstance(runs, TooManyRows) else runs.listed)
        if isinstance(runs, TooManyRows) or (max_rows is not None and counted > max_rows):
            return TooManyRows(counted)
        read_runs, rows = self._both(functools.partial(self._updated_rest, runs),
                                     functools.partial(self._log_rest, *log_first, after=after, before=before, skip_events=skip_events))
        return rows, read_runs[0]

    # ------------------------------------------------------------------ audit log
    def iter_event_logs(
        self,
        *,
        after: datetime,
        before: datetime,
        dag_ids: Sequence[str] | None = None,
        events: Sequence[str] | None = None,
    ) -> Iterator[EventLog]:
        """Rows of Airflow's audit log (``GET /eventLogs``, table ``log``) written strictly between
        ``after`` and ``before`` (``after < when < before``: Airflow applies both bounds strictly, so
        windows sharing a bound miss the rows written at it; it keeps microseconds, so starting each
        window 1 microsecond before the previous one's ``before`` reads every row exactly once).
        The filter is on ``dttm``, which Airflow indexes (``idx_log_dttm``).

        ``dag_ids``: only rows of these DAGs (one listing per DAG: the API filters one ``dag_id``
        at a time); ``events``: only these event names (e.g. ``["success", "failed"]``). Rows come
        in the order Airflow wrote them (``event_log_id``), each once: pages are ordered by the
        primary key and a listing that changed while it was paged is read again (one that keeps
        changing raises :class:`AirflowResponseError`). Airflow stamps a row a moment before it
        commits it, so a ``before`` a few seconds in the past reads a window that no longer changes.
        A user without read access to the audit log gets an :class:`AirflowAuthError` naming the
        permission to grant. Airflow 2 before 2.9 cannot serve it (:class:`AirflowResponseError`
        naming the release); before 2.10 its rows have no ``map_index`` or ``try_number``.

        >>> from datetime import datetime, timedelta, timezone
        >>> now = datetime.now(timezone.utc)
        >>> ends = airflow_instance.iter_event_logs(  # doctest: +SKIP
        ...     after=now - timedelta(minutes=5), before=now, events=["success", "failed"])
        """
        if any(v is not None and not v for v in (dag_ids, events)):
            return
        rest, params = self._event_logs_query(after=after, before=before, events=events)
        wanted = frozenset(events) if events is not None else None
        per_dag: list[str | None] = list(dict.fromkeys(dag_ids)) if dag_ids is not None else [None]
        streams = [self._event_log_rows(rest, {**params, "dag_id": dag_id} if dag_id is not None else params) for dag_id in per_dag]
        merged = streams[0] if len(streams) == 1 else heapq.merge(*streams, key=lambda e: e.event_log_id)
        for event in merged:
            if wanted is None or event.event in wanted:  # a guard: the server filters them already
                yield event

    def read_event_logs(self, *, after: datetime, before: datetime, max_rows: int | None = None,
                        skip_events: Sequence[str] | None = None) -> list[EventLog] | TooManyRows:
        """Every audit-log row with ``after < when < before`` (as :meth:`iter_event_logs`, all DAGs,
        events other than ``skip_events``), in id order, or :class:`TooManyRows` as soon as Airflow
        counts more than ``max_rows`` of them: the count comes with the first page, so sizing a window costs no
        request of its own. Pages are asked in time order, which Airflow's ``idx_log_dttm`` serves
        (ordered by id, PostgreSQL may walk the primary key through the whole table), each from the
        time of the previous page's last row (rows of that instant are asked again and kept once),
        and up to a time that holds about two pages at the density seen: Airflow 3 joins every row of
        the asked range before it sorts and cuts a page, and an offset makes the database walk the
        skipped rows again, so either would cost the square of the window's rows. What the first
        page leaves is cut, at the window's density, into time slices of about a page each, read
        concurrently (at most :data:`READS_AT_ONCE` requests at once), each paged the same way.

        >>> from datetime import datetime, timedelta, timezone
        >>> now = datetime.now(timezone.utc)
        >>> rows = airflow_instance.read_event_logs(after=now - timedelta(minutes=1), before=now, max_rows=5000)  # doctest: +SKIP
        """
        rest, page, total = self._log_first_page(after=after, before=before, skip_events=skip_events)
        if max_rows is not None and total > max_rows:
            return TooManyRows(total)
        return self._log_rest(rest, page, total, after=after, before=before, skip_events=skip_events)

    def _log_first_page(self, *, after: datetime, before: datetime,
                        skip_events: Sequence[str] | None) -> tuple[GenerationRest, Mapping[str, Any], int]:
        """The first page of :meth:`read_event_logs` and the window's count."""
        rest, params = self._event_logs_query(after=after, before=before, events=None, skip_events=skip_events, by_time=True)
        page = self._event_log_page(rest, params)(0, self.page_size)
        total = page.get("total_entries")
        if not isinstance(total, int):
            raise AirflowResponseError(f"{self.webserver_url}: the audit log list has no total_entries")
        return rest, page, total

    def _log_rest(self, rest: GenerationRest, page: Mapping[str, Any], total: int, *, after: datetime, before: datetime,
                  skip_events: Sequence[str] | None) -> list[EventLog]:
        """Every row of :meth:`read_event_logs`'s window, from its first page on (see there)."""
        rows = self._log_page_rows(rest, page)
        found = {row.event_log_id: row for row in rows}
        lower = max((row.when for row in rows), default=after) - _MICROSECOND
        if total <= len(rows):
            pass  # the window read whole
        elif lower <= after:  # a first page of one instant: the sequential read copes with it
            found.update(self._read_log_range(after, before, skip_events, (rest, page, total)))
        else:
            # the rest, in slices of about a page each (80%: rows are rarely spread evenly), read at once
            count = min(MAX_LOG_SLICES, -(-(total - len(rows)) * 5 // (4 * len(rows))))  # ceil(rows left / 80% of a page)
            cuts = [lower + (before - lower) * i / count for i in range(count)] + [before]
            slices = {str(i): (cuts[i] if i == 0 else cuts[i] - _MICROSECOND, cuts[i + 1]) for i in range(count)}
            read = self._concurrently(list(slices), lambda key: self._read_log_range(*slices[key], skip_events),
                                      workers=READS_AT_ONCE)
            for part in read.values():
                found.update(part)
        return sorted(found.values(), key=lambda e: e.event_log_id)

    def _log_page_rows(self, rest: GenerationRest, page: Mapping[str, Any]) -> list[EventLog]:
        items = page.get("event_logs")
        if not isinstance(items, list):
            raise AirflowResponseError(f"{self.webserver_url}: a page of event_logs has no list 'event_logs'")
        return [self._parse(lambda raw=raw: EventLog.from_rest(raw, api=rest.api), "an event log") for raw in items]  # type: ignore[misc]

    def _read_log_range(self, after: datetime, before: datetime, skip_events: Sequence[str] | None,
                        first: tuple[GenerationRest, Mapping[str, Any], int] | None = None) -> dict[int, EventLog]:
        """The audit-log rows with ``after < when < before`` by id, paged by time (see
        :meth:`read_event_logs`); ``first``: the range's first page when already read (:meth:`_log_first_page`)."""
        rest, page, total = first or self._log_first_page(after=after, before=before, skip_events=skip_events)
        found: dict[int, EventLog] = {}
        lower, upper = after, before
        page_len = 1
        while True:
            rows = self._log_page_rows(rest, page)
            found.update((row.event_log_id, row) for row in rows)
            page_len = max(page_len, len(rows))
            in_range = page.get("total_entries")
            if not rows or (isinstance(in_range, int) and in_range <= len(rows)):  # (lower, upper) read whole
                if upper >= before:
                    break
                lower = upper - _MICROSECOND  # rows at exactly `upper` were left out (strict bound)
            else:  # more in (lower, upper): go on from the last row's instant
                nxt = max(row.when for row in rows) - _MICROSECOND
                if nxt <= lower:  # a page of one instant: the rest of the range by offset (strict paging)
                    _, params = self._event_logs_query(after=lower, before=upper, events=None, skip_events=skip_events, by_time=True)
                    found.update((row.event_log_id, row) for row in self._event_log_rows(rest, params))
                    if upper >= before:
                        break
                    nxt = upper - _MICROSECOND
                lower = nxt
            # ask up to the time that holds about two pages of the rows left, at the range's density
            left = max(1, total - len(found))
            upper = min(before, max(lower + 2 * _MICROSECOND, lower + (before - lower) * min(1.0, 2 * page_len / left)))
            _, page, _ = self._log_first_page(after=lower, before=upper, skip_events=skip_events)
        return found

    def count_event_logs(self, *, after: datetime, before: datetime, skip_events: Sequence[str] | None = None) -> int:
        """How many audit-log rows have ``after < when < before`` and an event other than
        ``skip_events`` (one one-item request, served by Airflow's ``idx_log_dttm``)."""
        rest, params = self._event_logs_query(after=after, before=before, events=None, skip_events=skip_events, by_time=True)
        total = self._event_log_page(rest, params)(0, 1).get("total_entries")
        if not isinstance(total, int):
            raise AirflowResponseError(f"{self.webserver_url}: the audit log list has no total_entries")
        return total

    def _event_logs_query(self, *, after: datetime, before: datetime, events: Sequence[str] | None,
                          skip_events: Sequence[str] | None = None, by_time: bool = False) -> tuple[GenerationRest, dict[str, Any]]:
        """The generation and query of an audit-log listing (ordered by time: ``by_time``, else by
        id); refuses Airflow 2 before 2.9 with the reason."""
        rest = self._generation()
        params = rest.event_logs_params(after=after, before=before, dag_id=None, events=events, skip_events=skip_events,
                                        by_time=by_time)
        if rest.event_logs_min_release:
            version = self.get_airflow_version()
            if () < release_tuple(version) < rest.event_logs_min_release:
                raise AuditLogUnavailableError(
                    f"{self.webserver_url} runs Airflow {version}, whose GET {rest.api.base_path}/eventLogs cannot be "
                    f"read by time window and run: its rows name no run_id before Airflow 2.9 (2.8 also counts every "
                    f"row whatever the filters, and 2.7 has no filters). Reading the audit log needs Airflow "
                    f"{'.'.join(map(str, rest.event_logs_min_release))} or later."
                )
        return rest, params

    def _event_log_page(self, rest: GenerationRest, params: Mapping[str, Any]) -> Callable[[int, int], Mapping[str, Any]]:
        def fetch(offset: int, limit: int) -> Mapping[str, Any]:
            try:
                return self._updated_page("/eventLogs", params, offset, limit, what="the audit log (event logs)")
            except AirflowAuthError as e:
                if e.status != 403:
                    raise
                raise AuditLogForbiddenError(
                    f"{e.method} {e.url} was refused with HTTP 403: this Airflow user may not read the audit log "
                    f"(GET {rest.api.base_path}/eventLogs). {_AUDIT_LOG_PERMISSION[rest.api]}",
                    method=e.method, url=e.url, status=e.status, attempts=e.attempts,
                ) from None

        return fetch

    def _event_log_rows(self, rest: GenerationRest, params: Mapping[str, Any],
                        fetch: Callable[[int, int], Mapping[str, Any]] | None = None) -> Iterator[EventLog]:
        for raw in self._paged(fetch or self._event_log_page(rest, params), "event_logs", lambda e: e.get("event_log_id"), strict=True):
            yield self._parse(lambda raw=raw: EventLog.from_rest(raw, api=rest.api), "an event log")  # type: ignore[misc]

    def count_updated(self, *, updated_at_gte: datetime, updated_at_lte: datetime, task_instances: bool = True) -> int:
        """How many DAG runs plus task instances changed in ``[updated_at_gte, updated_at_lte]`` (two
        one-item requests; lets a caller size a window before reading it; ``task_instances=False``:
        the runs only, one request).

        >>> from datetime import datetime, timedelta, timezone
        >>> now = datetime.now(timezone.utc)
        >>> airflow_instance.count_updated(updated_at_gte=now - timedelta(hours=1), updated_at_lte=now)  # doctest: +SKIP
        12
        """
        rest = self._generation()
        params = rest.updated_params(updated_at_gte=updated_at_gte, updated_at_lte=updated_at_lte, states=None, order_by=None)
        total = 0
        for path, key in (("/dags/~/dagRuns", "dag_runs"), ("/dags/~/dagRuns/~/taskInstances", "task_instances"))[:2 if task_instances else 1]:
            page = self._updated_page(path, params, 0, 1, what=f"the number of changed {key}")
            count = page.get("total_entries")
            if not isinstance(count, int):
                raise AirflowResponseError(f"{self.webserver_url}: the list of {key} has no total_entries")
            total += count
        return total

    def get_airflow_version(self) -> str:
        """The Airflow release the server runs, e.g. ``"2.9.3"``: what ``GET /version`` said when this
        instance detected the API generation, else read now."""
        self._generation()
        if self._airflow_version is None:
            self._airflow_version = str(self._call("GET", "/version", what="the Airflow version").get("version") or "")
        return self._airflow_version

    def _raise_if_too_old(self, error: AirflowResponseError) -> None:
        """After a 400 from an Airflow 2 batch endpoint: read ``/version`` and, on a release older than
        :data:`MIN_AIRFLOW_2`, raise an error that names the version instead of the bare 400."""
        try:
            version = self.get_airflow_version()
        except AirflowResponseError:
            return
        parts = release_tuple(version)
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

    def get_dag_runs(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], DagRun]:
        """Many DAG runs by (dag_id, run_id), read concurrently (at most ``max_workers`` requests at
        once; Airflow's batch list cannot filter by run id). A run Airflow does not know (deleted, or
        its DAG) is left out."""
        wanted = list(dict.fromkeys(keys))
        by_name = {f"{dag_id}\x00{run_id}": (dag_id, run_id) for dag_id, run_id in wanted}

        def one(name: str) -> DagRun | None:
            try:
                return self.get_dag_run(*by_name[name])
            except AirflowNotFoundError:
                return None

        runs = self._concurrently(list(by_name), one)
        return {by_name[name]: run for name, run in runs.items() if run is not None}

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

