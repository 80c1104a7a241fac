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
from airlift_airflow.hook import DagsterHook
from airlift_protocol import RetryPolicy
from airlift_testing.procs import free_port

DAG_ID, TASK_ID, RUN_ID = "rebuild.customers", "load_raw", "manual__2026-01-01T00:00:00+00:00"
TOKEN = "dagster-token-SENTINEL"


@pytest.fixture(autouse=True)
def _peered(request: pytest.FixtureRequest) -> None:
    """Dagster peers this Airflow as ``airflow``: it has the DAG asset ``airflow/dag/<DAG_ID>``."""
    if "fake_dagster" in request.fixturenames:
        request.getfixturevalue("fake_dagster").dag_assets.add(("airflow", "dag", DAG_ID))


def _context(try_number: int = 1, max_tries: int | None = None, map_index: int = -1, **extra: Any) -> dict[str, Any]:
    ti = SimpleNamespace(dag_id=DAG_ID, task_id=TASK_ID, try_number=try_number, map_index=map_index,
                         max_tries=max_tries if max_tries is not None else 0)
    return {"ti": ti, "run_id": RUN_ID, **extra}


def _operator(**kwargs: Any) -> DagsterOperator:
    kwargs.setdefault("request_backoff", 0.001)
    kwargs.setdefault("poll_interval", 0.01)
    return DagsterOperator(task_id=TASK_ID, **kwargs)


def _run_tags(try_number: int, location: str = "loc", max_tries: int | None = None) -> dict[str, str]:
    tags = {"airlift/airflow_dag_id": DAG_ID, "airlift/airflow_task_id": TASK_ID,
            "airlift/airflow_run_id": RUN_ID, "airlift/airflow_try_number": str(try_number),
            "airlift/airflow_instance": "airflow", "airlift/airflow_map_index": "-1",
            "airlift/dagster_code_location": location}
    if max_tries is not None:
        tags["airlift/airflow_max_tries"] = str(max_tries)
    return tags


def _hook(url: str, **retry: Any) -> DagsterHook:
    """A hook whose waits pass on a virtual clock (no real sleeping)."""
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    return DagsterHook(url=url, timeout=2, retry=RetryPolicy(sleep=sleep, clock=lambda: now[0], **retry))


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
    assert {t["key"]: t["value"] for t in params["executionMetadata"]["tags"]} == _run_tags(2, max_tries=3)
    logged = _logged(caplog, capsys)
    assert f"{fake_dagster.url}/runs/run-1" in logged
    assert all(h.get("Dagster-Cloud-Api-Token") == TOKEN for h in fake_dagster.headers)
    assert TOKEN not in logged


def test_the_run_executes_the_assets_own_checks_and_leaves_airlifts_to_the_sensor(fake_dagster: FakeDagster) -> None:
    fake_dagster.add_asset(["raw", "customers"], dag_id=DAG_ID, task_id=TASK_ID,
                           checks=["airflow_task_succeeded", "airflow_partition_key", "not_null"])
    fake_dagster.add_asset(["raw", "orders"], dag_id=DAG_ID, task_id=TASK_ID, checks=["airflow_task_succeeded"])
    _operator().execute(_context())
    assert fake_dagster.launched[0]["selector"]["assetCheckSelection"] == [{"assetKey": {"path": ["raw", "customers"]}, "name": "not_null"}]


def test_unknown_checks_leave_the_selection_to_dagster(fake_dagster: FakeDagster) -> None:
    fake_dagster.add_asset(["raw", "customers"], dag_id=DAG_ID, task_id=TASK_ID, checks=["airflow_task_succeeded"])
    fake_dagster.add_asset(["raw", "orders"], dag_id=DAG_ID, task_id=TASK_ID)  # (checks not listed)
    _operator().execute(_context())
    assert "assetCheckSelection" not in fake_dagster.launched[0]["selector"]


