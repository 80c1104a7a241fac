"""``dag_defs`` and ``task_defs``: link Dagster definitions to the Airflow tasks that build them.

Both set asset tags (``airlift/dag_id``, ``airlift/task_id``; values through
:func:`airlift_protocol.encode_tag_value`) and asset metadata holding the exact ids, on AssetSpecs,
executable asset definitions and multi-assets alike.

>>> from dagster import AssetSpec
>>> defs = dag_defs("rebuild_customers_list", task_defs("load_raw_customers", AssetSpec(key=["raw_data", "raw_customers"])))
>>> [s.tags for s in defs.assets]
[{'airlift/task_id': 'load_raw_customers', 'airlift/dag_id': 'rebuild_customers_list'}]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from dagster import AssetsDefinition, AssetSpec, Definitions, TimeWindowPartitionsDefinition

from airlift_dagster._compat import preview_api
from airlift_dagster.errors import AirliftDagsterError
from airlift_protocol import DAG_ID_TAG, TASK_ID_TAG, encode_tag_value
from airlift_protocol.tags import dump_task_asset_index

__all__ = [
    "DAGSTER_AIRLIFT_DAG_MAPPING_KEY",
    "DAGSTER_AIRLIFT_TASK_MAPPING_KEY",
    "DAG_ID_METADATA_KEY",
    "TASK_HANDLES_METADATA_KEY",
    "TASK_ID_METADATA_KEY",
    "built_by_tasks",
    "dag_defs",
    "dag_handle_of",
    "map_specs",
    "task_asset_indexes",
    "task_defs",
    "task_handle_of",
    "task_handles_of",
]

DAG_ID_METADATA_KEY = "airlift/dag_id"
TASK_ID_METADATA_KEY = "airlift/task_id"
#: Metadata of an asset built by several Airflow tasks: JSON list of ``[dag_id, task_id]`` pairs.
TASK_HANDLES_METADATA_KEY = "airlift/task_handles"
#: The mapping metadata dagster-airlift writes on AssetSpecs (read, never written, so its users' specs
#: map unchanged): a list of ``{"dag_id", "task_id"}`` objects, and a list of ``{"dag_id"}`` objects.
DAGSTER_AIRLIFT_TASK_MAPPING_KEY = "dagster-airlift/task-mapping"
DAGSTER_AIRLIFT_DAG_MAPPING_KEY = "dagster-airlift/dag-mapping"

TaskDefsInput = AssetSpec | AssetsDefinition | Definitions


def _as_definitions(items: Iterable[Any], where: str) -> Definitions:
    assets: list[Any] = []
    merged: list[Definitions] = []
    for item in items:
        if isinstance(item, Definitions):
            merged.append(item)
        elif isinstance(item, (AssetSpec, AssetsDefinition)):
            assets.append(item)
        else:
            raise AirliftDagsterError(
                f"{where}: expected AssetSpec, asset definitions or Definitions, got {type(item).__name__}"
            )
    return Definitions.merge(Definitions(assets=assets), *merged)


def map_specs(defs: Definitions, func: Callable[[AssetSpec], AssetSpec]) -> Definitions:
    """``Definitions.map_asset_specs`` (Dagster's documented way; preview in Dagster 1.13)."""
    with preview_api():
        return defs.map_asset_specs(func=func)


def _tag(defs: Definitions, tag: str, key: str, value: str) -> Definitions:
    def add(spec: AssetSpec) -> AssetSpec:
        return spec.merge_attributes(tags={tag: encode_tag_value(value)}, metadata={key: value})

    return map_specs(defs, add)


def task_defs(task_id: str, *defs: TaskDefsInput) -> Definitions:
    """Definitions built by the Airflow task ``task_id`` (use inside :func:`dag_defs`)."""
    return _tag(_as_definitions(defs, f"task_defs({task_id!r})"), TASK_ID_TAG, TASK_ID_METADATA_KEY, task_id)


def dag_defs(dag_id: str, *defs: Definitions | AssetSpec | AssetsDefinition) -> Definitions:
    """Definitions of the DAG ``dag_id``: usually a list of :func:`task_defs`."""
    return _tag(_as_definitions(defs, f"dag_defs({dag_id!r})"), DAG_ID_TAG, DAG_ID_METADATA_KEY, dag_id)


def built_by_tasks(handles: Iterable[tuple[str, str]], *defs: TaskDefsInput) -> Definitions:
    """Definitions built by several Airflow tasks, in one DAG or several (a daily and a weekly DAG
    writing one table): ``handles`` are ``(dag_id, task_id)`` pairs. The sensor materializes each
    asset once per successful try of each of the tasks (the materialization names the task); a
    ``DagsterOperator`` replacing one of them runs the assets, the others keep reporting theirs. One
    handle is ``dag_defs(dag_id, task_defs(task_id, ...))``. The assets carry the handles in the
    ``airlift/task_handles`` metadata; the Airflow side finds them through the index on each DAG
    asset (asset tags hold one value, so they carry no ``airlift/dag_id`` / ``airlift/task_id`` tags).

    >>> defs = built_by_tasks([("daily", "load"), ("weekly", "load")], AssetSpec("sales"))
    >>> task_handles_of(next(iter(defs.resolve_all_asset_specs())))
    [('daily', 'load'), ('weekly', 'load')]
    """
    pairs = list(dict.fromkeys((str(d), str(t)) for d, t in handles))
    where = f"built_by_tasks({pairs!r})"
    if not pairs:
        raise AirliftDagsterError(f"{where}: give at least one (dag_id, task_id) pair")
    if len(pairs) == 1:
        return dag_defs(pairs[0][0], task_defs(pairs[0][1], *defs))

    def add(spec: AssetSpec) -> AssetSpec:
        known = [h for h in task_handles_of(spec) if h not in pairs]
        return spec.merge_attributes(metadata={TASK_HANDLES_METADATA_KEY: [list(h) for h in [*known, *pairs]]})

    return map_specs(_as_definitions(defs, where), add)


def _json_meta(spec: AssetSpec, key: str) -> Any:
    value = spec.metadata.get(key)
    return getattr(value, "value", getattr(value, "data", value))


def _dagster_airlift_handles(spec: AssetSpec, key: str, fields: tuple[str, ...]) -> list[tuple[str, ...]]:
    """The handles in dagster-airlift's mapping metadata ``key``: a list of objects with ``fields``; any
    other shape is an error naming the asset and the key."""
    value = _json_meta(spec, key)
    if value is None:
        return []
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(item, dict) and all(isinstance(item.get(f), str) for f in fields) for item in value
    ):
        example = "{" + ", ".join(f'"{f}": "..."' for f in fields) + "}"
        raise AirliftDagsterError(
            f"asset {spec.key.to_user_string()!r}: metadata {key!r} is {value!r}; expected a list of {example} "
            "(the form dagster-airlift writes), or map the asset with dag_defs/task_defs instead"
        )
    return list(dict.fromkeys(tuple(str(item[f]) for f in fields) for item in value))


