from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import FakeDagster  # type: ignore[import-not-found]

from airlift_airflow import (
    DagsterApiError,
    DagsterOperator,
    DagsterRunFailedError,
    DagsterUnreachableError,
)
from airlift_airflow.dagster_api import DagsterGraphQLClient
from airlift_testing.procs import free_port


def _context(try_number: int = 1) -> dict[str, Any]:
    ti = SimpleNamespace(dag_id="rebuild.customers", task_id="load_raw", try_number=try_number, map_index=-1)
    return {"ti": ti, "run_id": "manual__2026-01-01T00:00:00+00:00"}


def _operator(**kwargs: Any) -> DagsterOperator:
    return DagsterOperator(task_id="load_raw", poll_interval=0.01, **kwargs)


def test_launches_one_run_of_the_tagged_assets_with_airflow_tags(
    fake_dagster: FakeDagster, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_dagster.add_asset(["raw", "customers"], dag_id="rebuild.customers", task_id="load_raw")
    fake_dagster.add_asset(["raw", "orders"], dag_id="rebuild.customers", task_id="load_raw")
    fake_dagster.add_asset(["other"], dag_id="rebuild.customers", task_id="another_task")
    with caplog.at_level(logging.INFO):
        run_ids = _operator().execute(_context(try_number=2))
    assert run_ids == ["run-1"]
    params = fake_dagster.launched[0]
    assert params["selector"]["jobName"] == "__ASSET_JOB"
    assert params["selector"]["assetSelection"] == [{"path": ["raw", "customers"]}, {"path": ["raw", "orders"]}]
    tags = {t["key"]: t["value"] for t in params["executionMetadata"]["tags"]}
    assert tags == {
        "airlift/airflow_dag_id": "rebuild.customers", "airlift/airflow_task_id": "load_raw",
        "airlift/airflow_run_id": "manual__2026-01-01T00:00:00+00:00", "airlift/airflow_try_number": "2",
    }
    logged = caplog.text + capsys.readouterr().out  # Airflow 3 logs through structlog to stdout
    assert f"{fake_dagster.url}/runs/run-1" in logged
    assert all(h.get("Dagster-Cloud-Api-Token") == "dagster-token-SENTINEL" for h in fake_dagster.headers)
    assert "dagster-token-SENTINEL" not in logged


def test_one_run_per_code_location(fake_dagster: FakeDagster) -> None:
    fake_dagster.add_asset(["a"], dag_id="rebuild.customers", task_id="load_raw", location="loc_one")
    fake_dagster.add_asset(["b"], dag_id="rebuild.customers", task_id="load_raw", location="loc_two")
    assert _operator().execute(_context()) == ["run-1", "run-2"]
    assert {p["selector"]["repositoryLocationName"] for p in fake_dagster.launched} == {"loc_one", "loc_two"}


def test_failed_run_fails_the_task_with_link_and_error(fake_dagster: FakeDagster) -> None:
    fake_dagster.add_asset(["a"], dag_id="rebuild.customers", task_id="load_raw")
    fake_dagster.status_script = ["STARTED", "FAILURE"]
    with pytest.raises(DagsterRunFailedError, match=r"FAILURE: http://127.0.0.1:\d+/runs/run-1(.|\n)*table missing"):
        _operator().execute(_context())


def test_canceled_run_fails_the_task(fake_dagster: FakeDagster) -> None:
    fake_dagster.add_asset(["a"], dag_id="rebuild.customers", task_id="load_raw")
    fake_dagster.status_script = ["CANCELED"]
    with pytest.raises(DagsterRunFailedError, match="CANCELED"):
        _operator().execute(_context())


def test_no_assets_is_a_clear_error(fake_dagster: FakeDagster) -> None:
    with pytest.raises(DagsterApiError, match=r"no Dagster assets are tagged for Airflow task rebuild.customers.load_raw at http://127"):
        _operator().execute(_context())


def test_spec_only_assets_cannot_be_migrated(fake_dagster: FakeDagster) -> None:
    fake_dagster.add_asset(["a"], dag_id="rebuild.customers", task_id="load_raw", executable=False)
    with pytest.raises(DagsterApiError, match="not executable"):
        _operator().execute(_context())


def test_retry_reattaches_to_the_run_in_flight(fake_dagster: FakeDagster) -> None:
    fake_dagster.add_asset(["a"], dag_id="rebuild.customers", task_id="load_raw")
    fake_dagster.status_script = ["STARTED", "STARTED", "STARTED", "SUCCESS"]
    operator = _operator()
    # the first try's worker died after launching: simulate by launching without waiting
    client = operator.get_dagster_client()
    client.launch_run(location="loc", repository="__repository__", asset_paths=[("a",)],
                      tags={"airlift/airflow_dag_id": "rebuild.customers", "airlift/airflow_task_id": "load_raw",
                            "airlift/airflow_run_id": "manual__2026-01-01T00:00:00+00:00", "airlift/airflow_try_number": "1"})
    assert operator.execute(_context(try_number=2)) == ["run-1"]
    assert len(fake_dagster.launched) == 1, "no duplicate run"
    # once that run is finished, a new try launches a new run
    assert operator.execute(_context(try_number=3)) == ["run-2"]


def test_unreachable_dagster_retries_then_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps: list[float] = []
    url = f"http://127.0.0.1:{free_port()}"
    client = DagsterGraphQLClient(url, max_attempts=3, sleep=sleeps.append, timeout=2)
    with pytest.raises(DagsterUnreachableError, match=f"cannot reach Dagster's GraphQL API at {url}/graphql after 3 attempts"):
        client.assets_for_task("d", "t")
    assert sleeps == [1.0, 2.0]


def test_5xx_is_retried(fake_dagster: FakeDagster) -> None:
    fake_dagster.add_asset(["a"], dag_id="d", task_id="t")
    fake_dagster.fail_http = 2
    client = DagsterGraphQLClient(fake_dagster.url, sleep=lambda s: None)
    assert [a.path for a in client.assets_for_task("d", "t")] == [("a",)]


def test_url_from_env_when_no_connection(monkeypatch: pytest.MonkeyPatch, fake_dagster: FakeDagster) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_DAGSTER_DEFAULT")
    monkeypatch.setenv("AIRLIFT_DAGSTER_URL", fake_dagster.url)
    assert _operator().get_dagster_client().url == fake_dagster.url
    monkeypatch.delenv("AIRLIFT_DAGSTER_URL")
    with pytest.raises(DagsterApiError, match="no Dagster URL.*AIRFLOW_CONN_DAGSTER_DEFAULT"):
        _operator().get_dagster_client()
    assert "SENTINEL" not in repr(DagsterGraphQLClient("http://x", api_token="SENTINEL"))
