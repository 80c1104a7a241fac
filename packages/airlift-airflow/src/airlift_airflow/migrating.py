"""``mark_as_dagster_migrating``: swap migrated tasks for ``DagsterOperator`` when Airflow parses a DAG file.

Rules (the migration-state folder is shared by every DAG file next to it):

- every DAG found in ``global_vars`` (or registered by a ``with DAG(...):`` / ``@dag`` in the same file)
  whose id has a ``<dag_id>.yaml`` gets its ``migrated: true`` tasks replaced; ``migrated: false``
  and tasks without an entry run as before;
- a task id in the YAML that the DAG does not have is an error raised at parse time (Airflow shows it
  as an import error of the DAG file, naming the file, the DAG and the id);
- DAG ids in the folder that this file does not define are left for the files that do (the folder
  is shared, so one file cannot tell a stale DAG id from one defined next door); a caller that
  passes ``dag_ids`` (the DAGs this file defines) gets an error when one of them is not found in the
  file, so a renamed DAG cannot silently lose its migration;
- a DAG-level ``migrated: true`` replaces every task of the DAG by one ``DagsterOperator``
  (task id ``run_dag_in_dagster``, ``whole_dag=True``) that runs the assets mapped to the DAG itself
  with ``dag_defs``; flipping it to ``false`` brings the original tasks back on the next parse;
- a dynamically mapped task (``.expand()``) cannot be migrated: its downstream tasks read one XCom
  per map index, which one Dagster run cannot give back. Marking one ``migrated: true`` is an
  error at parse time that says so (migrate the whole DAG instead).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from airlift_airflow.errors import AirliftMigrationError
from airlift_airflow.operator import DEFAULT_CONN_ID, DagsterOperator
from airlift_airflow.version_compat import (
    DAG,
    autoregistered_dags,
    is_mapped,
    remove_task,
    set_dag_tags,
)
from airlift_protocol import (
    MIGRATING_DAG_TAG,
    WHOLE_DAG_TASK_ID,
    DagMigrationState,
    MigrationState,
    task_migration_doc,
)

__all__ = ["OperatorFactory", "mark_as_dagster_migrating"]

#: ``operator_factory(original_task, kwargs) -> DagsterOperator``: builds the operator replacing one
#: task (``original_task`` is ``None`` for the one task of a whole-DAG migration).
OperatorFactory = Callable[[Any, dict[str, Any]], Any]

DOC_HEADING = "### Migration to Dagster (Airlift)"

# Scheduling settings a migrated task keeps (only those the operator's constructor accepts are passed).
KEPT_SETTINGS = (
    "owner", "email", "email_on_retry", "email_on_failure", "retries", "retry_delay", "retry_exponential_backoff",
    "max_retry_delay", "start_date", "end_date", "depends_on_past", "wait_for_past_depends_before_skipping",
    "wait_for_downstream", "priority_weight", "queue", "pool", "pool_slots", "sla",
    "execution_timeout", "on_execute_callback", "on_failure_callback", "on_success_callback", "on_retry_callback",
    "trigger_rule", "max_active_tis_per_dag", "max_active_tis_per_dagrun", "executor", "executor_config",
    "run_as_user", "do_xcom_push", "inlets", "outlets",
)


def _init_params(cls: type) -> set[str]:
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is not None:
            names.update(p for p in inspect.signature(init).parameters if p not in ("self", "args", "kwargs"))
    return names


def _find_dags(global_vars: Mapping[str, Any]) -> list[Any]:
    found: dict[int, Any] = {}
    for value in global_vars.values():
        if isinstance(value, DAG):
            found[id(value)] = value
    here = global_vars.get("__file__")
    for dag in autoregistered_dags():
        if id(dag) not in found and (here is None or getattr(dag, "fileloc", None) == here):
            found[id(dag)] = dag
    return list(found.values())


def _state_doc(state: DagMigrationState, dag: Any) -> str:
    if state.dag_migrated:
        return "\n".join([DOC_HEADING, "", f"The whole DAG runs in Dagster (task `{WHOLE_DAG_TASK_ID}`)."])
    lines = [DOC_HEADING, "", "| task | runs in |", "|---|---|"]
    for task_id in sorted(dag.task_dict):
        migrated = state.is_task_migrated(task_id)
        lines.append(f"| `{task_id}` | {'Dagster' if migrated else 'Airflow'} |")
    return "\n".join(lines)


def _build(operator_class: type, factory: OperatorFactory | None, original: Any, kwargs: dict[str, Any]) -> Any:
    """The replacing operator: ``operator_class(**kwargs)``, or what ``factory(original, kwargs)``
    returns (a ``DagsterOperator`` with the task id of ``kwargs``; anything else is an error naming it)."""
    if factory is None:
        return operator_class(**kwargs)
    name = getattr(factory, "__qualname__", repr(factory))
    dag_id = getattr(kwargs.get("dag"), "dag_id", "?")
    try:
        built = factory(original, dict(kwargs))
    except AirliftMigrationError:
        raise
    except Exception as e:
        raise AirliftMigrationError(f"operator_factory {name} raised {type(e).__name__} for task {kwargs['task_id']!r} of DAG "
                                    f"{dag_id!r}: {e}") from e
    if not isinstance(built, DagsterOperator):
        raise AirliftMigrationError(f"operator_factory {name} returned {type(built).__name__} for task {kwargs['task_id']!r} of DAG "
                                    f"{dag_id!r}; return a DagsterOperator (build it from the kwargs it is given)")
    return built


def _replace(dag: Any, task_id: str, operator_class: type, extra: Mapping[str, Any], factory: OperatorFactory | None = None) -> Any:
    old = dag.task_dict[task_id]
    upstream = set(old.upstream_task_ids)
    downstream = set(old.downstream_task_ids)
    accepted = _init_params(operator_class)
    kwargs = {name: getattr(old, name) for name in KEPT_SETTINGS if name in accepted and hasattr(old, name)}
    kwargs = {k: v for k, v in kwargs.items() if v is not None or k in ("execution_timeout", "sla")}
    group = getattr(old, "task_group", None)
    label = getattr(old, "label", task_id)
    remove_task(dag, task_id)
    for up in upstream:
        dag.task_dict[up].downstream_task_ids.discard(task_id)
    for down in downstream:
        dag.task_dict[down].upstream_task_ids.discard(task_id)
    new = _build(operator_class, factory, old, {
        "task_id": label if group is not None and not group.is_root else task_id,
        "dag": dag,
        "task_group": group,
        "doc_md": task_migration_doc(getattr(old, "doc_md", None)),
        **kwargs,
        **extra,
    })
    # weight_rule is stored as a loaded strategy object that the constructor does not take back.
    for name in ("weight_rule", "priority_weight_strategy"):
        if hasattr(old, name):
            try:
                setattr(new, name, getattr(old, name))
            except (AttributeError, TypeError):
                pass
    if new.task_id != task_id:
        raise AirliftMigrationError(f"replacing task {task_id!r} of DAG {dag.dag_id!r} produced task id {new.task_id!r}")
    for up in upstream:
        dag.task_dict[up].set_downstream(new)
    for down in downstream:
        new.set_downstream(dag.task_dict[down])
    return new


def _replace_whole_dag(dag: Any, operator_class: type, extra: Mapping[str, Any], factory: OperatorFactory | None = None) -> None:
    """Swap every task of the DAG for one DagsterOperator running the DAG's own assets."""
    if WHOLE_DAG_TASK_ID in dag.task_dict and isinstance(dag.task_dict[WHOLE_DAG_TASK_ID], DagsterOperator):
        return  # a second call changes nothing
    for task_id in list(dag.task_dict):
        task = remove_task(dag, task_id)
        task.upstream_task_ids.clear()
        task.downstream_task_ids.clear()
    defaults = dict(getattr(dag, "default_args", None) or {})
    accepted = _init_params(operator_class)
    kwargs = {k: v for k, v in defaults.items() if k in KEPT_SETTINGS and k in accepted}
    new = _build(operator_class, factory, None, {
        "task_id": WHOLE_DAG_TASK_ID,
        "dag": dag,
        "whole_dag": True,
        "doc_md": task_migration_doc("Runs the assets mapped to this DAG (dag_defs) as one Dagster run."),
        **kwargs,
        **extra,
    })
    if new.task_id != WHOLE_DAG_TASK_ID:
        raise AirliftMigrationError(f"replacing DAG {dag.dag_id!r} as a whole produced task id {new.task_id!r}")


