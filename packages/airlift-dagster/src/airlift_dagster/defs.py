"""``build_defs_from_airflow_instance``: peer an Airflow instance and observe its tasks' assets."""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from dagster import (
    AssetCheckKey,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSpec,
    AssetKey,
    AssetsDefinition,
    AssetSpec,
    DefaultSensorStatus,
    Definitions,
    Failure,
    GraphDefinition,
    In,
    JobDefinition,
    MetadataValue,
    Nothing,
    Out,
    TimeWindowPartitionsDefinition,
    op,
)

from airlift_client import AirflowInstance, ui_links_for
from airlift_dagster._compat import (
    KIND_PREFIX,
    DagsterInvalidMetadata,
    DefinitionsLoadContext,
    DefinitionsLoadType,
    preview_api,
)
from airlift_dagster.errors import AirliftDagsterError
from airlift_dagster.health import (
    import_error_check_specs,
    import_error_description,
    import_error_metadata,
)
from airlift_dagster.mapping import dag_handle_of, map_specs, task_asset_indexes, task_handles_of
from airlift_dagster.run_mirror import mirror_job_name
from airlift_dagster.sensor import (
    DAG_RUN_CHECK_NAME,
    PARTITION_CHECK_NAME,
    TASK_RUN_CHECK_NAME,
    SensorPlan,
    SensorSettings,
    build_airflow_sensor,
)
from airlift_dagster.state import AirflowInstanceState, DagFilter, fetch_airflow_state, raw_json
from airlift_dagster.transform import EventTransformer
from airlift_dagster.translator import (
    AirflowDagProps,
    AirflowDatasetProps,
    AirflowTranslator,
    DatasetFilter,
    dag_asset_key,
)
from airlift_dagster.trigger import ExecutableDagSettings, build_dag_trigger_asset
from airlift_protocol import (
    AirflowDataset,
    DagInfo,
    PartitionKeyError,
    TimeWindowPartitioning,
    parse_dagster_run_tags,
    task_is_marked_migrated,
)
from airlift_protocol.tags import (
    SENSOR_SETTLE_METADATA,
    TASK_ASSET_INDEX_METADATA,
    dump_task_asset_index,
)

__all__ = [
    "DAG_RUN_CHECK_NAME",
    "PARTITION_CHECK_NAME",
    "REFRESH_ENV_VAR",
    "TASK_RUN_CHECK_NAME",
    "build_defs_from_airflow_instance",
    "dag_asset_key",
    "load_airflow_state",
]

log = logging.getLogger("airlift_dagster")

#: Set to 1 to make a code-location load read Airflow again even when cached state is available.
REFRESH_ENV_VAR = "AIRLIFT_REFRESH_AIRFLOW_STATE"


def _metadata_key(instance_name: str) -> str:
    return f"airlift/state/{instance_name}"


def load_airflow_state(
    airflow_instance: AirflowInstance,
    *,
    dag_selector_fn: Callable[[DagInfo], bool] | None = None,
    refresh: bool | None = None,
    include_datasets: bool = False,
    expected_dag_ids: Collection[str] = (),
    dag_filter: DagFilter | None = None,
    include_sources: bool | None = None,
) -> AirflowInstanceState:
    """Airflow state for building definitions: from the Definitions' reconstruction metadata when
    Dagster reconstructs the code location (run workers, sensor and schedule evaluations), else read
    from Airflow. ``refresh=True`` (or env ``AIRLIFT_REFRESH_AIRFLOW_STATE=1``) always reads;
    ``expected_dag_ids`` (the mapped DAGs) are kept when their file stops importing."""
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
    return fetch_airflow_state(airflow_instance, dag_selector_fn=dag_selector_fn, include_datasets=include_datasets,
                               expected_dag_ids=expected_dag_ids, dag_filter=dag_filter, include_sources=include_sources)


