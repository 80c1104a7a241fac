"""Airflow state fetched once per code-location load, as an immutable, serializable record.

Three stages keep network I/O out of definition building: :func:`fetch_airflow_state` (batched,
parallel REST reads) → :class:`AirflowInstanceState` (airlift-protocol models; serialized to JSON
into the Definitions' reconstruction metadata) → ``build_defs_from_airflow_instance``.
"""

from __future__ import annotations

import base64
import fnmatch
import json
import logging
import re
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from airlift_client import AirflowInstance, AirflowNotFoundError, AirliftClientError
from airlift_dagster.errors import AirliftDagsterError
from airlift_protocol import (
    MIGRATION_DOC_MARKER,
    AirflowDataset,
    AirflowImportError,
    ApiVersion,
    DagInfo,
    TaskInfo,
    task_is_marked_migrated,
    with_upstream_task_ids,
)

__all__ = ["SOURCES_AUTO_LIMIT", "STATE_FORMAT_VERSION", "AirflowInstanceState", "DagFilter", "fetch_airflow_state", "with_unlisted_dags"]

log = logging.getLogger("airlift_dagster")
STATE_FORMAT_VERSION = 1
#: With ``include_sources=None``, a load reads the DAG sources only up to this many DAGs (one more
#: request per DAG file: 10,000 DAGs with sources took twice as long as without, bench/README.md).
SOURCES_AUTO_LIMIT = 1000
#: The slim record carried to run workers (:meth:`AirflowInstanceState.to_reconstruction_json`).
RECONSTRUCTION_FORMAT_VERSION = 2
#: The slim record compressed (zlib, base64): ``{"v": 3, "z": "<base64>"}`` holds a version-2 record.
COMPRESSED_FORMAT_VERSION = 3


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
    #: Datasets (Airflow 2) / assets (Airflow 3) of the DAGs (read only when datasets are mapped).
    datasets: tuple[AirflowDataset, ...] = ()
    #: True for the slim record of run workers: ``datasets`` are those already selected (its DAGs
    #: carry no tags to select them by again).
    datasets_selected: bool = False
    #: Whether ``datasets`` were read from Airflow (an empty tuple then means "none"), not left out.
    datasets_read: bool = False
    #: DAGs whose file Airflow fails to import, with Airflow's import error. Such a DAG stays in
    #: ``dags`` (Airflow still serves it by id, with the tasks it last parsed) so its assets and
    #: history stay; the rest of the instance is unaffected.
    import_errors: Mapping[str, AirflowImportError] = field(default_factory=dict)

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
                "datasets": [d.to_rest() for d in self.datasets],
                "datasets_read": self.datasets_read,
                "import_errors": _import_errors_json(self.import_errors),
            },
            separators=(",", ":"),
        )

    def to_reconstruction_json(self, mapped_tasks: Mapping[str, Iterable[str]], datasets: Iterable[AirflowDataset] | None = None) -> str:
        """The slim record Dagster carries to run workers (and keeps in run snapshots): DAG ids and
        descriptions, and only the mapped tasks (id, mapped or not, migrated or not); no sources, no raw
        REST dicts, no unmapped tasks, only the mapped ``datasets`` (default: all). Run workers need
        nothing else (the sensor runs in the code server).

        >>> from airlift_protocol import ApiVersion
        >>> state = AirflowInstanceState("prod", ApiVersion.V2, "http://airflow:8080", (), {})
        >>> AirflowInstanceState.from_json(state.to_reconstruction_json({})).instance_name
        'prod'

        The record is compressed (zlib, then base64: :data:`COMPRESSED_FORMAT_VERSION`): DAG and task
        ids repeat across thousands of DAGs, and Dagster stores the metadata with every run snapshot.
        """
        tasks: dict[str, list[list[Any]]] = {}
        for dag_id, task_ids in mapped_tasks.items():
            for task_id in sorted(set(task_ids)):
                task = self.task(dag_id, task_id)
                if task is not None:
                    tasks.setdefault(dag_id, []).append([task.task_id, int(task.is_mapped), int(task_is_marked_migrated(task.doc_md))])
        slim = json.dumps(
            {
                "v": RECONSTRUCTION_FORMAT_VERSION,
                "instance_name": self.instance_name,
                "api": self.api.value,
                "webserver_url": self.webserver_url,
                "fetched_at": self.fetched_at,
                "dags": [[d.dag_id, d.description] if d.description else [d.dag_id] for d in self.dags],
                "tasks": tasks,
                "datasets": [d.to_rest() for d in (self.datasets if datasets is None else datasets)],
                "import_errors": _import_errors_json(self.import_errors),
            },
            separators=(",", ":"),
        )
        packed = base64.b64encode(zlib.compress(slim.encode(), 9)).decode("ascii")
        return json.dumps({"v": COMPRESSED_FORMAT_VERSION, "z": packed}, separators=(",", ":"))

    @classmethod
    def _from_reconstruction(cls, data: Mapping[str, Any]) -> AirflowInstanceState:
        api = ApiVersion(data["api"])
        dags = tuple(DagInfo.from_rest({"dag_id": row[0], "description": row[1] if len(row) > 1 else None}, api=api) for row in data["dags"])
        tasks = {
            dag_id: tuple(
                TaskInfo.from_rest({"task_id": task_id, "is_mapped": bool(is_mapped), "doc_md": MIGRATION_DOC_MARKER if migrated else None},
                                   dag_id=dag_id, api=api)
                for task_id, is_mapped, migrated in rows
            )
            for dag_id, rows in data["tasks"].items()
        }
        return cls(instance_name=data["instance_name"], api=api, webserver_url=data["webserver_url"], dags=dags, tasks=tasks,
                   fetched_at=float(data.get("fetched_at") or 0.0), datasets=_datasets(data, api), datasets_selected=True,
                   datasets_read=True, import_errors=_import_errors(data, api))

    @classmethod
    def from_json(cls, text: str) -> AirflowInstanceState:
        """Inverse of :meth:`to_json` and :meth:`to_reconstruction_json`; another format version is an error."""
        data = json.loads(text)
        if data.get("v") == COMPRESSED_FORMAT_VERSION:
            try:
                data = json.loads(zlib.decompress(base64.b64decode(data["z"])))
            except (KeyError, TypeError, ValueError, zlib.error) as e:
                raise AirliftDagsterError(f"cached Airflow state (format {COMPRESSED_FORMAT_VERSION}) does not decompress: {e}") from e
        if data.get("v") == RECONSTRUCTION_FORMAT_VERSION:
            return cls._from_reconstruction(data)
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
            datasets=_datasets(data, api),
            datasets_read=bool(data.get("datasets_read", bool(data.get("datasets")))),
            import_errors=_import_errors(data, api),
        )


