"""Step 4: "already delivered?", answered here and nowhere else, for every candidate event.

Three paths deliver an Airflow success to Dagster: the polling sensor, push (Dagster's report
endpoints) and a migrated task's own Dagster run. Replays add copies: a daemon crash between storing
a tick's events and saving its cursor, a window read again, a backlog catch-up, a DAG newly mapped
(backfilled by end date while the fresh window is read by update time, so one row can come twice in
one tick). :func:`settle_deliveries` takes a tick's candidates in emission order and keeps those
that no path delivered yet:

- a materialization of a try that a Dagster run launched by the ``DagsterOperator`` built is
  dropped (:class:`BuiltTries`: the run's tags name the Airflow task, and
  :func:`airlift_protocol.run_counts_for_try` says whether it stands for the try that succeeded;
  only runs that succeeded count); so is the materialization of an asset mapped to a whole DAG
  when a whole-DAG migration built it in that Airflow run (:meth:`BuiltTries.built_whole_dag`); so is
  the DAG asset's materialization of a DAG run that a Dagster run triggered (an executable DAG asset:
  that run, succeeded or still in flight, reports it; :meth:`BuiltTries.triggered`);
- a candidate whose identity Dagster already stores is dropped: materializations and observations
  are read per asset key, check evaluations per check key (a check evaluation's identity includes
  whether it passed, so a failed try marked success later still gets its passing evaluation); a
  passing check evaluation also goes when the materialization it comes with is stored (a push
  stores both, but its check evaluation carries no identity);
- a candidate equal to one kept earlier in the same tick is dropped.

One rule (:func:`stored_since`) says since when a copy could already be stored: every path stores an
event after it happened in Airflow (push and the sensor both read the finished row), so a copy is
searched from its Airflow time minus :data:`CLOCK_SKEW` (the clock difference between Airflow and
Dagster this tolerates). Each read is bounded by the keys at stake and by that time, never by the
size of the event log, and all the keys of a tick are read in a few statements (:mod:`.stored`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckKey,
    AssetKey,
    AssetMaterialization,
    AssetObservation,
    DagsterInstance,
    DagsterRunStatus,
    RunsFilter,
)

from airlift_dagster.sensor.stored import Slot, read_stored
from airlift_protocol import (
    AIRFLOW_RUN_ID_RUN_TAG,
    DAG_TRIGGER_TASK_ID,
    WHOLE_DAG_TASK_ID,
    AirflowTaskRef,
    TaskInstance,
    parse_dagster_run_tags,
    run_counts_for_try,
)
from airlift_protocol.tags import airflow_event_key_of, dag_asset_path

if TYPE_CHECKING:
    from airlift_dagster.sensor.emissions import Emission

#: Dagster run statuses of a run that has not ended: one that triggered an Airflow DAG run will report it.
IN_FLIGHT = (DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.STARTED)
#: How far Airflow's clock may run ahead of Dagster's without an event being delivered twice.
CLOCK_SKEW = timedelta(minutes=5)
#: Metadata entry of a DAG-asset observation: when the Airflow run it observes started.
RUN_START_METADATA = "Airflow run start"


def stored_since(occurred: datetime | None, *, floor: datetime) -> float:
    """THE rule: from when on (seconds, Dagster's clock) a copy of an event that happened in Airflow
    at ``occurred`` could already be stored, by any path. ``floor``: the oldest Airflow time the
    tick can report (for an event without a time).

    >>> from datetime import timezone
    >>> t = datetime(2026, 1, 1, tzinfo=timezone.utc)
    >>> stored_since(t, floor=t) == (t - CLOCK_SKEW).timestamp()
    True
    """
    return ((occurred or floor) - CLOCK_SKEW).timestamp()


@dataclass(frozen=True)
class BuiltTries:
    """Dagster runs launched by the ``DagsterOperator`` that succeeded, by the Airflow task they
    were launched for: (dag, run, task, map index) → the runs' Airflow references (run tags).

    >>> from airlift_protocol import AirflowTaskRef
    >>> built = BuiltTries({("d", "r", "t", -1): (AirflowTaskRef("d", "t", "r", try_number=1, max_tries=2),)})
    >>> built.counts(dag_id="d", run_id="r", task_id="t", map_index=-1, try_number=2, max_tries=2)
    True
    """

    runs: Mapping[tuple[str, str, str, int], tuple[AirflowTaskRef, ...]] = field(default_factory=dict)

    def counts(self, *, dag_id: str, run_id: str, task_id: str, map_index: int, try_number: int, max_tries: int | None) -> bool:
        """Whether a successful Dagster run stands for this try (:func:`run_counts_for_try`)."""
        refs = self.runs.get((dag_id, run_id, task_id, map_index), ())
        return any(run_counts_for_try(ref, try_number=try_number, max_tries=max_tries) for ref in refs)

    def built(self, ti: TaskInstance) -> bool:
        return self.counts(dag_id=ti.dag_id, run_id=ti.run_id, task_id=ti.task_id, map_index=ti.map_index,
                           try_number=ti.try_number, max_tries=ti.max_tries)

    def built_whole_dag(self, dag_id: str, run_id: str, runner: TaskInstance | None) -> bool:
        """Whether a whole-DAG migration built the DAG's own assets in this successful Airflow run: a
        successful Dagster run was launched for its task :data:`~airlift_protocol.WHOLE_DAG_TASK_ID`.
        With that task's try read (``runner``), the try must have succeeded and the run stand for it
        (:func:`run_counts_for_try`; a rolled-back DAG re-run by its own tasks leaves the try
        ``removed``); without it, any such run of this Airflow run counts.

        >>> from airlift_protocol import AirflowTaskRef
        >>> built = BuiltTries({("d", "r", WHOLE_DAG_TASK_ID, -1): (AirflowTaskRef("d", WHOLE_DAG_TASK_ID, "r", try_number=1),)})
        >>> built.built_whole_dag("d", "r", None), built.built_whole_dag("d", "other", None)
        (True, False)
        """
        if runner is not None:
            return runner.is_success and self.built(runner)
        return bool(self.runs.get((dag_id, run_id, WHOLE_DAG_TASK_ID, -1)))

    def triggered(self, dag_id: str, run_id: str) -> bool:
        """Whether a Dagster run triggered this DAG run (task id :data:`~airlift_protocol.DAG_TRIGGER_TASK_ID`
        in its tags): it reports the run's success as the DAG asset's materialization.

        >>> from airlift_protocol import AirflowTaskRef
        >>> BuiltTries({("d", "r", DAG_TRIGGER_TASK_ID, -1): (AirflowTaskRef("d", DAG_TRIGGER_TASK_ID, "r"),)}).triggered("d", "r")
        True
        """
        return bool(self.runs.get((dag_id, run_id, DAG_TRIGGER_TASK_ID, -1)))

    def built_emission(self, emission: Emission) -> bool:
        """Whether a Dagster run launched by the ``DagsterOperator`` built a candidate materialization,
        or a Dagster run that triggered the DAG run reports it."""
        if emission.dag_run:
            return emission.event_id is not None and self.triggered(emission.event_id.dag_id, emission.event_id.run_id)
        if emission.whole_dag:
            event_id = emission.event_id
            return event_id is not None and self.built_whole_dag(event_id.dag_id, event_id.run_id, emission.ti)
        return emission.ti is not None and self.built(emission.ti)


def dagster_built_tries(
    instance: DagsterInstance | None, instance_name: str, run_ids: Iterable[str], *, mapped: Container[tuple[str, str]] = (),
) -> tuple[BuiltTries, list[str]]:
    """The successful Dagster runs carrying the ``DagsterOperator``'s run tags for these Airflow
    runs, and those in flight or succeeded that triggered one of them (one read), and warnings. A run tagged with another instance's name does not count; when no
    Dagster asset of that instance's DAG exists (so no peered instance has that name) and the task
    is one of this instance's ``mapped`` (dag, task), a warning names both names and the fix. A run
    tagged without an instance name (older operators) counts."""
    wanted = sorted(set(run_ids))
    if instance is None or not wanted:
        return BuiltTries(), []
    runs: dict[tuple[str, str, str, int], list[AirflowTaskRef]] = defaultdict(list)
    warnings: list[str] = []
    foreign: dict[tuple[str, str], bool] = {}
    for record in instance.get_run_records(filters=RunsFilter(tags={AIRFLOW_RUN_ID_RUN_TAG: wanted},
                                                              statuses=[DagsterRunStatus.SUCCESS, *IN_FLIGHT])):
        ref = parse_dagster_run_tags(record.dagster_run.tags)
        if ref is None or (record.dagster_run.status != DagsterRunStatus.SUCCESS and ref.task_id != DAG_TRIGGER_TASK_ID):
            continue
        if ref.instance_name is not None and ref.instance_name != instance_name:
            if (ref.dag_id, ref.task_id) in mapped and _unknown_instance(instance, foreign, ref.instance_name, ref.dag_id):
                warnings.append(_foreign_warning(ref, record.dagster_run.run_id, instance_name))
            continue
        runs[(ref.dag_id, ref.run_id, ref.task_id, ref.map_index)].append(ref)
    return BuiltTries({k: tuple(v) for k, v in runs.items()}), warnings


def _unknown_instance(instance: DagsterInstance, seen: dict[tuple[str, str], bool], name: str, dag_id: str) -> bool:
    if (name, dag_id) not in seen:
        seen[(name, dag_id)] = not instance.has_asset_key(AssetKey(list(dag_asset_path(name, dag_id))))
    return seen[(name, dag_id)]


def _foreign_warning(ref: AirflowTaskRef, dagster_run_id: str, instance_name: str) -> str:
    return (
        f"Dagster run {dagster_run_id} was launched for Airflow task {ref.dag_id}.{ref.task_id} (run {ref.run_id}) of Airflow "
        f"instance {ref.instance_name!r}, but Dagster peers this Airflow instance as {instance_name!r} and knows no DAG asset "
        f"of an instance named {ref.instance_name!r}: the run is not counted as built, so the task's assets are reported again. "
        f"Fix: on the Airflow side remove the explicit instance name (the operator learns it from Dagster) or set it to "
        f"{instance_name!r} (DagsterOperator airflow_instance_name=, AIRLIFT_AIRFLOW_INSTANCE_NAME or [airlift] instance_name)."
    )


# ------------------------------------------------------------------------------ what an event is
@dataclass(frozen=True)
class Entry:
    """What the ledger knows one candidate by: the kind of event, the asset or check key it is read
    by, and its identity (with, for a check evaluation, whether it passed; for an observation of a
    running DAG run, when the run started)."""

    kind: str
    key: AssetKey | AssetCheckKey
    identity: tuple[str, ...]


def _check_key(event: AssetCheckEvaluation) -> AssetCheckKey:
    return AssetCheckKey(event.asset_key, event.check_name)


def _metadata_text(metadata: Mapping[str, Any], name: str) -> str:
    value = metadata.get(name)
    return "" if value is None else str(getattr(value, "value", value))


def entry_of(event: Any, *, instance_name: str) -> Entry | None:
    """The ledger entry of an event (a candidate, or one read from Dagster); ``None`` when the event
    carries no identity of this instance."""
    if isinstance(event, AssetMaterialization):
        found = airflow_event_key_of(event.tags, instance_name=instance_name, metadata=event.metadata)
        return None if found is None else Entry("materialization", event.asset_key, (found,))
    if isinstance(event, AssetObservation):
        found = airflow_event_key_of(event.tags, instance_name=instance_name, metadata=event.metadata)
        return None if found is None else Entry("observation", event.asset_key, (found, _metadata_text(event.metadata, RUN_START_METADATA)))
    if isinstance(event, AssetCheckEvaluation):
        found = airflow_event_key_of(None, instance_name=instance_name, metadata=event.metadata)
        return None if found is None else Entry("check", _check_key(event), (found, "passed" if event.passed else "failed"))
    return None


# ---------------------------------------------------------------------------------------- reads
@dataclass
class Held:
    """What Dagster stores for the keys at stake: entries, and how many records were read."""

    entries: set[Entry] = field(default_factory=set)
    records_read: int = 0


def read_held(instance: DagsterInstance | None, instance_name: str, since: Mapping[Slot, float],
              wanted: Mapping[Slot, set[Entry]] | None = None) -> Held:
    """The entries Dagster stores for each (kind, key) since its time (seconds, Dagster's clock),
    read by :func:`.stored.read_stored` (a few statements for all the keys). The read of a (kind, key)
    stops once it found every entry ``wanted`` of it (more records could not change what is
    decided), so a backlog whose events are all stored reads about as far as they go."""
    held = Held()
    if instance is None:
        return held
    missing = {slot: set(entries) for slot, entries in (wanted or {}).items() if entries}

    def take(slot: Slot, event: Any) -> bool:
        held.records_read += 1
        entry = entry_of(event, instance_name=instance_name) if event is not None else None
        if entry is None:
            return False
        held.entries.add(entry)
        left = missing.get(slot)
        if left is None:
            return False
        left.discard(entry)
        return not left

    # an entry's first identity part is the digest its event carries (tags or metadata): rows without one go unread
    read_stored(instance, since, take, {slot: sorted({entry.identity[0] for entry in entries}) for slot, entries in missing.items()})
    return held


# ---------------------------------------------------------------------------------------- decide
@dataclass
class Deliveries:
    """The outcome of :func:`settle_deliveries`: the candidates to emit (in order) and the counts
    of those dropped as stored already, as built by a Dagster run, or as repeated within the tick."""

    kept: list[Emission]
    held: int = 0
    built: int = 0
    repeated: int = 0
    records_read: int = 0


def _companion(entry: Entry) -> Entry | None:
    """The materialization a passing check evaluation comes with."""
    if entry.kind != "check" or entry.identity[1] != "passed":
        return None
    assert isinstance(entry.key, AssetCheckKey)
    return Entry("materialization", entry.key.asset_key, entry.identity[:1])


def settle_deliveries(
    emissions: Sequence[Emission], *, instance: DagsterInstance | None, instance_name: str, built: BuiltTries, floor: datetime,
) -> Deliveries:
    """Keep the candidates no path delivered yet (see the module docstring)."""
    entries = [entry_of(e.event, instance_name=instance_name) for e in emissions]
    since: dict[Slot, float] = {}
    at_stake: dict[Slot, set[Entry]] = defaultdict(set)
    for emission, entry in zip(emissions, entries, strict=True):
        if entry is None:
            continue
        when = stored_since(emission.occurred, floor=floor)
        for wanted in (entry, _companion(entry)):
            if wanted is not None:
                slot = (wanted.kind, wanted.key)
                since[slot] = min(since.get(slot, when), when)
                at_stake[slot].add(wanted)
    held = read_held(instance, instance_name, since, at_stake)
    out = Deliveries(kept=[], records_read=held.records_read)
    seen: set[Entry] = set()
    for emission, entry in zip(emissions, entries, strict=True):
        if entry is None:
            out.kept.append(emission)
        elif entry in seen:
            out.repeated += 1
        elif entry.kind == "materialization" and built.built_emission(emission):
            out.built += 1
            seen.add(entry)
        elif entry in held.entries or _companion(entry) in held.entries:
            out.held += 1
            seen.add(entry)
        else:
            out.kept.append(emission)
            seen.add(entry)
    return out
