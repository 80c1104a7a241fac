"""Every Airflow-version branch of airlift-airflow, in one place.

Airflow 3 moved the authoring API to ``airflow.sdk``; Airflow 2 keeps it in ``airflow.models`` and
``airflow.hooks``. Everything else in this package imports from here.
"""

from __future__ import annotations

from typing import Any

from airflow import __version__ as AIRFLOW_VERSION
from airflow.configuration import conf as airflow_conf  # core on both generations
from airflow.listeners import hookimpl  # pluggy marker of the "airflow" project on both generations
from airflow.triggers.base import BaseTrigger, TriggerEvent  # core on both generations

__all__ = [
    "AIRFLOW_VERSION",
    "AIRFLOW_V_2_10_PLUS",
    "AIRFLOW_V_3_0_PLUS",
    "DAG",
    "BaseHook",
    "BaseOperator",
    "BaseTrigger",
    "TriggerEvent",
    "airflow_conf",
    "airflow_ui_url",
    "autoregistered_dags",
    "connection_not_found_errors",
    "hookimpl",
    "is_mapped",
    "remove_task",
    "rest_try_number",
    "set_dag_tags",
    "task_instance_fields",
]

AIRFLOW_V_3_0_PLUS = int(AIRFLOW_VERSION.split(".")[0]) >= 3
AIRFLOW_V_2_10_PLUS = tuple(int(part) for part in AIRFLOW_VERSION.split(".")[:2]) >= (2, 10)

if AIRFLOW_V_3_0_PLUS:
    from airflow.sdk import DAG, BaseOperator
    from airflow.sdk.definitions._internal.contextmanager import DagContext

    try:
        from airflow.sdk import BaseHook
    except ImportError:  # Airflow 3.0: the SDK has no hooks yet
        from airflow.hooks.base import BaseHook  # type: ignore[attr-defined,no-redef]
else:  # Airflow 2 (mypy runs against Airflow 3, where these names moved)
    from airflow.hooks.base import BaseHook  # type: ignore[attr-defined,no-redef]
    from airflow.models import DAG, BaseOperator  # type: ignore[assignment]
    from airflow.models.dag import DagContext  # type: ignore[attr-defined,no-redef]


def connection_not_found_errors() -> tuple[type[BaseException], ...]:
    """Exceptions ``BaseHook.get_connection`` raises for an unknown conn id."""
    if not AIRFLOW_V_3_0_PLUS:
        from airflow.exceptions import AirflowNotFoundException  # type: ignore[attr-defined]

        return (AirflowNotFoundException,)
    try:
        from airflow.sdk.exceptions import AirflowNotFoundException as SdkNotFound
    except ImportError:  # Airflow 3.0
        from airflow.exceptions import AirflowNotFoundException as SdkNotFound  # type: ignore[attr-defined,no-redef]

    return (SdkNotFound,)


def autoregistered_dags() -> list[Any]:
    """DAGs created with ``with DAG(...):`` (or ``@dag``) that were not assigned to a variable."""
    registered = getattr(DagContext, "autoregistered_dags", None) or set()
    return [entry[0] for entry in registered]


def remove_task(dag: Any, task_id: str) -> Any:
    """Take a task out of its DAG and task group (leaving its neighbours' links to be fixed)."""
    task = dag.task_dict.pop(task_id)
    group = getattr(task, "task_group", None)
    if group is not None:
        group.children.pop(task.node_id, None)
    dag.task_group.used_group_ids.discard(task_id)
    return task


def set_dag_tags(dag: Any, tags: set[str]) -> None:
    """Add tags to a DAG (a list on Airflow 2, a set on Airflow 3)."""
    current = dag.tags
    if current is None:
        dag.tags = sorted(tags) if not AIRFLOW_V_3_0_PLUS else set(tags)
    elif isinstance(current, list):
        current.extend(t for t in sorted(tags) if t not in current)
    else:
        current.update(tags)


def is_mapped(task: Any) -> bool:
    """True for a dynamically mapped task (``.expand()`` / ``.partial()``)."""
    return type(task).__name__ in ("MappedOperator", "DecoratedMappedOperator") or bool(getattr(task, "is_mapped", False))


# ---- listeners -----------------------------------------------------------------------------------
# The listener specs differ: Airflow 2 calls on_task_instance_* with (previous_state, task_instance,
# session) in the task's process, its task instance an ORM row; Airflow 3 calls them with
# (previous_state, task_instance) in the Task SDK's task runner, its task instance a
# RuntimeTaskInstance (no session, no ORM). A hookimpl may take a subset of the spec's arguments, so
# airlift's listener takes (previous_state, task_instance) and reads the instance through
# task_instance_fields. on_dag_run_success(dag_run, msg) runs in the scheduler on both.


def task_instance_fields(ti: Any) -> dict[str, Any]:
    """Identity and times of a task instance as a listener receives it (both generations).

    >>> from types import SimpleNamespace
    >>> ti = SimpleNamespace(dag_id="d", run_id="r", task_id="t", map_index=-1, try_number=2, prev_attempted_tries=2,
    ...                      start_date=None, end_date=None)
    >>> task_instance_fields(ti)["try_number"]
    2
    """
    map_index = getattr(ti, "map_index", -1)
    return {
        "dag_id": str(ti.dag_id),
        "run_id": str(ti.run_id),
        "task_id": str(ti.task_id),
        "map_index": int(map_index if map_index is not None else -1),
        "try_number": rest_try_number(ti),
        "start_date": getattr(ti, "start_date", None),
        "end_date": getattr(ti, "end_date", None),
    }


def rest_try_number(ti: Any) -> int:
    """The try number Airflow's REST API shows for ``ti`` (the ``try_number`` column), in any state.

    Before Airflow 2.10 the ``try_number`` property is the column only while the task is RUNNING and
    the column plus one (the next try) in every other state, so a listener called on success would
    read the next try; ``prev_attempted_tries`` is the column there. From 2.10 on (and in the Task
    SDK's runtime task instance of Airflow 3) ``try_number`` is the column.

    >>> from types import SimpleNamespace
    >>> rest_try_number(SimpleNamespace(try_number=3 if AIRFLOW_V_2_10_PLUS else 4, prev_attempted_tries=3))
    3
    """
    if not AIRFLOW_V_2_10_PLUS:
        return int(ti.prev_attempted_tries or 0)
    return int(ti.try_number or 0)


def airflow_ui_url() -> str:
    """The Airflow UI's base URL as configured (``[webserver] base_url`` on Airflow 2, ``[api]
    base_url`` on Airflow 3)."""
    section = "api" if AIRFLOW_V_3_0_PLUS else "webserver"
    return str(airflow_conf.get(section, "base_url", fallback="") or "http://localhost:8080")
