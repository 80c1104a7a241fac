"""The event transformer hook: change what one sensor tick reports.

An event transformer is a function ``(events, view) -> events``. It receives the tick's events
(``AssetMaterialization``, ``AssetObservation``, ``AssetCheckEvaluation``) after the sensor dropped
those Dagster already holds, so it sees each Airflow event once, plus an :class:`AirflowTickView`:
a read-only view of what the tick read from Airflow. It returns the events to report: the same,
changed, fewer or more.

Keep the ``tags`` of a materialization you change (``event.with_metadata(...)`` keeps them): they
carry the Airflow identity that makes a later tick skip it. An event you add is reported as it is.

>>> from dagster import AssetMaterialization
>>> def add_owner(events, view):
...     return [e.with_metadata({**e.metadata, "instance": view.instance_name})
...             if isinstance(e, AssetMaterialization) else e for e in events]
>>> view = AirflowTickView(instance_name="prod")
>>> [e.metadata["instance"].value for e in apply_event_transformer(add_owner, [AssetMaterialization("a")], view)]
['prod']
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

from dagster import AssetCheckEvaluation, AssetKey, AssetMaterialization, AssetObservation

from airlift_dagster.errors import AirliftDagsterError
from airlift_protocol import DagRun, DatasetEvent, TaskInstance

__all__ = ["AirflowTickView", "AirliftAssetEvent", "EventTransformer", "apply_event_transformer"]

#: The events a tick reports.
AirliftAssetEvent = AssetMaterialization | AssetObservation | AssetCheckEvaluation


def _frozen() -> Mapping[object, object]:
    return MappingProxyType({})


@dataclass(frozen=True)
class AirflowTickView:
    """What one sensor tick read from Airflow (read-only; models from :mod:`airlift_protocol`).

    - ``runs`` / ``task_instances``: the DAG runs and task instances (current try) that changed
      (and the runs read for the partitions of their tasks' assets);
    - ``dataset_events``: the dataset / asset events read;
    - ``dag_asset_keys``: DAG id → the DAG's asset key; ``task_asset_keys``: (DAG id, task id) →
      the asset keys mapped to the task; ``dataset_asset_keys``: URI → the dataset's asset key.

    >>> AirflowTickView(instance_name="prod").runs
    ()
    """

    instance_name: str
    runs: tuple[DagRun, ...] = ()
    task_instances: tuple[TaskInstance, ...] = ()
    dataset_events: tuple[DatasetEvent, ...] = ()
    dag_asset_keys: Mapping[str, AssetKey] = field(default_factory=_frozen)  # type: ignore[arg-type]
    task_asset_keys: Mapping[tuple[str, str], Sequence[AssetKey]] = field(default_factory=_frozen)  # type: ignore[arg-type]
    dataset_asset_keys: Mapping[str, AssetKey] = field(default_factory=_frozen)  # type: ignore[arg-type]

    def run(self, dag_id: str, run_id: str) -> DagRun | None:
        """The run read this tick, or ``None``."""
        return next((r for r in self.runs if r.dag_id == dag_id and r.run_id == run_id), None)


class EventTransformer(Protocol):
    """The type of an event transformer: any function ``(events, view) -> events`` (see the module
    docstring).

    >>> def drop_observations(events, view):
    ...     return [e for e in events if not isinstance(e, AssetObservation)]
    """

    def __call__(self, events: Sequence[AirliftAssetEvent], view: AirflowTickView, /) -> Iterable[AirliftAssetEvent]: ...
_KINDS = (AssetMaterialization, AssetObservation, AssetCheckEvaluation)


def apply_event_transformer(
    transformer: EventTransformer | None, events: Sequence[AirliftAssetEvent], view: AirflowTickView
) -> list[AirliftAssetEvent]:
    """The transformer's events (``events`` unchanged without one); its errors, and anything it
    returns that is not an asset event, raise :class:`AirliftDagsterError` naming it (the tick then
    fails and its cursor does not move)."""
    if transformer is None:
        return list(events)
    name = getattr(transformer, "__qualname__", repr(transformer))
    try:
        out = list(transformer(tuple(events), view))
    except Exception as e:
        raise AirliftDagsterError(f"event transformer {name} raised {type(e).__name__}: {e}") from e
    wrong = next((e for e in out if not isinstance(e, _KINDS)), None)
    if wrong is not None:
        raise AirliftDagsterError(
            f"event transformer {name} returned a {type(wrong).__name__}; return AssetMaterialization, "
            "AssetObservation or AssetCheckEvaluation objects"
        )
    return out
