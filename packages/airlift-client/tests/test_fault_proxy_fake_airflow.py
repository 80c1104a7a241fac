"""Every read of AirflowInstance through the fault-injection proxy (30% of requests faulted) in front
of the fake Airflow 2 and 3: results equal the fault-free ones; every error is an airlift-client
error naming the URL; no secret in any error or log line."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from airlift_client import AirflowInstance, AirliftClientError, BasicAuthBackend, RetryPolicy
from airlift_testing.fake_airflow import FakeAirflow, FakeAirflowState
from airlift_testing.fault_proxy import FaultProxy

SECRET = "proxy-Sentinel-Secret"


def _reads(inst: AirflowInstance) -> dict[str, Any]:
    dags = inst.list_dags()
    return {
        "dags": sorted(d.dag_id for d in dags),
        "tasks": {k: sorted(t.task_id for t in v) for k, v in inst.list_tasks_for_dags(d.dag_id for d in dags).items()},
        "sources": inst.get_dag_sources(dags),
        "runs": sorted((r.dag_id, r.run_id, r.state) for r in inst.iter_dag_runs()),
        "tis": sorted((t.key, t.state) for t in inst.iter_task_instances()),
    }


def _instance(url: str) -> AirflowInstance:
    return AirflowInstance(
        auth_backend=BasicAuthBackend(webserver_url=url, username="admin", password=SECRET),
        name="faulty",
        timeout=0.6,
        max_workers=4,
        retry_policy=RetryPolicy(max_attempts=6, base_delay=0.01, max_delay=0.05, max_retry_after=0.05),
    )


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_reads_through_faults_equal_the_fault_free_reads(generation: int, seed: int, caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeAirflow(FakeAirflowState.generate(dags=6, tasks_per_dag=3, runs_per_dag=2), generation=generation, password=SECRET).start()
    try:
        expected = _reads(_instance(fake.url))
        with FaultProxy(fake.url, seed=seed, rate=0.3, slow_seconds=0.7, retry_after=0.01) as proxy, caplog.at_level(logging.DEBUG):
            errors: list[Exception] = []
            got = _retry_reads(lambda: _reads(_instance(proxy.url)), errors)
            credentials, url = proxy.credentials, proxy.url
            print(f"\nAirflow {generation} seed {seed}: {proxy.summary()}; calls that raised: {len(errors)}")
            for error in errors:
                print(f"  {type(error).__name__}: {error}")
        assert got == expected
        assert sum(proxy.counts[k] for k in proxy.weights) > 0
        for error in errors:
            assert isinstance(error, AirliftClientError), repr(error)
            assert url in str(error), str(error)
        texts = [caplog.text, *(str(e) for e in errors), *(repr(e) for e in errors), repr(_instance(url))]
        for secret in {SECRET, *credentials}:
            assert not any(secret in text for text in texts), "a secret leaked"
    finally:
        fake.stop()


def _retry_reads(read: Callable[[], dict[str, Any]], errors: list[Exception]) -> dict[str, Any]:
    for _ in range(5):
        try:
            return read()
        except Exception as e:  # recorded and checked by the caller
            errors.append(e)
    raise AssertionError(f"five whole read passes failed: {errors}")