def _datasets(data: Mapping[str, Any], api: ApiVersion) -> tuple[AirflowDataset, ...]:
    return tuple(AirflowDataset.from_rest(raw, api=api) for raw in data.get("datasets") or ())


def _import_errors_json(errors: Mapping[str, AirflowImportError]) -> dict[str, dict[str, Any]]:
    return {dag_id: {"filename": e.filename, "stack_trace": e.stack_trace, "bundle_name": e.bundle_name,
                     "timestamp": e.timestamp.isoformat() if e.timestamp else None} for dag_id, e in sorted(errors.items())}


def _import_errors(data: Mapping[str, Any], api: ApiVersion) -> dict[str, AirflowImportError]:
    return {dag_id: AirflowImportError.from_rest(raw, api=api) for dag_id, raw in (data.get("import_errors") or {}).items()}


@dataclass(frozen=True)
class DagFilter:
    """Which DAGs to read, asked of Airflow's DAG list so that only those come back: ``ids`` (exact
    ids: each read by id, the list is not read), ``id_pattern`` (a glob on the id, e.g.
    ``"sales_*"``: Airflow's list is asked for its longest literal part, then the glob is matched
    here) and ``tags`` (DAGs carrying at least one of them: Airflow's own tag filter). A DAG is kept
    when it passes every filter given.

    >>> DagFilter(id_pattern="sales_*_daily").server_pattern()
    '_daily'
    >>> DagFilter(id_pattern="sales_*").keeps(DagInfo.from_rest({"dag_id": "sales_eu"}, api=ApiVersion.V2))
    True
    """

    ids: tuple[str, ...] | None = None
    id_pattern: str | None = None
    tags: tuple[str, ...] | None = None

    def keeps(self, dag: DagInfo) -> bool:
        if self.ids is not None and dag.dag_id not in self.ids:
            return False
        if self.id_pattern is not None and not re.fullmatch(fnmatch.translate(self.id_pattern), dag.dag_id):
            return False
        return self.tags is None or bool(set(self.tags) & set(dag.tags))

    def server_pattern(self) -> str | None:
        """The longest literal part of :attr:`id_pattern` (every matching id contains it: Airflow's
        ``dag_id_pattern`` is a substring match)."""
        if self.id_pattern is None:
            return None
        parts = [p for p in re.split(r"[*?\[\]]", self.id_pattern) if p]
        return max(parts, key=len) if parts else None

    def list_dags(self, instance: AirflowInstance) -> list[DagInfo]:
        """The DAGs Airflow has that this filter keeps (by id, or Airflow's filtered list)."""
        if self.ids is not None:
            found = instance.get_dags(self.ids)
        else:
            found = list(instance.iter_dags(dag_id_pattern=self.server_pattern(), tags=self.tags or ()))
        return [d for d in found if self.keeps(d)]


