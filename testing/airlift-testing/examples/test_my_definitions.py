"""Unit tests of Airlift definitions against the fake Airflow: no Airflow, no network beyond 127.0.0.1."""

from datetime import datetime, timedelta, timezone

import pytest
from dagster import (
    AssetKey,
    AssetMaterialization,
    AssetSpec,
    DagsterInstance,
    SensorResult,
    build_sensor_context,
)

from airlift_client import AirflowInstance, BasicAuthBackend
from airlift_dagster import (
    AirliftDagsterError,
    build_defs_from_airflow_instance,
    dag_defs,
    task_defs,
)
from airlift_testing.fake_airflow import FakeAirflow, FakeAirflowState, FakeDag, FakeTask


def my_defs(airflow: AirflowInstance, task_id: str = "load"):
    """What the project's definitions module builds (here with the instance passed in)."""
    return build_defs_from_airflow_instance(
        airflow_instance=airflow,
        defs=dag_defs("daily_sales", task_defs(task_id, AssetSpec(key=["warehouse", "sales"]))),
    )


@pytest.fixture
def fake() -> FakeAirflowState:
    """What the fake Airflow serves: one DAG of two tasks (mutate it to add runs)."""
    tasks = [FakeTask("load", downstream=["report"]), FakeTask("report")]
    return FakeAirflowState(dags=[FakeDag("daily_sales", tasks=tasks, fileloc="/dags/daily_sales.py", source="# the DAG file\n")])


@pytest.fixture(params=[2, 3], ids=["airflow2", "airflow3"])
def airflow(request: pytest.FixtureRequest, fake: FakeAirflowState):
    with FakeAirflow(fake, generation=request.param) as server:  # admin/admin, on a free 127.0.0.1 port
        yield server


def instance_of(server: FakeAirflow) -> AirflowInstance:
    return AirflowInstance(auth_backend=BasicAuthBackend(webserver_url=server.url, username="admin", password="admin"), name="prod")


def test_every_dag_is_an_asset_and_the_mapped_asset_is_kept(airflow: FakeAirflow) -> None:
    defs = my_defs(instance_of(airflow))
    keys = {spec.key for spec in defs.resolve_all_asset_specs()}
    assert {AssetKey(["prod", "dag", "daily_sales"]), AssetKey(["warehouse", "sales"])} <= keys


def test_a_task_id_airflow_does_not_have_is_caught(airflow: FakeAirflow) -> None:
    with pytest.raises(AirliftDagsterError, match="has no task 'laod'"):
        my_defs(instance_of(airflow), task_id="laod")


def test_a_successful_airflow_run_materializes_the_mapped_asset(airflow: FakeAirflow, fake: FakeAirflowState) -> None:
    fake.add_run("daily_sales", start=datetime.now(timezone.utc) - timedelta(minutes=10))
    defs = my_defs(instance_of(airflow))
    sensor = defs.resolve_sensor_def("prod__airflow_sensor")
    with DagsterInstance.ephemeral() as dagster:
        result = sensor(build_sensor_context(instance=dagster, definitions=defs))
    assert isinstance(result, SensorResult)
    materialized = {e.asset_key for e in result.asset_events if isinstance(e, AssetMaterialization)}
    assert AssetKey(["warehouse", "sales"]) in materialized