def task_handles_of(spec: AssetSpec) -> list[tuple[str, str]]:
    """Every (dag_id, task_id) an asset is mapped to: those of :func:`built_by_tasks`, those of
    dagster-airlift's ``dagster-airlift/task-mapping`` metadata, and the one of ``dag_defs``/``task_defs``.

    >>> task_handles_of(AssetSpec("a", metadata={DAG_ID_METADATA_KEY: "d", TASK_ID_METADATA_KEY: "t"}))
    [('d', 't')]
    >>> task_handles_of(AssetSpec("b", metadata={DAGSTER_AIRLIFT_TASK_MAPPING_KEY: [{"dag_id": "d", "task_id": "t"}]}))
    [('d', 't')]
    """
    value = _json_meta(spec, TASK_HANDLES_METADATA_KEY)
    out = [(str(d), str(t)) for d, t in value] if isinstance(value, (list, tuple)) else []
    for dag_id, task_id in _dagster_airlift_handles(spec, DAGSTER_AIRLIFT_TASK_MAPPING_KEY, ("dag_id", "task_id")):
        if (dag_id, task_id) not in out:
            out.append((dag_id, task_id))
    single = task_handle_of(spec)
    return [*out, single] if single is not None and single not in out else out


def task_handle_of(spec: AssetSpec) -> tuple[str, str] | None:
    """(dag_id, task_id) an asset is mapped to with ``dag_defs``/``task_defs``, or None (see
    :func:`task_handles_of` for assets built by several tasks)."""
    dag_id = spec.metadata.get(DAG_ID_METADATA_KEY)
    task_id = spec.metadata.get(TASK_ID_METADATA_KEY)
    if dag_id is None or task_id is None:
        return None
    return str(getattr(dag_id, "value", dag_id)), str(getattr(task_id, "value", task_id))