def fetch_airflow_state(
    instance: AirflowInstance,
    *,
    dag_selector_fn: Callable[[DagInfo], bool] | None = None,
    include_sources: bool | None = None,
    include_datasets: bool = False,
    expected_dag_ids: Iterable[str] = (),
    dag_filter: DagFilter | None = None,
) -> AirflowInstanceState:
    """Read DAGs (paged), their tasks and sources (concurrently) from Airflow; with
    ``include_datasets``, also the datasets / assets the selected DAGs produce or consume. ``dag_filter`` narrows the DAGs Airflow lists (server side);
    ``dag_selector_fn`` then keeps some of those; ``include_sources=False`` reads no DAG source (one
    request per DAG file less), ``True`` reads every one, ``None`` (the default) reads them when at
    most :data:`SOURCES_AUTO_LIMIT` DAGs are selected and logs that it skipped them otherwise.

    ``expected_dag_ids`` (the DAGs the definitions map) that Airflow no longer lists but still serves
    by id (its file stopped importing: Airflow 3 marks such a DAG stale at once) are kept, with the
    tasks Airflow last parsed; every DAG whose file fails to import gets Airflow's import error in
    :attr:`AirflowInstanceState.import_errors`. One more request per such DAG, and one for the import
    errors when there is any.
    """
    started = time.monotonic()
    try:
        listing = dag_filter.list_dags(instance) if dag_filter is not None else instance.iter_dags()
        dags = [d for d in listing if dag_selector_fn is None or _select(dag_selector_fn, d)]
        listed = {d.dag_id for d in dags}
        import_errors = with_unlisted_dags(instance, dags, expected_dag_ids, keep=_both(dag_filter, dag_selector_fn))
        healthy = [d for d in dags if d.dag_id not in import_errors and d.dag_id in listed]
        read_sources = _reads_sources(instance.name, include_sources, len(healthy))
        if len(dags) > 50:  # a progress line on the code server's console for large instances
            log.info("airlift: %s: %d DAGs listed, reading their tasks%s...", instance.name, len(dags),
                     " and sources" if read_sources else "")
        tasks = instance.list_tasks_for_dags([d.dag_id for d in healthy])
        sources = instance.get_dag_sources(healthy) if read_sources else {}
        for dag in dags:  # a DAG whose file fails to import: what Airflow last parsed, if it still serves it
            if dag.dag_id not in tasks:
                tasks[dag.dag_id] = _last_parsed_tasks(instance, dag.dag_id, import_errors.get(dag.dag_id))
        selected = {d.dag_id for d in dags}
        datasets = tuple(d for d in instance.iter_datasets() if d.dag_ids & selected) if include_datasets and dags else ()
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
        datasets=datasets,
        datasets_read=include_datasets,
        import_errors=import_errors,
    )


