"""Tag names linking Dagster assets and runs to Airflow objects.

Asset tags (set by ``dag_defs``/``task_defs`` on the Dagster side, read by the Airflow-side
``DagsterOperator`` through Dagster's GraphQL API)::

    airlift/dag_id  = <encoded dag id>
    airlift/task_id = <encoded task id>

Dagster's asset tag values must be at most 63 characters of ``[A-Za-z0-9_.-]``. Airflow ids may be
longer (250) and may contain any Unicode word character, so both sides pass ids through
:func:`encode_tag_value`, which keeps valid ids unchanged and maps the others to a stable digest.

Run tags (set by ``DagsterOperator`` on each Dagster run it launches; they let the sensor skip task
instances whose assets Dagster already materialized, and let a retried Airflow task re-attach to
the run it launched before)::

    >>> sorted(dagster_run_tags(dag_id="d", task_id="t", run_id="r", try_number=1))
    ['airlift/airflow_dag_id', 'airlift/airflow_run_id', 'airlift/airflow_task_id', 'airlift/airflow_try_number']
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "AIRFLOW_DAG_ID_RUN_TAG",
    "AIRFLOW_INSTANCE_RUN_TAG",
    "AIRFLOW_MAP_INDEX_RUN_TAG",
    "AIRFLOW_RUN_ID_RUN_TAG",
    "AIRFLOW_TASK_ID_RUN_TAG",
    "AIRFLOW_TRY_NUMBER_RUN_TAG",
    "DAGSTER_CODE_LOCATION_RUN_TAG",
    "DAG_ID_TAG",
    "MIGRATING_DAG_TAG",
    "MIGRATION_DOC_MARKER",
    "TASK_ID_TAG",
    "WHOLE_DAG_TASK_ID",
    "AirflowTaskRef",
    "dagster_run_tags",
    "encode_tag_value",
    "operator_run_tags",
    "parse_dagster_run_tags",
    "task_is_marked_migrated",
    "task_migration_doc",
]

DAG_ID_TAG = "airlift/dag_id"
TASK_ID_TAG = "airlift/task_id"

AIRFLOW_DAG_ID_RUN_TAG = "airlift/airflow_dag_id"
AIRFLOW_TASK_ID_RUN_TAG = "airlift/airflow_task_id"
AIRFLOW_RUN_ID_RUN_TAG = "airlift/airflow_run_id"
AIRFLOW_TRY_NUMBER_RUN_TAG = "airlift/airflow_try_number"
AIRFLOW_MAP_INDEX_RUN_TAG = "airlift/airflow_map_index"
AIRFLOW_INSTANCE_RUN_TAG = "airlift/airflow_instance"

#: Airflow DAG tag added to every DAG that ``mark_as_dagster_migrating`` patched.
MIGRATING_DAG_TAG = "airlift:migrating"
#: Invisible marker in a migrated task's ``doc_md`` (readable as ``doc_md`` in ``GET /dags/{id}/tasks``).
MIGRATION_DOC_MARKER = "<!-- airlift:migrated -->"

_STRICT_VALUE = re.compile(r"^[A-Za-z0-9_.-]{1,63}$")


def encode_tag_value(airflow_id: str) -> str:
    """Encode a DAG or task id as a valid Dagster asset-tag value; both sides must use this.

    >>> encode_tag_value("team.sales-daily_v2")
    'team.sales-daily_v2'
    >>> encode_tag_value("x" * 100)[:7], len(encode_tag_value("x" * 100))
    ('airlift', 48)
    """
    if _STRICT_VALUE.match(airflow_id) and not airflow_id.startswith("airlift-sha1-"):
        return airflow_id
    return "airlift-sha1-" + hashlib.sha1(airflow_id.encode("utf-8")).hexdigest()[:35]


@dataclass(frozen=True)
class AirflowTaskRef:
    """The Airflow task instance a Dagster run was launched for."""

    dag_id: str
    task_id: str
    run_id: str
    try_number: int | None = None
    map_index: int = -1
    instance_name: str | None = None


def dagster_run_tags(
    *,
    dag_id: str,
    task_id: str,
    run_id: str,
    try_number: int | None = None,
    map_index: int = -1,
    instance_name: str | None = None,
) -> dict[str, str]:
    """Tags that ``DagsterOperator`` puts on the Dagster run it launches for one Airflow task try."""
    tags = {
        AIRFLOW_DAG_ID_RUN_TAG: dag_id,
        AIRFLOW_TASK_ID_RUN_TAG: task_id,
        AIRFLOW_RUN_ID_RUN_TAG: run_id,
    }
    if try_number is not None:
        tags[AIRFLOW_TRY_NUMBER_RUN_TAG] = str(try_number)
    if map_index != -1:
        tags[AIRFLOW_MAP_INDEX_RUN_TAG] = str(map_index)
    if instance_name:
        tags[AIRFLOW_INSTANCE_RUN_TAG] = instance_name
    return tags


def parse_dagster_run_tags(tags: Mapping[str, str]) -> AirflowTaskRef | None:
    """Read the Airflow task a Dagster run belongs to from its tags; ``None`` if it has none."""
    try:
        dag_id, task_id, run_id = (
            tags[AIRFLOW_DAG_ID_RUN_TAG],
            tags[AIRFLOW_TASK_ID_RUN_TAG],
            tags[AIRFLOW_RUN_ID_RUN_TAG],
        )
    except KeyError:
        return None
    try_number = tags.get(AIRFLOW_TRY_NUMBER_RUN_TAG)
    map_index = tags.get(AIRFLOW_MAP_INDEX_RUN_TAG)
    return AirflowTaskRef(
        dag_id=dag_id,
        task_id=task_id,
        run_id=run_id,
        try_number=int(try_number) if try_number and try_number.isdigit() else None,
        map_index=int(map_index) if map_index and map_index.lstrip("-").isdigit() else -1,
        instance_name=tags.get(AIRFLOW_INSTANCE_RUN_TAG),
    )


def task_migration_doc(original_doc: str | None, *, dagster_url: str | None = None) -> str:
    """The ``doc_md`` of a migrated task: the marker, a visible note, then the original docs."""
    where = f" ([Dagster]({dagster_url}))" if dagster_url else ""
    note = f"{MIGRATION_DOC_MARKER}\n**Migrated to Dagster**{where}: this task runs as a Dagster run of its assets."
    return note + (f"\n\n{original_doc}" if original_doc else "")


def task_is_marked_migrated(doc_md: str | None) -> bool:
    """True when a task's ``doc_md`` (as read over REST) carries the migration marker."""
    return bool(doc_md) and MIGRATION_DOC_MARKER in str(doc_md)


