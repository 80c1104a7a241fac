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
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "AIRFLOW_DAG_ID_RUN_TAG",
    "AIRFLOW_INSTANCE_RUN_TAG",
    "AIRFLOW_MAP_INDEX_RUN_TAG",
    "AIRFLOW_MAX_TRIES_RUN_TAG",
    "AIRFLOW_RUN_ID_RUN_TAG",
    "AIRFLOW_TASK_ID_RUN_TAG",
    "AIRFLOW_TRY_NUMBER_RUN_TAG",
    "DAGSTER_CODE_LOCATION_RUN_TAG",
    "DAG_ID_TAG",
    "DAG_MIGRATION_DOC_HEADING",
    "MIGRATING_DAG_TAG",
    "MIGRATION_DOC_MARKER",
    "TASK_ID_TAG",
    "WHOLE_DAG_TASK_ID",
    "AirflowTaskRef",
    "dagster_run_tags",
    "encode_tag_value",
    "operator_run_tags",
    "parse_dagster_run_tags",
    "run_counts_for_try",
    "task_is_marked_migrated",
    "task_migration_doc",
    "tasks_migrated_in_dag_doc",
]

DAG_ID_TAG = "airlift/dag_id"
TASK_ID_TAG = "airlift/task_id"

AIRFLOW_DAG_ID_RUN_TAG = "airlift/airflow_dag_id"
AIRFLOW_TASK_ID_RUN_TAG = "airlift/airflow_task_id"
AIRFLOW_RUN_ID_RUN_TAG = "airlift/airflow_run_id"
AIRFLOW_TRY_NUMBER_RUN_TAG = "airlift/airflow_try_number"
AIRFLOW_MAP_INDEX_RUN_TAG = "airlift/airflow_map_index"
AIRFLOW_INSTANCE_RUN_TAG = "airlift/airflow_instance"
#: The task instance's ``max_tries`` when the run was launched: Airflow changes it only when the task
#: is cleared, so it names the ATTEMPT (the tries between two clears) on both sides, whatever the DAG
#: file's ``retries`` says now. The operator and the sensor read the same value (REST ``max_tries``).
AIRFLOW_MAX_TRIES_RUN_TAG = "airlift/airflow_max_tries"

#: Airflow DAG tag added to every DAG that ``mark_as_dagster_migrating`` patched.
MIGRATING_DAG_TAG = "airlift:migrating"
#: Invisible marker in a migrated task's ``doc_md`` (readable as ``doc_md`` in ``GET /dags/{id}/tasks``).
MIGRATION_DOC_MARKER = "<!-- airlift:migrated -->"
#: Heading of the section a migrating DAG's ``doc_md`` gains: a table of where each task runs, or
#: one line naming the task that runs the whole DAG (readable in ``GET /dags/{id}/details``).
DAG_MIGRATION_DOC_HEADING = "### Migration to Dagster (Airlift)"
_DAG_DOC_ROW = re.compile(r"^\| `([^`]+)` \| (Dagster|Airflow) \|$")
_DAG_DOC_WHOLE = re.compile(r"^The whole DAG runs in Dagster \(task `([^`]+)`\)\.$")

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
    return _tag_digest(airflow_id)


def _tag_digest(text: str) -> str:
    """48 characters of ``[a-z0-9-]`` standing for ``text`` (a valid tag value or key part)."""
    return "airlift-sha1-" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:35]