def _reads_sources(name: str, include_sources: bool | None, dags: int) -> bool:
    """Whether a load reads the DAG sources: as asked, or (``None``) when at most
    :data:`SOURCES_AUTO_LIMIT` DAGs are selected."""
    if include_sources is not None:
        return include_sources
    if dags <= SOURCES_AUTO_LIMIT:
        return True
    log.info("airlift: %s: %d DAGs selected, more than %d: their sources are not read (the DAG assets show none); "
             "pass include_sources=True (component: dag_assets.source_code: true) to read them anyway",
             name, dags, SOURCES_AUTO_LIMIT)
    return False


def _last_parsed_tasks(instance: AirflowInstance, dag_id: str, error: AirflowImportError | None) -> list[TaskInfo]:
    try:
        return instance.list_tasks(dag_id)
    except AirflowNotFoundError:
        log.warning("airlift: %s: DAG %r fails to import (%s) and Airflow serves no tasks for it; its task-mapped assets "
                    "stay, without task dependencies", instance.name, dag_id, error.summary if error else "not listed")
        return []


def with_unlisted_dags(
    instance: AirflowInstance, dags: list[DagInfo], expected_dag_ids: Iterable[str], *, keep: Callable[[DagInfo], bool] | None = None,
) -> dict[str, AirflowImportError]:
    """Add to ``dags`` (as listed by Airflow) the ``expected_dag_ids`` Airflow no longer lists but still
    serves by id (``keep`` may leave them out), and return Airflow's import error of each DAG whose
    file fails to import. Requests: one per unlisted id, and one list of import errors when a DAG may
    be broken (unlisted, stale, or flagged ``has_import_errors``)."""
    listed = {d.dag_id for d in dags}
    for dag_id in sorted(set(expected_dag_ids) - listed):
        try:
            dag = instance.get_dag(dag_id)
        except AirflowNotFoundError:
            continue  # never parsed, or deleted: callers report the unknown id
        if keep is None or _select(keep, dag):
            dags.append(dag)
    if not any(d.dag_id not in listed or not d.is_active or d.raw.get("has_import_errors") for d in dags):
        return {}
    errors = list(instance.iter_import_errors())
    found: dict[str, AirflowImportError] = {}
    for dag in dags:
        error = next((e for e in errors if e.is_file_of(dag)), None)
        if error is not None:
            found[dag.dag_id] = error
    return found


def _both(dag_filter: DagFilter | None, fn: Callable[[DagInfo], bool] | None) -> Callable[[DagInfo], bool] | None:
    if dag_filter is None:
        return fn
    return lambda dag: dag_filter.keeps(dag) and (fn is None or _select(fn, dag))


def _select(fn: Callable[[DagInfo], bool], dag: DagInfo) -> bool:
    try:
        return bool(fn(dag))
    except Exception as e:
        name = getattr(fn, "__qualname__", repr(fn))
        raise AirliftDagsterError(f"dag_selector_fn {name} raised {type(e).__name__} for DAG {dag.dag_id!r}: {e}") from e


def raw_json(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON-safe copy of a raw REST dict (for metadata)."""
    return dict(json.loads(json.dumps(raw, default=str)))
