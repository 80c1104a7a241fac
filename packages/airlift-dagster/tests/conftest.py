from __future__ import annotations

from collections.abc import Iterator

import pytest
from dagster import DagsterInstance

from airlift_client import AirflowInstance, BasicAuthBackend, RetryPolicy
from airlift_testing.fake_airflow import FakeAirflow, FakeAirflowState


@pytest.fixture(params=[2, 3], ids=["airflow2", "airflow3"])
def fake(request: pytest.FixtureRequest) -> Iterator[FakeAirflow]:
    state = FakeAirflowState.generate(dags=3, tasks_per_dag=3)
    with FakeAirflow(state, generation=int(request.param)) as server:
        yield server


@pytest.fixture
def instance(fake: FakeAirflow) -> AirflowInstance:
    return AirflowInstance(
        auth_backend=BasicAuthBackend(webserver_url=fake.url, username="admin", password="admin"),
        name="inst",
        retry_policy=RetryPolicy(max_attempts=2, sleep=lambda s: None),
    )


@pytest.fixture
def dagster_instance() -> Iterator[DagsterInstance]:
    with DagsterInstance.ephemeral() as instance:
        yield instance
