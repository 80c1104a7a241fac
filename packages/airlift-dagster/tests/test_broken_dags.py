"""One DAG whose file stops importing never takes the code location down."""

from __future__ import annotations

import pytest
from dagster import (
    AssetCheckKey,
    AssetKey,
    AssetSpec,
    DagsterInstance,
    Definitions,
    SensorResult,
    build_sensor_context,
)

from airlift_client import AirflowInstance
from airlift_dagster import (
    AirflowInstanceState,
    AirliftDagsterError,
    build_defs_from_airflow_instance,
    dag_asset_key,
    dag_defs,
    task_defs,
)
from airlift_dagster.health import DAG_IMPORT_CHECK_NAME
from airlift_testing.fake_airflow import FakeAirflow

TRACE = 'Traceback (most recent call last):\n  File "/dags/dag_00001.py", line 11\n    this is a typo\nSyntaxError: invalid syntax\n'


def _user_defs() -> Definitions:
    return Definitions.merge(
        dag_defs("dag_00000", task_defs("task_000", AssetSpec("healthy"))),
        dag_defs("dag_00001", task_defs("task_000", AssetSpec("raw")), task_defs("task_001", AssetSpec("clean", deps=["raw"]))),
    )


def _tick(defs: Definitions, dagster_instance: DagsterInstance, cursor: str | None = None) -> SensorResult:
    sensor = defs.resolve_sensor_def("inst__airflow_sensor")
    result = sensor(build_sensor_context(instance=dagster_instance, definitions=defs, cursor=cursor))
    assert isinstance(result, SensorResult)
    return result


def test_a_dag_whose_file_fails_to_import_keeps_its_assets_and_shows_why(
    instance: AirflowInstance, fake: FakeAirflow, dagster_instance: DagsterInstance,
) -> None:
    fake.break_dag("dag_00001", TRACE)
    defs = build_defs_from_airflow_instance(airflow_instance=instance, defs=_user_defs())
    specs = {s.key: s for s in defs.resolve_all_asset_specs()}
    broken, healthy = dag_asset_key("inst", "dag_00001"), dag_asset_key("inst", "dag_00000")
    # every asset stays: the broken DAG's, its tasks' and the others'
    assert {broken, healthy, AssetKey("raw"), AssetKey("clean"), AssetKey("healthy")} <= set(specs)
    assert {d.asset_key for d in specs[broken].deps} == {AssetKey("raw"), AssetKey("clean")}
    description = specs[broken].description or ""
    assert "dag_00001" in description and "SyntaxError: invalid syntax" in description
    assert "this is a typo" in specs[broken].metadata["Airflow import error"].value
    assert "Airflow import error" not in specs[healthy].metadata
    check = AssetCheckKey(broken, DAG_IMPORT_CHECK_NAME)
    assert check in defs.resolve_asset_graph().asset_check_keys
    assert AssetCheckKey(healthy, DAG_IMPORT_CHECK_NAME) not in defs.resolve_asset_graph().asset_check_keys

    # the sensor fails the check once per import error, and keeps working for every DAG
    first = _tick(defs, dagster_instance)
    failed = [e for e in first.asset_events if getattr(e, "check_name", None) == DAG_IMPORT_CHECK_NAME]
    assert [(e.asset_key, e.passed) for e in failed] == [(broken, False)]
    assert "SyntaxError" in (failed[0].description or "")
    dagster_instance.report_runless_asset_event(failed[0])
    again = _tick(defs, dagster_instance, cursor=first.cursor)
    assert not [e for e in again.asset_events if getattr(e, "check_name", None) == DAG_IMPORT_CHECK_NAME]

    # stored state (run workers, the component) keeps the import error
    restored = AirflowInstanceState.from_json(defs.metadata["airlift/state/inst"].value)
    assert restored.import_errors["dag_00001"].summary == "SyntaxError: invalid syntax"

    # fixing the file restores the DAG: no import error, no check
    fake.fix_dag("dag_00001")
    fixed = build_defs_from_airflow_instance(airflow_instance=instance, defs=_user_defs())
    assert AssetCheckKey(broken, DAG_IMPORT_CHECK_NAME) not in fixed.resolve_asset_graph().asset_check_keys
    assert "Airflow import error" not in {s.key: s for s in fixed.resolve_all_asset_specs()}[broken].metadata


def test_a_mapped_dag_airflow_never_had_is_still_an_error_with_a_suggestion(instance: AirflowInstance, fake: FakeAirflow) -> None:
    with pytest.raises(AirliftDagsterError, match=r"has no DAG 'dag_0001'\. Did you mean 'dag_00001'") as raised:
        build_defs_from_airflow_instance(airflow_instance=instance, defs=dag_defs("dag_0001", task_defs("task_000", AssetSpec("a"))))
    assert "dag_selector_fn" not in str(raised.value)


def test_an_unknown_task_lists_the_dag_s_tasks(instance: AirflowInstance, fake: FakeAirflow) -> None:
    with pytest.raises(AirliftDagsterError, match=r"no task 'task_00'\. Did you mean .*'task_000'\?.*Its tasks: task_000, task_001, task_002"):
        build_defs_from_airflow_instance(airflow_instance=instance, defs=dag_defs("dag_00000", task_defs("task_00", AssetSpec("a"))))
