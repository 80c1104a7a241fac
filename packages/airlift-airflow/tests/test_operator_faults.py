"""DagsterOperator when Dagster misbehaves: unreachable while a task waits, a launch answered late,
Dagster's own run retries, kills while launching or deferred, a clear with a run still in flight."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from fake_dagster import FakeDagster  # type: ignore[import-not-found]
from test_operator import (  # type: ignore[import-not-found]
    DAG_ID,
    TASK_ID,
    _context,
    _hook,
    _logged,
    _operator,
    _peered,  # noqa: F401 (autouse: Dagster peers this Airflow)
    _run_tags,
)

from airlift_airflow import DagsterRunFailedError, DagsterRunTrigger
from airlift_protocol import Retryable, RetryPolicy

# -- waiting survives an unreachable Dagster ----------------------------------------------------------


def test_waiting_rides_out_dropped_connections_and_5xx(
    fake_dagster: FakeDagster, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """A webserver restart: connections dropped, then 503s, far more than one request's retries."""
    fake_dagster.add_asset(["a"], dag_id=DAG_ID, task_id=TASK_ID)
    fake_dagster.status_script = ["STARTED", "STARTED", "SUCCESS"]
    fake_dagster.outage_after_launch = (4, 4)  # four polls' worth of failed requests (2 attempts each)
    with caplog.at_level(logging.INFO):
        assert _operator(request_attempts=2, unreachable_grace=60.0).execute(_context()) == ["run-1"]
    logged = _logged(caplog, capsys)
    assert f"Dagster at {fake_dagster.url} cannot be reached" in logged and "unreachable_grace" in logged
    assert f"Dagster at {fake_dagster.url} answers again after" in logged
    assert len(fake_dagster.launched) == 1


