"""Dagster's GraphQL API over plain HTTP (no dagster install needed inside Airflow).

One :class:`requests.Session` per client, one :class:`~airlift_protocol.RetryPolicy` (jitter,
``Retry-After``, per-call deadline) for every idempotent request. Launching a run is not idempotent:
:meth:`DagsterGraphQLClient.launch_run` sends the mutation once and reports an ambiguous outcome
(timeout, dropped connection, 5xx) as :class:`DagsterLaunchUnknownError`, which the caller resolves
by looking the run up by its tags (see :class:`airlift_airflow.DagsterHook`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests
import urllib3

from airlift_airflow.errors import (
    DagsterApiError,
    DagsterLaunchUnknownError,
    DagsterUnreachableError,
)
from airlift_protocol import Retryable, RetryPolicy
from airlift_protocol.events import SENSOR_CHECK_NAMES
from airlift_protocol.tags import (
    SENSOR_SETTLE_METADATA,
    TASK_ASSET_INDEX_METADATA,
    dag_asset_path,
    parse_sensor_settle,
    parse_task_asset_index,
)

__all__ = [
    "DAG_ASSETS_TTL",
    "FINISHED_STATUSES",
    "INSTANCE_ENV",
    "DagAssetInfo",
    "DagsterAsset",
    "DagsterGraphQLClient",
    "DagsterRun",
    "DagsterRunResult",
    "failure_lines",
    "resolve_instance_name",
]

log = logging.getLogger("airlift_airflow")

#: Tags Dagster's run retries put on a failed run: whether it will be retried, and the retry's run id.
WILL_RETRY_TAG = "dagster/will_retry"
AUTO_RETRY_RUN_ID_TAG = "dagster/auto_retry_run_id"

#: Dagster's RunStatus values that end a run; every other status (QUEUED, NOT_STARTED, MANAGED,
#: STARTING, STARTED, SUSPENDED, CANCELING) means the run is still in flight.
FINISHED_STATUSES = frozenset({"SUCCESS", "FAILURE", "CANCELED"})
FAILURE_EVENT_PAGES = 20

ASSET_FIELDS = """
    assetKey { path }
    isExecutable
    tags { key value }
    partitionDefinition { type fmt description }
    repository { name location { name } }
    assetChecksOrError { __typename ... on AssetChecks { checks { name } } }
    opNames
    configField { configType { __typename ... on CompositeConfigType { fields { name } } } }