def mark_as_dagster_migrating(
    *,
    global_vars: Mapping[str, Any],
    migration_state: MigrationState,
    dagster_operator_class: type = DagsterOperator,
    dagster_conn_id: str = DEFAULT_CONN_ID,
    dag_ids: Iterable[str] | None = None,
    operator_factory: OperatorFactory | None = None,
) -> None:
    """Swap every ``migrated: true`` task of the DAGs in ``global_vars`` for a DagsterOperator.

    Call it at the bottom of a DAG file, after the DAGs are defined (``with DAG(...)``, ``@dag`` or a
    plain ``DAG(...)``)::

        from pathlib import Path
        from airlift_airflow import load_migration_state_from_yaml, mark_as_dagster_migrating

        mark_as_dagster_migrating(
            global_vars=globals(),
            migration_state=load_migration_state_from_yaml(Path(__file__).parent / "migration_state"),
        )

    A migrated task keeps its task id, upstream/downstream links, task group, retries, retry delay,
    pool, pool slots, queue, owner, trigger rule, priority, execution timeout, callbacks and other
    scheduling settings; its doc (``doc_md``) gains the migration marker. Every DAG with a state
    file gets the ``airlift:migrating`` tag and a doc section listing where each task runs.
    Rolling back is flipping the flag to false: on the next parse the original operator is back.

    Args:
        global_vars: the DAG file's ``globals()``.
        migration_state: the state of the migration-state folder (shared by the DAG files next to it).
        dagster_operator_class: a ``DagsterOperator`` subclass to use instead.
        dagster_conn_id: Airflow connection to Dagster the operators use.
        dag_ids: the DAG ids this file defines; one that is not found is an error.
        operator_factory: builds each replacing operator instead of ``dagster_operator_class(**kwargs)``:
            called with the original task (``None`` for the task of a whole-DAG migration) and the
            keyword arguments Airlift would pass (task id, DAG, task group, doc, kept settings,
            ``dagster_conn_id``); returns a ``DagsterOperator`` with that task id, e.g. with per-task
            ``asset_keys``, ``run_tags`` or ``deferrable``::

                def factory(task, kwargs):
                    if task is not None and task.task_id == "run_dbt_model":
                        return DagsterOperator(**kwargs, deferrable=True, run_tags={"team": "analytics"})
                    return DagsterOperator(**kwargs)

    Raises:
        AirliftMigrationError: at parse time (an Airflow import error of the file), when the state
            names a task a DAG of this file does not have, or ``dag_ids`` names a DAG not found.
    """
    where = global_vars.get("__file__", "<DAG file>")
    if not (isinstance(dagster_operator_class, type) and issubclass(dagster_operator_class, DagsterOperator)):
        raise AirliftMigrationError(f"{where}: dagster_operator_class must be a subclass of DagsterOperator")
    dags = _find_dags(global_vars)
    if dag_ids is not None:
        missing = sorted(set(dag_ids) - {d.dag_id for d in dags})
        if missing:
            raise AirliftMigrationError(f"{where}: DAG id(s) {missing} are expected but not defined in this file")
    for dag in dags:
        state = migration_state.dag_state(dag.dag_id)
        if state is None:
            continue
        if state.dag_migrated:
            _replace_whole_dag(dag, dagster_operator_class, {"dagster_conn_id": dagster_conn_id}, operator_factory)
            set_dag_tags(dag, {MIGRATING_DAG_TAG})
            original = (dag.doc_md or "").split(DOC_HEADING)[0].rstrip()
            doc = _state_doc(state, dag)
            dag.doc_md = f"{original}\n\n{doc}" if original else doc
            continue
        unknown = [t for t in state.tasks if t not in dag.task_dict]
        if unknown:
            raise AirliftMigrationError(
                f"{where}: the migration state of DAG {dag.dag_id!r} names task(s) {unknown} that the DAG does not have "
                f"(its tasks: {sorted(dag.task_dict)}); fix or remove the entries in {dag.dag_id}.yaml"
            )
        mapped = [t for t in state.migrated_task_ids if is_mapped(dag.task_dict[t])]
        if mapped:
            raise AirliftMigrationError(
                f"{where}: task(s) {mapped} of DAG {dag.dag_id!r} are dynamically mapped (.expand()) and cannot be "
                "migrated one by one: their downstream tasks read one result per map index, which one Dagster run "
                f"does not give back. Set them to migrated: false in {dag.dag_id}.yaml, or migrate the whole DAG "
                "(top-level migrated: true)"
            )
        for task_id in state.migrated_task_ids:
            if not isinstance(dag.task_dict[task_id], DagsterOperator):  # a second call changes nothing
                _replace(dag, task_id, dagster_operator_class, {"dagster_conn_id": dagster_conn_id}, operator_factory)
        set_dag_tags(dag, {MIGRATING_DAG_TAG})
        original = (dag.doc_md or "").split(DOC_HEADING)[0].rstrip()
        doc = _state_doc(state, dag)
        dag.doc_md = f"{original}\n\n{doc}" if original else doc