def test_unreachable_past_the_grace_fails_and_says_the_run_was_left_running(
    fake_dagster: FakeDagster, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_dagster.add_asset(["a"], dag_id=DAG_ID, task_id=TASK_ID)
    hook = _hook(fake_dagster.url, max_attempts=1)
    run_id = hook.launch(location="loc", repository="__repository__", asset_paths=[("a",)], tags=_run_tags(1))
    fake_dagster.fail_http = 10_000
    results = hook.wait([run_id], poll_interval=10.0, timeout=None, grace=60.0)
    [result] = results
    assert result.status == "QUEUED" and "unreachable for" in (result.error or "") and "unreachable_grace 60s" in result.error
    with caplog.at_level(logging.INFO), pytest.raises(DagsterRunFailedError, match="unreachable for"):
        _operator()._finish(results, what="Airflow task d.t")
    logged = _logged(caplog, capsys)
    assert f"Stopped waiting for Dagster run {run_id} (last seen QUEUED)" in logged
    assert f"The run was left running: {fake_dagster.url}/runs/{run_id}" in logged


def test_run_timeout_says_the_run_was_left_running(
    fake_dagster: FakeDagster, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_dagster.add_asset(["a"], dag_id=DAG_ID, task_id=TASK_ID)
    fake_dagster.status_script = ["STARTED"]
    with caplog.at_level(logging.INFO), pytest.raises(DagsterRunFailedError, match="run_timeout"):
        _operator(run_timeout=0.05).execute(_context())
    logged = _logged(caplog, capsys)
    assert "Stopped waiting for Dagster run run-1 (last seen STARTED): still in flight at run_timeout" in logged
    assert f"The run was left running: {fake_dagster.url}/runs/run-1" in logged


# -- Dagster's own run retries ------------------------------------------------------------------------


def test_a_run_dagster_retries_is_followed_to_its_retry(
    fake_dagster: FakeDagster, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_dagster.add_asset(["a"], dag_id=DAG_ID, task_id=TASK_ID)
    fake_dagster.status_script = ["STARTED", "FAILURE"]
    fake_dagster.dagster_retries = 1
    with caplog.at_level(logging.INFO):
        assert _operator().execute(_context()) == ["run-1-retry"]
    logged = _logged(caplog, capsys)
    assert "Dagster run run-1 failed; Dagster will retry it: waiting for the retry" in logged
    assert f"Dagster run run-1 failed and Dagster retries it as run run-1-retry: {fake_dagster.url}/runs/run-1-retry" in logged
    assert "Dagster run run-1-retry succeeded" in logged
    assert len(fake_dagster.launched) == 1


def test_a_retry_that_fails_too_fails_the_task(fake_dagster: FakeDagster) -> None:
    fake_dagster.add_asset(["a"], dag_id=DAG_ID, task_id=TASK_ID)
    fake_dagster.status_script = ["FAILURE"]
    fake_dagster.dagster_retries, fake_dagster.retry_script = 1, ["STARTED", "FAILURE"]
    with pytest.raises(DagsterRunFailedError, match=f"Dagster run FAILURE: {fake_dagster.url}/runs/run-1-retry"):
        _operator().execute(_context())


def test_the_same_try_again_follows_its_runs_retry(fake_dagster: FakeDagster) -> None:
    """The worker died while Dagster retried the try's run: the try, run again, awaits the retry."""
    fake_dagster.add_asset(["a"], dag_id=DAG_ID, task_id=TASK_ID)
    fake_dagster.add_run("run-0", status="FAILURE", tags={**_run_tags(1, max_tries=0), "dagster/will_retry": "true",
                                                         "dagster/auto_retry_run_id": "run-0r"})
    fake_dagster.add_run("run-0r", status="SUCCESS", tags={**_run_tags(1, max_tries=0), "dagster/root_run_id": "run-0"})
    assert _operator().execute(_context()) == ["run-0r"]
    assert fake_dagster.launched == []


# -- exactly one run per try --------------------------------------------------------------------------


def test_launch_created_after_the_timeout_is_found_not_sent_again(
    fake_dagster: FakeDagster, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """Dagster creates the run 1.5 s after the request, long after the client's 0.3 s timeout."""
    fake_dagster.add_asset(["a"], dag_id=DAG_ID, task_id=TASK_ID)
    fake_dagster.hold_before_create = [1.5]
    with caplog.at_level(logging.INFO):
        assert _operator(request_timeout=0.3, launch_lookup_timeout=30.0).execute(_context()) == ["run-1"]
    assert len(fake_dagster.launched) == 1
    logged = _logged(caplog, capsys)
    assert "looking the run up by its tags (up to 30s)" in logged and "Dagster had created the run" in logged


def test_a_second_run_for_one_try_is_terminated(
    fake_dagster: FakeDagster, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """The lookup window passed, the launch was sent again, then the first request created its run too."""
    fake_dagster.add_asset(["a"], dag_id=DAG_ID, task_id=TASK_ID)
    fake_dagster.hold_before_create = [1.0]
    fake_dagster.status_script = ["STARTED", "STARTED", "STARTED", "STARTED", "STARTED", "SUCCESS"]
    operator = _operator(request_timeout=0.2, launch_lookup_timeout=0.2, poll_interval=0.3)
    with caplog.at_level(logging.INFO):
        kept = operator.execute(_context())
    assert sorted(fake_dagster.runs) == ["run-1", "run-2"]
    [other] = [r for r in fake_dagster.runs if r not in kept]
    assert fake_dagster.terminated == [other]
    assert f"Two Dagster runs exist for one task try: kept {fake_dagster.url}/runs/{kept[0]}, terminated {other}" in \
        _logged(caplog, capsys)


# -- kills and clears ---------------------------------------------------------------------------------


def test_on_kill_while_launching_terminates_the_run_whose_answer_never_came(
    fake_dagster: FakeDagster, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_dagster.add_asset(["a"], dag_id=DAG_ID, task_id=TASK_ID)
    tags = _run_tags(1, max_tries=0)
    fake_dagster.add_run("run-0", status="STARTED", tags=tags)  # Dagster created it; the answer was still on its way
    operator = _operator()
    operator._launching = tags
    with caplog.at_level(logging.INFO):
        operator.on_kill()
    assert fake_dagster.terminated == ["run-0"]
    assert f"Task killed: asked Dagster to terminate run run-0: {fake_dagster.url}/runs/run-0" in _logged(caplog, capsys)


def test_on_kill_terminates_the_retry_dagster_runs_now(fake_dagster: FakeDagster) -> None:
    fake_dagster.add_asset(["a"], dag_id=DAG_ID, task_id=TASK_ID)
    fake_dagster.status_script = ["FAILURE"]
    fake_dagster.dagster_retries, fake_dagster.retry_script = 1, ["STARTED"]
    operator = _operator(run_timeout=0.2)
    with pytest.raises(DagsterRunFailedError):
        operator.execute(_context())
    operator.on_kill()
    assert fake_dagster.terminated == ["run-1-retry"]


def test_a_cleared_task_terminates_the_earlier_attempts_run_still_in_flight(
    fake_dagster: FakeDagster, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """Airflow 2 does not tell a deferred task's trigger it was cleared: the new try stops the old run."""
    fake_dagster.add_asset(["a"], dag_id=DAG_ID, task_id=TASK_ID)
    fake_dagster.add_run("run-0", status="STARTED", tags=_run_tags(1, max_tries=1))
    with caplog.at_level(logging.INFO):
        assert _operator(retries=1).execute(_context(try_number=2, max_tries=2)) == ["run-1"]
    assert fake_dagster.terminated == ["run-0"]
    assert "Dagster run run-0 of an earlier attempt of this task (cleared since) was still in flight: terminated" in \
        _logged(caplog, capsys)


def test_trigger_on_kill_terminates_the_runs_it_waits_for(fake_dagster: FakeDagster) -> None:
    """Airflow 3 calls on_kill when a deferred task is marked failed or success, or cleared."""
    fake_dagster.add_asset(["a"], dag_id=DAG_ID, task_id=TASK_ID)
    fake_dagster.add_run("run-0", status="FAILURE", tags={**_run_tags(1, max_tries=0), "dagster/will_retry": "true",
                                                         "dagster/auto_retry_run_id": "run-0r"})
    fake_dagster.add_run("run-0r", status="STARTED", tags={**_run_tags(1, max_tries=0), "dagster/root_run_id": "run-0"})
    trigger = DagsterRunTrigger(run_ids=["run-0"], poll_interval=0.01)

    async def kill_while_waiting() -> None:
        waiting = asyncio.ensure_future(trigger.run().__anext__())
        while "AirliftRun" not in fake_dagster.operations[-2:]:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        waiting.cancel()
        await trigger.on_kill()

    asyncio.run(kill_while_waiting())
    assert fake_dagster.terminated == ["run-0r"], "the run awaited now: Dagster's retry"


def test_trigger_uses_the_operators_request_settings(fake_dagster: FakeDagster) -> None:
    fake_dagster.add_asset(["a"], dag_id=DAG_ID, task_id=TASK_ID)
    operator = _operator(deferrable=True, request_attempts=7, request_backoff=0.25, request_timeout=9.0,
                         unreachable_grace=42.0)
    with pytest.raises(BaseException) as deferred:
        operator.execute(_context())
    trigger = deferred.value.trigger  # type: ignore[attr-defined]
    hook = trigger.hook()
    assert (hook.retry.max_attempts, hook.retry.base_delay, hook.timeout) == (7, 0.25, 9.0)
    assert trigger.unreachable_grace == 42.0


def test_deferred_wait_rides_out_an_outage_and_follows_a_retry(fake_dagster: FakeDagster) -> None:
    fake_dagster.add_asset(["a"], dag_id=DAG_ID, task_id=TASK_ID)
    fake_dagster.status_script = ["STARTED", "FAILURE"]
    fake_dagster.dagster_retries = 1
    operator = _operator(deferrable=True, request_attempts=2)
    with pytest.raises(BaseException) as deferred:
        operator.execute(_context())
    trigger = deferred.value.trigger  # type: ignore[attr-defined]
    trigger.poll_interval = 0.01
    fake_dagster.dropped, fake_dagster.fail_http = 3, 3

    async def first_event() -> Any:
        async for event in trigger.run():
            return event

    event = asyncio.run(first_event())
    assert event.payload == {"results": [["run-1-retry", "SUCCESS", None]]}
    assert operator.execute_complete(_context(), event.payload) == ["run-1-retry"]


# -- the one retry loop -------------------------------------------------------------------------------


def test_the_retry_loop_is_the_same_sync_and_async() -> None:
    sleeps: list[float] = []

    async def asleep(seconds: float) -> None:
        sleeps.append(seconds)

    policy = RetryPolicy(max_attempts=3, base_delay=1.0, rand=lambda: 1.0, sleep=sleeps.append, asleep=asleep)
    failures = iter([Retryable("HTTP 503", retry_after="0"), Retryable("ConnectError")])

    def attempt() -> str:
        for failure in failures:
            raise failure
        return "ok"

    async def aattempt() -> str:
        return attempt()

    assert policy.call(attempt) == "ok" and sleeps == [0.0, 2.0]
    failures = iter([Retryable("HTTP 503"), Retryable("HTTP 503"), Retryable("HTTP 502")])
    with pytest.raises(Retryable) as gave_up:
        asyncio.run(policy.acall(aattempt))
    assert gave_up.value.attempts == 3 and gave_up.value.problem == "HTTP 502"
    assert sleeps == [0.0, 2.0, 1.0, 2.0]


def test_run_tags_are_added_and_never_override_the_identity(fake_dagster: FakeDagster) -> None:
    fake_dagster.add_asset(["a"], dag_id=DAG_ID, task_id=TASK_ID)
    _operator(run_tags={"dagster/max_retries": "1", "airlift/airflow_try_number": "99"}).execute(_context())
    tags = {t["key"]: t["value"] for t in fake_dagster.launched[0]["executionMetadata"]["tags"]}
    assert tags["dagster/max_retries"] == "1" and tags["airlift/airflow_try_number"] == "1"