@dataclass(frozen=True)
class _Mapped:
    specs: Sequence[AssetSpec]
    by_task: Mapping[tuple[str, str], list[AssetKey]]
    #: DAG id → the assets mapped to the DAG as a whole (``dag_defs`` without ``task_defs``).
    by_dag: Mapping[str, list[AssetKey]]
    #: Per spec (in the order of ``specs``): its task handles and the DAG it is mapped to as a whole.
    handles: Sequence[tuple[list[tuple[str, str]], str | None]]
    #: ``id(spec)`` → (spec, its task handles), so the specs Dagster hands back are not parsed again.
    task_handles_by_id: Mapping[int, tuple[AssetSpec, list[tuple[str, str]]]]

    def task_handles(self, spec: AssetSpec) -> list[tuple[str, str]]:
        known = self.task_handles_by_id.get(id(spec))
        return known[1] if known is not None and known[0] is spec else task_handles_of(spec)

    @property
    def dag_ids(self) -> set[str]:
        return {d for d, _ in self.by_task} | set(self.by_dag)


def _mapped_assets(defs: Definitions, elsewhere: Sequence[AssetSpec] = ()) -> _Mapped:
    specs: list[AssetSpec] = [*elsewhere]
    for item in defs.assets or ():
        if isinstance(item, AssetSpec):
            specs.append(item)
        elif isinstance(item, AssetsDefinition):
            specs.extend(item.specs)
    by_task: dict[tuple[str, str], list[AssetKey]] = {}
    by_dag: dict[str, list[AssetKey]] = {}
    handles: list[tuple[list[tuple[str, str]], str | None]] = []
    for spec in specs:
        task_handles = task_handles_of(spec)
        for handle in task_handles:
            by_task.setdefault(handle, []).append(spec.key)
        dag_id = dag_handle_of(spec)
        if dag_id is not None:
            by_dag.setdefault(dag_id, []).append(spec.key)
        handles.append((task_handles, dag_id))
    return _Mapped(specs=specs, by_task=by_task, by_dag=by_dag, handles=handles,
                   task_handles_by_id={id(spec): (spec, h) for spec, (h, _) in zip(specs, handles, strict=True)})


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
    translator: AirflowTranslator | None = None,
    datasets: DatasetFilter | bool = False,
    event_transformer: EventTransformer | None = None,
    dag_filter: DagFilter | None = None,
    include_sources: bool | None = None,
    executable_dags: Collection[str] = (),
    executable_dag_settings: ExecutableDagSettings | None = None,
    mapped_elsewhere: Sequence[AssetSpec] = (),
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

    ``translator`` (an :class:`AirflowTranslator`) changes how DAGs and datasets become asset specs;
    ``datasets`` (``True`` or a :class:`DatasetFilter`) maps the Airflow 2 datasets / Airflow 3
    assets the DAGs produce or consume to external assets (producing tasks' assets upstream,
    consuming DAGs downstream) whose Airflow events the sensor reports as materializations;
    ``event_transformer`` (see :mod:`airlift_dagster.transform`) changes what each tick reports.
    ``dag_filter`` (a :class:`DagFilter`: ids, id glob, tags) narrows the DAGs Airflow lists, server
    side (``dag_selector_fn`` then keeps some of those); ``include_sources=False`` reads no DAG
    source (the DAG assets then show none), ``True`` every one; by default (``None``) sources are read
    when at most :data:`~airlift_dagster.state.SOURCES_AUTO_LIMIT` (1,000) DAGs are selected.
    ``executable_dags``: DAG ids whose DAG asset is executable: materializing it triggers the DAG
    (run config ``conf``) and waits for the run; the run's success is that Dagster run's
    materialization, and the sensor does not report it again (see :mod:`airlift_dagster.trigger`).
    ``executable_dag_settings`` (an :class:`ExecutableDagSettings`): how their steps poll the triggered
    run and how long they wait (default every 5 seconds, for up to 24 hours).
    ``mapped_elsewhere``: specs (passed through :func:`dag_defs` / :func:`task_defs`) naming assets that
    other definitions of the code location define, e.g. executable assets of another component: they
    are mapped (sensor, checks, the task index the ``DagsterOperator`` reads) but not defined here; only
    their keys and Airlift's mapping metadata are read, so they count as not time-partitioned.
    A task-mapped asset with a time-window ``partitions_def`` is materialized for the partition its
    Airflow run's data interval (or logical date) names; a run naming none fails the
    ``airflow_partition_key`` check instead.

    A ``dag_defs``/``task_defs`` id that the Airflow instance does not have (or that
    ``dag_selector_fn`` leaves out) is an error naming it; ``allow_unknown_ids`` lists the DAG ids
    (or ``True``: all) that may appear later.

    >>> defs = build_defs_from_airflow_instance(airflow_instance=airflow_instance)  # doctest: +SKIP
    """
    settings = sensor_settings or SensorSettings(
        history_window=history_window, lateness_window=lateness_window, max_rows_per_tick=max_rows_per_tick
    )
    name = airflow_instance.name
    translator = translator or AirflowTranslator()
    dataset_filter = DatasetFilter() if datasets is True else (datasets or None)
    user_defs = defs or Definitions()
    mapped = _mapped_assets(user_defs, mapped_elsewhere)
    if airflow_state is not None:
        state = airflow_state
        airflow_instance.assume_api_version(state.api)
    else:
        state = load_airflow_state(airflow_instance, dag_selector_fn=dag_selector_fn, refresh=refresh,
                                   include_datasets=dataset_filter is not None, expected_dag_ids=mapped.dag_ids,
                                   dag_filter=dag_filter, include_sources=include_sources)
    links = ui_links_for(state.api, state.webserver_url)
    known_dags = {d.dag_id for d in state.dags}
    _check_known_ids(name, state, mapped.by_task, allow_unknown_ids, selected=dag_selector_fn is not None or dag_filter is not None,
                     dag_level=mapped.by_dag)
    triggered = _executable_dag_ids(name, executable_dags, known_dags)
    if executable_dag_settings is not None and not isinstance(executable_dag_settings, ExecutableDagSettings):
        raise AirliftDagsterError(f"Airflow instance {name!r}: executable_dag_settings takes an ExecutableDagSettings "
                                  f"(airlift_dagster.ExecutableDagSettings), got {type(executable_dag_settings).__name__}")

    def annotate(spec: AssetSpec) -> AssetSpec:
        handles = [h for h in mapped.task_handles(spec) if h[0] in known_dags]
        dag_id = handles[0][0] if handles else dag_handle_of(spec)
        if dag_id is None or dag_id not in known_dags:
            return spec
        task = state.task(*handles[0]) if len(handles) == 1 else None
        metadata: dict[str, object] = {"Airflow DAG": MetadataValue.url(links.dag_url(dag_id))}
        if len(handles) > 1:
            metadata["Airflow tasks"] = ", ".join(f"{d}.{t}" for d, t in handles)
            metadata["Migrated to Dagster"] = ", ".join(
                f"{d}.{t}" for d, t in handles if (found := state.task(d, t)) is not None and task_is_marked_migrated(found.doc_md)) or "none"
        if task is not None:
            metadata["Airflow task (raw)"] = _raw_metadata(task.raw)
            metadata["Migrated to Dagster"] = task_is_marked_migrated(task.doc_md)
        return spec.merge_attributes(metadata=metadata, kinds={"airflow"} if "airflow" not in spec.kinds else set())

    annotated = map_specs(user_defs, annotate)

    task_keys_by_dag: dict[str, list[AssetKey]] = {}
    for (dag_id, _task_id), keys in mapped.by_task.items():
        task_keys_by_dag.setdefault(dag_id, []).extend(keys)
    for dag_id, keys in mapped.by_dag.items():
        task_keys_by_dag.setdefault(dag_id, []).extend(keys)
    dag_keys = {dag.dag_id: translator.get_dag_asset_key(AirflowDagProps(name, dag)) for dag in state.dags}
    dataset_specs = _dataset_specs(name, state, translator, dataset_filter, mapped.by_task, dag_keys)
    dataset_keys_by_consumer: dict[str, list[AssetKey]] = {}
    for dataset, spec in dataset_specs:
        for dag_id in {*dataset.consuming_dags, *(d for d, _ in dataset.consuming_tasks)}:
            dataset_keys_by_consumer.setdefault(dag_id, []).append(spec.key)
    dag_specs = []
    trigger_assets = []
    check_specs = []
    indexes = task_asset_indexes(mapped.specs, mapped.handles)
    for dag in state.dags:
        deps = [*task_keys_by_dag.get(dag.dag_id, []), *dataset_keys_by_consumer.get(dag.dag_id, [])]
        source = state.sources.get(dag.dag_id)
        metadata: dict[str, object] = {
            "Airflow DAG": MetadataValue.url(links.dag_url(dag.dag_id)),
            "Raw DAG (REST)": _raw_metadata(dag.raw),
            TASK_ASSET_INDEX_METADATA: MetadataValue.json(indexes.get(dag.dag_id) or dump_task_asset_index({})),
            # push (Airflow side) reads it to stop reporting before this sensor reads the row
            SENSOR_SETTLE_METADATA: MetadataValue.float(settings.settle.total_seconds()),
        }
        if source is not None:
            metadata["Source code"] = MetadataValue.md(f"```python\n{source}\n```")
        import_error = state.import_errors.get(dag.dag_id)
        if import_error is not None:
            metadata.update(import_error_metadata(import_error))
        spec = _translated(translator.get_dag_asset_spec, AirflowDagProps(name, dag, metadata), name, f"DAG {dag.dag_id!r}")
        if import_error is not None:
            spec = spec.replace_attributes(description=import_error_description(dag.dag_id, import_error)
                                           + (f"\n\n{spec.description}" if spec.description else ""))
        # Airlift's metadata, tag and dependencies stay whatever the translator returned. One spec
        # built, not two: what replace_attributes(key, deps) then merge_attributes(metadata, tags) give.
        spec = spec.replace_attributes(key=dag_keys[dag.dag_id], deps=[*spec.deps, *deps], metadata={**spec.metadata, **metadata},
                                       tags={**_tags_without_kinds(spec), "airlift/airflow_instance": name})
        key = spec.key
        if dag.dag_id in triggered:
            trigger_assets.append(build_dag_trigger_asset(spec, airflow_instance=airflow_instance, dag_id=dag.dag_id, api=state.api,
                                                          webserver_url=state.webserver_url, settings=executable_dag_settings))
        else:
            dag_specs.append(spec)
        check_specs.append(AssetCheckSpec(DAG_RUN_CHECK_NAME, asset=key, description="The latest Airflow run of this DAG succeeded."))
    check_specs.extend(import_error_check_specs(dag_keys, state.import_errors))
    partitioning = _partitioning(name, mapped.specs, mapped.by_task)
    check_specs.extend(
        AssetCheckSpec(PARTITION_CHECK_NAME, asset=key,
                       description="The Airflow run's data interval (or logical date) names exactly one partition of this asset.")
        for key in sorted(partitioning, key=str)
    )
    for (dag_id, _task_id), keys in mapped.by_task.items():
        if dag_id in known_dags:
            check_specs.extend(
                AssetCheckSpec(TASK_RUN_CHECK_NAME, asset=key, description="The latest Airflow run of the task building this asset succeeded.")
                for key in keys
            )

    assets_checks = []
    if check_specs:

        tasks_of_key: dict[AssetKey, set[tuple[str, str]]] = {}
        for handle, keys in mapped.by_task.items():
            for key in keys:
                tasks_of_key.setdefault(key, set()).add(handle)

        # What @multi_asset_check builds, with input names of our own: Dagster 1.12 derives them from
        # the asset keys and rejects a DAG id with a dot ("team.sales-daily_v2"). The inputs carry
        # nothing: the checks read no data.
        checked = sorted({spec.asset_key for spec in check_specs}, key=lambda k: k.to_user_string())
        keys_by_input = {f"checked_asset_{i}": key for i, key in enumerate(checked)}
        specs_by_output = {spec.get_python_identifier(): spec for spec in check_specs}

        # One In and one Out shared by every input and output (they are immutable): building one per
        # checked asset costs as much as the op itself at 10,000 DAGs.
        nothing_in, optional_out = In(Nothing), Out(None, is_required=False)

        @op(name=f"{name}__airflow_run_checks", ins=dict.fromkeys(keys_by_input, nothing_in),
            out=dict.fromkeys(specs_by_output, optional_out))
        def _airflow_run_checks(context):  # type: ignore[no-untyped-def]  # dagster validates the annotation
            # The sensor evaluates these checks from Airflow's task tries, migrated ones included; the
            # DagsterOperator leaves them out of the runs it launches. A run that still selects them (a
            # DagsterOperator older than that) evaluates the migrated task's check here.
            ref = parse_dagster_run_tags(context.run.tags)
            if ref is None or (ref.instance_name is not None and ref.instance_name != name):
                return
            for key in sorted(context.selected_asset_check_keys, key=str):
                if key.name == TASK_RUN_CHECK_NAME and (ref.dag_id, ref.task_id) in tasks_of_key.get(key.asset_key, ()):
                    yield AssetCheckResult(
                        asset_key=key.asset_key,
                        check_name=key.name,
                        passed=True,
                        description=f"Built by this Dagster run for Airflow task {ref.dag_id}.{ref.task_id} in run {ref.run_id}.",
                        metadata={"Airflow run id": ref.run_id, "Try number": ref.try_number if ref.try_number is not None else -1},
                    )

        assets_checks.append(AssetChecksDefinition.create(keys_by_input_name=keys_by_input, node_def=_airflow_run_checks,
                                                          check_specs_by_output_name=specs_by_output, can_subset=True))

    user_check_keys = _user_check_keys(name, user_defs, observed={*(k for keys in mapped.by_task.values() for k in keys),
                                                                  *(k for keys in mapped.by_dag.values() for k in keys)})

    plan = SensorPlan.build(
        instance_name=name,
        api=state.api,
        webserver_url=state.webserver_url,
        upstream={dag_id: {t.task_id: t.upstream_task_ids for t in tasks} for dag_id, tasks in state.tasks.items()},
        by_task={k: v for k, v in mapped.by_task.items() if k[0] in known_dags},
        by_dag={k: v for k, v in mapped.by_dag.items() if k in known_dags},
        specs=[*mapped.specs, *(s for _, s in dataset_specs), *dag_specs],
        dag_asset_keys=dag_keys,
        user_check_keys=user_check_keys,
        dataset_keys={d.uri: s.key for d, s in dataset_specs},
        partitioning=partitioning,
        triggered_dags=triggered,
    )
    sensor = build_airflow_sensor(
        airflow_instance=airflow_instance,
        plan=plan,
        minimum_interval_seconds=sensor_minimum_interval_seconds,
        default_status=default_sensor_status,
        settings=settings,
        event_transformer=event_transformer,
        import_errors=state.import_errors,
    )
    jobs = _mirror_jobs(name, state.dags, links) if settings.mirror_runs else []
    peered = Definitions(assets=[*(s for _, s in dataset_specs), *dag_specs, *trigger_assets], asset_checks=assets_checks, sensors=[sensor], jobs=jobs)
    with preview_api():
        return Definitions.merge(annotated, peered).with_reconstruction_metadata(
            {_metadata_key(name): state.to_reconstruction_json(plan.tasks_by_dag, datasets=[d for d, _ in dataset_specs])}
        )


@op(name="airlift_runs_in_airflow", description="Stands for an Airflow DAG: it runs in Airflow, not here.")
def _runs_in_airflow(context) -> None:  # type: ignore[no-untyped-def]  # dagster validates the annotation
    dag_id = context.run.tags.get("airlift/airflow_dag_id") or context.job_def.tags.get("airlift/airflow_dag_id", "?")
    raise Failure(description=f"Job {context.job_def.name} stands for the Airflow DAG {dag_id}, which runs in Airflow: trigger "
                              "it there. Its Airflow runs appear under this job (sensor setting mirror_runs).")


def _mirror_jobs(name: str, dags: Sequence[DagInfo], links: Any) -> list[JobDefinition]:
    """One job per DAG, named as its mirrored runs (:func:`~airlift_dagster.run_mirror.mirror_job_name`), so
    they are filed under a job that Jobs lists; launching it only fails, saying the DAG runs in Airflow. Two
    DAG ids with one job name (``a.b``, ``a_b``): the first keeps it, a warning names both."""
    jobs: dict[str, JobDefinition] = {}
    owner: dict[str, str] = {}
    for dag in sorted(dags, key=lambda d: d.dag_id):
        job_name = mirror_job_name(name, dag.dag_id)
        if job_name in owner:
            log.warning("Airflow instance %r: DAGs %r and %r both have the mirrored-run job name %r; it stands for %r",
                        name, owner[job_name], dag.dag_id, job_name, owner[job_name])
            continue
        owner[job_name] = dag.dag_id
        jobs[job_name] = JobDefinition(
            graph_def=GraphDefinition(name=job_name, node_defs=[_runs_in_airflow]),
            name=job_name,
            description=f"The runs of Airflow DAG {dag.dag_id} ({links.dag_url(dag.dag_id)}), mirrored from Airflow. "
                        "The DAG runs in Airflow: launching this job only fails.",
            tags={"airlift/airflow_instance": name, "airlift/airflow_dag_id": dag.dag_id},
        )
    return list(jobs.values())


def _user_check_keys(name: str, user_defs: Definitions, *, observed: Collection[AssetKey]) -> dict[AssetKey, list[AssetCheckKey]]:
    """The user's checks the sensor requests after new Airflow data, by asset: those of
    ``defs.asset_checks`` and those declared with the assets (``check_specs=``, dagster-dbt's tests)
    on observed assets. A check declared with an asset whose definition cannot be subset would build
    the asset again to run: it is left out, with a warning naming it."""
    out: dict[AssetKey, list[AssetCheckKey]] = {}
    for checks_def in user_defs.asset_checks or ():
        for check_key in getattr(checks_def, "check_keys", ()):
            out.setdefault(check_key.asset_key, []).append(check_key)
    for item in user_defs.assets or ():
        if not isinstance(item, AssetsDefinition) or isinstance(item, AssetChecksDefinition):
            continue
        declared = sorted((k for k in item.check_keys if k.asset_key in observed), key=str)
        if declared and not item.can_subset:
            log.warning(
                "Airflow instance %r: the check(s) %s are declared with the asset(s) they check, whose definition cannot "
                "be subset, so running them would build the assets again: the sensor does not request them after Airflow "
                "data (declare them with @asset_check, or make the definition subsettable with can_subset=True)",
                name, ", ".join(f"{k.asset_key.to_user_string()}:{k.name}" for k in declared),
            )
            continue
        for check_key in declared:
            if check_key not in out.get(check_key.asset_key, ()):
                out.setdefault(check_key.asset_key, []).append(check_key)
    return out


def _executable_dag_ids(name: str, executable_dags: Collection[str], known_dags: Collection[str]) -> frozenset[str]:
    """The ``executable_dags``, each checked against the DAGs Airflow has (an unknown id is an error
    naming it and the closest ids)."""
    if isinstance(executable_dags, str):
        raise AirliftDagsterError(f"Airflow instance {name!r}: executable_dags takes a list of DAG ids, got the string "
                                  f"{executable_dags!r}: write [{executable_dags!r}]")
    unknown = sorted(set(executable_dags) - set(known_dags))
    if unknown:
        hints = "; ".join(f"{d!r} (closest: {', '.join(difflib.get_close_matches(d, sorted(known_dags), n=3)) or 'none'})"
                          for d in unknown)
        raise AirliftDagsterError(f"Airflow instance {name!r}: executable_dags names DAG ids it does not have: {hints}")
    return frozenset(executable_dags)


def _check_known_ids(
    name: str, state: AirflowInstanceState, by_task: Mapping[tuple[str, str], Sequence[AssetKey]], allow: bool | Collection[str],
    *, selected: bool = False, dag_level: Collection[str] = (),
) -> None:
    """A mapped DAG or task id that Airflow does not have is an error (unless allowed); ``dag_level``:
    the DAG ids assets are mapped to as a whole."""
    if allow is True:
        return
    allowed = set() if allow is False else set(allow)  # type: ignore[arg-type]
    known_dags = {d.dag_id for d in state.dags}
    handles: list[tuple[str, str | None]] = sorted([*by_task, *((d, None) for d in dag_level)], key=lambda h: (h[0], h[1] or ""))
    for dag_id, task_id in handles:
        if dag_id in allowed:
            continue
        if dag_id not in known_dags:
            close = difflib.get_close_matches(dag_id, sorted(known_dags), n=3)
            hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise AirliftDagsterError(
                f"dag_defs({dag_id!r}): Airflow instance {name!r} ({state.webserver_url}) has no DAG {dag_id!r}"
                f"{' that dag_filter / dag_selector_fn keep' if selected else ''}.{hint} Fix the id, or pass "
                f"allow_unknown_ids=[{dag_id!r}] to build_defs_from_airflow_instance if the DAG will appear later "
                "(a DAG whose file never imported is not known to Airflow yet: see Airflow's import errors)"
            )
        if task_id is not None and state.task(dag_id, task_id) is None and dag_id not in state.import_errors:
            task_ids = sorted(t.task_id for t in state.tasks.get(dag_id, ()))
            close = difflib.get_close_matches(task_id, task_ids, n=3)
            hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            listed = ", ".join(task_ids[:20]) + (f" and {len(task_ids) - 20} more" if len(task_ids) > 20 else "")
            raise AirliftDagsterError(
                f"task_defs({task_id!r}) in dag_defs({dag_id!r}): DAG {dag_id!r} of Airflow instance {name!r} has no task "
                f"{task_id!r}.{hint} Its tasks: {listed or 'none'}. Fix the id, or pass allow_unknown_ids=[{dag_id!r}] to "
                "build_defs_from_airflow_instance if the task will appear later"
            )


def _raw_metadata(raw: Mapping[str, Any]) -> Any:
    """``MetadataValue.json(raw_json(raw))``: a raw REST dict as JSON metadata. Dagster copies it
    through JSON itself; :func:`raw_json`'s copy (values JSON does not know as strings) is made only
    when Dagster refuses the dict as it is."""
    try:
        return MetadataValue.json(raw)
    except DagsterInvalidMetadata:
        return MetadataValue.json(raw_json(raw))


def _tags_without_kinds(spec: AssetSpec) -> dict[str, str]:
    """The tags ``AssetSpec.merge_attributes`` carries over (the kinds come back from ``spec.kinds``)."""
    return {k: v for k, v in spec.tags.items() if not k.startswith(KIND_PREFIX)}


def _translated(method: Callable[[Any], AssetSpec], props: Any, name: str, what: str) -> AssetSpec:
    """Call a translator method; its errors name it and the Airflow object."""
    try:
        spec = method(props)
    except Exception as e:
        raise AirliftDagsterError(f"translator {getattr(method, '__qualname__', method)} raised {type(e).__name__} for {what} "
                                  f"of Airflow instance {name!r}: {e}") from e
    if not isinstance(spec, AssetSpec):
        raise AirliftDagsterError(f"translator {getattr(method, '__qualname__', method)} returned {type(spec).__name__} for {what}; "
                                  "return an AssetSpec")
    return spec


def _dataset_specs(
    name: str,
    state: AirflowInstanceState,
    translator: AirflowTranslator,
    dataset_filter: DatasetFilter | None,
    by_task: Mapping[tuple[str, str], Sequence[AssetKey]],
    dag_keys: Mapping[str, AssetKey],
) -> list[tuple[AirflowDataset, AssetSpec]]:
    """One external asset per selected dataset: upstream, the assets mapped to its producing tasks
    (or, for a producing task without mapped assets, its DAG's asset, unless that DAG also consumes
    the dataset, which would be a cycle)."""
    if dataset_filter is None:
        return []
    dags = {d.dag_id: d.tags for d in state.dags}
    out: list[tuple[AirflowDataset, AssetSpec]] = []
    owner_of: dict[AssetKey, str] = {}
    for dataset in sorted(state.datasets, key=lambda d: d.uri):
        if not state.datasets_selected and not dataset_filter.selects(dataset, dags):
            continue
        consumers = {*dataset.consuming_dags, *(d for d, _ in dataset.consuming_tasks)}
        deps: list[AssetKey] = []
        for dag_id, task_id in dataset.producing_tasks:
            mapped_keys = by_task.get((dag_id, task_id))
            if mapped_keys:
                deps.extend(mapped_keys)
            elif dag_id in dag_keys and dag_id not in consumers:
                deps.append(dag_keys[dag_id])
        metadata: dict[str, object] = {"Airflow URI": dataset.uri}
        if dataset.name != dataset.uri:
            metadata["Airflow asset name"] = dataset.name
        producers = [f"{d}.{t}" for d, t in dataset.producing_tasks]
        if producers:
            metadata["Produced by"] = ", ".join(producers)
        if consumers:
            metadata["Consumed by"] = ", ".join(sorted(consumers))
        spec = _translated(translator.get_dataset_asset_spec, AirflowDatasetProps(name, dataset, metadata), name, f"dataset {dataset.uri!r}")
        spec = spec.replace_attributes(deps=sorted({*(d.asset_key for d in spec.deps), *deps}, key=str)).merge_attributes(
            metadata=metadata, tags={"airlift/airflow_instance": name})
        if spec.key in owner_of:
            raise AirliftDagsterError(
                f"Airflow instance {name!r}: datasets {owner_of[spec.key]!r} and {dataset.uri!r} both map to asset key "
                f"{spec.key.to_user_string()!r}; override AirflowTranslator.get_dataset_asset_key to tell them apart"
            )
        owner_of[spec.key] = dataset.uri
        out.append((dataset, spec))
    return out


def _partitioning(
    name: str, specs: Sequence[AssetSpec], by_task: Mapping[tuple[str, str], Sequence[AssetKey]]
) -> dict[AssetKey, TimeWindowPartitioning]:
    """Time-window partitionings of the task-mapped assets (the rule of
    :mod:`airlift_protocol.partitions`, read from the partitions definition as Dagster describes it)."""
    mapped = {k for keys in by_task.values() for k in keys}
    out: dict[AssetKey, TimeWindowPartitioning] = {}
    for spec in specs:
        partitions_def = spec.partitions_def
        if spec.key not in mapped or not isinstance(partitions_def, TimeWindowPartitionsDefinition):
            continue
        try:
            out[spec.key] = TimeWindowPartitioning.from_dagster(fmt=partitions_def.fmt, description=str(partitions_def))
        except PartitionKeyError as e:
            raise AirliftDagsterError(f"asset {spec.key.to_user_string()!r} of Airflow instance {name!r}: {e}") from e
    return out
