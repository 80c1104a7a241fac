"""The fields of every event Airlift reports for an Airflow object, built in one place.

The polling sensor (airlift-dagster) and the push listener (airlift-airflow) both report a
successful task-instance try and a successful DAG run; they build the description, metadata and
identity here so the two cannot drift. Metadata values carry a kind (``url``, ``timestamp``,
``text``, ``int``) that each side turns into its own representation: Dagster ``MetadataValue``
objects on the sensor side, plain JSON for Dagster's report endpoints on the push side (which
stores URLs as text and timestamps as floats).

The identity of the event (:class:`~airlift_protocol.tags.AirflowEventId`) travels in the event's
tags where the writer can set tags (the sensor) and always in two metadata entries,
``airlift/airflow_event`` and ``airlift/airflow_instance`` (Dagster's report endpoints accept
metadata but no tags), so :func:`~airlift_protocol.tags.airflow_event_key_of` recognises either.

>>> from airlift_protocol.links import ui_links_for
>>> from airlift_protocol.models import ApiVersion
>>> event = task_success_event(instance_name="prod", links=ui_links_for(ApiVersion.V2, "http://af:8080"),
...     dag_id="d", run_id="r", task_id="t", map_index=-1, try_number=1, start_date=None, end_date=None)
>>> event.metadata["Airflow run"]
MetadataEntry(kind='url', value='http://af:8080/dags/d/runs/r')
>>> event.metadata["airlift/airflow_event"].value == event.event_id.key
True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

from airlift_protocol.links import AirflowUiLinks
from airlift_protocol.tags import (
    AIRFLOW_EVENT_TAG,
    AIRFLOW_INSTANCE_RUN_TAG,
    AirflowEventId,
    encode_tag_value,
)

__all__ = [
    "DAG_IMPORT_CHECK_NAME",
    "DAG_RUN_CHECK_NAME",
    "PARTITION_CHECK_NAME",
    "SENSOR_CHECK_NAMES",
    "TASK_RUN_CHECK_NAME",
    "MetadataEntry",
    "ReportedEvent",
    "dag_run_success_event",
    "identity_metadata",
    "metadata_json",
    "task_check_metadata",
    "task_success_event",
]

#: Asset check on every mapped asset: the latest Airflow try of its task succeeded.
TASK_RUN_CHECK_NAME = "airflow_task_succeeded"
#: Asset check on every DAG asset: the latest Airflow run of the DAG succeeded.
DAG_RUN_CHECK_NAME = "airflow_dag_run_succeeded"
#: Asset check on time-partitioned mapped assets: the Airflow run names exactly one partition.
PARTITION_CHECK_NAME = "airflow_partition_key"
#: Asset check on a DAG asset: Airflow imports the DAG's file.
DAG_IMPORT_CHECK_NAME = "airflow_dag_imports"
#: Airlift's own checks. The sensor evaluates them from Airflow's records (a migrated task's try
#: included), so a Dagster run launched for a migrated task never executes them: they would cost the
#: run a step (a process, a pod) and evaluate the same try a second time.
SENSOR_CHECK_NAMES = frozenset({TASK_RUN_CHECK_NAME, DAG_RUN_CHECK_NAME, PARTITION_CHECK_NAME, DAG_IMPORT_CHECK_NAME})

def _iso(value: datetime) -> str:
    return value.astimezone(timezone.utc).isoformat()


MetadataKind = Literal["url", "timestamp", "text", "int"]


@dataclass(frozen=True)
class MetadataEntry:
    """One metadata value and its kind.

    >>> MetadataEntry("int", 2).json_value()
    2
    """

    kind: MetadataKind
    value: str | int | float

    def json_value(self) -> str | int | float:
        """The value as Dagster's report endpoints take it (URLs as text, timestamps as floats)."""
        return self.value


def identity_metadata(event_id: AirflowEventId) -> dict[str, MetadataEntry]:
    """The metadata entries carrying an event's identity (readable by ``airflow_event_key_of``).

    >>> sorted(identity_metadata(AirflowEventId("prod", "d", "r")))
    ['airlift/airflow_event', 'airlift/airflow_instance']
    """
    return {
        AIRFLOW_EVENT_TAG: MetadataEntry("text", event_id.key),
        AIRFLOW_INSTANCE_RUN_TAG: MetadataEntry("text", encode_tag_value(event_id.instance_name)),
    }


@dataclass(frozen=True)
class ReportedEvent:
    """A materialization to report (and the passing check evaluation that goes with it).

    ``check_metadata`` is the metadata of the check ``check_name`` on the same asset(s).
    """

    event_id: AirflowEventId
    description: str
    metadata: Mapping[str, MetadataEntry]
    check_name: str
    check_metadata: Mapping[str, MetadataEntry]

    def tags(self) -> dict[str, str]:
        """The identity tags of the materialization."""
        return self.event_id.tags()


