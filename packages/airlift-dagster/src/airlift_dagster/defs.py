"""``build_defs_from_airflow_instance``: peer an Airflow instance and observe its tasks' assets."""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

from dagster import (
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSpec,
    AssetKey,
    AssetsDefinition,
    AssetSpec,
    DefaultSensorStatus,
    Definitions,
    MetadataValue,
    multi_asset_check,
)

from airlift_client import AirflowInstance, ui_links_for
from airlift_dagster._compat import DefinitionsLoadContext, DefinitionsLoadType, preview_api
from airlift_dagster.errors import AirliftDagsterError
from airlift_dagster.mapping import map_specs, task_asset_indexes, task_handle_of
from airlift_dagster.sensor import (
    DAG_RUN_CHECK_NAME,
    TASK_RUN_CHECK_NAME,
    SensorPlan,
    SensorSettings,
    build_airflow_sensor,
)
from airlift_dagster.state import AirflowInstanceState, fetch_airflow_state, raw_json
from airlift_protocol import DagInfo, parse_dagster_run_tags, task_is_marked_migrated
from airlift_protocol.tags import TASK_ASSET_INDEX_METADATA, dump_task_asset_index

__all__ = [
    "DAG_RUN_CHECK_NAME",
    "REFRESH_ENV_VAR",
    "TASK_RUN_CHECK_NAME",
    "build_defs_from_airflow_instance",
    "dag_asset_key",
    "load_airflow_state",
]

#: Set to 1 to make a code-location load read Airflow again even when cached state is available.
REFRESH_ENV_VAR = "AIRLIFT_REFRESH_AIRFLOW_STATE"


def dag_asset_key(instance_name: str, dag_id: str) -> AssetKey:
    """Key of the asset standing for a DAG: ``[instance_name, "dag", dag_id]``."""
    return AssetKey([instance_name, "dag", dag_id])


def _metadata_key(instance_name: str) -> str:
    return f"airlift/state/{instance_name}"


def load_airflow_state(
    airflow_instance: AirflowInstance,
    *,
    dag_selector_fn: Callable[[DagInfo], bool] | None = None,
    refresh: bool | None = None,
) -> AirflowInstanceState:
    """Airflow state for building definitions: from the Definitions' reconstruction metadata when
    Dagster reconstructs the code location (run workers, sensor and schedule evaluations), else read
    from Airflow. ``refresh=True`` (or env ``AIRLIFT_REFRESH_AIRFLOW_STATE=1``) always reads."""
    if refresh is None:
        refresh = os.environ.get(REFRESH_ENV_VAR, "") in ("1", "true", "yes")
    context = DefinitionsLoadContext.get()
    key = _metadata_key(airflow_instance.name)
    if not refresh and context.load_type == DefinitionsLoadType.RECONSTRUCTION:
        cached = context.reconstruction_metadata.get(key)
        if cached is not None:
            state = AirflowInstanceState.from_json(cached)
            airflow_instance.assume_api_version(state.api)
            return state
    return fetch_airflow_state(airflow_instance, dag_selector_fn=dag_selector_fn)


@dataclass(frozen=True)
class _Mapped:
    specs: Sequence[AssetSpec]
    by_task: Mapping[tuple[str, str], list[AssetKey]]


def _mapped_assets(defs: Definitions) -> _Mapped:
    specs: list[AssetSpec] = []
    for item in defs.assets or ():
        if isinstance(item, AssetSpec):
            specs.append(item)
        elif isinstance(item, AssetsDefinition):
            specs.extend(item.specs)
    by_task: dict[tuple[str, str], list[AssetKey]] = {}
    for spec in specs:
        handle = task_handle_of(spec)
        if handle is not None:
            by_task.setdefault(handle, []).append(spec.key)
    return _Mapped(specs=specs, by_task=by_task)