def test_instance_name_and_map_index_are_in_the_identity(fake_dagster: FakeDagster, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_dagster.add_asset(["a"], dag_id=DAG_ID, task_id=TASK_ID)
    fake_dagster.dag_assets |= {("prod", "dag", DAG_ID), ("east", "dag", DAG_ID)}
    monkeypatch.setenv("AIRLIFT_AIRFLOW_INSTANCE_NAME", "prod")
    _operator().execute(_context(map_index=3))
    tags = {t["key"]: t["value"] for t in fake_dagster.launched[0]["executionMetadata"]["tags"]}
    assert tags["airlift/airflow_instance"] == "prod" and tags["airlift/airflow_map_index"] == "3"
    _operator(airflow_instance_name="east").execute(_context(map_index=3))
    tags = {t["key"]: t["value"] for t in fake_dagster.launched[1]["executionMetadata"]["tags"]}
    assert tags["airlift/airflow_instance"] == "east"


def test_instance_name_is_learned_from_the_dag_asset(
    fake_dagster: FakeDagster, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Nothing set on the Airflow side: the one DAG asset ``<name>/dag/<dag_id>`` names the instance."""
    monkeypatch.delenv("AIRLIFT_AIRFLOW_INSTANCE_NAME", raising=False)
    monkeypatch.delenv("AIRFLOW__AIRLIFT__INSTANCE_NAME", raising=False)
    fake_dagster.dag_assets = {("airflow_instance_one", "dag", DAG_ID), ("other_instance", "dag", "another_dag")}
    fake_dagster.add_asset(["a"], dag_id=DAG_ID, task_id=TASK_ID)
    with caplog.at_level(logging.INFO):
        _operator().execute(_context(max_tries=2))
    tags = {t["key"]: t["value"] for t in fake_dagster.launched[0]["executionMetadata"]["tags"]}
    assert tags["airlift/airflow_instance"] == "airflow_instance_one" and tags["airlift/airflow_max_tries"] == "2"
    assert f"Airflow instance name 'airflow_instance_one' learned from Dagster at {fake_dagster.url}" in _logged(caplog, capsys)


def test_instance_name_that_dagster_does_not_know_is_a_clear_error(
    fake_dagster: FakeDagster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIRLIFT_AIRFLOW_INSTANCE_NAME", raising=False)
    monkeypatch.delenv("AIRFLOW__AIRLIFT__INSTANCE_NAME", raising=False)
    fake_dagster.add_asset(["a"], dag_id=DAG_ID, task_id=TASK_ID)
    fake_dagster.dag_assets.add(("staging", "dag", DAG_ID))
    # nothing configured and two instances peer this DAG: the error names both and the setting
    with pytest.raises(DagsterApiError, match=r"\['airflow', 'staging'\]: set the one this Airflow is \(airflow_instance_name="):
        _operator().execute(_context())
    # configured, but Dagster peers this Airflow under other names
    with pytest.raises(DagsterApiError, match=r"'prod' is configured .*AIRLIFT_AIRFLOW_INSTANCE_NAME.*instance name\(s\) \['airflow', 'staging'\]"):
        _operator(airflow_instance_name="prod").execute(_context())
    # nothing peers this DAG
    fake_dagster.dag_assets.clear()
    with pytest.raises(DagsterApiError, match=rf"no DAG asset <instance>/dag/{DAG_ID}: peer this Airflow instance"):
        _operator().execute(_context())
    assert fake_dagster.launched == []


def test_dag_assets_are_read_once_per_ttl_and_again_on_a_miss(fake_dagster: FakeDagster) -> None:
    from airlift_airflow.dagster_api import resolve_instance_name

    client = DagsterGraphQLClient(fake_dagster.url)
    assert [resolve_instance_name(client, DAG_ID) for _ in range(3)] == ["airflow"] * 3
    assert fake_dagster.operations.count("AirliftDagAssets") == 1
    fake_dagster.dag_assets.add(("new", "dag", "new_dag"))  # a code location loaded since
    assert resolve_instance_name(client, "new_dag") == "new"
    assert fake_dagster.operations.count("AirliftDagAssets") == 2


def test_one_run_per_code_location(fake_dagster: FakeDagster) -> None:
    fake_dagster.add_asset(["a"], dag_id=DAG_ID, task_id=TASK_ID, location="loc_one")
    fake_dagster.add_asset(["b"], dag_id=DAG_ID, task_id=TASK_ID, location="loc_two")
    assert _operator().execute(_context()) == ["run-1", "run-2"]
    assert [p["selector"]["repositoryLocationName"] for p in fake_dagster.launched] == ["loc_one", "loc_two"]
    assert [p["selector"]["assetSelection"] for p in fake_dagster.launched] == [[{"path": ["a"]}], [{"path": ["b"]}]]


def test_params_and_conf_reach_the_run_as_config_of_the_assets_that_declare_it_and_as_tags(
    fake_dagster: FakeDagster,
) -> None:
    """``params`` overridden by ``dag_run.conf``: each asset with a Config gets the fields it declares."""
    fake_dagster.add_asset(["orders"], dag_id=DAG_ID, task_id=TASK_ID, op_name="orders", config_fields=["region", "limit"])
    fake_dagster.add_asset(["plain"], dag_id=DAG_ID, task_id=TASK_ID)
    fake_dagster.add_asset(["audit"], dag_id=DAG_ID, task_id=TASK_ID, config_fields=["reviewer"])  # none of its fields given
    context = _context(params={"region": "eu", "limit": 10, "dry": False},
                       dag_run=SimpleNamespace(conf={"limit": 5, "note": "x" * 500}))
    _operator().execute(context)
    launched = fake_dagster.launched[0]
    assert launched["runConfigData"] == {"ops": {"orders": {"config": {"region": "eu", "limit": 5}}}}
    tags = {t["key"]: t["value"] for t in launched["executionMetadata"]["tags"]}
    assert {k: v for k, v in tags.items() if k.startswith("airlift/airflow_param.")} == {
        "airlift/airflow_param.region": "eu", "airlift/airflow_param.limit": "5", "airlift/airflow_param.dry": "false",
    }  # the 500-character note is over the tag limit: run config only (no asset declares it here)
    assert {k: v for k, v in tags.items() if not k.startswith("airlift/airflow_param.")} == _run_tags(1, max_tries=0)


def test_pass_params_false_passes_neither_config_nor_tags(fake_dagster: FakeDagster) -> None:
    fake_dagster.add_asset(["orders"], dag_id=DAG_ID, task_id=TASK_ID, config_fields=["region"])
    _operator(pass_params=False).execute(_context(params={"region": "eu"}, dag_run=SimpleNamespace(conf={"region": "us"})))
    launched = fake_dagster.launched[0]
    assert launched["runConfigData"] == {}
    assert not any(t["key"].startswith("airlift/airflow_param.") for t in launched["executionMetadata"]["tags"])


def test_own_assets_by_key_read_only_those_nodes(fake_dagster: FakeDagster) -> None:
    fake_dagster.add_asset(["a"], dag_id=DAG_ID, task_id=TASK_ID)
    for i in range(50):
        fake_dagster.add_asset([f"x{i}"], dag_id="other", task_id="t")
    assert _operator(asset_keys=[["a"]]).execute(_context()) == ["run-1"]
    assert "AirliftAssetsByTag" not in fake_dagster.operations
    # an explicit list needs no Airlift tags on the assets (here: tagged with another task, and untagged)
    fake_dagster.add_asset(["untagged"], dag_id=DAG_ID, task_id=None)
    fake_dagster.assets[-1]["tags"] = []
    assert _operator(asset_keys=[["x1"], ["untagged"]]).execute(_context(map_index=5)) == ["run-2"]
    assert fake_dagster.launched[-1]["selector"]["assetSelection"] == [{"path": ["x1"]}, {"path": ["untagged"]}]
    with pytest.raises(DagsterApiError, match=r"has no asset\(s\) \['nope'\]"):
        _operator(asset_keys=[["nope"]]).execute(_context())


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


# -- one run per task try and code location ------------------------------------------------------


def test_launch_answered_late_is_found_by_its_tags_not_launched_again(
    fake_dagster: FakeDagster, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_dagster.add_asset(["a"], dag_id=DAG_ID, task_id=TASK_ID)
    fake_dagster.slow_launches, fake_dagster.slow_seconds = 1, 1.5
    with caplog.at_level(logging.INFO):
        assert _operator(request_timeout=0.5).execute(_context()) == ["run-1"]
    assert len(fake_dagster.launched) == 1, "the timed-out launch is not sent again"
    logged = _logged(caplog, capsys)
    assert "looking the run up by its tags" in logged and "Dagster had created the run" in logged


def test_launch_answered_5xx_after_creating_the_run_is_found(fake_dagster: FakeDagster) -> None:
    fake_dagster.add_asset(["a"], dag_id=DAG_ID, task_id=TASK_ID)
    fake_dagster.failed_launches_after_create = 1
    assert _operator().execute(_context()) == ["run-1"]
    assert fake_dagster.operations.count("AirliftLaunch") == 1


def _first_launch_lost(hook: DagsterHook, *, sent: bool) -> list[dict[str, Any]]:
    """The hook's first launch gets no answer (``sent``: after the request left); later ones go through."""
    from airlift_airflow import DagsterLaunchUnknownError

    real = hook.get_conn().launch_run
    calls: list[dict[str, Any]] = []

    def lost(**kwargs: Any) -> str:
        calls.append(kwargs)
        if len(calls) == 1:
            raise DagsterLaunchUnknownError("launching a run got no answer", sent=sent)
        return real(**kwargs)

    hook.get_conn().launch_run = lost  # type: ignore[method-assign]
    return calls


def test_launch_that_never_reached_dagster_is_sent_again(fake_dagster: FakeDagster) -> None:
    fake_dagster.add_asset(["a"], dag_id=DAG_ID, task_id=TASK_ID)
    hook = _hook(fake_dagster.url)
    calls = _first_launch_lost(hook, sent=False)
    run_id = hook.launch(location="loc", repository="__repository__", asset_paths=[("a",)], tags=_run_tags(1))
    assert run_id == "run-1" and len(calls) == 2 and len(fake_dagster.launched) == 1
    assert "AirliftRuns" not in fake_dagster.operations, "a request that never left needs no lookup"


def test_launch_lost_after_it_left_is_looked_up_for_the_window_then_sent_again(
    fake_dagster: FakeDagster, caplog: pytest.LogCaptureFixture
) -> None:
    fake_dagster.add_asset(["a"], dag_id=DAG_ID, task_id=TASK_ID)
    hook = _hook(fake_dagster.url)
    _first_launch_lost(hook, sent=True)
    with caplog.at_level(logging.INFO):
        run_id = hook.launch(location="loc", repository="__repository__", asset_paths=[("a",)], tags=_run_tags(1),
                             lookup_for=30.0)
    assert run_id == "run-1" and len(fake_dagster.launched) == 1
    assert fake_dagster.operations.count("AirliftRuns") >= 30 / 2.0, "looked up every 2 s for 30 s"
    assert "looking the run up by its tags (up to 30s)" in caplog.text
    assert "No Dagster run with this try's tags appeared within 30s; launching again" in caplog.text


def test_retry_reattaches_to_the_run_in_flight(fake_dagster: FakeDagster) -> None:
    fake_dagster.add_asset(["a"], dag_id=DAG_ID, task_id=TASK_ID)
    # try 1 launched run-0, then its worker died; the Dagster run goes on
    fake_dagster.add_run("run-0", status="STARTED", tags=_run_tags(1, max_tries=2))
    fake_dagster.runs["run-0"]["script"] = ["STARTED", "STARTED", "SUCCESS"]
    assert _operator(retries=2).execute(_context(try_number=2, max_tries=2)) == ["run-0"]
    assert fake_dagster.launched == [], "no duplicate run"


def test_lowering_retries_between_tries_does_not_launch_a_duplicate(fake_dagster: FakeDagster) -> None:
    """The DAG file's retries went from 2 to 0 while try 1's run went on: the attempt tag, not the
    current retries, says the run belongs to this attempt."""
    fake_dagster.add_asset(["a"], dag_id=DAG_ID, task_id=TASK_ID)
    fake_dagster.add_run("run-0", status="STARTED", tags=_run_tags(1, max_tries=2))
    fake_dagster.runs["run-0"]["script"] = ["STARTED", "SUCCESS"]
    assert _operator(retries=0).execute(_context(try_number=2, max_tries=2)) == ["run-0"]
    assert fake_dagster.launched == []


def test_an_earlier_try_retried_by_dagster_is_followed(fake_dagster: FakeDagster) -> None:
    """Try 1's run failed and Dagster retried it (the retry copies the tags): try 2 waits on the retry."""
    fake_dagster.add_asset(["a"], dag_id=DAG_ID, task_id=TASK_ID)
    fake_dagster.add_run("run-0", status="FAILURE", tags={**_run_tags(1, max_tries=2), "dagster/will_retry": "true",
                                                         "dagster/auto_retry_run_id": "run-0r"})
    fake_dagster.add_run("run-0r", status="STARTED", tags={**_run_tags(1, max_tries=2), "dagster/parent_run_id": "run-0",
                                                          "dagster/root_run_id": "run-0"})
    fake_dagster.runs["run-0r"]["script"] = ["STARTED", "SUCCESS"]
    assert _operator(retries=2).execute(_context(try_number=2, max_tries=2)) == ["run-0r"]
    assert fake_dagster.launched == []


def test_an_earlier_try_without_the_attempt_tag_is_not_reused(fake_dagster: FakeDagster) -> None:
    """A run tagged without max_tries (an older operator) counts only for its own try."""
    fake_dagster.add_asset(["a"], dag_id=DAG_ID, task_id=TASK_ID)
    fake_dagster.add_run("run-0", status="SUCCESS", tags=_run_tags(1))
    assert _operator(retries=2).execute(_context(try_number=2, max_tries=2)) == ["run-1"]


def test_retry_reuses_a_run_that_already_succeeded(fake_dagster: FakeDagster) -> None:
    fake_dagster.add_asset(["a"], dag_id=DAG_ID, task_id=TASK_ID)
    fake_dagster.add_run("run-0", status="SUCCESS", tags=_run_tags(1, max_tries=2))
    assert _operator(retries=2).execute(_context(try_number=2, max_tries=2)) == ["run-0"]
    assert fake_dagster.launched == []


def test_same_try_never_launches_twice(fake_dagster: FakeDagster) -> None:
    """The same try running again (a lost worker, the scheduler re-queued it) uses its own run, even failed."""
    fake_dagster.add_asset(["a"], dag_id=DAG_ID, task_id=TASK_ID)
    fake_dagster.add_run("run-0", status="FAILURE", tags=_run_tags(2))
    with pytest.raises(DagsterRunFailedError, match="run-0"):
        _operator(retries=2).execute(_context(try_number=2, max_tries=2))
    assert fake_dagster.launched == []


def test_retry_after_a_failed_run_launches_a_new_one(fake_dagster: FakeDagster) -> None:
    fake_dagster.add_asset(["a"], dag_id=DAG_ID, task_id=TASK_ID)
    fake_dagster.add_run("run-0", status="FAILURE", tags=_run_tags(1))
    assert _operator(retries=2).execute(_context(try_number=2, max_tries=2)) == ["run-1"]
    assert {t["key"]: t["value"] for t in fake_dagster.launched[0]["executionMetadata"]["tags"]} == _run_tags(2, max_tries=2)


def test_retry_completes_only_the_failed_code_location(fake_dagster: FakeDagster) -> None:
    fake_dagster.add_asset(["a"], dag_id=DAG_ID, task_id=TASK_ID, location="loc_one")
    fake_dagster.add_asset(["b"], dag_id=DAG_ID, task_id=TASK_ID, location="loc_two")
    fake_dagster.add_run("run-0a", status="SUCCESS", tags=_run_tags(1, "loc_one", max_tries=1))
    fake_dagster.add_run("run-0b", status="FAILURE", tags=_run_tags(1, "loc_two", max_tries=1))
    assert _operator(retries=1).execute(_context(try_number=2, max_tries=1)) == ["run-0a", "run-1"]
    assert [p["selector"]["repositoryLocationName"] for p in fake_dagster.launched] == ["loc_two"]


def test_retry_launches_a_location_whose_launch_never_happened(fake_dagster: FakeDagster) -> None:
    fake_dagster.add_asset(["a"], dag_id=DAG_ID, task_id=TASK_ID, location="loc_one")
    fake_dagster.add_asset(["b"], dag_id=DAG_ID, task_id=TASK_ID, location="loc_two")
    fake_dagster.add_run("run-0a", status="SUCCESS", tags=_run_tags(1, "loc_one", max_tries=1))
    assert _operator(retries=1).execute(_context(try_number=2, max_tries=1)) == ["run-0a", "run-1"]
    assert [p["selector"]["repositoryLocationName"] for p in fake_dagster.launched] == ["loc_two"]


def test_cleared_task_runs_again(fake_dagster: FakeDagster) -> None:
    """After a clear (Airflow sets max_tries = try_number + retries), earlier runs are not reused."""
    fake_dagster.add_asset(["a"], dag_id=DAG_ID, task_id=TASK_ID)
    fake_dagster.add_run("run-0", status="SUCCESS", tags=_run_tags(1, max_tries=2))
    fake_dagster.add_run("run-00", status="STARTED", tags=_run_tags(1, max_tries=2))
    # try 1 succeeded, then the user cleared the task: max_tries = 1 + 2, the next try is 2
    assert _operator(retries=2).execute(_context(try_number=2, max_tries=3)) == ["run-1"]


def test_runs_of_other_airflow_runs_are_ignored(fake_dagster: FakeDagster) -> None:
    fake_dagster.add_asset(["a"], dag_id=DAG_ID, task_id=TASK_ID)
    fake_dagster.add_run("other", status="STARTED", tags={**_run_tags(1), "airlift/airflow_run_id": "scheduled__x"})
    assert _operator().execute(_context()) == ["run-1"]


# -- on_kill ----------------------------------------------------------------------------------------


def test_on_kill_terminates_the_runs_and_says_so(
    fake_dagster: FakeDagster, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_dagster.add_asset(["a"], dag_id=DAG_ID, task_id=TASK_ID)
    fake_dagster.status_script = ["STARTED"]
    operator = _operator(run_timeout=0.05)
    with pytest.raises(DagsterRunFailedError):
        operator.execute(_context())
    with caplog.at_level(logging.INFO):
        operator.on_kill()
    assert fake_dagster.terminated == ["run-1"]
    assert f"terminate run run-1: {fake_dagster.url}/runs/run-1" in _logged(caplog, capsys)
    operator.on_kill()  # already canceled: nothing more to do
    assert fake_dagster.terminated == ["run-1"]
    _operator().on_kill()  # nothing launched: no request
    assert fake_dagster.operations.count("AirliftTerminate") == 1


# -- deferrable ---------------------------------------------------------------------------------------


def test_deferrable_defers_to_the_trigger_and_completes_the_same(
    fake_dagster: FakeDagster, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    from airlift_airflow import DagsterRunTrigger

    fake_dagster.add_asset(["a"], dag_id=DAG_ID, task_id=TASK_ID)
    operator = _operator(deferrable=True)
    with caplog.at_level(logging.INFO), pytest.raises(BaseException) as deferred:
        operator.execute(_context())
    assert type(deferred.value).__name__ == "TaskDeferred"
    trigger = deferred.value.trigger  # type: ignore[attr-defined]
    assert isinstance(trigger, DagsterRunTrigger) and trigger.run_ids == ["run-1"]
    _, kwargs = trigger.serialize()
    assert TOKEN not in json.dumps(kwargs)

    async def first_event() -> Any:
        async for event in DagsterRunTrigger(**kwargs).run():
            return event

    event = asyncio.run(first_event())
    assert event.payload == {"results": [["run-1", "SUCCESS", None]]}
    assert operator.execute_complete(_context(), event.payload) == ["run-1"]
    logged = _logged(caplog, capsys)
    assert "Deferring: the triggerer waits for Dagster run(s) run-1" in logged
    assert f"Dagster run run-1 succeeded: {fake_dagster.url}/runs/run-1" in logged


def test_deferred_failure_fails_like_waiting(fake_dagster: FakeDagster) -> None:
    fake_dagster.add_asset(["a"], dag_id=DAG_ID, task_id=TASK_ID)
    fake_dagster.add_run("run-0", status="FAILURE", tags=_run_tags(1))
    with pytest.raises(DagsterRunFailedError, match="step customers: duckdb.CatalogException"):
        _operator(deferrable=True).execute_complete(_context(), {"statuses": {"run-0": "FAILURE"}, "timed_out": False})
    with pytest.raises(DagsterApiError, match="cannot reach"):
        _operator(deferrable=True).execute_complete(_context(), {"error": "cannot reach Dagster"})


def test_trigger_reports_an_unreachable_dagster(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from airlift_airflow import DagsterRunTrigger

    monkeypatch.setenv("AIRFLOW_CONN_DAGSTER_DEFAULT", f"http://127.0.0.1:{free_port()}")

    async def first_event() -> Any:
        async for event in DagsterRunTrigger(run_ids=["r"], request_attempts=2, request_backoff=0.001,
                                             unreachable_grace=0.2, poll_interval=0.05).run():
            return event

    [[run_id, _, why]] = asyncio.run(first_event()).payload["results"]
    assert run_id == "r" and "unreachable for" in why and "cannot reach Dagster's GraphQL API" in why


# -- partitions ---------------------------------------------------------------------------------------

DAILY = {"type": "TIME_WINDOW", "fmt": "%Y-%m-%d", "description": "Daily, starting 2024-01-01 UTC."}


def test_daily_partition_key_from_the_data_interval(fake_dagster: FakeDagster) -> None:
    import pendulum  # what Airflow puts in the context

    fake_dagster.add_asset(["a"], dag_id=DAG_ID, task_id=TASK_ID, partitions=DAILY)
    start, end = pendulum.datetime(2024, 3, 5, tz="UTC"), pendulum.datetime(2024, 3, 6, tz="UTC")
    _operator().execute(_context(logical_date=start, data_interval_start=start, data_interval_end=end))
    tags = {t["key"]: t["value"] for t in fake_dagster.launched[0]["executionMetadata"]["tags"]}
    assert tags["dagster/partition"] == "2024-03-05"


def test_partitions_mismatch_and_missing_logical_date_are_clear_errors(fake_dagster: FakeDagster) -> None:
    fake_dagster.add_asset(["a"], dag_id=DAG_ID, task_id=TASK_ID, partitions=DAILY)
    with pytest.raises(DagsterApiError, match="no logical date"):
        _operator().execute(_context(logical_date=None))
    fake_dagster.add_asset(["b"], dag_id=DAG_ID, task_id=TASK_ID)
    with pytest.raises(DagsterApiError, match=r"partitioned differently \(a: Daily.*b: not partitioned"):
        _operator().execute(_context())
    assert fake_dagster.launched == []


# -- whole DAG ----------------------------------------------------------------------------------------


def test_whole_dag_runs_the_assets_mapped_to_the_dag(fake_dagster: FakeDagster) -> None:
    fake_dagster.add_asset(["dag_level"], dag_id=DAG_ID, task_id=None)
    fake_dagster.add_asset(["task_level"], dag_id=DAG_ID, task_id=TASK_ID)
    assert _operator(whole_dag=True).execute(_context()) == ["run-1"]
    assert fake_dagster.launched[0]["selector"]["assetSelection"] == [{"path": ["dag_level"]}]


# -- the hook -----------------------------------------------------------------------------------------


def test_unreachable_dagster_retries_then_fails(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AIRFLOW_CONN_DAGSTER_DEFAULT", json.dumps({"conn_type": "http", "host": "127.0.0.1",
                                                                   "port": int(url.rsplit(":", 1)[1]), "password": TOKEN}))
    operator = _operator(request_attempts=3, request_backoff=0.01, request_timeout=2, unreachable_grace=0)
    with caplog.at_level(logging.INFO), pytest.raises(DagsterUnreachableError) as raised:
        operator.execute(_context())
    assert f"cannot reach Dagster's GraphQL API at {url}/graphql after 3 attempt(s)" in str(raised.value)
    assert "unreachable_grace 0s" in str(raised.value)
    assert "retry 2 in" in caplog.text
    assert TOKEN not in str(raised.value) + _logged(caplog, capsys)


def test_a_dagster_restart_before_the_launch_is_ridden_out(
    fake_dagster: FakeDagster, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """A deploy: the webserver answers 503 or drops connections for longer than one call's retries
    (3 attempts) while the task looks up its assets; the task waits (unreachable_grace) and launches once."""
    fake_dagster.add_asset(["raw", "customers"], dag_id=DAG_ID, task_id=TASK_ID)
    fake_dagster.fail_http, fake_dagster.dropped = 7, 3
    operator = _operator(request_attempts=3, request_timeout=2, unreachable_grace=60, poll_interval=0.01)
    with caplog.at_level(logging.INFO):
        assert operator.execute(_context()) == ["run-1"]
    assert len(fake_dagster.launched) == 1
    logged = _logged(caplog, capsys)
    assert "(unreachable_grace) before launching the run of Airflow task" in logged
    assert f"Dagster at {fake_dagster.url} answers again after" in logged
    assert TOKEN not in logged


def test_a_launch_whose_answer_was_lost_in_an_outage_is_found_not_sent_again(fake_dagster: FakeDagster) -> None:
    """Dagster creates the run, then the outage starts before its answer: the repeat finds the try's run."""
    fake_dagster.add_asset(["raw", "customers"], dag_id=DAG_ID, task_id=TASK_ID)
    fake_dagster.failed_launches_after_create = 1
    fake_dagster.outage_after_launch = (0, 20)
    operator = _operator(request_attempts=2, request_timeout=2, unreachable_grace=60, launch_lookup_timeout=0.05)
    assert operator.execute(_context()) == ["run-1"]
    assert len(fake_dagster.launched) == 1 and len(fake_dagster.runs) == 1


def test_backoff_comes_from_the_shared_policy() -> None:
    sleeps: list[float] = []
    policy = RetryPolicy(max_attempts=4, base_delay=1.0, sleep=sleeps.append, rand=lambda: 1.0)
    client = DagsterGraphQLClient(f"http://127.0.0.1:{free_port()}", retry=policy, timeout=2)
    with pytest.raises(DagsterUnreachableError):
        client.run_status("r")
    assert sleeps == [1.0, 2.0, 4.0]


def test_5xx_is_retried_honouring_retry_after(fake_dagster: FakeDagster) -> None:
    fake_dagster.add_asset(["a"], dag_id="d", task_id="t")
    fake_dagster.fail_http = 2
    sleeps: list[float] = []
    client = DagsterGraphQLClient(fake_dagster.url, retry=RetryPolicy(sleep=sleeps.append))
    assert client.asset_keys_with_tags({"airlift/dag_id": "d"}) == [("a",)]
    assert len(fake_dagster.headers) == 3
    assert sleeps == [0.0, 0.0], "Retry-After: 0 wins over the backoff"


def test_persistent_5xx_is_unreachable(fake_dagster: FakeDagster) -> None:
    fake_dagster.fail_http = 10
    client = DagsterGraphQLClient(fake_dagster.url, retry=RetryPolicy(max_attempts=2, sleep=lambda s: None))
    with pytest.raises(DagsterUnreachableError, match=r"after 2 attempt\(s\) \(HTTP 503\)"):
        client.run_status("r")


def test_one_session_per_hook(fake_dagster: FakeDagster) -> None:
    hook = DagsterHook()
    assert hook.get_conn() is hook.get_conn()
    assert hook.get_conn().session is hook.get_conn().session


def test_url_and_token_from_connection_or_env(monkeypatch: pytest.MonkeyPatch, fake_dagster: FakeDagster) -> None:
    assert DagsterHook().get_conn().url == fake_dagster.url
    monkeypatch.setenv("AIRFLOW_CONN_DAGSTER_DEFAULT", json.dumps({"conn_type": "http", "host": "dagster.example.com",
                                                                   "schema": "prod", "extra": {"api_token": TOKEN}}))
    assert DagsterHook().url_and_token() == ("http://dagster.example.com/prod", TOKEN)
    monkeypatch.setenv("AIRFLOW_CONN_MY_DAGSTER", json.dumps({"conn_type": "http", "extra": {"url": "https://plus.dagster.cloud/prod"}}))
    assert DagsterHook("my_dagster").get_conn().url == "https://plus.dagster.cloud/prod"
    monkeypatch.delenv("AIRFLOW_CONN_DAGSTER_DEFAULT")
    monkeypatch.setenv("AIRLIFT_DAGSTER_URL", fake_dagster.url)
    monkeypatch.setenv("AIRLIFT_DAGSTER_API_TOKEN", TOKEN)
    fake_dagster.add_asset(["a"], dag_id=DAG_ID, task_id=TASK_ID)
    assert _operator().execute(_context()) == ["run-1"]
    assert fake_dagster.headers[-1].get("Dagster-Cloud-Api-Token") == TOKEN
    monkeypatch.delenv("AIRLIFT_DAGSTER_URL")
    with pytest.raises(DagsterApiError, match="no Dagster URL.*AIRFLOW_CONN_DAGSTER_DEFAULT"):
        DagsterHook().get_conn()
    assert TOKEN not in repr(DagsterGraphQLClient("http://x", api_token=TOKEN)) + repr(DagsterHook())


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
        client = DagsterGraphQLClient(f"http://127.0.0.1:{server.server_address[1]}", retry=RetryPolicy(sleep=lambda s: None))
        with pytest.raises(DagsterApiError, match="not JSON"):
            client.run_status("r")
    finally:
        server.shutdown()
        server.server_close()


def test_a_run_being_canceled_is_not_reattached(fake_dagster: FakeDagster) -> None:
    """Try 1 was killed (on_kill asked Dagster to terminate): try 2 launches anew."""
    fake_dagster.add_asset(["a"], dag_id=DAG_ID, task_id=TASK_ID)
    fake_dagster.add_run("run-0", status="CANCELING", tags=_run_tags(1))
    assert _operator(retries=1).execute(_context(try_number=2, max_tries=1)) == ["run-1"]


def test_on_kill_marks_a_starting_run_canceled(fake_dagster: FakeDagster) -> None:
    """Dagster cannot terminate a STARTING run: it is marked canceled (its worker then skips it)."""
    fake_dagster.add_asset(["a"], dag_id=DAG_ID, task_id=TASK_ID)
    fake_dagster.status_script = ["STARTING"]
    operator = _operator(run_timeout=0.05)
    with pytest.raises(DagsterRunFailedError):
        operator.execute(_context())
    operator.on_kill()
    assert fake_dagster.terminated == ["run-1"]
    assert fake_dagster.operations.count("AirliftTerminate") == 2


def test_asset_built_by_several_tasks_is_found_through_the_dag_index_without_task_tags(fake_dagster: FakeDagster) -> None:
    # built_by_tasks: the asset carries no airlift/dag_id / airlift/task_id tags (they hold one value);
    # the index on each DAG asset lists it under each of its tasks
    fake_dagster.add_asset(["sales"], dag_id=DAG_ID, task_id=None)
    fake_dagster.assets[-1]["tags"] = []
    fake_dagster.dag_indexes[("airflow", "dag", DAG_ID)] = {"tasks": {TASK_ID: [["sales"]]}, "dag": []}
    assert _operator().execute(_context()) == ["run-1"]
    assert fake_dagster.launched[0]["selector"]["assetSelection"] == [{"path": ["sales"]}]
    tags = {t["key"]: t["value"] for t in fake_dagster.launched[0]["executionMetadata"]["tags"]}
    assert tags["airlift/airflow_task_id"] == TASK_ID, "the run names the task that launched it"


def test_partition_key_hook_in_a_subclass(fake_dagster: FakeDagster) -> None:
    class Monthly(DagsterOperator):
        def get_partition_key(self, context: Any, assets: Any) -> str | None:
            return f"{context['logical_date']:%Y-%m}-01"

    class Broken(DagsterOperator):
        def get_partition_key(self, context: Any, assets: Any) -> str | None:
            raise KeyError("logical_date")

    fake_dagster.add_asset(["a"], dag_id=DAG_ID, task_id=TASK_ID, partitions=DAILY)
    monthly = Monthly(task_id=TASK_ID, request_backoff=0.001, poll_interval=0.01)
    import pendulum

    monthly.execute(_context(logical_date=pendulum.datetime(2024, 3, 5, tz="UTC")))
    tags = {t["key"]: t["value"] for t in fake_dagster.launched[0]["executionMetadata"]["tags"]}
    assert tags["dagster/partition"] == "2024-03-01"
    with pytest.raises(DagsterApiError, match=r"Broken.get_partition_key raised KeyError for Airflow task"):
        Broken(task_id=TASK_ID, request_backoff=0.001, poll_interval=0.01).execute(_context())
    assert len(fake_dagster.launched) == 1, "nothing launched after the hook failed"