def _meta(spec: AssetSpec, key: str) -> str | None:
    value = spec.metadata.get(key)
    return None if value is None else str(getattr(value, "value", value))


def dag_handle_of(spec: AssetSpec) -> str | None:
    """The DAG id an asset is mapped to as a whole (``dag_defs`` without ``task_defs``, or
    dagster-airlift's ``dagster-airlift/dag-mapping`` metadata naming one DAG), or None.

    >>> dag_handle_of(AssetSpec("report", metadata={DAG_ID_METADATA_KEY: "weekly"}))
    'weekly'
    >>> dag_handle_of(AssetSpec("report", metadata={DAGSTER_AIRLIFT_DAG_MAPPING_KEY: [{"dag_id": "weekly"}]}))
    'weekly'
    """
    if (_meta(spec, TASK_ID_METADATA_KEY) is not None or TASK_HANDLES_METADATA_KEY in spec.metadata
            or DAGSTER_AIRLIFT_TASK_MAPPING_KEY in spec.metadata):
        return None
    dags = [d for (d,) in _dagster_airlift_handles(spec, DAGSTER_AIRLIFT_DAG_MAPPING_KEY, ("dag_id",))]
    if len(dags) > 1:
        raise AirliftDagsterError(
            f"asset {spec.key.to_user_string()!r}: metadata {DAGSTER_AIRLIFT_DAG_MAPPING_KEY!r} maps it to the DAGs "
            f"{dags!r}; Airlift maps an asset to one whole DAG: map it to one, or to tasks of each with built_by_tasks"
        )
    own = _meta(spec, DAG_ID_METADATA_KEY)
    return own if own is not None else (dags[0] if dags else None)


def task_asset_indexes(
    specs: Iterable[AssetSpec], handles: Sequence[tuple[Sequence[tuple[str, str]], str | None]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Per DAG id, the DAG asset's :data:`~airlift_protocol.TASK_ASSET_INDEX_METADATA` value: the
    keys of the assets mapped to each task of the DAG (and to the DAG itself), so the Airflow side
    reads one asset node instead of every node of the deployment. Time-partitioned assets are listed
    as such: a push leaves them to the sensor, which records their partition. ``handles``: each
    spec's :func:`task_handles_of` and :func:`dag_handle_of`, in the order of ``specs``, when the
    caller has them already.

    >>> spec = AssetSpec(key=["raw", "customers"], metadata={DAG_ID_METADATA_KEY: "d", TASK_ID_METADATA_KEY: "load"})
    >>> task_asset_indexes([spec])
    {'d': {'tasks': {'load': [['raw', 'customers']]}, 'dag': []}}
    """
    tasks: dict[str, dict[str, list[list[str]]]] = {}
    dag_level: dict[str, list[list[str]]] = {}
    partitioned: dict[str, list[list[str]]] = {}
    specs = list(specs)
    for spec, (task_handles, whole) in zip(specs, handles if handles is not None else [(task_handles_of(s), dag_handle_of(s)) for s in specs],
                                           strict=True):
        path = list(spec.key.path)
        both: list[tuple[str, str | None]] = [*task_handles, *([(whole, None)] if whole is not None else [])]
        for dag_id in dict.fromkeys(d for d, _ in both):
            tasks.setdefault(dag_id, {})
            if isinstance(spec.partitions_def, TimeWindowPartitionsDefinition):
                partitioned.setdefault(dag_id, []).append(path)
        for dag_id, task_id in both:
            if task_id is None:
                dag_level.setdefault(dag_id, []).append(path)
            else:
                tasks[dag_id].setdefault(task_id, []).append(path)
    return {dag_id: dump_task_asset_index(by_task, dag_level.get(dag_id, ()), partitioned.get(dag_id, ())) for dag_id, by_task in tasks.items()}
