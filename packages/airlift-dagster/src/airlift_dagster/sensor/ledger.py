"""Step 4: what Dagster already holds (identities of stored events, tries built by Dagster runs)."""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dagster import (
    DagsterEventType,
    DagsterInstance,
    EventRecordsFilter,
    RunsFilter,
)

from airlift_protocol import (
    AIRFLOW_RUN_ID_RUN_TAG,
    TaskInstance,
    parse_dagster_run_tags,
)
from airlift_protocol.tags import airflow_event_key_of

if TYPE_CHECKING:
    from airlift_dagster.sensor.emissions import Emission

#: Margin (seconds of Dagster's clock) when looking for events stored since the previous tick started.
STORE_MARGIN = 5.0


@dataclass(frozen=True)


class BuiltTries:
    """Tries that a Dagster run launched by the ``DagsterOperator`` built (from the run tags):
    (dag, run, task, map index) → try numbers (``None``: a run tagged without a try number)."""

    tries: Mapping[tuple[str, str, str, int], frozenset[int | None]] = field(default_factory=dict)

    def built(self, ti: TaskInstance) -> bool:
        found = self.tries.get((ti.dag_id, ti.run_id, ti.task_id, ti.map_index))
        return bool(found) and (ti.try_number in found or None in found)  # type: ignore[operator]


def read_held_events(instance: DagsterInstance | None, instance_name: str, since: float, *, page: int = 1000) -> set[str]:
    """Step 4a (one batched read, paged by storage id): identity digests
    (:attr:`AirflowEventId.key`) of the materializations of this Airflow instance that Dagster
    stored since ``since`` (seconds, Dagster's clock)."""
    held: set[str] = set()
    if instance is None:
        return held
    after: int | None = None
    while True:
        records_filter = EventRecordsFilter(event_type=DagsterEventType.ASSET_MATERIALIZATION, after_timestamp=since,
                                            after_cursor=after)
        with warnings.catch_warnings():  # Dagster suggests its per-asset-key API; this reads all keys at once
            warnings.simplefilter("ignore")
            records = instance.get_event_records(records_filter, limit=page, ascending=True)
        for record in records:
            materialization = record.asset_materialization
            if materialization is None:
                continue
            key = airflow_event_key_of(materialization.tags, instance_name=instance_name, metadata=materialization.metadata)
            if key is not None:
                held.add(key)
        if len(records) < page:
            return held
        after = records[-1].storage_id


def drop_held(emissions: Sequence[Emission], held: set[str]) -> list[Emission]:
    """Step 4b (pure): the emissions whose identity the instance does not hold yet."""
    return [e for e in emissions if e.event_id is None or e.event_id.key not in held]


def dagster_built_tries(instance: DagsterInstance | None, instance_name: str, run_ids: Iterable[str]) -> BuiltTries:
    """Tries built by Dagster runs that carry the ``DagsterOperator``'s run tags for these Airflow
    runs (one read). A run tagged with another instance's name does not count; one tagged without
    an instance name (older operators) does."""
    wanted = sorted(set(run_ids))
    if instance is None or not wanted:
        return BuiltTries()
    tries: dict[tuple[str, str, str, int], set[int | None]] = defaultdict(set)
    for record in instance.get_run_records(filters=RunsFilter(tags={AIRFLOW_RUN_ID_RUN_TAG: wanted})):
        ref = parse_dagster_run_tags(record.dagster_run.tags)
        if ref is None or (ref.instance_name is not None and ref.instance_name != instance_name):
            continue
        tries[(ref.dag_id, ref.run_id, ref.task_id, ref.map_index)].add(ref.try_number)
    return BuiltTries({k: frozenset(v) for k, v in tries.items()})

