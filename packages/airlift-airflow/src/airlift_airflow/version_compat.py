"""Every Airflow-version branch of airlift-airflow, in one place.

Airflow 3 moved the authoring API to ``airflow.sdk``; Airflow 2 keeps it in ``airflow.models`` and
``airflow.hooks``. Everything else in this package imports from here.
"""

from __future__ import annotations

from typing import Any

from airflow import __version__ as AIRFLOW_VERSION
from airflow.triggers.base import BaseTrigger, TriggerEvent  # core on both generations

__all__ = [
    "AIRFLOW_VERSION",
    "AIRFLOW_V_3_0_PLUS",
    "DAG",
    "BaseHook",
    "BaseOperator",
    "BaseTrigger",
    "TriggerEvent",
    "autoregistered_dags",
    "connection_not_found_errors",
    "is_mapped",
    "remove_task",
    "set_dag_tags",
]

AIRFLOW_V_3_0_PLUS = int(AIRFLOW_VERSION.split(".")[0]) >= 3

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
