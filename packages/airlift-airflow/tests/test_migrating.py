from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from dag_shapes import (
    constructor_dag,
    context_manager_dag,
    dag_file,
    decorator_dag,
    mapped_dag,
    parse_dag_folder,
)

from airlift_airflow import (
    AirliftMigrationError,
    DagsterOperator,
    mark_as_dagster_migrating,
)
from airlift_protocol import (
    MIGRATING_DAG_TAG,
    WHOLE_DAG_TASK_ID,
    DagMigrationState,
    MigrationState,
    set_task_migrated,
    task_is_marked_migrated,
    tasks_migrated_in_dag_doc,
)


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
    assert tasks_migrated_in_dag_doc(dag.doc_md) == {"load"}  # what clients of Airflow < 2.10 read


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


def test_more_settings_are_kept() -> None:
    g = context_manager_dag()
    dag = g["dag"]
    old = dag.task_dict["export"]
    old.pool_slots = 2
    old.max_active_tis_per_dag = 1
    old.retry_exponential_backoff = True
    old.on_failure_callback = _on_failure
    old.depends_on_past = True
    mark_as_dagster_migrating(global_vars=g, migration_state=_state("ctx.dag-1", export=True), dagster_conn_id="dagster_prod")
    new = dag.task_dict["export"]
    assert isinstance(new, DagsterOperator)
    assert new.dagster_conn_id == "dagster_prod"
    assert (new.pool_slots, new.max_active_tis_per_dag, new.retry_exponential_backoff, new.depends_on_past) == (2, 1, True, True)
    assert new.on_failure_callback in (_on_failure, [_on_failure])
    assert new.upstream_task_ids == {"build"}
    assert dag.task_dict["build"].downstream_task_ids == {"grp.inner", "export"}
    assert new.dag is dag
    assert new.task_group.is_root
    assert set(dag.task_group.children) == {"load", "build", "grp", "export"}


def _on_failure(context: Any) -> None:
    pass


def test_a_second_call_changes_nothing() -> None:
    g = context_manager_dag()
    state = _state("ctx.dag-1", load=True)
    mark_as_dagster_migrating(global_vars=g, migration_state=state)
    first = g["dag"].task_dict["load"]
    doc, tags = g["dag"].doc_md, sorted(g["dag"].tags)
    mark_as_dagster_migrating(global_vars=g, migration_state=state)
    assert g["dag"].task_dict["load"] is first
    assert (g["dag"].doc_md, sorted(g["dag"].tags)) == (doc, tags)
    assert g["dag"].doc_md.count("### Migration to Dagster") == 1


def test_mapped_task_is_refused_at_parse_time_with_what_to_do() -> None:
    g = mapped_dag()
    with pytest.raises(AirliftMigrationError, match=r"/dags/mapped.py: task\(s\) \['double'\] of DAG 'mapped' are dynamically mapped"
                       r"(.|\n)*migrated: false in mapped.yaml, or migrate the whole DAG"):
        mark_as_dagster_migrating(global_vars=g, migration_state=_state("mapped", double=True))
    # the task it maps over, and its consumer, can be migrated
    g = mapped_dag()
    mark_as_dagster_migrating(global_vars=g, migration_state=_state("mapped", total=True))
    assert isinstance(g["dag"].task_dict["total"], DagsterOperator)


def test_whole_dag_migration_and_rollback() -> None:
    g = context_manager_dag()
    dag_id = g["dag"].dag_id
    before = sorted(g["dag"].task_dict)
    state = MigrationState({dag_id: DagMigrationState(dag_id, dag_migrated=True)})
    mark_as_dagster_migrating(global_vars=g, migration_state=state)
    dag = g["dag"]
    assert list(dag.task_dict) == [WHOLE_DAG_TASK_ID]
    only = dag.task_dict[WHOLE_DAG_TASK_ID]
    assert isinstance(only, DagsterOperator) and only.whole_dag
    assert task_is_marked_migrated(only.doc_md)
    assert "The whole DAG runs in Dagster" in dag.doc_md
    assert tasks_migrated_in_dag_doc(dag.doc_md) == {WHOLE_DAG_TASK_ID}
    mark_as_dagster_migrating(global_vars=g, migration_state=state)  # a second call changes nothing
    assert list(dag.task_dict) == [WHOLE_DAG_TASK_ID]
    # rollback: a re-parse with the switch off leaves the DAG as written
    g = context_manager_dag()
    state = MigrationState({dag_id: DagMigrationState(dag_id, dag_migrated=False)})
    mark_as_dagster_migrating(global_vars=g, migration_state=state)
    assert sorted(g["dag"].task_dict) == before
    assert not any(isinstance(t, DagsterOperator) for t in g["dag"].task_dict.values())