# Operator tags: set by ``DagsterOperator`` next to the identity tags above on every run it launches.

#: The Dagster code location a run was launched in: one run per (task try, code location).
DAGSTER_CODE_LOCATION_RUN_TAG = "airlift/dagster_code_location"
#: Task id of the one task that runs a whole migrated DAG (DAG-level ``migrated: true``).
WHOLE_DAG_TASK_ID = "run_dag_in_dagster"


def operator_run_tags(
    *,
    instance_name: str,
    dag_id: str,
    task_id: str,
    run_id: str,
    try_number: int,
    map_index: int,
    location: str,
) -> dict[str, str]:
    """Every tag ``DagsterOperator`` puts on a run: the full identity (instance, DAG, run, task,
    try, map index, always present) and the code location. Together they are the launch's
    idempotency key: a launch whose answer was lost is found again by these tags.

    >>> sorted(operator_run_tags(instance_name="prod", dag_id="d", task_id="t", run_id="r", try_number=2,
    ...                          map_index=-1, location="defs").values())
    ['-1', '2', 'd', 'defs', 'prod', 'r', 't']
    """
    tags = dagster_run_tags(
        dag_id=dag_id, task_id=task_id, run_id=run_id, try_number=try_number, instance_name=instance_name
    )
    tags[AIRFLOW_MAP_INDEX_RUN_TAG] = str(map_index)
    tags[DAGSTER_CODE_LOCATION_RUN_TAG] = location
    return tags


# ---- identity of the events Airlift reports (materialization tags) -----------------------------
#
# Every materialization Airlift reports for an Airflow object carries the same identity as the run
# tags above, so any reader (the polling sensor, a push listener, the CLI) can tell whether an event
# already exists: a task-instance try is (instance, dag, run, task, map index, try number); a DAG
# run becoming successful is (instance, dag, run, end date of that success). Dagster's event tag
# values must be short ``[A-Za-z0-9_.-]`` strings, so the values go through encode_tag_value and the
# whole identity is also one digest, ``airlift/airflow_event``: compare events by it.

#: Digest of the whole identity of a reported event (see :attr:`AirflowEventId.key`).
AIRFLOW_EVENT_TAG = "airlift/airflow_event"
#: End date of the DAG run success a DAG-asset materialization stands for (encoded).
AIRFLOW_RUN_END_DATE_TAG = "airlift/airflow_run_end_date"

__all__ += ["AIRFLOW_EVENT_TAG", "AIRFLOW_RUN_END_DATE_TAG", "AirflowEventId", "airflow_event_key_of"]