def build_defs_from_airflow_instance(
    *,
    airflow_instance: AirflowInstance,
    defs: Definitions | None = None,
    sensor_minimum_interval_seconds: int = 30,
    dag_selector_fn: Callable[[DagInfo], bool] | None = None,
    default_sensor_status: DefaultSensorStatus = DefaultSensorStatus.RUNNING,
    refresh: bool | None = None,
    history_window: timedelta = SensorSettings.history_window,
    lateness_window: timedelta = SensorSettings.lateness_window,
    max_rows_per_tick: int = SensorSettings.max_rows_per_tick,
    allow_unknown_ids: bool | Collection[str] = False,
    sensor_settings: SensorSettings | None = None,
    airflow_state: AirflowInstanceState | None = None,
) -> Definitions:
    """Dagster definitions for an Airflow instance.

    - one external asset per DAG, key ``[instance_name, "dag", dag_id]``, with the DAG's source code,
      a link to it in the Airflow UI and the raw REST dict; it depends on the assets of its tasks;
    - your ``defs`` (built with :func:`dag_defs` / :func:`task_defs`), with task-mapped assets
      annotated (task link, raw task dict, migration status);
    - asset checks ``airflow_dag_run_succeeded`` (on DAG assets) and ``airflow_task_succeeded`` (on
      task-mapped assets) that the sensor evaluates from Airflow's task tries: a failed try shows as a
      failed check with the run link. A Dagster run evaluates them only when the
      ``DagsterOperator`` launched it for the asset's Airflow task (a migrated task);
    - one sensor (every ``sensor_minimum_interval_seconds``) that turns each successful Airflow task
      try into one materialization per mapped asset and each DAG run success into one of the DAG
      asset. ``history_window``: how far back its first tick, and the first tick after a DAG joins
      the mapping, reports; ``lateness_window``: how late a commit is still caught; and
      ``max_rows_per_tick``: the runs + task instances one tick reads (see the guide for costs).
    ``sensor_settings`` (a :class:`SensorSettings`) replaces those three and adds the rest.
    ``airflow_state``: build from this stored state instead of loading it (no Airflow request; what
    :class:`~airlift_dagster.AirflowInstanceComponent` does with the state Dagster keeps for it).

    A ``dag_defs``/``task_defs`` id that the Airflow instance does not have (or that
    ``dag_selector_fn`` leaves out) is an error naming it; ``allow_unknown_ids`` lists the DAG ids
    (or ``True``: all) that may appear later.

    >>> defs = build_defs_from_airflow_instance(airflow_instance=airflow_instance)  # doctest: +SKIP
    """
    settings = sensor_settings or SensorSettings(
        history_window=history_window, lateness_window=lateness_window, max_rows_per_tick=max_rows_per_tick
    )
    name = airflow_instance.name
    if airflow_state is not None:
        state = airflow_state
        airflow_instance.assume_api_version(state.api)
    else:
        state = load_airflow_state(airflow_instance, dag_selector_fn=dag_selector_fn, refresh=refresh)
    links = ui_links_for(state.api, state.webserver_url)
    user_defs = defs or Definitions()
    mapped = _mapped_assets(user_defs)
    known_dags = {d.dag_id for d in state.dags}
    _check_known_ids(name, state, mapped.by_task, allow_unknown_ids)

    def annotate(spec: AssetSpec) -> AssetSpec:
        handle = task_handle_of(spec)
        if handle is None or handle[0] not in known_dags:
            return spec
        dag_id, task_id = handle
        task = state.task(dag_id, task_id)
        metadata: dict[str, object] = {"Airflow DAG": MetadataValue.url(links.dag_url(dag_id))}
        if task is not None:
            metadata["Airflow task (raw)"] = MetadataValue.json(raw_json(task.raw))
            metadata["Migrated to Dagster"] = task_is_marked_migrated(task.doc_md)
        return spec.merge_attributes(metadata=metadata, kinds={"airflow"} if "airflow" not in spec.kinds else set())

    annotated = map_specs(user_defs, annotate)

    task_keys_by_dag: dict[str, list[AssetKey]] = {}
    for (dag_id, _task_id), keys in mapped.by_task.items():
        task_keys_by_dag.setdefault(dag_id, []).extend(keys)
    dag_specs = []
    check_specs = []
    indexes = task_asset_indexes(mapped.specs)
    for dag in state.dags:
        deps = task_keys_by_dag.get(dag.dag_id, [])
        source = state.sources.get(dag.dag_id)
        metadata: dict[str, object] = {
            "Airflow DAG": MetadataValue.url(links.dag_url(dag.dag_id)),
            "Raw DAG (REST)": MetadataValue.json(raw_json(dag.raw)),
            TASK_ASSET_INDEX_METADATA: MetadataValue.json(indexes.get(dag.dag_id) or dump_task_asset_index({})),
        }
        if source is not None:
            metadata["Source code"] = MetadataValue.md(f"```python\n{source}\n```")
        key = dag_asset_key(name, dag.dag_id)
        dag_specs.append(
            AssetSpec(
                key=key,
                deps=deps,
                description=dag.description or f"Airflow DAG {dag.dag_id!r} of {name}",
                metadata=metadata,
                kinds={"airflow"},
                group_name=name,
                tags={"airlift/airflow_instance": name},
            )
        )
        check_specs.append(AssetCheckSpec(DAG_RUN_CHECK_NAME, asset=key, description="The latest Airflow run of this DAG succeeded."))
    for (dag_id, _task_id), keys in mapped.by_task.items():
        if dag_id in known_dags:
            check_specs.extend(
                AssetCheckSpec(TASK_RUN_CHECK_NAME, asset=key, description="The latest Airflow run of the task building this asset succeeded.")
                for key in keys
            )

    assets_checks = []
    if check_specs:

        task_of_key = {key: handle for handle, keys in mapped.by_task.items() for key in keys}

        @multi_asset_check(specs=check_specs, name=f"{name}__airflow_run_checks", can_subset=True)
        def _airflow_run_checks(context):  # type: ignore[no-untyped-def]  # dagster validates the annotation
            # The sensor evaluates these checks from Airflow's task tries. A Dagster run evaluates one
            # only when the DagsterOperator launched that run for the Airflow task mapped to the asset
            # (a migrated task, which the run just built); otherwise the check is left to the sensor.
            ref = parse_dagster_run_tags(context.run.tags)
            if ref is None or (ref.instance_name is not None and ref.instance_name != name):
                return
            for key in sorted(context.selected_asset_check_keys, key=str):
                if key.name == TASK_RUN_CHECK_NAME and task_of_key.get(key.asset_key) == (ref.dag_id, ref.task_id):
                    yield AssetCheckResult(
                        asset_key=key.asset_key,
                        check_name=key.name,
                        passed=True,
                        description=f"Built by this Dagster run for Airflow task {ref.dag_id}.{ref.task_id} in run {ref.run_id}.",
                        metadata={"Airflow run id": ref.run_id, "Try number": ref.try_number if ref.try_number is not None else -1},
                    )

        assets_checks.append(_airflow_run_checks)

    user_check_keys: dict[AssetKey, list[AssetCheckKey]] = {}
    for checks_def in user_defs.asset_checks or ():
        for check_key in getattr(checks_def, "check_keys", ()):
            user_check_keys.setdefault(check_key.asset_key, []).append(check_key)

    mapped_task_ids: dict[str, list[str]] = {}
    for dag_id, task_id in mapped.by_task:
        mapped_task_ids.setdefault(dag_id, []).append(task_id)
    plan = SensorPlan.build(
        instance_name=name,
        api=state.api,
        webserver_url=state.webserver_url,
        upstream={dag_id: {t.task_id: t.upstream_task_ids for t in tasks} for dag_id, tasks in state.tasks.items()},
        by_task={k: v for k, v in mapped.by_task.items() if k[0] in known_dags},
        specs=[*mapped.specs, *dag_specs],
        dag_asset_keys={d.dag_id: dag_asset_key(name, d.dag_id) for d in state.dags},
        user_check_keys=user_check_keys,
    )
    sensor = build_airflow_sensor(
        airflow_instance=airflow_instance,
        plan=plan,
        minimum_interval_seconds=sensor_minimum_interval_seconds,
        default_status=default_sensor_status,
        settings=settings,
    )
    peered = Definitions(assets=dag_specs, asset_checks=assets_checks, sensors=[sensor])
    with preview_api():
        return Definitions.merge(annotated, peered).with_reconstruction_metadata(
            {_metadata_key(name): state.to_reconstruction_json(mapped_task_ids)}
        )