def test_dag_without_state_file_is_untouched() -> None:
    g = context_manager_dag()
    mark_as_dagster_migrating(global_vars=g, migration_state=_state("another_dag", x=True))
    assert MIGRATING_DAG_TAG not in set(g["dag"].tags)
    assert g["dag"].doc_md is None


def test_dag_folder_parsed_by_airflow(tmp_path: Path) -> None:
    """Real parsing (DagBag): a ``with DAG(...):`` not assigned to a variable is found, a DAG id of
    another file is left alone, and a bad task id is an import error naming the file and the id."""
    (tmp_path / "unnamed.py").write_text(dag_file("unnamed", ("a", "b"), assign=False))
    (tmp_path / "named.py").write_text(dag_file("named", ("x", "y"), assign=True))
    (tmp_path / "broken.py").write_text(dag_file("broken", ("p", "q"), assign=True))
    state = tmp_path / "migration_state"
    set_task_migrated(state, dag_id="unnamed", task_id="b", migrated=True)
    set_task_migrated(state, dag_id="named", task_id="x", migrated=False)
    set_task_migrated(state, dag_id="broken", task_id="q_renamed", migrated=True)
    set_task_migrated(state, dag_id="in_some_other_folder", task_id="t", migrated=True)

    bag = parse_dag_folder(tmp_path)
    assert isinstance(bag.dags["unnamed"].task_dict["b"], DagsterOperator)
    assert bag.dags["unnamed"].task_dict["b"].upstream_task_ids == {"a"}
    assert type(bag.dags["named"].task_dict["x"]).__name__ == "EmptyOperator"
    assert MIGRATING_DAG_TAG in set(bag.dags["named"].tags)
    assert "broken" not in bag.dags
    [(path, error)] = bag.import_errors.items()
    assert path.endswith("broken.py")
    assert "AirliftMigrationError" in error
    assert "'q_renamed'" in error and "broken.yaml" in error

    # roll back: flip the flag, Airflow re-parses, the original operator is back
    set_task_migrated(state, dag_id="unnamed", task_id="b", migrated=False)
    bag = parse_dag_folder(tmp_path)
    assert type(bag.dags["unnamed"].task_dict["b"]).__name__ == "EmptyOperator"
    assert not task_is_marked_migrated(bag.dags["unnamed"].task_dict["b"].doc_md)


def test_operator_factory_builds_each_replacing_operator() -> None:
    seen: list[tuple[str | None, str]] = []

    def factory(task: Any, kwargs: dict[str, Any]) -> DagsterOperator:
        seen.append((None if task is None else task.task_id, kwargs["task_id"]))
        return DagsterOperator(**kwargs, deferrable=True, run_tags={"team": "analytics"}, asset_keys=[["raw", kwargs["task_id"]]])

    g = context_manager_dag()
    mark_as_dagster_migrating(global_vars=g, migration_state=_state("ctx.dag-1", load=True), operator_factory=factory)
    load = g["dag"].task_dict["load"]
    assert isinstance(load, DagsterOperator) and load.deferrable and load.run_tags == {"team": "analytics"}
    assert load.asset_keys == [["raw", "load"]] and load.retries == 3, "the kept settings come in the kwargs"
    assert load.downstream_task_ids == {"build"}
    assert seen == [("load", "load")]
    g = context_manager_dag()
    dag_id = g["dag"].dag_id
    whole = MigrationState({dag_id: DagMigrationState(dag_id, dag_migrated=True)})
    mark_as_dagster_migrating(global_vars=g, migration_state=whole, operator_factory=factory)
    assert seen[-1] == (None, WHOLE_DAG_TASK_ID) and g["dag"].task_dict[WHOLE_DAG_TASK_ID].whole_dag
    with pytest.raises(AirliftMigrationError, match=r"operator_factory .*returned str for task 'load' of DAG 'ctx.dag-1'"):
        mark_as_dagster_migrating(global_vars=context_manager_dag(), migration_state=_state("ctx.dag-1", load=True),
                                  operator_factory=lambda task, kwargs: "nope")
