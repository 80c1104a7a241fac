"""Airflow 2 releases older than the supported range answer the batch endpoints with a clear error."""

from __future__ import annotations

import pytest

from airlift_client import AirflowInstance, AirflowResponseError, BasicAuthBackend
from airlift_testing.fake_airflow import FakeAirflow, FakeAirflowState


def _instance(fake: FakeAirflow) -> AirflowInstance:
    return AirflowInstance(auth_backend=BasicAuthBackend(webserver_url=fake.url, username="admin", password="admin"), name="af")


def test_airflow_older_than_2_7_1_is_named_in_the_error() -> None:
    with FakeAirflow(FakeAirflowState.generate(dags=2, tasks_per_dag=2, runs_per_dag=1), generation=2) as fake:
        fake.airflow_version = "2.6.3"
        inst = _instance(fake)
        assert len(list(inst.iter_task_instances(dag_ids=["dag_00000"]))) == 2  # no new filter: accepted
        detection = fake.requests["GET /api/v1/version"]  # the generation is confirmed through /version
        with pytest.raises(AirflowResponseError, match=r"runs Airflow 2\.6\.3.*Airflow 2\.7\.1 and later") as caught:
            list(inst.iter_task_instances(dag_ids=["dag_00000"], task_ids=["task_000"]))
        assert caught.value.status == 400
        assert fake.requests["GET /api/v1/version"] == detection + 1


@pytest.mark.parametrize("version", ["2.7.1", "2.11.2"])
def test_supported_airflow_2_reads_task_instances_without_asking_the_version(version: str) -> None:
    with FakeAirflow(FakeAirflowState.generate(dags=2, tasks_per_dag=2, runs_per_dag=1), generation=2) as fake:
        fake.airflow_version = version
        inst = _instance(fake)
        assert inst.api_version is not None
        detection = fake.requests["GET /api/v1/version"]
        assert len(list(inst.iter_task_instances(dag_ids=["dag_00000"], task_ids=["task_000"]))) == 1
        assert fake.requests["GET /api/v1/version"] == detection


def test_other_bad_requests_keep_their_own_error() -> None:
    with FakeAirflow(FakeAirflowState.generate(dags=1, tasks_per_dag=1), generation=2) as fake:
        inst = _instance(fake)
        assert inst.api_version is not None
        detection = fake.requests["GET /api/v1/version"]
        fake.fail_next(r"taskInstances/list", 400)
        with pytest.raises(AirflowResponseError) as caught:
            list(inst.iter_task_instances(dag_ids=["dag_00000"]))
        assert "2.7.1" not in str(caught.value)
        assert fake.requests["GET /api/v1/version"] == detection + 1