"""

# Only the asset nodes named by key: the answer grows with the task, not with the deployment.
ASSETS_BY_KEY_QUERY = "query AirliftAssetsByKey($keys: [AssetKeyInput!]) { assetNodes(assetKeys: $keys) {%s} }" % ASSET_FIELDS
# Dagster's GraphQL cannot filter asset nodes by tag: without known keys the slim node list is read once.
ASSETS_BY_TAG_QUERY = "query AirliftAssetsByTag { assetNodes { assetKey { path } tags { key value } } }"

# Every asset node's key: the DAG assets ``[instance_name, "dag", dag_id]`` among them name the Airflow
# instances Dagster peers (Dagster's GraphQL cannot select keys by their last parts).
DAG_ASSETS_QUERY = "query AirliftDagAssets { assetNodes { assetKey { path } } }"
#: Seconds a process keeps Dagster's list of DAG assets (per Dagster URL) before asking again.
DAG_ASSETS_TTL = 30.0
#: Environment variable naming the Airflow instance on the Dagster side (else ``[airlift] instance_name``).
INSTANCE_ENV = "AIRLIFT_AIRFLOW_INSTANCE_NAME"
INSTANCE_SETTINGS = f"airflow_instance_name= on the operator, {INSTANCE_ENV} or [airlift] instance_name"

# The DAG asset's definition metadata, one node by key: the task -> asset index and the sensor's settle.
DAG_INDEX_QUERY = """
query AirliftDagIndex($keys: [AssetKeyInput!]) {
  assetNodes(assetKeys: $keys) {
    assetKey { path }
    metadataEntries {
      label
      ... on JsonMetadataEntry { jsonString }
      ... on FloatMetadataEntry { floatValue }
      ... on IntMetadataEntry { intValue }
    }
  }
}
"""

LAUNCH_MUTATION = """
mutation AirliftLaunch($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on Error { message }
  }
}
"""

TERMINATE_MUTATION = """
mutation AirliftTerminate($runId: String!, $policy: TerminateRunPolicy) {
  terminateRun(runId: $runId, terminatePolicy: $policy) {
    __typename
    ... on TerminateRunFailure { message }
    ... on Error { message }
  }
}
"""

RUNS_QUERY = """
query AirliftRuns($filter: RunsFilter) {
  runsOrError(filter: $filter) {
    __typename
    ... on Runs { results { runId status tags { key value } } }
    ... on Error { message }
  }
}
"""

RUN_QUERY = """
query AirliftRun($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { runId status tags { key value } }
    ... on Error { message }
  }
}
"""

FAILURE_QUERY = """
query AirliftRunFailure($runId: ID!, $afterCursor: String) {
  logsForRun(runId: $runId, afterCursor: $afterCursor, limit: 1000) {
    __typename
    ... on EventConnection {
      cursor
      hasMore
      events {
        __typename
        ... on ExecutionStepFailureEvent { stepKey error { message causes { message } } }
        ... on RunFailureEvent { message }
      }
    }
  }
}
"""


@dataclass(frozen=True)
class DagsterAsset:
    """An asset node of Dagster, as far as launching it goes.

    ``partition_type`` is Dagster's PartitionDefinitionType (``TIME_WINDOW``, ``STATIC``, ...) or
    ``None``; ``partition_fmt``/``partition_description`` describe a time-window definition.

    >>> DagsterAsset(path=("raw", "customers"), location="defs", repository="__repository__", executable=True).path
    ('raw', 'customers')
    """

    path: tuple[str, ...]
    location: str
    repository: str
    executable: bool
    tags: Mapping[str, str] = field(default_factory=dict)
    partition_type: str | None = None
    partition_fmt: str | None = None
    partition_description: str | None = None
    #: The names of the asset's checks; ``None``: Dagster did not list them.
    checks: tuple[str, ...] | None = None
    #: The op computing the asset (``None``: none or several, e.g. a graph-backed asset).
    op_name: str | None = None
    #: The fields of the asset's run config (its ``Config``); ``None``: it takes no config.
    config_fields: tuple[str, ...] | None = None

    def run_checks(self) -> tuple[str, ...] | None:
        """The checks a Dagster run building this asset executes: all but Airlift's own, which the
        sensor evaluates from Airflow's records (:data:`airlift_protocol.events.SENSOR_CHECK_NAMES`);
        ``None`` when the checks are unknown (Dagster then runs every check of the asset)."""
        return None if self.checks is None else tuple(c for c in self.checks if c not in SENSOR_CHECK_NAMES)


@dataclass(frozen=True)
class DagAssetInfo:
    """What a DAG asset's definition metadata tells the Airflow side: its task -> asset keys index
    (``None`` key: the DAG's own assets) and the Airlift sensor's settle in seconds (``None``: the
    Dagster side does not publish it, an Airlift older than that key).

    >>> DagAssetInfo(index={None: []}, settle=10.0).settle
    10.0
    """

    index: dict[str | None, list[tuple[str, ...]]]
    settle: float | None = None


@dataclass(frozen=True)
class DagsterRun:
    """A Dagster run found by its tags.

    >>> DagsterRun(run_id="abc", status="STARTED", tags={}).finished
    False
    """

    run_id: str
    status: str
    tags: Mapping[str, str]

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    @property
    def retried_by(self) -> str | None:
        """The run Dagster launched to retry this one (run retries, ``dagster/max_retries``), if any."""
        return self.tags.get(AUTO_RETRY_RUN_ID_TAG) or None

    @property
    def retry_coming(self) -> bool:
        """Failed, and Dagster said it retries it (``dagster/will_retry``) but has not launched the retry yet."""
        return self.status == "FAILURE" and self.tags.get(WILL_RETRY_TAG) == "true" and not self.retried_by

    @property
    def in_flight(self) -> bool:
        """Still running, or failed with a Dagster retry coming; a run being canceled ends canceled."""
        return (not self.finished and self.status != "CANCELING") or self.retry_coming


@dataclass(frozen=True)
class DagsterRunResult:
    """How a Dagster run ended (``error`` holds Dagster's failure message, if any).

    >>> DagsterRunResult(run_id="abc", status="SUCCESS", url="http://dagster:3000/runs/abc").url
    'http://dagster:3000/runs/abc'
    """

    run_id: str
    status: str
    url: str
    error: str | None = None


class DagsterGraphQLClient:
    """Dagster's GraphQL API (``<url>/graphql``) over one HTTP session, for what ``DagsterOperator`` needs.

    Every request has a timeout. Idempotent requests (queries, termination) are retried on connection
    errors, timeouts, 429 and 5xx as ``retry`` says (full jitter, ``Retry-After``, deadline), then
    :class:`DagsterUnreachableError` names the URL. The launch mutation is sent once. The API token is
    sent as the ``Dagster-Cloud-Api-Token`` header and never appears in logs, reprs or error messages.

    >>> client = DagsterGraphQLClient("http://dagster:3000/", api_token="secret")
    >>> client
    DagsterGraphQLClient(url='http://dagster:3000')
    >>> client.run_url("abc")
    'http://dagster:3000/runs/abc'
    """

    def __init__(
        self,
        url: str,
        *,
        api_token: str | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._token = api_token
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.session = session or requests.Session()
        self._async_session: Any = None
        self.requests_sent = 0
        self.bytes_received = 0

    def __repr__(self) -> str:
        return f"DagsterGraphQLClient(url={self.url!r})"

    @property
    def graphql_url(self) -> str:
        return f"{self.url}/graphql"

    def run_url(self, run_id: str) -> str:
        """Link to a run in Dagster's UI."""
        return f"{self.url}/runs/{run_id}"

    def headers(self) -> dict[str, str]:
        """Request headers (with the Dagster+ token when there is one)."""
        headers = {"Content-Type": "application/json"}
        if self._token:
            headers["Dagster-Cloud-Api-Token"] = self._token
        return headers

    def _post(self, payload: Mapping[str, Any]) -> requests.Response:
        self.requests_sent += 1
        response = self.session.post(self.graphql_url, json=payload, headers=self.headers(), timeout=self.timeout)
        self.bytes_received += len(response.content or b"")
        return response

    def _post_once(self, payload: Mapping[str, Any]) -> requests.Response:
        """One POST; connection errors, timeouts, 429 and 5xx raise :class:`Retryable`."""
        try:
            response = self._post(payload)
        except (requests.ConnectionError, requests.Timeout) as e:
            raise Retryable(type(e).__name__) from e
        except requests.RequestException as e:
            raise DagsterApiError(f"cannot call Dagster's GraphQL API at {self.graphql_url}: {type(e).__name__}") from e
        if self.retry.should_retry_status(response.status_code):
            raise Retryable(f"HTTP {response.status_code}", retry_after=response.headers.get("Retry-After"))
        return response

    async def _apost_once(self, payload: Mapping[str, Any]) -> Any:
        """:meth:`_post_once` with async HTTP (httpx, which Airflow ships), for the triggerer."""
        import httpx

        if self._async_session is None:
            self._async_session = httpx.AsyncClient()
        self.requests_sent += 1
        try:
            response = await self._async_session.post(self.graphql_url, json=payload, headers=self.headers(),
                                                      timeout=self.timeout)
        except httpx.TransportError as e:  # connection errors and timeouts
            raise Retryable(type(e).__name__) from e
        self.bytes_received += len(response.content or b"")
        if self.retry.should_retry_status(response.status_code):
            raise Retryable(f"HTTP {response.status_code}", retry_after=response.headers.get("Retry-After"))
        return response

    async def aclose(self) -> None:
        """Close the async HTTP session (the sync session lives with the client)."""
        if self._async_session is not None:
            await self._async_session.aclose()
            self._async_session = None

    def _unreachable(self, e: Retryable) -> DagsterUnreachableError:
        return DagsterUnreachableError(
            f"cannot reach Dagster's GraphQL API at {self.graphql_url} after {e.attempts} attempt(s) ({e.problem}); "
            "check the Airflow connection to Dagster (default dagster_default) and that the Dagster webserver is up"
        )

    def _say_retry(self, e: Retryable, delay: float) -> None:
        log.warning("Dagster at %s: %s; retry %d in %.1fs", self.graphql_url, e.problem, e.attempts, delay)

    def query(self, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """POST one idempotent GraphQL document under the retry policy (:meth:`RetryPolicy.call`);
        returns its ``data`` or raises :class:`DagsterApiError` (:class:`DagsterUnreachableError` when
        the policy gave up)."""
        payload = {"query": query, "variables": dict(variables or {})}
        try:
            return self.retry.call(lambda: self._data(self._post_once(payload)), on_retry=self._say_retry)
        except Retryable as e:
            raise self._unreachable(e) from e

    async def aquery(self, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """:meth:`query` for the triggerer's event loop: the same policy, attempts and errors."""
        payload = {"query": query, "variables": dict(variables or {})}

        async def attempt() -> dict[str, Any]:
            return self._data(await self._apost_once(payload))

        try:
            return await self.retry.acall(attempt, on_retry=self._say_retry)
        except Retryable as e:
            raise self._unreachable(e) from e

    def _data(self, response: Any) -> dict[str, Any]:
        """``data`` of a GraphQL answer (a requests or httpx response), or a clear error."""
        endpoint = self.graphql_url
        if response.status_code in (401, 403):
            raise DagsterApiError(
                f"Dagster at {endpoint} refused the request (HTTP {response.status_code}); check the API token "
                "(password or extra api_token of the Airflow connection)"
            )
        if response.status_code >= 400:
            raise DagsterApiError(f"Dagster at {endpoint} answered HTTP {response.status_code}: {response.text[:300]}")
        try:
            body = response.json()
        except ValueError as e:
            raise DagsterApiError(
                f"Dagster at {endpoint} answered something that is not JSON (is this Dagster's webserver?): "
                f"{response.text[:200]!r}"
            ) from e
        if body.get("errors"):
            raise DagsterApiError(f"Dagster at {endpoint} answered GraphQL errors: {body['errors']}")
        return dict(body.get("data") or {})

    def assets_by_key(self, paths: Sequence[Sequence[str]]) -> list[DagsterAsset]:
        """The asset nodes with these keys (those Dagster does not know are absent from the answer)."""
        if not paths:
            return []
        nodes = self.query(ASSETS_BY_KEY_QUERY, {"keys": [{"path": list(p)} for p in paths]}).get("assetNodes") or []
        return [_asset(node) for node in nodes]

    def task_asset_index(
        self, dag_asset_path: Sequence[str], *, without_partitioned: bool = False
    ) -> dict[str | None, list[tuple[str, ...]]] | None:
        """The task -> asset keys index on the DAG asset ``dag_asset_path`` (one node, one request);
        ``None`` when Dagster has no such asset or it carries no index. ``without_partitioned``: leave
        out time-partitioned assets (push mode; the sensor reports them with their partition)."""
        info = self.dag_asset_info(dag_asset_path, without_partitioned=without_partitioned)
        return None if info is None else info.index

    def dag_asset_info(self, dag_asset_path: Sequence[str], *, without_partitioned: bool = False) -> DagAssetInfo | None:
        """The task -> asset keys index and the sensor's settle on the DAG asset ``dag_asset_path``
        (one node, one request); ``None`` when Dagster has no such asset or it carries no index."""
        nodes = self.query(DAG_INDEX_QUERY, {"keys": [{"path": list(dag_asset_path)}]}).get("assetNodes") or []
        for node in nodes:
            entries = {entry.get("label"): entry for entry in node.get("metadataEntries") or []}
            index_entry = entries.get(TASK_ASSET_INDEX_METADATA)
            index = None if index_entry is None else parse_task_asset_index(
                index_entry.get("jsonString"), without_partitioned=without_partitioned)
            if index is not None:
                settle_entry = entries.get(SENSOR_SETTLE_METADATA) or {}
                settle = settle_entry.get("floatValue", settle_entry.get("intValue"))
                return DagAssetInfo(index=index, settle=parse_sensor_settle(settle))
        return None

    def dag_asset_instances(self, dag_id: str, *, max_age: float = DAG_ASSETS_TTL) -> list[str]:
        """The names of the Airflow instances that have a DAG asset ``[name, "dag", dag_id]`` in this
        Dagster, sorted. One request lists every asset node's key; the process keeps the answer (for
        every DAG) ``max_age`` seconds per Dagster URL, so many tasks starting together ask once."""
        now = time.monotonic()
        with _DAG_ASSETS_LOCK:
            cached = _DAG_ASSETS.get(self.url)
        if cached is None or now - cached[0] >= max_age:
            by_dag: dict[str, list[str]] = {}
            for node in self.query(DAG_ASSETS_QUERY).get("assetNodes") or []:
                path = node["assetKey"]["path"]
                if len(path) == 3 and path[1] == "dag":
                    by_dag.setdefault(path[2], []).append(path[0])
            cached = (now, {d: sorted(set(names)) for d, names in by_dag.items()})
            with _DAG_ASSETS_LOCK:
                _DAG_ASSETS[self.url] = cached
        return list(cached[1].get(dag_id, []))

    def asset_keys_with_tags(self, wanted: Mapping[str, str], *, without: Sequence[str] = ()) -> list[tuple[str, ...]]:
        """Keys of the asset nodes carrying all ``wanted`` tags and none of the tag keys in ``without``.
        One request; Dagster cannot filter by tag, so the slim list of every node is read."""
        found = []
        for node in self.query(ASSETS_BY_TAG_QUERY).get("assetNodes") or []:
            tags = {t["key"]: t["value"] for t in node.get("tags") or []}
            if all(tags.get(k) == v for k, v in wanted.items()) and not any(k in tags for k in without):
                found.append(tuple(node["assetKey"]["path"]))
        return found

    def launch_run(
        self,
        *,
        location: str,
        repository: str,
        asset_paths: Sequence[Sequence[str]],
        tags: Mapping[str, str],
        asset_checks: Sequence[tuple[Sequence[str], str]] | None = None,
        run_config: Mapping[str, Any] | None = None,
    ) -> str:
        """Send the launch mutation ONCE for exactly these assets of one code location (implicit
        ``__ASSET_JOB``) and, when given, exactly these ``(asset path, check name)`` checks (else
        Dagster's default: every check of the assets), with ``run_config``; returns the run id. A timeout, dropped connection or 5xx raises
        :class:`DagsterLaunchUnknownError`: the run may exist, look it up by its tags."""
        params = {
            "selector": {
                "repositoryLocationName": location,
                "repositoryName": repository,
                "jobName": "__ASSET_JOB",
                "assetSelection": [{"path": list(p)} for p in asset_paths],
                **({} if asset_checks is None else
                   {"assetCheckSelection": [{"assetKey": {"path": list(p)}, "name": n} for p, n in asset_checks]}),
            },
            "runConfigData": dict(run_config or {}),
            "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
        }
        payload = {"query": LAUNCH_MUTATION, "variables": {"executionParams": params}}
        try:
            response = self._post_once(payload)
        except Retryable as e:
            never_sent = isinstance(e.__cause__, requests.ConnectionError) and _never_sent(e.__cause__)
            raise DagsterLaunchUnknownError(
                f"launching a run at {self.graphql_url} got no answer ({e.problem})", sent=not never_sent
            ) from e
        result = self._data(response)["launchRun"]
        if result["__typename"] != "LaunchRunSuccess":
            raise DagsterApiError(
                f"Dagster at {self.url} did not launch the run ({result['__typename']}): {result.get('message', '')}"
            )
        return str(result["run"]["runId"])

    def terminate_run(self, run_id: str, *, force: bool = False) -> str | None:
        """Ask Dagster to terminate a run; ``None`` on success, else Dagster's reason. ``force`` marks
        it canceled even when it cannot be stopped now (e.g. still STARTING: a run worker that starts
        after that ignores the run)."""
        return _terminated(self.query(TERMINATE_MUTATION, _terminate_variables(run_id, force)))

    async def aterminate_run(self, run_id: str, *, force: bool = False) -> str | None:
        """:meth:`terminate_run` for the triggerer."""
        return _terminated(await self.aquery(TERMINATE_MUTATION, _terminate_variables(run_id, force)))

    def runs_with_tags(self, tags: Mapping[str, str]) -> list[DagsterRun]:
        """Runs carrying all these tags (newest first, as Dagster lists them)."""
        return self._runs(self.query(RUNS_QUERY, _runs_variables(tags)))

    async def aruns_with_tags(self, tags: Mapping[str, str]) -> list[DagsterRun]:
        """:meth:`runs_with_tags` for the triggerer."""
        return self._runs(await self.aquery(RUNS_QUERY, _runs_variables(tags)))

    def _runs(self, data: Mapping[str, Any]) -> list[DagsterRun]:
        result = data["runsOrError"]
        if result["__typename"] != "Runs":
            raise DagsterApiError(f"Dagster at {self.url} could not list runs: {result.get('message', '')}")
        return [_run(r) for r in result["results"]]

    def run(self, run_id: str) -> DagsterRun:
        """The run's status (QUEUED, STARTED, SUCCESS, FAILURE, CANCELED, ...) and tags."""
        return self._one_run(self.query(RUN_QUERY, {"runId": run_id}), run_id)

    async def arun(self, run_id: str) -> DagsterRun:
        """:meth:`run` for the triggerer."""
        return self._one_run(await self.aquery(RUN_QUERY, {"runId": run_id}), run_id)

    def _one_run(self, data: Mapping[str, Any], run_id: str) -> DagsterRun:
        result = data["runOrError"]
        if result["__typename"] != "Run":
            raise DagsterApiError(f"Dagster run {run_id} at {self.url}: {result.get('message', result['__typename'])}")
        return _run(result)

    def run_status(self, run_id: str) -> str:
        """The run's RunStatus (QUEUED, STARTED, SUCCESS, FAILURE, CANCELED, ...)."""
        return self.run(run_id).status

    def failure_message(self, run_id: str) -> str:
        """The step errors (or run failure message) of a failed run, for the Airflow log."""
        messages: list[str] = []
        cursor: str | None = None
        try:
            for _ in range(FAILURE_EVENT_PAGES):
                logs = self.query(FAILURE_QUERY, {"runId": run_id, "afterCursor": cursor})["logsForRun"]
                if logs.get("__typename") != "EventConnection":
                    return f"(could not read the run's events: {logs.get('message', logs.get('__typename'))})"
                messages.extend(failure_lines(logs.get("events") or []))
                if not logs.get("hasMore") or not logs.get("cursor"):
                    break
                cursor = logs["cursor"]
        except DagsterApiError as e:
            return f"(could not read the run's events: {e})"
        return "\n".join(messages) or "(Dagster reported no failure events)"

    def result(self, run_id: str, status: str, *, error: str | None = None) -> DagsterRunResult:
        """A run's result (with Dagster's failure message for a failed run)."""
        if status == "FAILURE" and error is None:
            error = self.failure_message(run_id)
        return DagsterRunResult(run_id=run_id, status=status, url=self.run_url(run_id), error=error)


_DAG_ASSETS: dict[str, tuple[float, dict[str, list[str]]]] = {}
_DAG_ASSETS_LOCK = threading.Lock()


def resolve_instance_name(
    client: DagsterGraphQLClient,
    dag_id: str,
    configured: str | None = None,
    *,
    say: Callable[..., None] | None = None,
) -> str:
    """The name of this Airflow instance on the Dagster side, for the DAG ``dag_id``: the one question
    every Airflow-side path (the operator, push) asks. Dagster names it in the DAG asset key
    ``[name, "dag", dag_id]``. A ``configured`` name wins and must have that DAG asset; without one,
    exactly one instance must have it. Anything else is a :class:`DagsterApiError` naming the Dagster
    URL, what Dagster has and the setting to use. A learned name is logged (``say``, default INFO).

    >>> resolve_instance_name(DagsterGraphQLClient("http://dagster:3000"), "etl")  # doctest: +SKIP
    'prod'
    """
    names = client.dag_asset_instances(dag_id)
    if (configured not in names) if configured else len(names) != 1:
        names = client.dag_asset_instances(dag_id, max_age=0)  # a code location may have just loaded
    wanted = "/".join(dag_asset_path(configured or "<instance>", dag_id))
    found = f"DAG assets for {dag_id!r} under the instance name(s) {names}" if names else f"no DAG asset {wanted}"
    if configured:
        if configured in names:
            return configured
        raise DagsterApiError(
            f"the Airflow instance name {configured!r} is configured ({INSTANCE_SETTINGS}), but Dagster at "
            f"{client.url} has {found}: set it to the name of the AirflowInstance on the Dagster side, or peer "
            f"this Airflow instance with that name (build_defs_from_airflow_instance)"
        )
    if len(names) == 1:
        (say or log.info)("Airflow instance name %r learned from Dagster at %s (DAG asset %s)",
                          names[0], client.url, "/".join(dag_asset_path(names[0], dag_id)))
        return names[0]
    if names:
        raise DagsterApiError(
            f"Dagster at {client.url} has {found}: set the one this Airflow is ({INSTANCE_SETTINGS})"
        )
    raise DagsterApiError(
        f"Dagster at {client.url} has {found}: peer this Airflow instance in Dagster "
        "(build_defs_from_airflow_instance) and reload its code location: the DAG asset names the instance"
    )


def _run(node: Mapping[str, Any]) -> DagsterRun:
    return DagsterRun(run_id=node["runId"], status=node["status"], tags={t["key"]: t["value"] for t in node.get("tags") or []})


def _runs_variables(tags: Mapping[str, str]) -> dict[str, Any]:
    return {"filter": {"tags": [{"key": k, "value": v} for k, v in tags.items()]}}


def _terminate_variables(run_id: str, force: bool) -> dict[str, Any]:
    return {"runId": run_id, "policy": "MARK_AS_CANCELED_IMMEDIATELY" if force else "SAFE_TERMINATE"}


def _terminated(data: Mapping[str, Any]) -> str | None:
    result = data["terminateRun"]
    if result.get("__typename") == "TerminateRunSuccess":
        return None
    return f"{result.get('__typename')}: {result.get('message', '')}".strip()


def _never_sent(error: requests.ConnectionError) -> bool:
    """Whether a connection error happened before the request left (refused, DNS, connect timeout):
    then Dagster cannot have acted on it."""
    if isinstance(error, requests.ConnectTimeout):
        return True
    reason = getattr(error.args[0], "reason", None) if error.args else None
    return isinstance(reason, urllib3.exceptions.NewConnectionError)


def _asset(node: Mapping[str, Any]) -> DagsterAsset:
    repository = node["repository"]
    partitions = node.get("partitionDefinition") or {}
    checks = node.get("assetChecksOrError") or {}
    op_names = node.get("opNames") or []
    config = (node.get("configField") or {}).get("configType") or {}
    return DagsterAsset(
        path=tuple(node["assetKey"]["path"]),
        location=repository["location"]["name"],
        repository=repository["name"],
        executable=bool(node.get("isExecutable", True)),
        tags={t["key"]: t["value"] for t in node.get("tags") or []},
        partition_type=partitions.get("type"),
        partition_fmt=partitions.get("fmt"),
        partition_description=partitions.get("description"),
        checks=tuple(c["name"] for c in checks.get("checks") or []) if checks.get("__typename") == "AssetChecks" else None,
        op_name=op_names[0] if len(op_names) == 1 else None,
        config_fields=tuple(f["name"] for f in config.get("fields") or []) if config.get("__typename") == "CompositeConfigType" else None,
    )


def failure_lines(events: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line per failed step (the user's own exception) or run failure, from ``logsForRun`` events.

    >>> failure_lines([{"__typename": "RunFailureEvent", "message": "boom"}])
    ['boom']
    """
    lines = []
    for event in events:
        if event.get("__typename") == "ExecutionStepFailureEvent":
            error = event.get("error") or {}
            # the user's own exception is the last of the causes
            causes = [str(c.get("message", "")).strip() for c in error.get("causes") or []]
            detail = causes[-1] if causes else str(error.get("message", "")).strip()
            lines.append(f"step {event.get('stepKey')}: {detail}")
        elif event.get("__typename") == "RunFailureEvent" and event.get("message"):
            lines.append(str(event["message"]))
    return lines
