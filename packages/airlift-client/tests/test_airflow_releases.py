"""Airflow 2 releases older than the supported range answer the batch endpoints with a clear error."""

from __future__ import annotations

import pytest

from airlift_client import AirflowInstance, AirflowResponseError, BasicAuthBackend
from airlift_protocol import DAG_MIGRATION_DOC_HEADING, task_is_marked_migrated, task_migration_doc
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
        assert fake.requests["GET /api/v1/version"] == detection  # the release read at detection names it


@pytest.mark.parametrize("version", ["2.7.1", "2.11.2"])
def test_supported_airflow_2_reads_task_instances_without_asking_the_version_again(version: str) -> None:
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
        assert fake.requests["GET /api/v1/version"] == detection


@pytest.mark.parametrize("version", ["2.7.3", "2.9.3", "2.10.5"])
def test_migrated_tasks_are_read_where_the_release_serves_them(version: str) -> None:
    # Airflow before 2.10 has no doc_md in the task list: the DAG's doc (its details) says which
    # tasks run in Dagster instead; from 2.10 on the task list says it and /details is not read.
    state = FakeAirflowState.generate(dags=1, tasks_per_dag=2)
    dag = state.dags[0]
    dag.tasks[1].doc_md = task_migration_doc(None)
    dag.doc_md = "\n".join(["Loads things.", "", DAG_MIGRATION_DOC_HEADING, "", "| task | runs in |", "|---|---|",
                            f"| `{dag.tasks[0].task_id}` | Airflow |", f"| `{dag.tasks[1].task_id}` | Dagster |"])
    with FakeAirflow(state, generation=2) as fake:
        fake.airflow_version = version
        tasks = _instance(fake).list_tasks(dag.dag_id)
        assert [task_is_marked_migrated(t.doc_md) for t in tasks] == [False, True]
        assert fake.requests["GET /api/v1/dags/{id}/details"] == (0 if version == "2.10.5" else 1)


def test_the_release_is_read_once_with_the_generation() -> None:
    with FakeAirflow(FakeAirflowState.generate(dags=1, tasks_per_dag=1), generation=2) as fake:
        fake.airflow_version = "2.9.3"
        inst = _instance(fake)
        assert inst.get_airflow_version() == "2.9.3" and inst.get_airflow_version() == "2.9.3"
        assert fake.requests["GET /api/v1/version"] == 1
        known = _instance(fake)
        known.assume_api_version(inst.api_version)  # generation known from cached state: read when asked
        assert known.get_airflow_version() == "2.9.3"
        assert fake.requests["GET /api/v1/version"] == 2