@dataclass(frozen=True, order=True)
class AirflowEventId:
    """The identity of one reported Airflow event (a successful try, or a DAG run success).

    >>> event = AirflowEventId("prod", "d", "manual__2026-01-01T00:00:00+00:00", task_id="t", try_number=2)
    >>> event.is_task, len(event.key)
    (True, 40)
    >>> airflow_event_key_of(event.tags()) == event.key
    True
    """

    instance_name: str
    dag_id: str
    run_id: str
    task_id: str = ""
    map_index: int = -1
    try_number: int = 0
    run_end_date: str = ""

    @property
    def is_task(self) -> bool:
        return bool(self.task_id)

    @property
    def key(self) -> str:
        """40 hex characters standing for the whole identity (the ``airlift/airflow_event`` tag)."""
        parts = (self.instance_name, self.dag_id, self.run_id, self.task_id, str(self.map_index), str(self.try_number), self.run_end_date)
        return hashlib.sha1("\x1f".join(parts).encode("utf-8")).hexdigest()

    def tags(self) -> dict[str, str]:
        """Materialization tags carrying this identity (valid Dagster event tags).

        >>> sorted(AirflowEventId("prod", "d", "r", run_end_date="2026-01-01T00:00:00+00:00").tags())
        ['airlift/airflow_dag_id', 'airlift/airflow_event', 'airlift/airflow_instance', 'airlift/airflow_run_end_date', 'airlift/airflow_run_id']
        """
        tags = {
            AIRFLOW_EVENT_TAG: self.key,
            AIRFLOW_INSTANCE_RUN_TAG: encode_tag_value(self.instance_name),
            AIRFLOW_DAG_ID_RUN_TAG: encode_tag_value(self.dag_id),
            AIRFLOW_RUN_ID_RUN_TAG: encode_tag_value(self.run_id),
        }
        if self.is_task:
            tags[AIRFLOW_TASK_ID_RUN_TAG] = encode_tag_value(self.task_id)
            tags[AIRFLOW_TRY_NUMBER_RUN_TAG] = str(self.try_number)
            tags[AIRFLOW_MAP_INDEX_RUN_TAG] = str(self.map_index)
        else:
            tags[AIRFLOW_RUN_END_DATE_TAG] = encode_tag_value(self.run_end_date)
        return tags


def airflow_event_key_of(tags: Mapping[str, str] | None, *, instance_name: str | None = None) -> str | None:
    """The identity digest an event's tags carry (``None`` if none, or another instance's).

    >>> airflow_event_key_of(AirflowEventId("prod", "d", "r").tags(), instance_name="staging") is None
    True
    """
    if not tags or AIRFLOW_EVENT_TAG not in tags:
        return None
    if instance_name is not None and tags.get(AIRFLOW_INSTANCE_RUN_TAG) != encode_tag_value(instance_name):
        return None
    return tags[AIRFLOW_EVENT_TAG]


#: URI of the Airflow dataset / asset a dataset-event materialization stands for (encoded).
AIRFLOW_DATASET_URI_TAG = "airlift/airflow_dataset_uri"
#: Timestamp of the Airflow dataset / asset event (encoded).
AIRFLOW_DATASET_EVENT_TIME_TAG = "airlift/airflow_dataset_event_time"

__all__ += ["AIRFLOW_DATASET_EVENT_TIME_TAG", "AIRFLOW_DATASET_URI_TAG", "DatasetEventId"]


@dataclass(frozen=True, order=True)
class DatasetEventId:
    """The identity of one Airflow dataset (2.x) / asset (3.x) event: (instance, URI, timestamp, and
    the source task try's dag, run, task and map index, empty for events posted from outside).
    Its tags carry the same ``airlift/airflow_event`` digest as :class:`AirflowEventId`, so the same
    reader tells whether Dagster already holds it.

    >>> event = DatasetEventId("prod", "s3://b/orders", "2026-01-01T00:00:00+00:00", dag_id="d", run_id="r", task_id="t")
    >>> airflow_event_key_of(event.tags(), instance_name="prod") == event.key
    True
    """

    instance_name: str
    uri: str
    timestamp: str
    dag_id: str = ""
    run_id: str = ""
    task_id: str = ""
    map_index: int = -1

    @property
    def key(self) -> str:
        """40 hex characters standing for the whole identity."""
        parts = ("dataset", self.instance_name, self.uri, self.timestamp, self.dag_id, self.run_id, self.task_id, str(self.map_index))
        return hashlib.sha1("\x1f".join(parts).encode("utf-8")).hexdigest()

    def tags(self) -> dict[str, str]:
        """Materialization tags carrying this identity (valid Dagster event tags).

        >>> sorted(DatasetEventId("prod", "s3://b/k", "2026-01-01T00:00:00+00:00").tags())
        ['airlift/airflow_dataset_event_time', 'airlift/airflow_dataset_uri', 'airlift/airflow_event', 'airlift/airflow_instance']
        """
        tags = {
            AIRFLOW_EVENT_TAG: self.key,
            AIRFLOW_INSTANCE_RUN_TAG: encode_tag_value(self.instance_name),
            AIRFLOW_DATASET_URI_TAG: encode_tag_value(self.uri),
            AIRFLOW_DATASET_EVENT_TIME_TAG: encode_tag_value(self.timestamp),
        }
        if self.dag_id:
            tags[AIRFLOW_DAG_ID_RUN_TAG] = encode_tag_value(self.dag_id)
        if self.run_id:
            tags[AIRFLOW_RUN_ID_RUN_TAG] = encode_tag_value(self.run_id)
        if self.task_id:
            tags[AIRFLOW_TASK_ID_RUN_TAG] = encode_tag_value(self.task_id)
            tags[AIRFLOW_MAP_INDEX_RUN_TAG] = str(self.map_index)
        return tags
