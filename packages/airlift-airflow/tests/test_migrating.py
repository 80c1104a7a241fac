from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from dag_shapes import constructor_dag, context_manager_dag, decorator_dag

from airlift_airflow import (
    AirliftMigrationError,
    DagsterOperator,
    mark_as_dagster_migrating,
)
from airlift_protocol import MIGRATING_DAG_TAG, MigrationState, task_is_marked_migrated


def _state(dag_id: str, **tasks: bool) -> MigrationState:
    state = MigrationState()
    for task_id, migrated in tasks.items():
        state = state.with_task(dag_id=dag_id, task_id=task_id.replace("__", "."), migrated=migrated)
    return state


def test_migrated_task_keeps_links_and_settings() -> None:
    g = context_manager_dag()
    dag = g["dag"]
    mark_as_dagster_migrating(global_vars=g, migration_state=_state("ctx.dag-1", load=True, build=False))
    load = dag.task_dict["load"]
    assert isinstance(load, DagsterOperator)
    assert load.downstream_task_ids == {"build"}
    assert dag.task_dict["build"].upstream_task_ids == {"load"}
    assert load.retries == 3
    assert load.retry_delay == timedelta(seconds=7)
    assert load.pool == "etl_pool"
    assert load.queue == "etl"
    assert load.owner == "data-team"
    assert str(load.trigger_rule) in ("all_done", "TriggerRule.ALL_DONE")
    assert load.execution_timeout == timedelta(minutes=5)
    assert load.priority_weight == 9
    assert task_is_marked_migrated(load.doc_md)
    assert "Loads raw data." in load.doc_md
    assert not isinstance(dag.task_dict["build"], DagsterOperator)
    assert MIGRATING_DAG_TAG in set(dag.tags)
    assert "team" in set(dag.tags)
    assert "| `load` | Dagster |" in dag.doc_md
    assert "| `build` | Airflow |" in dag.doc_md


def test_task_inside_a_task_group() -> None:
    g = context_manager_dag()
    dag = g["dag"]
    mark_as_dagster_migrating(global_vars=g, migration_state=_state("ctx.dag-1", grp__inner=True))
    inner = dag.task_dict["grp.inner"]
    assert isinstance(inner, DagsterOperator)
    assert inner.upstream_task_ids == {"build"}
    assert inner.task_group.group_id == "grp"
    assert "grp.inner" in dag.task_dict


def test_constructor_and_decorator_dags() -> None:
    g = constructor_dag()
    mark_as_dagster_migrating(global_vars=g, migration_state=_state("plain_dag", b=True))
    assert isinstance(g["my_dag"].task_dict["b"], DagsterOperator)
    assert g["my_dag"].task_dict["b"].upstream_task_ids == {"a"}
    g = decorator_dag()
    mark_as_dagster_migrating(global_vars=g, migration_state=_state("decorated", first=True))
    dag = g["decorated_dag"]
    assert isinstance(dag.task_dict["first"], DagsterOperator)
    assert dag.task_dict["second"].upstream_task_ids == {"first"}


def test_false_and_missing_entries_change_nothing() -> None:
    g = constructor_dag()
    before = {t: type(op) for t, op in g["my_dag"].task_dict.items()}
    mark_as_dagster_migrating(global_vars=g, migration_state=_state("plain_dag", a=False))
    assert {t: type(op) for t, op in g["my_dag"].task_dict.items()} == before
    mark_as_dagster_migrating(global_vars=constructor_dag(), migration_state=MigrationState())


def test_rollback_is_a_reparse_with_false() -> None:
    migrated = constructor_dag()
    mark_as_dagster_migrating(global_vars=migrated, migration_state=_state("plain_dag", b=True))
    assert isinstance(migrated["my_dag"].task_dict["b"], DagsterOperator)
    rolled_back = constructor_dag()  # Airflow re-parses the file
    mark_as_dagster_migrating(global_vars=rolled_back, migration_state=_state("plain_dag", b=False))
    assert type(rolled_back["my_dag"].task_dict["b"]).__name__ == "EmptyOperator"


def test_unknown_task_is_a_parse_time_error_naming_file_and_id() -> None:
    g = constructor_dag()
    with pytest.raises(AirliftMigrationError, match=r"/dags/plain.py.*DAG 'plain_dag'.*\['nope'\]"):
        mark_as_dagster_migrating(global_vars=g, migration_state=_state("plain_dag", nope=True))


def test_expected_dag_ids() -> None:
    with pytest.raises(AirliftMigrationError, match=r"\['other'\] are expected but not defined"):
        mark_as_dagster_migrating(global_vars=constructor_dag(), migration_state=MigrationState(), dag_ids=["plain_dag", "other"])


def test_subclass_is_used() -> None:
    class MyOperator(DagsterOperator):
        pass

    g = constructor_dag()
    mark_as_dagster_migrating(global_vars=g, migration_state=_state("plain_dag", a=True), dagster_operator_class=MyOperator)
    assert type(g["my_dag"].task_dict["a"]) is MyOperator
    with pytest.raises(AirliftMigrationError, match="subclass of DagsterOperator"):
        mark_as_dagster_migrating(global_vars=g, migration_state=MigrationState(), dagster_operator_class=object)


def test_dags_from_other_files_are_ignored() -> None:
    g: dict[str, Any] = constructor_dag()
    state = _state("plain_dag", b=True).with_task(dag_id="defined_elsewhere", task_id="x", migrated=True)
    mark_as_dagster_migrating(global_vars=g, migration_state=state)
    assert isinstance(g["my_dag"].task_dict["b"], DagsterOperator)