def _check_known_ids(
    name: str, state: AirflowInstanceState, by_task: Mapping[tuple[str, str], Sequence[AssetKey]], allow: bool | Collection[str]
) -> None:
    """A mapped DAG or task id that Airflow does not have is an error (unless allowed)."""
    if allow is True:
        return
    allowed = set() if allow is False else set(allow)  # type: ignore[arg-type]
    known_dags = {d.dag_id for d in state.dags}
    for dag_id, task_id in sorted(by_task):
        if dag_id in allowed:
            continue
        if dag_id not in known_dags:
            raise AirliftDagsterError(
                f"dag_defs({dag_id!r}): Airflow instance {name!r} ({state.webserver_url}) has no DAG {dag_id!r}"
                f"{' that dag_selector_fn keeps' if known_dags else ''}; fix the id, or pass "
                f"allow_unknown_ids=[{dag_id!r}] to build_defs_from_airflow_instance if the DAG will appear later"
            )
        if state.task(dag_id, task_id) is None:
            raise AirliftDagsterError(
                f"task_defs({task_id!r}) in dag_defs({dag_id!r}): DAG {dag_id!r} of Airflow instance {name!r} has no task "
                f"{task_id!r}; fix the id, or pass allow_unknown_ids=[{dag_id!r}] to build_defs_from_airflow_instance "
                "if the task will appear later"
            )
