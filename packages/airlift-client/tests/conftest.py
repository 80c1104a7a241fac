from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from airlift_client import AirflowInstance, BasicAuthBackend, RetryPolicy
from airlift_testing.fake_airflow import FakeAirflow, FakeAirflowState

SECRET = "pa55-Sentinel-Secret"


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture(params=[2, 3], ids=["airflow2", "airflow3"])
def generation(request: pytest.FixtureRequest) -> int:
    return int(request.param)


@pytest.fixture
def fake_factory(generation: int) -> Iterator[Callable[..., FakeAirflow]]:
    fakes: list[FakeAirflow] = []

    def make(state: FakeAirflowState | None = None, **kwargs: object) -> FakeAirflow:
        kwargs.setdefault("password", SECRET)
        fake = FakeAirflow(state or FakeAirflowState.generate(dags=5, tasks_per_dag=3, runs_per_dag=2), generation=generation, **kwargs)  # type: ignore[arg-type]
        fakes.append(fake.start())
        return fake

    yield make
    for fake in fakes:
        fake.stop()


@pytest.fixture
def instance_for(sleeps: list[float]) -> Callable[..., AirflowInstance]:
    def make(fake: FakeAirflow, *, password: str = SECRET, **kwargs: object) -> AirflowInstance:
        kwargs.setdefault("retry_policy", RetryPolicy(max_attempts=4, sleep=sleeps, rand=lambda: 1.0))
        return AirflowInstance(
            auth_backend=BasicAuthBackend(webserver_url=fake.url, username="admin", password=password),
            name="test_instance",
            **kwargs,  # type: ignore[arg-type]
        )

    return make
