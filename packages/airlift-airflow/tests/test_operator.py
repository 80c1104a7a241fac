"""DagsterOperator.execute against a local fake of Dagster's GraphQL API."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace
from typing import Any

import pytest
from fake_dagster import FakeDagster  # type: ignore[import-not-found]

from airlift_airflow import (
    AirliftAirflowError,
    DagsterApiError,
    DagsterOperator,
    DagsterRunFailedError,
    DagsterUnreachableError,
)
from airlift_airflow.dagster_api import DagsterGraphQLClient
from airlift_testing.procs import free_port

DAG_ID, TASK_ID, RUN_ID = "rebuild.customers", "load_raw", "manual__2026-01-01T00:00:00+00:00"
TOKEN = "dagster-token-SENTINEL"


def _context(try_number: int = 1, max_tries: int | None = None) -> dict[str, Any]:
    ti = SimpleNamespace(dag_id=DAG_ID, task_id=TASK_ID, try_number=try_number, map_index=-1,
                         max_tries=max_tries if max_tries is not None else 0)
    return {"ti": ti, "run_id": RUN_ID}


def _operator(**kwargs: Any) -> DagsterOperator:
    return DagsterOperator(task_id=TASK_ID, poll_interval=0.01, **kwargs)


def _run_tags(try_number: int) -> dict[str, str]:
    return {"airlift/airflow_dag_id": DAG_ID, "airlift/airflow_task_id": TASK_ID,
            "airlift/airflow_run_id": RUN_ID, "airlift/airflow_try_number": str(try_number)}


def _logged(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    return caplog.text + captured.out + captured.err  # Airflow 3 logs through structlog to stdout


def test_launches_one_run_of_the_tagged_assets_with_airflow_tags(
    fake_dagster: FakeDagster, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_dagster.add_asset(["raw", "customers"], dag_id=DAG_ID, task_id=TASK_ID)
    fake_dagster.add_asset(["raw", "orders"], dag_id=DAG_ID, task_id=TASK_ID)
    fake_dagster.add_asset(["other"], dag_id=DAG_ID, task_id="another_task")
    with caplog.at_level(logging.INFO):
        run_ids = _operator(retries=3).execute(_context(try_number=2, max_tries=3))
    assert run_ids == ["run-1"]
    params = fake_dagster.launched[0]
    assert params["selector"] == {
        "repositoryLocationName": "loc", "repositoryName": "__repository__", "jobName": "__ASSET_JOB",
        "assetSelection": [{"path": ["raw", "customers"]}, {"path": ["raw", "orders"]}],
    }
    assert {t["key"]: t["value"] for t in params["executionMetadata"]["tags"]} == _run_tags(2)
    logged = _logged(caplog, capsys)
    assert f"{fake_dagster.url}/runs/run-1" in logged
    assert all(h.get("Dagster-Cloud-Api-Token") == TOKEN for h in fake_dagster.headers)
    assert TOKEN not in logged


def test_one_run_per_code_location(fake_dagster: FakeDagster) -> None:
    fake_dagster.add_asset(["a"], dag_id=DAG_ID, task_id=TASK_ID, location="loc_one")
    fake_dagster.add_asset(["b"], dag_id=DAG_ID, task_id=TASK_ID, location="loc_two")
    assert _operator().execute(_context()) == ["run-1", "run-2"]
    assert [p["selector"]["repositoryLocationName"] for p in fake_dagster.launched] == ["loc_one", "loc_two"]
    assert [p["selector"]["assetSelection"] for p in fake_dagster.launched] == [[{"path": ["a"]}], [{"path": ["b"]}]]


def test_failed_run_fails_the_task_with_link_and_error(
    fake_dagster: FakeDagster, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_dagster.add_asset(["a"], dag_id=DAG_ID, task_id=TASK_ID)
    fake_dagster.status_script = ["QUEUED", "STARTED", "FAILURE"]
    with caplog.at_level(logging.INFO), pytest.raises(DagsterRunFailedError) as raised:
        _operator().execute(_context())
    message = str(raised.value)
    assert f"Dagster run FAILURE: {fake_dagster.url}/runs/run-1" in message
    assert "rebuild.customers.load_raw" in message
    assert "step customers: duckdb.CatalogException: table missing" in message
    assert isinstance(raised.value, AirliftAirflowError)
    assert f"{fake_dagster.url}/runs/run-1" in _logged(caplog, capsys)


def test_canceled_run_fails_the_task(fake_dagster: FakeDagster) -> None:
    fake_dagster.add_asset(["a"], dag_id=DAG_ID, task_id=TASK_ID)
    fake_dagster.status_script = ["CANCELING", "CANCELED"]
    with pytest.raises(DagsterRunFailedError, match=rf"Dagster run CANCELED: {fake_dagster.url}/runs/run-1"):
        _operator().execute(_context())


def test_run_timeout_fails_and_says_the_run_goes_on(fake_dagster: FakeDagster) -> None:
    fake_dagster.add_asset(["a"], dag_id=DAG_ID, task_id=TASK_ID)
    fake_dagster.status_script = ["STARTED"]
    with pytest.raises(DagsterRunFailedError, match=r"STARTED(.|\n)*run_timeout(.|\n)*goes on"):
        _operator(run_timeout=0.05).execute(_context())


def test_no_assets_is_a_clear_error(fake_dagster: FakeDagster) -> None:
    fake_dagster.add_asset(["a"], dag_id=DAG_ID, task_id="some_other_task")
    with pytest.raises(DagsterApiError, match=rf"no Dagster assets are tagged for Airflow task {DAG_ID}.{TASK_ID} at {fake_dagster.url}"):
        _operator().execute(_context())
    assert fake_dagster.launched == []


def test_spec_only_assets_cannot_be_migrated(fake_dagster: FakeDagster) -> None:
    fake_dagster.add_asset(["a"], dag_id=DAG_ID, task_id=TASK_ID, executable=False)
    with pytest.raises(DagsterApiError, match="not executable"):
        _operator().execute(_context())


def test_retry_reattaches_to_the_run_in_flight(fake_dagster: FakeDagster) -> None:
    fake_dagster.add_asset(["a"], dag_id=DAG_ID, task_id=TASK_ID)
    # try 1 launched run-0, then its worker died; the Dagster run goes on
    fake_dagster.add_run("run-0", status="STARTED", tags=_run_tags(1))
    fake_dagster.runs["run-0"]["script"] = ["STARTED", "STARTED", "SUCCESS"]
    assert _operator(retries=2).execute(_context(try_number=2, max_tries=2)) == ["run-0"]
    assert fake_dagster.launched == [], "no duplicate run"


def test_retry_reuses_a_run_that_already_succeeded(fake_dagster: FakeDagster) -> None:
    fake_dagster.add_asset(["a"], dag_id=DAG_ID, task_id=TASK_ID)
    fake_dagster.add_run("run-0", status="SUCCESS", tags=_run_tags(1))
    assert _operator(retries=2).execute(_context(try_number=2, max_tries=2)) == ["run-0"]
    assert fake_dagster.launched == []


def test_retry_after_a_failed_run_launches_a_new_one(fake_dagster: FakeDagster) -> None:
    fake_dagster.add_asset(["a"], dag_id=DAG_ID, task_id=TASK_ID)
    fake_dagster.add_run("run-0", status="FAILURE", tags=_run_tags(1))
    assert _operator(retries=2).execute(_context(try_number=2, max_tries=2)) == ["run-1"]
    assert {t["key"]: t["value"] for t in fake_dagster.launched[0]["executionMetadata"]["tags"]} == _run_tags(2)


def test_partly_failed_earlier_try_is_run_again_in_full(fake_dagster: FakeDagster) -> None:
    fake_dagster.add_asset(["a"], dag_id=DAG_ID, task_id=TASK_ID, location="loc_one")
    fake_dagster.add_asset(["b"], dag_id=DAG_ID, task_id=TASK_ID, location="loc_two")
    fake_dagster.add_run("run-0a", status="SUCCESS", tags=_run_tags(1))
    fake_dagster.add_run("run-0b", status="FAILURE", tags=_run_tags(1))
    assert _operator(retries=1).execute(_context(try_number=2, max_tries=1)) == ["run-1", "run-2"]


def test_cleared_task_runs_again(fake_dagster: FakeDagster) -> None:
    """After a clear (Airflow sets max_tries = try_number + retries), earlier successes are not reused."""
    fake_dagster.add_asset(["a"], dag_id=DAG_ID, task_id=TASK_ID)
    fake_dagster.add_run("run-0", status="SUCCESS", tags=_run_tags(1))
    # try 1 succeeded, then the user cleared the task: max_tries = 1 + 2, the next try is 2
    assert _operator(retries=2).execute(_context(try_number=2, max_tries=3)) == ["run-1"]


def test_runs_of_other_airflow_runs_are_ignored(fake_dagster: FakeDagster) -> None:
    fake_dagster.add_asset(["a"], dag_id=DAG_ID, task_id=TASK_ID)
    fake_dagster.add_run("other", status="STARTED", tags={**_run_tags(1), "airlift/airflow_run_id": "scheduled__x"})
    assert _operator().execute(_context()) == ["run-1"]


def test_unreachable_dagster_retries_then_fails(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AIRFLOW_CONN_DAGSTER_DEFAULT", json.dumps({"conn_type": "http", "host": "127.0.0.1",
                                                                   "port": int(url.rsplit(":", 1)[1]), "password": TOKEN}))
    operator = _operator(request_attempts=3, request_backoff=0.01, request_timeout=2)
    with caplog.at_level(logging.INFO), pytest.raises(DagsterUnreachableError) as raised:
        operator.execute(_context())
    assert f"cannot reach Dagster's GraphQL API at {url}/graphql after 3 attempts" in str(raised.value)
    assert "retry 2/2" in caplog.text
    assert TOKEN not in str(raised.value) + _logged(caplog, capsys)


def test_backoff_is_bounded_and_injectable() -> None:
    sleeps: list[float] = []
    client = DagsterGraphQLClient(f"http://127.0.0.1:{free_port()}", max_attempts=4, sleep=sleeps.append, timeout=2)
    with pytest.raises(DagsterUnreachableError):
        client.assets_for_task(dag_id="d", task_id="t")
    assert sleeps == [1.0, 2.0, 4.0]


def test_5xx_is_retried(fake_dagster: FakeDagster) -> None:
    fake_dagster.add_asset(["a"], dag_id="d", task_id="t")
    fake_dagster.fail_http = 2
    client = DagsterGraphQLClient(fake_dagster.url, sleep=lambda s: None)
    assert [a.path for a in client.assets_for_task(dag_id="d", task_id="t")] == [("a",)]
    assert len(fake_dagster.headers) == 3


def test_persistent_5xx_is_unreachable(fake_dagster: FakeDagster) -> None:
    fake_dagster.fail_http = 10
    client = DagsterGraphQLClient(fake_dagster.url, max_attempts=2, sleep=lambda s: None)
    with pytest.raises(DagsterUnreachableError, match=r"after 2 attempts \(HTTP 503\)"):
        client.assets_for_task(dag_id="d", task_id="t")


def test_url_and_token_from_connection_or_env(monkeypatch: pytest.MonkeyPatch, fake_dagster: FakeDagster) -> None:
    assert _operator().get_dagster_client().url == fake_dagster.url
    monkeypatch.setenv("AIRFLOW_CONN_DAGSTER_DEFAULT", json.dumps({"conn_type": "http", "host": "dagster.example.com",
                                                                   "schema": "prod", "extra": {"api_token": TOKEN}}))
    assert _operator().get_dagster_client().url == "http://dagster.example.com/prod"
    monkeypatch.setenv("AIRFLOW_CONN_MY_DAGSTER", "https://plus.dagster.cloud")
    assert _operator(dagster_conn_id="my_dagster").get_dagster_client().url == "https://plus.dagster.cloud"
    monkeypatch.delenv("AIRFLOW_CONN_DAGSTER_DEFAULT")
    monkeypatch.setenv("AIRLIFT_DAGSTER_URL", fake_dagster.url)
    monkeypatch.setenv("AIRLIFT_DAGSTER_API_TOKEN", TOKEN)
    fake_dagster.add_asset(["a"], dag_id=DAG_ID, task_id=TASK_ID)
    assert _operator().execute(_context()) == ["run-1"]
    assert fake_dagster.headers[-1].get("Dagster-Cloud-Api-Token") == TOKEN
    monkeypatch.delenv("AIRLIFT_DAGSTER_URL")
    with pytest.raises(DagsterApiError, match="no Dagster URL.*AIRFLOW_CONN_DAGSTER_DEFAULT"):
        _operator().get_dagster_client()
    assert TOKEN not in repr(DagsterGraphQLClient("http://x", api_token=TOKEN))


def test_not_dagster_is_a_clear_error() -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Html(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"<html>login</html>")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Html)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = DagsterGraphQLClient(f"http://127.0.0.1:{server.server_address[1]}", sleep=lambda s: None)
        with pytest.raises(DagsterApiError, match="not JSON"):
            client.assets_for_task(dag_id="d", task_id="t")
    finally:
        server.shutdown()
        server.server_close()