def task_check_metadata(*, run_url: str, state: str, try_number: int) -> dict[str, MetadataEntry]:
    """Metadata of an ``airflow_task_succeeded`` evaluation (passing or failing).

    >>> task_check_metadata(run_url="u", state="failed", try_number=1)["Task state"].value
    'failed'
    """
    return {
        "Airflow run": MetadataEntry("url", run_url),
        "Task state": MetadataEntry("text", state),
        "Try number": MetadataEntry("int", try_number),
    }


def _dates(metadata: dict[str, MetadataEntry], start_date: datetime | None, end_date: datetime | None) -> None:
    if start_date is not None:
        metadata["Start date"] = MetadataEntry("timestamp", start_date.timestamp())
    if end_date is not None:
        metadata["End date"] = MetadataEntry("timestamp", end_date.timestamp())


def task_success_event(
    *,
    instance_name: str,
    links: AirflowUiLinks,
    dag_id: str,
    run_id: str,
    task_id: str,
    map_index: int,
    try_number: int,
    start_date: datetime | None,
    end_date: datetime | None,
    marked: bool = False,
) -> ReportedEvent:
    """The materialization of each asset mapped to a successful task-instance try. ``marked``: the
    success was set after the task ended or without running it (e.g. mark success)."""
    event_id = AirflowEventId(instance_name, dag_id, run_id, task_id=task_id, map_index=map_index, try_number=try_number)
    run_url = links.run_url(dag_id, run_id)
    metadata: dict[str, MetadataEntry] = {
        "Airflow run": MetadataEntry("url", run_url),
        "Airflow task log": MetadataEntry("url", links.log_url(dag_id, run_id, task_id, try_number=try_number, map_index=map_index)),
        "Airflow run id": MetadataEntry("text", run_id),
        "Try number": MetadataEntry("int", try_number),
    }
    if map_index >= 0:
        metadata["Map index"] = MetadataEntry("int", map_index)
    _dates(metadata, start_date, end_date)
    if marked or start_date is None:
        metadata["Marked in Airflow"] = MetadataEntry("text", "success set after the task ended or without running it (e.g. mark success)")
    metadata.update(identity_metadata(event_id))
    return ReportedEvent(
        event_id=event_id,
        description=f"Airflow task {dag_id}.{task_id} try {try_number} succeeded in run {run_id}",
        metadata=metadata,
        check_name=TASK_RUN_CHECK_NAME,
        check_metadata=task_check_metadata(run_url=run_url, state="success", try_number=try_number),
    )


def dag_run_metadata(
    *, links: AirflowUiLinks, dag_id: str, run_id: str, run_type: str | None, start_date: datetime | None, end_date: datetime,
) -> dict[str, MetadataEntry]:
    """Metadata describing a finished DAG run (materialization and ``airflow_dag_run_succeeded``)."""
    metadata: dict[str, MetadataEntry] = {
        "Airflow run": MetadataEntry("url", links.run_url(dag_id, run_id)),
        "Airflow run id": MetadataEntry("text", run_id),
        "Run type": MetadataEntry("text", run_type or ""),
    }
    _dates(metadata, start_date, end_date)
    return metadata


__all__ += ["dag_run_metadata"]


def dag_run_success_event(
    *,
    instance_name: str,
    links: AirflowUiLinks,
    dag_id: str,
    run_id: str,
    run_type: str | None,
    start_date: datetime | None,
    end_date: datetime,
    marked: bool = False,
) -> ReportedEvent:
    """The materialization of the DAG asset for a DAG run that became successful at ``end_date``."""
    event_id = AirflowEventId(instance_name, dag_id, run_id, run_end_date=_iso(end_date))
    check_metadata = dag_run_metadata(links=links, dag_id=dag_id, run_id=run_id, run_type=run_type, start_date=start_date,
                                      end_date=end_date)
    metadata = dict(check_metadata)
    if marked:
        metadata["Marked in Airflow"] = MetadataEntry("text", "success set after the run ended (e.g. mark success)")
    metadata.update(identity_metadata(event_id))
    return ReportedEvent(
        event_id=event_id,
        description=f"Airflow DAG run {run_id} succeeded",
        metadata=metadata,
        check_name=DAG_RUN_CHECK_NAME,
        check_metadata=check_metadata,
    )


def metadata_json(metadata: Mapping[str, MetadataEntry]) -> dict[str, Any]:
    """Metadata as the JSON body of Dagster's report endpoints.

    >>> metadata_json({"Try number": MetadataEntry("int", 2)})
    {'Try number': 2}
    """
    return {name: entry.json_value() for name, entry in metadata.items()}
