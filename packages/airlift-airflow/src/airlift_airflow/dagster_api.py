"""Dagster's GraphQL API over plain HTTP (no dagster install needed inside Airflow)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import requests

from airlift_protocol import DAG_ID_TAG, TASK_ID_TAG, encode_tag_value

__all__ = ["DagsterApiError", "DagsterAsset", "DagsterGraphQLClient", "DagsterRunResult", "DagsterUnreachableError"]

log = logging.getLogger("airlift_airflow")

IN_FLIGHT_STATUSES = frozenset({"QUEUED", "NOT_STARTED", "STARTING", "STARTED", "MANAGED"})
FINISHED_STATUSES = frozenset({"SUCCESS", "FAILURE", "CANCELED"})

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
query AirliftRunFailure($runId: ID!) {
  logsForRun(runId: $runId, limit: 500) {
    __typename
    ... on EventConnection {
      events {
        __typename
        ... on ExecutionStepFailureEvent { stepKey error { message causes { message } } }
        ... on RunFailureEvent { message }
      }
    }
  }
}
"""


class DagsterApiError(Exception):
    """Dagster's GraphQL API answered with an error; the message names the URL."""


class DagsterUnreachableError(DagsterApiError):
    """Dagster could not be reached after the allowed retries."""


@dataclass(frozen=True)
class DagsterAsset:
    path: tuple[str, ...]
    location: str
    repository: str
    executable: bool


@dataclass(frozen=True)
class DagsterRunResult:
    run_id: str
    status: str
    url: str
    error: str | None = None


class DagsterGraphQLClient:
    """Calls ``<url>/graphql``. Connection errors and 5xx are retried ``max_attempts`` times with
    backoff; ``sleep`` is injectable for tests. The API token is sent as ``Dagster-Cloud-Api-Token``
    and never logged."""

    def __init__(
        self,
        url: str,
        *,
        api_token: str | None = None,
        timeout: float = 30.0,
        max_attempts: int = 5,
        backoff: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url.rstrip("/")
        self._token = api_token
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.sleep = sleep

    def __repr__(self) -> str:
        return f"DagsterGraphQLClient(url={self.url!r})"

    def run_url(self, run_id: str) -> str:
        return f"{self.url}/runs/{run_id}"

    def query(self, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if self._token:
            headers["Dagster-Cloud-Api-Token"] = self._token
        endpoint = f"{self.url}/graphql"
        last: str = ""
        for attempt in range(1, self.max_attempts + 1):
            try:
                response = requests.post(
                    endpoint, json={"query": query, "variables": dict(variables or {})}, headers=headers, timeout=self.timeout
                )
            except (requests.ConnectionError, requests.Timeout) as e:
                last = type(e).__name__
            else:
                if response.status_code < 500:
                    break
                last = f"HTTP {response.status_code}"
            if attempt < self.max_attempts:
                delay = min(30.0, self.backoff * 2 ** (attempt - 1))
                log.warning("Dagster at %s: %s; retry %d/%d in %.0fs", endpoint, last, attempt, self.max_attempts - 1, delay)
                self.sleep(delay)
        else:
            raise DagsterUnreachableError(
                f"cannot reach Dagster's GraphQL API at {endpoint} after {self.max_attempts} attempts ({last}); "
                "check the dagster_default connection (or AIRLIFT_DAGSTER_URL) and that the Dagster webserver is up"
            )
        if response.status_code in (401, 403):
            raise DagsterApiError(f"Dagster at {endpoint} refused the request (HTTP {response.status_code}); check the API token")
        if response.status_code >= 400:
            raise DagsterApiError(f"Dagster at {endpoint} answered HTTP {response.status_code}: {response.text[:300]}")
        body = response.json()
        if body.get("errors"):
            raise DagsterApiError(f"Dagster at {endpoint} answered GraphQL errors: {body['errors']}")
        return dict(body["data"])

    def assets_for_task(self, dag_id: str, task_id: str) -> list[DagsterAsset]:
        """Assets tagged ``airlift/dag_id`` + ``airlift/task_id`` for this task, in every code location."""
        wanted = {DAG_ID_TAG: encode_tag_value(dag_id), TASK_ID_TAG: encode_tag_value(task_id)}
        found = []
        for node in self.query(ASSETS_QUERY).get("assetNodes", []):
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

    def launch_run(self, *, location: str, repository: str, asset_paths: Sequence[Sequence[str]], tags: Mapping[str, str]) -> str:
        """Launch one run of exactly these assets of one code location; returns the run id."""
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
            raise DagsterApiError(f"Dagster at {self.url} did not launch the run ({result['__typename']}): {result.get('message', '')}")
        return str(result["run"]["runId"])

    def runs_with_tags(self, tags: Mapping[str, str]) -> list[tuple[str, str, dict[str, str]]]:
        """(run id, status, tags) of runs carrying all these tags."""
        result = self.query(RUNS_QUERY, {"filter": {"tags": [{"key": k, "value": v} for k, v in tags.items()]}})["runsOrError"]
        if result["__typename"] != "Runs":
            raise DagsterApiError(f"Dagster at {self.url} could not list runs: {result.get('message', '')}")
        return [(r["runId"], r["status"], {t["key"]: t["value"] for t in r["tags"]}) for r in result["results"]]

    def run_status(self, run_id: str) -> str:
        result = self.query(RUN_QUERY, {"runId": run_id})["runOrError"]
        if result["__typename"] != "Run":
            raise DagsterApiError(f"Dagster run {run_id} at {self.url}: {result.get('message', result['__typename'])}")
        return str(result["status"])

    def failure_message(self, run_id: str) -> str:
        """The step errors (or run failure message) of a failed run, for the Airflow log."""
        try:
            logs = self.query(FAILURE_QUERY, {"runId": run_id})["logsForRun"]
        except DagsterApiError as e:
            return f"(could not read the run's events: {e})"
        messages = []
        for event in logs.get("events") or []:
            if event["__typename"] == "ExecutionStepFailureEvent":
                error = event.get("error") or {}
                # the root cause (the user's exception) is the last of the causes
                causes = [c.get("message", "").strip() for c in error.get("causes") or []]
                detail = causes[-1] if causes else error.get("message", "").strip()
                messages.append(f"step {event.get('stepKey')}: {detail}")
            elif event["__typename"] == "RunFailureEvent" and event.get("message"):
                messages.append(event["message"])
        return "\n".join(messages) or "(no failure events)"

    def wait_for_run(self, run_id: str, *, poll_interval: float, timeout: float | None, clock: Callable[[], float] = time.monotonic) -> DagsterRunResult:
        deadline = None if timeout is None else clock() + timeout
        while True:
            status = self.run_status(run_id)
            if status in FINISHED_STATUSES:
                error = self.failure_message(run_id) if status == "FAILURE" else None
                return DagsterRunResult(run_id=run_id, status=status, url=self.run_url(run_id), error=error)
            if deadline is not None and clock() >= deadline:
                return DagsterRunResult(run_id=run_id, status=status, url=self.run_url(run_id), error=f"still {status} after {timeout:.0f}s")
            self.sleep(poll_interval)