def _digest(*parts: str) -> str:
    """The ``airlift/airflow_event`` value of an identity: 40 hex characters over its parts."""
    return hashlib.sha1("\x1f".join(parts).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class AirflowTaskRef:
    """The Airflow task instance a Dagster run was launched for."""

    dag_id: str
    task_id: str
    run_id: str
    try_number: int | None = None
    map_index: int = -1
    instance_name: str | None = None
    max_tries: int | None = None


def run_counts_for_try(ref: AirflowTaskRef, *, try_number: int, max_tries: int | None) -> bool:
    """Whether a Dagster run launched for ``ref`` may stand for the Airflow try ``try_number`` of the
    same task instance (whose REST ``max_tries`` is ``max_tries``): the run of that very try, or one
    launched by an earlier try of the same attempt (re-attached, reused, or retried by Dagster, whose
    retries copy the tags). A run tagged without a try number (older operators) counts for every try.
    The caller has matched instance, DAG, run, task and map index; this is the one retry-chain rule.

    >>> ref = AirflowTaskRef("d", "t", "r", try_number=1, max_tries=3)
    >>> run_counts_for_try(ref, try_number=1, max_tries=3), run_counts_for_try(ref, try_number=2, max_tries=3)
    (True, True)
    >>> run_counts_for_try(ref, try_number=4, max_tries=6)  # the task was cleared in between: a new attempt
    False
    >>> run_counts_for_try(AirflowTaskRef("d", "t", "r", try_number=2), try_number=3, max_tries=3)  # no attempt tag
    False
    """
    if ref.try_number is None or ref.try_number == try_number:
        return True
    return ref.max_tries is not None and max_tries is not None and ref.max_tries == max_tries and ref.try_number < try_number


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
    max_tries = tags.get(AIRFLOW_MAX_TRIES_RUN_TAG)
    return AirflowTaskRef(
        dag_id=dag_id,
        task_id=task_id,
        run_id=run_id,
        try_number=int(try_number) if try_number and try_number.isdigit() else None,
        map_index=int(map_index) if map_index and map_index.lstrip("-").isdigit() else -1,
        instance_name=tags.get(AIRFLOW_INSTANCE_RUN_TAG),
        max_tries=int(max_tries) if max_tries and max_tries.isdigit() else None,
    )


def task_migration_doc(original_doc: str | None, *, dagster_url: str | None = None) -> str:
    """The ``doc_md`` of a migrated task: the marker, a visible note, then the original docs."""
    where = f" ([Dagster]({dagster_url}))" if dagster_url else ""
    note = f"{MIGRATION_DOC_MARKER}\n**Migrated to Dagster**{where}: this task runs as a Dagster run of its assets."
    return note + (f"\n\n{original_doc}" if original_doc else "")


def tasks_migrated_in_dag_doc(dag_doc_md: str | None) -> frozenset[str]:
    """The task ids a migrating DAG's ``doc_md`` lists as running in Dagster (the section under
    :data:`DAG_MIGRATION_DOC_HEADING`); empty when the DAG has no such section.

    Airflow before 2.10 leaves ``doc_md`` out of ``GET /dags/{id}/tasks``; this reads the same
    fact from the DAG's details instead.

    >>> doc = "\\n".join([DAG_MIGRATION_DOC_HEADING, "", "| task | runs in |", "|---|---|",
    ...                  "| `extract` | Airflow |", "| `publish` | Dagster |"])
    >>> sorted(tasks_migrated_in_dag_doc(doc))
    ['publish']
    >>> tasks_migrated_in_dag_doc("no section")
    frozenset()
    """
    if not dag_doc_md or DAG_MIGRATION_DOC_HEADING not in dag_doc_md:
        return frozenset()
    section = dag_doc_md.split(DAG_MIGRATION_DOC_HEADING, 1)[1]
    migrated: set[str] = set()
    for line in section.splitlines():
        line = line.strip()
        row, whole = _DAG_DOC_ROW.match(line), _DAG_DOC_WHOLE.match(line)
        if row and row.group(2) == "Dagster":
            migrated.add(row.group(1))
        elif whole:
            migrated.add(whole.group(1))
        elif line.startswith("#"):
            break  # the next section
    return frozenset(migrated)


def task_is_marked_migrated(doc_md: str | None) -> bool:
    """True when a task's ``doc_md`` (as read over REST) carries the migration marker."""
    return bool(doc_md) and MIGRATION_DOC_MARKER in str(doc_md)


# Operator tags: set by ``DagsterOperator`` next to the identity tags above on every run it launches.

#: The Dagster code location a run was launched in: one run per (task try, code location).
DAGSTER_CODE_LOCATION_RUN_TAG = "airlift/dagster_code_location"
#: Task id of the one task that runs a whole migrated DAG (DAG-level ``migrated: true``).
WHOLE_DAG_TASK_ID = "run_dag_in_dagster"
#: Task id in the run tags of a Dagster run that triggered an Airflow DAG run (an executable DAG
#: asset): no Airflow task has it; with the DAG and run ids it says that this Dagster run reports the
#: DAG run's success, so the sensor does not.
DAG_TRIGGER_TASK_ID = "airlift_dag_trigger"
__all__ += ["DAG_TRIGGER_TASK_ID"]


def operator_run_tags(
    *,
    instance_name: str,
    dag_id: str,
    task_id: str,
    run_id: str,
    try_number: int,
    map_index: int,
    location: str,
    max_tries: int | None = None,
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
    if max_tries is not None:
        tags[AIRFLOW_MAX_TRIES_RUN_TAG] = str(max_tries)
    return tags


# ---- the Airflow run's parameters on a migrated task's Dagster run --------------------------------

#: Prefix of the run tags carrying the Airflow run's parameters (``params`` overridden by
#: ``dag_run.conf``): ``airlift/airflow_param.<name>`` = the value.
AIRFLOW_PARAM_RUN_TAG_PREFIX = "airlift/airflow_param."
#: Longest parameter value (characters, as written) carried as a run tag; a longer one is left out of
#: the tags (it still reaches the run config of the assets that declare it).
AIRFLOW_PARAM_TAG_MAX_CHARS = 200
# Dagster warns about (and will refuse) a run tag key whose part after the "/" is over 63 characters
# of [A-Za-z0-9_.-]: a parameter name that does not fit after the prefix is written as its digest.
_PARAM_NAME_ROOM = 63 - len(AIRFLOW_PARAM_RUN_TAG_PREFIX.split("/", 1)[1])

__all__ += ["AIRFLOW_PARAM_RUN_TAG_PREFIX", "AIRFLOW_PARAM_TAG_MAX_CHARS", "airflow_param_run_tags", "param_tag_value"]


def param_tag_value(value: Any) -> str:
    """A parameter value as a run tag value: a string as it is, anything else as sorted JSON.

    >>> param_tag_value("eu"), param_tag_value(3), param_tag_value({"b": 1, "a": [True]})
    ('eu', '3', '{"a": [true], "b": 1}')
    """
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def airflow_param_run_tags(values: Mapping[str, Any]) -> dict[str, str]:
    """Run tags carrying an Airflow run's parameters, one per name: ``airlift/airflow_param.<name>``.
    A name that is not a valid Dagster tag key part (or too long for one) is written as its digest
    (:func:`encode_tag_value`); a value longer than :data:`AIRFLOW_PARAM_TAG_MAX_CHARS` is left out.

    >>> airflow_param_run_tags({"region": "eu", "limit": 10, "blob": "x" * 500})
    {'airlift/airflow_param.region': 'eu', 'airlift/airflow_param.limit': '10'}
    >>> [len(k.split("/")[1]) for k in airflow_param_run_tags({"a name with spaces": 1})]
    [62]
    """
    tags: dict[str, str] = {}
    for name, value in values.items():
        text = param_tag_value(value)
        if len(text) > AIRFLOW_PARAM_TAG_MAX_CHARS:
            continue
        key = encode_tag_value(str(name))
        if len(key) > _PARAM_NAME_ROOM:
            key = _tag_digest(key)
        tags[AIRFLOW_PARAM_RUN_TAG_PREFIX + key] = text
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
        return _digest(self.instance_name, self.dag_id, self.run_id, self.task_id, str(self.map_index), str(self.try_number),
                       self.run_end_date)

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


def airflow_event_key_of(
    tags: Mapping[str, str] | None, *, instance_name: str | None = None, metadata: Mapping[str, Any] | None = None,
) -> str | None:
    """The identity digest an event carries (``None`` if none, or another instance's): in its tags
    (events the sensor writes) or in its metadata (events pushed through Dagster's report endpoints,
    which take no tags; metadata values may be Dagster ``MetadataValue`` objects).

    >>> airflow_event_key_of(AirflowEventId("prod", "d", "r").tags(), instance_name="staging") is None
    True
    >>> event = AirflowEventId("prod", "d", "r")
    >>> pushed = {AIRFLOW_EVENT_TAG: event.key, AIRFLOW_INSTANCE_RUN_TAG: "prod"}
    >>> airflow_event_key_of(None, instance_name="prod", metadata=pushed) == event.key
    True
    """
    for source in (tags, metadata):
        if not source or AIRFLOW_EVENT_TAG not in source:
            continue
        found = {k: str(getattr(source[k], "value", source[k])) for k in (AIRFLOW_EVENT_TAG, AIRFLOW_INSTANCE_RUN_TAG) if k in source}
        if instance_name is not None and found.get(AIRFLOW_INSTANCE_RUN_TAG) != encode_tag_value(instance_name):
            return None
        return found[AIRFLOW_EVENT_TAG]
    return None


# ---- the task → asset index on a DAG asset (definition metadata) --------------------------------
#
# The Airflow side (DagsterOperator, push listener) needs the assets of ONE task. Dagster's GraphQL
# cannot filter asset nodes by tag, so airlift-dagster puts a compact index on each DAG asset (key
# ``[instance_name, "dag", dag_id]``): the Airflow side reads that one node, then the task's nodes by
# key; the cost does not grow with the deployment.

#: Definition metadata entry (JSON) of a DAG asset: ``{"tasks": {task_id: [[key part, ...], ...]},
#: "dag": [[key part, ...], ...]}`` ("dag": assets mapped to the DAG itself, no task).
TASK_ASSET_INDEX_METADATA = "airlift/task_asset_keys"

#: Definition metadata entry (float, seconds) of a DAG asset: the Airlift sensor's ``settle``
#: (``SensorSettings.settle``; it reads an Airflow row only once the row is older than that). Push
#: (on the Airflow side, same GraphQL request as the index) sends a report only while its Airflow
#: event is younger than ``settle - PUSH_SETTLE_MARGIN`` seconds, so no report lands after the sensor
#: read the row and a run is materialized once.
SENSOR_SETTLE_METADATA = "airlift/sensor_settle_seconds"
#: Seconds push keeps between its last report and the sensor's ``settle`` (clock skew between the
#: Airflow database and Dagster, the request's own time). With ``settle`` at or below it push sends nothing.
PUSH_SETTLE_MARGIN = 2.0

__all__ += ["PUSH_SETTLE_MARGIN", "SENSOR_SETTLE_METADATA", "TASK_ASSET_INDEX_METADATA", "dag_asset_path",
            "dump_task_asset_index", "parse_sensor_settle", "parse_task_asset_index"]


def parse_sensor_settle(value: Any) -> float | None:
    """The sensor's settle in seconds from :data:`SENSOR_SETTLE_METADATA`'s value (``None``: absent
    or not a finite number of zero or more).

    >>> parse_sensor_settle(10.0), parse_sensor_settle(None), parse_sensor_settle(-1)
    (10.0, None, None)
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    settle = float(value)
    return settle if 0.0 <= settle < float("inf") else None


def dag_asset_path(instance_name: str, dag_id: str) -> tuple[str, str, str]:
    """Key path of the asset standing for a DAG.

    >>> dag_asset_path("prod", "etl")
    ('prod', 'dag', 'etl')
    """
    return (instance_name, "dag", dag_id)


def dump_task_asset_index(
    tasks: Mapping[str, Sequence[Sequence[str]]], dag_level: Sequence[Sequence[str]] = (),
    partitioned: Sequence[Sequence[str]] = (),
) -> dict[str, Any]:
    """The JSON value of :data:`TASK_ASSET_INDEX_METADATA` (sorted, so it is stable across loads).
    ``partitioned``: the time-partitioned assets among them, whose materializations only the sensor
    reports (it knows their partition; a push does not).

    >>> dump_task_asset_index({"load": [["raw", "customers"]]})
    {'tasks': {'load': [['raw', 'customers']]}, 'dag': []}
    >>> dump_task_asset_index({"load": [["daily"]]}, partitioned=[["daily"]])["partitioned"]
    [['daily']]
    """
    out: dict[str, Any] = {
        "tasks": {task_id: sorted([list(p) for p in paths]) for task_id, paths in sorted(tasks.items())},
        "dag": sorted([list(p) for p in dag_level]),
    }
    if partitioned:
        out["partitioned"] = sorted([list(p) for p in partitioned])
    return out


def parse_task_asset_index(value: Any, *, without_partitioned: bool = False) -> dict[str | None, list[tuple[str, ...]]] | None:
    """Task id (``None``: the DAG itself) → asset key paths, from the metadata's JSON (a dict or its
    text); ``None`` when the value is not such an index. ``without_partitioned`` leaves out the
    time-partitioned assets (what a push may report).

    >>> parse_task_asset_index('{"tasks": {"load": [["raw", "customers"]]}, "dag": []}')
    {'load': [('raw', 'customers')], None: []}
    >>> parse_task_asset_index({"tasks": {"t": [["a"], ["daily"]]}, "dag": [], "partitioned": [["daily"]]},
    ...                        without_partitioned=True)
    {'t': [('a',)], None: []}
    """
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    if not isinstance(value, Mapping) or not isinstance(value.get("tasks"), Mapping):
        return None
    try:
        index: dict[str | None, list[tuple[str, ...]]] = {
            str(task_id): [tuple(str(part) for part in path) for path in paths] for task_id, paths in value["tasks"].items()
        }
        index[None] = [tuple(str(part) for part in path) for path in value.get("dag") or ()]
        skipped = {tuple(str(part) for part in path) for path in value.get("partitioned") or ()} if without_partitioned else set()
    except TypeError:
        return None
    if skipped:
        index = {task_id: [p for p in paths if p not in skipped] for task_id, paths in index.items()}
    return index


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
        return _digest("dataset", self.instance_name, self.uri, self.timestamp, self.dag_id, self.run_id, self.task_id,
                       str(self.map_index))

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
