"""Dagster's GraphQL API over plain HTTP (no dagster install needed inside Airflow)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import requests

from airlift_airflow.errors import DagsterApiError, DagsterUnreachableError
from airlift_protocol import DAG_ID_TAG, TASK_ID_TAG, encode_tag_value

__all__ = ["DagsterAsset", "DagsterGraphQLClient", "DagsterRun", "DagsterRunResult"]

log = logging.getLogger("airlift_airflow")

# Dagster's RunStatus values that end a run; every other status (QUEUED, NOT_STARTED, MANAGED,
# STARTING, STARTED, SUSPENDED, CANCELING) means the run is still in flight.
FINISHED_STATUSES = frozenset({"SUCCESS", "FAILURE", "CANCELED"})
RETRIED_HTTP_STATUSES = frozenset({429, 500, 502, 503, 504})
FAILURE_EVENT_PAGES = 20

ASSETS_QUERY = """
query AirliftAssets {
  assetNodes {
    assetKey { path }
    isExecutable
    tags { key value }
    repository { name location { name } }
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
    ... on Run { runId status }
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

    >>> DagsterAsset(path=("raw", "customers"), location="defs", repository="__repository__", executable=True).path
    ('raw', 'customers')
    """

    path: tuple[str, ...]
    location: str
    repository: str
    executable: bool


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
    """Dagster's GraphQL API (``<url>/graphql``) over plain HTTP, for what ``DagsterOperator`` needs.

    Every request has a timeout. Connection errors, timeouts, 429 and 5xx are retried up to
    ``max_attempts`` times with exponential backoff (``backoff``, ``2*backoff``, ... capped at 30 s),
    then :class:`DagsterUnreachableError` says so. ``sleep`` and ``clock`` are injectable so tests
    never wait. The API token is sent as the ``Dagster-Cloud-Api-Token`` header and never appears in
    logs, reprs or error messages.

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
        max_attempts: int = 5,
        backoff: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.url = url.rstrip("/")
        self._token = api_token
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.sleep = sleep
        self.clock = clock

    def __repr__(self) -> str:
        return f"DagsterGraphQLClient(url={self.url!r})"

    @property
    def graphql_url(self) -> str:
        return f"{self.url}/graphql"

    def run_url(self, run_id: str) -> str:
        """Link to a run in Dagster's UI."""
        return f"{self.url}/runs/{run_id}"

    def query(self, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """POST one GraphQL document; returns its ``data`` or raises :class:`DagsterApiError`."""
        headers = {"Content-Type": "application/json"}
        if self._token:
            headers["Dagster-Cloud-Api-Token"] = self._token
        endpoint = self.graphql_url
        payload = {"query": query, "variables": dict(variables or {})}
        last = ""
        for attempt in range(1, self.max_attempts + 1):
            try:
                response = requests.post(endpoint, json=payload, headers=headers, timeout=self.timeout)
            except (requests.ConnectionError, requests.Timeout) as e:
                last = type(e).__name__
            except requests.RequestException as e:
                raise DagsterApiError(f"cannot call Dagster's GraphQL API at {endpoint}: {type(e).__name__}") from e
            else:
                if response.status_code not in RETRIED_HTTP_STATUSES:
                    break
                last = f"HTTP {response.status_code}"
            if attempt < self.max_attempts:
                delay = min(30.0, self.backoff * 2 ** (attempt - 1))
                log.warning("Dagster at %s: %s; retry %d/%d in %.1fs", endpoint, last, attempt, self.max_attempts - 1, delay)
                self.sleep(delay)
        else:
            raise DagsterUnreachableError(
                f"cannot reach Dagster's GraphQL API at {endpoint} after {self.max_attempts} attempts ({last}); "
                "check the Airflow connection to Dagster (default dagster_default) or AIRLIFT_DAGSTER_URL, "
                "and that the Dagster webserver is up"
            )
        if response.status_code in (401, 403):
            raise DagsterApiError(
                f"Dagster at {endpoint} refused the request (HTTP {response.status_code}); check the API token"
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

    def assets_for_task(self, *, dag_id: str, task_id: str) -> list[DagsterAsset]:
        """Assets tagged ``airlift/dag_id`` + ``airlift/task_id`` for this task, in every code location."""
        wanted = {DAG_ID_TAG: encode_tag_value(dag_id), TASK_ID_TAG: encode_tag_value(task_id)}
        found = []
        for node in self.query(ASSETS_QUERY).get("assetNodes") or []:
            tags = {t["key"]: t["value"] for t in node.get("tags") or []}
            if all(tags.get(k) == v for k, v in wanted.items()):
                repository = node["repository"]
                found.append(
                    DagsterAsset(
                        path=tuple(node["assetKey"]["path"]),
                        location=repository["location"]["name"],
                        repository=repository["name"],
                        executable=bool(node.get("isExecutable", True)),
                    )
                )
        return found

    def launch_run(
        self, *, location: str, repository: str, asset_paths: Sequence[Sequence[str]], tags: Mapping[str, str]
    ) -> str:
        """Launch one run of exactly these assets of one code location (implicit ``__ASSET_JOB``);
        returns the run id. Never retried blindly: a launch is not idempotent."""
        params = {
            "selector": {
                "repositoryLocationName": location,
                "repositoryName": repository,
                "jobName": "__ASSET_JOB",
                "assetSelection": [{"path": list(p)} for p in asset_paths],
            },
            "runConfigData": {},
            "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
        }
        result = self.query(LAUNCH_MUTATION, {"executionParams": params})["launchRun"]
        if result["__typename"] != "LaunchRunSuccess":
            raise DagsterApiError(
                f"Dagster at {self.url} did not launch the run ({result['__typename']}): {result.get('message', '')}"
            )
        return str(result["run"]["runId"])

    def runs_with_tags(self, tags: Mapping[str, str]) -> list[DagsterRun]:
        """Runs carrying all these tags (newest first, as Dagster lists them)."""
        variables = {"filter": {"tags": [{"key": k, "value": v} for k, v in tags.items()]}}
        result = self.query(RUNS_QUERY, variables)["runsOrError"]
        if result["__typename"] != "Runs":
            raise DagsterApiError(f"Dagster at {self.url} could not list runs: {result.get('message', '')}")
        return [
            DagsterRun(run_id=r["runId"], status=r["status"], tags={t["key"]: t["value"] for t in r.get("tags") or []})
            for r in result["results"]
        ]

    def run_status(self, run_id: str) -> str:
        """The run's RunStatus (QUEUED, STARTED, SUCCESS, FAILURE, CANCELED, ...)."""
        result = self.query(RUN_QUERY, {"runId": run_id})["runOrError"]
        if result["__typename"] != "Run":
            raise DagsterApiError(f"Dagster run {run_id} at {self.url}: {result.get('message', result['__typename'])}")
        return str(result["status"])

    def failure_message(self, run_id: str) -> str:
        """The step errors (or run failure message) of a failed run, for the Airflow log."""
        messages: list[str] = []
        cursor: str | None = None
        try:
            for _ in range(FAILURE_EVENT_PAGES):
                logs = self.query(FAILURE_QUERY, {"runId": run_id, "afterCursor": cursor})["logsForRun"]
                if logs.get("__typename") != "EventConnection":
                    return f"(could not read the run's events: {logs.get('message', logs.get('__typename'))})"
                messages.extend(_failure_lines(logs.get("events") or []))
                if not logs.get("hasMore") or not logs.get("cursor"):
                    break
                cursor = logs["cursor"]
        except DagsterApiError as e:
            return f"(could not read the run's events: {e})"
        return "\n".join(messages) or "(Dagster reported no failure events)"

    def wait_for_run(self, run_id: str, *, poll_interval: float, timeout: float | None) -> DagsterRunResult:
        """Poll ``runOrError`` until the run ends (or ``timeout`` seconds pass: the result then keeps
        the in-flight status and says so in ``error``)."""
        deadline = None if timeout is None else self.clock() + timeout
        while True:
            status = self.run_status(run_id)
            if status in FINISHED_STATUSES:
                error = self.failure_message(run_id) if status == "FAILURE" else None
                return DagsterRunResult(run_id=run_id, status=status, url=self.run_url(run_id), error=error)
            if deadline is not None and self.clock() >= deadline:
                return DagsterRunResult(
                    run_id=run_id, status=status, url=self.run_url(run_id),
                    error=f"still {status} after {timeout:g}s (run_timeout); the Dagster run goes on",
                )
            self.sleep(poll_interval)


def _failure_lines(events: Sequence[Mapping[str, Any]]) -> list[str]:
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
