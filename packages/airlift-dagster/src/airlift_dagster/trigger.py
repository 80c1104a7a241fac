"""Executable DAG assets: materializing one in Dagster triggers its Airflow DAG and waits for the run.

The step names the Airflow run itself (``dagster__<Dagster run id>``), so a retry of the step finds
the run it triggered instead of starting a second one. Before triggering it tags its own Dagster run
with the Airflow run's identity (:func:`airlift_protocol.dagster_run_tags` with task id
:data:`~airlift_protocol.DAG_TRIGGER_TASK_ID`): the sensor's ledger then leaves the DAG run's
success to this run, in flight or succeeded. When the Airflow run succeeds, the step reports the DAG
asset's materialization with the same identity the sensor would have given it
(:func:`airlift_protocol.events.dag_run_success_event`); when it fails, the step fails with its link.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from dagster import (
    AssetsDefinition,
    AssetSpec,
    Failure,
    Field,
    MaterializeResult,
    Permissive,
    multi_asset,
)

from airlift_client import AirflowInstance, ui_links_for
from airlift_client.errors import AirflowNotFoundError, AirliftClientError
from airlift_dagster.errors import AirliftDagsterError
from airlift_dagster.sensor.emissions import dagster_metadata
from airlift_protocol import DAG_TRIGGER_TASK_ID, ApiVersion, DagRun, dagster_run_tags
from airlift_protocol.events import dag_run_success_event

__all__ = ["ExecutableDagSettings", "airflow_run_id_for", "build_dag_trigger_asset"]


@dataclass(frozen=True)
class ExecutableDagSettings:
    """How the step of an executable DAG asset waits for the Airflow run it triggered.

    - ``poll_interval``: between two reads of the run's state (one REST request each);
    - ``timeout``: how long the step waits for the run to finish; then the step fails with the run's
      link (the Airflow run goes on). At least ``poll_interval``.

    >>> ExecutableDagSettings(timeout=timedelta(hours=2)).poll_interval
    datetime.timedelta(seconds=5)
    """

    poll_interval: timedelta = timedelta(seconds=5)
    timeout: timedelta = timedelta(hours=24)

    def __post_init__(self) -> None:
        for name in ("poll_interval", "timeout"):
            value = getattr(self, name)
            if not isinstance(value, timedelta) or value <= timedelta(0):
                raise AirliftDagsterError(f"executable DAG setting {name} must be a timedelta greater than zero, got {value!r}")
        if self.timeout < self.poll_interval:
            raise AirliftDagsterError(f"executable DAG setting timeout ({self.timeout}) is shorter than poll_interval "
                                      f"({self.poll_interval}): raise timeout or lower poll_interval")


def airflow_run_id_for(dagster_run_id: str) -> str:
    """The Airflow run id a Dagster run triggers: one per Dagster run, so a retried step re-attaches.

    >>> airflow_run_id_for("0b1c")
    'dagster__0b1c'
    """
    return f"dagster__{dagster_run_id}"


def _op_name(instance_name: str, dag_id: str) -> str:
    """A valid, unique op name for the DAG's trigger (``[A-Za-z0-9_]``; a digest keeps odd ids apart)."""
    plain = re.sub(r"[^A-Za-z0-9_]", "_", f"{instance_name}__run_dag__{dag_id}")
    if plain == f"{instance_name}__run_dag__{dag_id}":
        return plain
    return f"{plain}_{hashlib.sha1(dag_id.encode('utf-8')).hexdigest()[:8]}"


def build_dag_trigger_asset(
    spec: AssetSpec,
    *,
    airflow_instance: AirflowInstance,
    dag_id: str,
    api: ApiVersion,
    webserver_url: str,
    settings: ExecutableDagSettings | None = None,
) -> AssetsDefinition:
    """The DAG asset ``spec`` as an executable asset whose step triggers the Airflow DAG (with the run
    config's ``conf``), waits for the run (``settings``) and reports its success as the asset's materialization.

    Run config: ``{"ops": {<op name>: {"config": {"conf": {...}}}}}``; the op name is
    ``<instance>__run_dag__<dag_id>`` (other characters as ``_`` plus a digest).
    """
    name = airflow_instance.name
    links = ui_links_for(api, webserver_url)
    waiting = settings or ExecutableDagSettings()

    conf_field = Field(Permissive(), default_value={}, is_required=False,  # type: ignore[no-untyped-call]
                       description="The Airflow DAG run's conf.")

    @multi_asset(specs=[spec], name=_op_name(name, dag_id), config_schema={"conf": conf_field},
                 description=f"Triggers the Airflow DAG {dag_id} and waits for its run.")
    def _run_dag(context) -> MaterializeResult:  # type: ignore[no-untyped-def,type-arg]  # dagster validates the annotation
        conf = dict(context.op_execution_context.op_config.get("conf") or {})
        dagster_run_id = context.run.run_id
        run_id = airflow_run_id_for(dagster_run_id)
        context.instance.add_run_tags(dagster_run_id, dagster_run_tags(dag_id=dag_id, task_id=DAG_TRIGGER_TASK_ID, run_id=run_id,
                                                                      instance_name=name))
        run = _trigger_once(airflow_instance, dag_id, run_id, conf)
        url = links.run_url(dag_id, run_id)
        context.log.info(f"Airflow DAG run {run_id} of {dag_id} ({run.state}): {url}")
        try:
            run = airflow_instance.wait_for_run(dag_id, run_id, timeout=waiting.timeout.total_seconds(),
                                                poll_interval=waiting.poll_interval.total_seconds())
        except AirliftClientError as e:
            raise Failure(description=f"waiting for Airflow DAG run {run_id} of {dag_id} ({url}): {e}") from e
        if not run.is_success or run.end_date is None:
            raise Failure(description=f"Airflow DAG run {run_id} of {dag_id} ended {run.state}: {url}",
                          metadata={"Airflow run": url})
        event = dag_run_success_event(instance_name=name, links=links, dag_id=dag_id, run_id=run_id, run_type=run.run_type,
                                      start_date=run.start_date, end_date=run.end_date)
        return MaterializeResult(asset_key=spec.key, metadata=dagster_metadata(event.metadata), tags=event.tags())

    return _run_dag


def _trigger_once(airflow_instance: AirflowInstance, dag_id: str, run_id: str, conf: Mapping[str, Any]) -> DagRun:
    """The Airflow run ``run_id``: the one a previous try of this step triggered, else a new one. A
    trigger whose answer was lost is looked up once by its id before the error stands."""
    try:
        return airflow_instance.get_dag_run(dag_id, run_id)
    except AirflowNotFoundError:
        pass
    try:
        dag = airflow_instance.get_dag(dag_id)
        if dag.is_paused:
            raise Failure(description=f"the Airflow DAG {dag_id} is paused ({airflow_instance.dag_url(dag_id)}): a triggered run "
                                      "would wait until it is unpaused. Unpause it in Airflow, then materialize again.")
        return airflow_instance.trigger_dag(dag_id, conf=conf, run_id=run_id)
    except AirliftClientError as e:
        try:
            return airflow_instance.get_dag_run(dag_id, run_id)
        except AirliftClientError:
            raise Failure(description=f"triggering the Airflow DAG {dag_id} (run {run_id}) failed: {e}") from e
