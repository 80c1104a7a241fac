"""The Dagster sensor definition of one Airflow instance (it runs :func:`evaluate_tick` each tick)."""

from __future__ import annotations

from collections.abc import Mapping

from dagster import (
    AssetSelection,
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from airlift_client import AirflowInstance, ui_links_for
from airlift_dagster.health import import_error_evaluations
from airlift_dagster.run_mirror import mirror_airflow_runs
from airlift_dagster.sensor.settings import SensorPlan, SensorSettings
from airlift_dagster.sensor.tick import evaluate_tick
from airlift_dagster.ticks import build_sensor_result
from airlift_dagster.transform import EventTransformer
from airlift_protocol import AirflowImportError


def build_airflow_sensor(
    *,
    airflow_instance: AirflowInstance,
    plan: SensorPlan,
    minimum_interval_seconds: int = 30,
    default_status: DefaultSensorStatus = DefaultSensorStatus.RUNNING,
    settings: SensorSettings | None = None,
    event_transformer: EventTransformer | None = None,
    import_errors: Mapping[str, AirflowImportError] | None = None,
) -> SensorDefinition:
    """The polling sensor of one Airflow instance (name ``<instance>__airflow_sensor``). DAGs in
    ``import_errors`` (their file fails to import) get a failed ``airflow_dag_imports`` check once per error.

    >>> sensor_def = build_airflow_sensor(airflow_instance=airflow_instance, plan=plan)  # doctest: +SKIP
    """
    all_user_checks = sorted({k for keys in plan.user_check_keys.values() for k in keys}, key=str)
    settings = settings or SensorSettings()
    links = ui_links_for(plan.api, plan.webserver_url)

    @sensor(
        name=f"{plan.instance_name}__airflow_sensor",
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description=f"Polls Airflow instance {plan.instance_name!r} for changed runs and task instances and turns them into Dagster events.",
        asset_selection=AssetSelection.checks(*all_user_checks) if all_user_checks else None,
    )
    def _airflow_sensor(context: SensorEvaluationContext) -> SensorResult:
        outcome = evaluate_tick(context=context, airflow_instance=airflow_instance, plan=plan, settings=settings,
                                event_transformer=event_transformer)
        for warning in outcome.warnings:
            context.log.warning(warning)
        if import_errors:
            outcome.events = [*import_error_evaluations(context.instance, plan.dag_asset_keys, import_errors), *outcome.events]
        if settings.mirror_runs:
            outcome.events = mirror_airflow_runs(
                context.instance, instance_name=plan.instance_name, runs=outcome.runs, task_instances=outcome.task_instances,
                events=outcome.events, links=links,
                code_location_origin=context.code_location_origin, repository_name=context.repository_name,
            )
        if outcome.events or not outcome.caught_up:
            context.log.info(
                f"read {outcome.rows_read} changed Airflow rows, emitted {len(outcome.events)} events "
                f"({outcome.dropped_held} already in Dagster, {outcome.dropped_built} built by Dagster runs; "
                f"{outcome.dagster_records_read} Dagster event records read){'' if outcome.caught_up else '; more next tick'}"
            )
        check_keys = sorted({k for key in outcome.materialized for k in plan.user_check_keys.get(key, ())}, key=str)
        run_requests = [RunRequest(asset_selection=[], asset_check_keys=check_keys)] if check_keys else []
        return build_sensor_result(asset_events=outcome.events, cursor=outcome.cursor.serialize(), run_requests=run_requests,
                                   warnings=outcome.warnings)

    return _airflow_sensor

