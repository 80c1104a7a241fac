"""Airflow state fetched once per code-location load, as an immutable, serializable record.

Three stages keep network I/O out of definition building: :func:`fetch_airflow_state` (batched,
parallel REST reads) → :class:`AirflowInstanceState` (airlift-protocol models; serialized to JSON
into the Definitions' reconstruction metadata) → ``build_defs_from_airflow_instance``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from airlift_client import AirflowInstance, AirliftClientError
from airlift_dagster.errors import AirliftDagsterError
from airlift_protocol import ApiVersion, DagInfo, TaskInfo, with_upstream_task_ids

__all__ = ["STATE_FORMAT_VERSION", "AirflowInstanceState", "fetch_airflow_state"]

log = logging.getLogger("airlift_dagster")
STATE_FORMAT_VERSION = 1


@dataclass(frozen=True)
class AirflowInstanceState:
    """DAGs, their tasks and source code of one Airflow instance at one point in time."""

    instance_name: str
    api: ApiVersion
    webserver_url: str
    dags: tuple[DagInfo, ...]
    tasks: Mapping[str, tuple[TaskInfo, ...]]
    sources: Mapping[str, str] = field(default_factory=dict)
    fetched_at: float = 0.0

    def dag(self, dag_id: str) -> DagInfo | None:
        return next((d for d in self.dags if d.dag_id == dag_id), None)

    def task(self, dag_id: str, task_id: str) -> TaskInfo | None:
        return next((t for t in self.tasks.get(dag_id, ()) if t.task_id == task_id), None)

    def to_json(self) -> str:
        """Serialize (the raw REST dicts are kept, so models re-parse exactly)."""
        return json.dumps(
            {
                "v": STATE_FORMAT_VERSION,
                "instance_name": self.instance_name,
                "api": self.api.value,
                "webserver_url": self.webserver_url,
                "fetched_at": self.fetched_at,
                "dags": [dict(d.raw) for d in self.dags],
                "tasks": {dag_id: [dict(t.raw) for t in tasks] for dag_id, tasks in self.tasks.items()},
                "sources": dict(self.sources),
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> AirflowInstanceState:
        """Inverse of :meth:`to_json`; a record of another format version is an error."""
        data = json.loads(text)
        if data.get("v") != STATE_FORMAT_VERSION:
            raise AirliftDagsterError(f"cached Airflow state has format {data.get('v')!r}, expected {STATE_FORMAT_VERSION}")
        api = ApiVersion(data["api"])
        return cls(
            instance_name=data["instance_name"],
            api=api,
            webserver_url=data["webserver_url"],
            dags=tuple(DagInfo.from_rest(raw, api=api) for raw in data["dags"]),
            tasks={
                dag_id: tuple(with_upstream_task_ids(TaskInfo.from_rest(raw, dag_id=dag_id, api=api) for raw in raws))
                for dag_id, raws in data["tasks"].items()
            },
            sources=dict(data.get("sources") or {}),
            fetched_at=float(data.get("fetched_at") or 0.0),
        )


def fetch_airflow_state(
    instance: AirflowInstance,
    *,
    dag_selector_fn: Callable[[DagInfo], bool] | None = None,
    include_sources: bool = True,
) -> AirflowInstanceState:
    """Read DAGs (paged), their tasks and sources (concurrently) from Airflow."""
    started = time.monotonic()
    try:
        dags = [d for d in instance.iter_dags() if dag_selector_fn is None or _select(dag_selector_fn, d)]
        if len(dags) > 50:  # a progress line on the code server's console for large instances
            log.info("airlift: %s: %d DAGs listed, reading their tasks and sources...", instance.name, len(dags))
        tasks = instance.list_tasks_for_dags([d.dag_id for d in dags])
        sources = instance.get_dag_sources(dags) if include_sources else {}
    except AirliftClientError as e:
        raise AirliftDagsterError(
            f"could not load the state of Airflow instance {instance.name!r} ({instance.webserver_url}): {e}"
        ) from e
    log.info(
        "airlift: %s: fetched %d DAGs, %d tasks in %.1fs (%d requests)",
        instance.name, len(dags), sum(len(t) for t in tasks.values()), time.monotonic() - started, instance.request_count,
    )
    return AirflowInstanceState(
        instance_name=instance.name,
        api=instance.api_version,
        webserver_url=instance.webserver_url,
        dags=tuple(dags),
        tasks={dag_id: tuple(t) for dag_id, t in tasks.items()},
        sources=sources,
        fetched_at=time.time(),
    )


def _select(fn: Callable[[DagInfo], bool], dag: DagInfo) -> bool:
    try:
        return bool(fn(dag))
    except Exception as e:
        name = getattr(fn, "__qualname__", repr(fn))
        raise AirliftDagsterError(f"dag_selector_fn {name} raised {type(e).__name__} for DAG {dag.dag_id!r}: {e}") from e


def raw_json(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON-safe copy of a raw REST dict (for metadata)."""
    return dict(json.loads(json.dumps(raw, default=str)))
