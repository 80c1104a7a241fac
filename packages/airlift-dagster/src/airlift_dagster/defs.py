"""``build_defs_from_airflow_instance``: peer an Airflow instance and observe its tasks' assets."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

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
from airlift_dagster.mapping import map_specs, task_handle_of
from airlift_dagster.sensor import (
    DAG_RUN_CHECK_NAME,
    TASK_RUN_CHECK_NAME,
    SensorPlan,
    build_airflow_sensor,
)
from airlift_dagster.state import AirflowInstanceState, fetch_airflow_state, raw_json
from airlift_protocol import DagInfo, task_is_marked_migrated

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
) -> Definitions:
    """Dagster definitions for an Airflow instance.

    - one external asset per DAG, key ``[instance_name, "dag", dag_id]``, with the DAG's source code,
      a link to it in the Airflow UI and the raw REST dict; it depends on the assets of its tasks;
    - your ``defs`` (built with :func:`dag_defs` / :func:`task_defs`), with task-mapped assets
      annotated (task link, raw task dict, migration status);
    - asset checks ``airflow_dag_run_succeeded`` (on DAG assets) and ``airflow_task_succeeded`` (on
      task-mapped assets) that the sensor evaluates from Airflow runs: a failed run shows as a failed
      check with the run link;
    - one sensor that turns finished Airflow runs into materializations.

    >>> defs = build_defs_from_airflow_instance(airflow_instance=airflow_instance)  # doctest: +SKIP
    """
    name = airflow_instance.name
    state = load_airflow_state(airflow_instance, dag_selector_fn=dag_selector_fn, refresh=refresh)
    links = ui_links_for(state.api, state.webserver_url)
    user_defs = defs or Definitions()
    mapped = _mapped_assets(user_defs)
    known_dags = {d.dag_id for d in state.dags}

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
    for dag in state.dags:
        deps = task_keys_by_dag.get(dag.dag_id, [])
        source = state.sources.get(dag.dag_id)
        metadata: dict[str, object] = {
            "Airflow DAG": MetadataValue.url(links.dag_url(dag.dag_id)),
            "Raw DAG (REST)": MetadataValue.json(raw_json(dag.raw)),
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

        @multi_asset_check(specs=check_specs, name=f"{name}__airflow_run_checks", can_subset=True)
        def _airflow_run_checks(context):  # type: ignore[no-untyped-def]  # dagster validates the annotation
            # The sensor evaluates these checks from Airflow runs. They only execute inside a Dagster
            # run that built their asset (a migrated task), which then succeeded in Dagster.
            for key in sorted(context.selected_asset_check_keys, key=str):
                yield AssetCheckResult(
                    asset_key=key.asset_key,
                    check_name=key.name,
                    passed=True,
                    description="Built by this Dagster run (the task is migrated).",
                )

        assets_checks.append(_airflow_run_checks)

    user_check_keys: dict[AssetKey, list[AssetCheckKey]] = {}
    for checks_def in user_defs.asset_checks or ():
        for check_key in getattr(checks_def, "check_keys", ()):
            user_check_keys.setdefault(check_key.asset_key, []).append(check_key)

    plan = SensorPlan.build(
        state=state,
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
    )
    peered = Definitions(assets=dag_specs, asset_checks=assets_checks, sensors=[sensor])
    with preview_api():
        return Definitions.merge(annotated, peered).with_reconstruction_metadata({_metadata_key(name): state.to_json()})
