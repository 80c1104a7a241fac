"""The ledger's reads of what Dagster stores (:mod:`airlift_dagster.sensor.stored`): the batched
reads on Dagster's SQL storages find exactly what Dagster's own per-key reads find, in a few
statements however many keys are at stake."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
from dagster import (
    AssetCheckEvaluation,
    AssetCheckKey,
    AssetKey,
    AssetMaterialization,
    AssetObservation,
    DagsterInstance,
)
from sqlalchemy import event

from airlift_dagster.sensor import stored
from airlift_dagster.sensor.emissions import Emission, dagster_metadata
from airlift_dagster.sensor.ledger import BuiltTries, Entry, read_held, settle_deliveries
from airlift_protocol.events import TASK_RUN_CHECK_NAME, identity_metadata
from airlift_protocol.tags import AirflowEventId


@pytest.fixture(params=["batched", "per-key"])
def reads(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> list[stored.Slot]:
    """The slots read record by record, by either path (``per-key``: as on a storage without SQL)."""
    read: list[stored.Slot] = []
    if request.param == "per-key":
        monkeypatch.setattr(stored._SqlReader, "of", classmethod(lambda cls, instance: None))
        per_key = stored._per_key
        monkeypatch.setattr(stored, "_per_key", lambda instance, slot, after: (read.append(slot), per_key(instance, slot, after))[1])
    else:
        select = stored._SqlReader._select
        monkeypatch.setattr(stored._SqlReader, "_select",
                            lambda self, index, slot, *args: (read.append(slot), select(self, index, slot, *args))[1])
    return read


def _evaluation(asset: str, event_id: AirflowEventId, passed: bool = True) -> AssetCheckEvaluation:
    return AssetCheckEvaluation(asset_key=AssetKey(asset), check_name=TASK_RUN_CHECK_NAME, passed=passed,
                                metadata=dagster_metadata(identity_metadata(event_id)))


def _id(n: int, instance: str = "i") -> AirflowEventId:
    return AirflowEventId(instance, "d", f"r{n}", task_id="t", try_number=1)


def test_keys_not_stored_since_their_events_are_not_read(dagster_instance: DagsterInstance, reads: list[stored.Slot]) -> None:
    """A materialization or check key whose latest event is older than its slot's time (or that has
    none) is not read record by record; a key with an event since is."""
    for asset in ("old", "recent"):
        dagster_instance.report_runless_asset_event(AssetMaterialization(asset, tags=_id(0).tags()))
        dagster_instance.report_runless_asset_event(_evaluation(asset, _id(0)))
    late = time.time() + 60
    check = lambda asset: AssetCheckKey(AssetKey(asset), TASK_RUN_CHECK_NAME)  # noqa: E731
    since: dict[stored.Slot, float] = {("materialization", AssetKey("old")): late, ("materialization", AssetKey("recent")): 0.0,
                                       ("materialization", AssetKey("never")): 0.0,
                                       ("check", check("old")): late, ("check", check("recent")): 0.0, ("check", check("never")): 0.0}
    held = read_held(dagster_instance, "i", since)
    assert sorted(reads, key=str) == sorted([("materialization", AssetKey("recent")), ("check", check("recent"))], key=str)
    assert {(e.kind, e.key) for e in held.entries} == {("materialization", AssetKey("recent")), ("check", check("recent"))}


@pytest.fixture(params=["in memory", "on disk"])
def any_sqlite(request: pytest.FixtureRequest) -> Iterator[DagsterInstance]:
    """Dagster's in-memory storage and its default on-disk one (a SQLite file per run, asset events
    copied into an index file: what ``dagster dev`` runs)."""
    if request.param == "in memory":
        with DagsterInstance.ephemeral() as instance:
            yield instance
    else:
        with DagsterInstance.local_temp() as instance:
            yield instance


def test_batched_reads_find_what_per_key_reads_find(any_sqlite: DagsterInstance, monkeypatch: pytest.MonkeyPatch) -> None:
    """Across statements (more keys than one holds) and rounds (more rows than a first round
    reads): the same entries and records as Dagster's per-key reads, each key from its own time,
    observations and checks included, another instance's events and a wiped key's old events left out."""
    dagster_instance = any_sqlite
    assert stored._SqlReader.of(dagster_instance) is not None, "read in batches"
    monkeypatch.setattr(stored, "KEYS_PER_STATEMENT", 7)
    monkeypatch.setattr(stored, "FIRST_ROWS", 2)
    monkeypatch.setattr(stored, "ROWS_PER_STATEMENT", 10)
    keys = [AssetKey(f"k{n:02d}") for n in range(20)]
    for n, key in enumerate(keys):
        for r in range(n % 5 + 1):
            dagster_instance.report_runless_asset_event(AssetMaterialization(key, tags=_id(r).tags()))
        dagster_instance.report_runless_asset_event(AssetMaterialization(key, tags=_id(99, "other").tags()))
        dagster_instance.report_runless_asset_event(AssetObservation(key, tags=_id(n).tags()))
        dagster_instance.report_runless_asset_event(_evaluation(key.path[0], _id(n), passed=n % 2 == 0))
    middle = time.time()
    time.sleep(0.01)
    for key in keys[:10]:
        dagster_instance.report_runless_asset_event(AssetMaterialization(key, tags=_id(50).tags()))
    dagster_instance.wipe_assets([keys[3]])
    dagster_instance.report_runless_asset_event(AssetMaterialization(keys[3], tags=_id(60).tags()))
    since: dict[stored.Slot, float] = {}
    for n, key in enumerate(keys):
        since[("materialization", key)] = middle if n % 3 == 0 else 0.0
        since[("observation", key)] = 0.0
        since[("check", AssetCheckKey(key, TASK_RUN_CHECK_NAME))] = 0.0
    batched = read_held(dagster_instance, "i", since)
    monkeypatch.setattr(stored._SqlReader, "of", classmethod(lambda cls, instance: None))
    per_key = read_held(dagster_instance, "i", since)
    assert batched.entries == per_key.entries and batched.records_read == per_key.records_read
    materialized = {(e.key, e.identity[0]) for e in batched.entries if e.kind == "materialization"}
    expected = {(keys[3], _id(60).key)}
    for n, key in enumerate(keys):
        if n != 3:
            expected |= {(key, _id(r).key) for r in range(n % 5 + 1) if n % 3} | ({(key, _id(50).key)} if n < 10 else set())
    assert materialized == expected, "each key from its own time, wiped events not held, another instance's left out"
    assert {e.identity[1] for e in batched.entries if e.kind == "check"} == {"passed", "failed"}


def test_the_keys_of_a_tick_are_read_in_a_few_statements(dagster_instance: DagsterInstance) -> None:
    """250 keys with events at stake, each materialized since: a handful of SQL statements (the
    latest events, then the keys 100 per statement), not one or two per key."""
    keys = [AssetKey(f"k{n:03d}") for n in range(250)]
    for n, key in enumerate(keys):
        dagster_instance.report_runless_asset_event(AssetMaterialization(key, tags=_id(n).tags()))
    statements: list[str] = []
    engine = dagster_instance.event_log_storage._engine  # type: ignore[attr-defined]

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if not statement.lstrip().upper().startswith("PRAGMA"):  # SQLite's per-connection setup
            statements.append(statement)

    now = datetime.now(timezone.utc)
    emissions = [Emission(AssetMaterialization(key, tags=_id(n).tags()), _id(n), now) for n, key in enumerate(keys)]
    event.listen(engine, "before_cursor_execute", count)
    try:
        out = settle_deliveries(emissions, instance=dagster_instance, instance_name="i", built=BuiltTries(),
                                floor=now)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert (out.held, out.kept, out.records_read) == (250, [], 250)
    assert 3 <= len(statements) <= 8, statements


def test_a_key_read_stops_once_its_events_at_stake_are_found(dagster_instance: DagsterInstance, reads: list[stored.Slot]) -> None:
    """Oldest first from the slot's time, the read of a key ends at the last event at stake found:
    later events of the key are not read."""
    for n in range(40):
        dagster_instance.report_runless_asset_event(AssetMaterialization("x", tags=_id(n).tags()))
    wanted = {("materialization", AssetKey("x")): {Entry("materialization", AssetKey("x"), (_id(n).key,)) for n in (0, 1, 2)}}
    held = read_held(dagster_instance, "i", dict.fromkeys(wanted, 0.0), wanted)
    assert held.records_read == 3 and reads == [("materialization", AssetKey("x"))]


def test_a_batched_read_returns_only_the_rows_holding_an_identity_at_stake(dagster_instance: DagsterInstance) -> None:
    """With the entries at stake given, the database returns only the events whose stored text holds
    one of their digests (in tags, or in metadata as a push stores it): the key's other events are
    neither sent nor decoded; what is found is what the per-key read finds."""
    from airlift_protocol.tags import AIRFLOW_EVENT_TAG, AIRFLOW_INSTANCE_RUN_TAG, encode_tag_value

    for n in range(40):
        dagster_instance.report_runless_asset_event(AssetMaterialization("x", tags=_id(n).tags()))
    pushed = _id(100)
    dagster_instance.report_runless_asset_event(AssetMaterialization(
        "x", metadata={AIRFLOW_EVENT_TAG: pushed.key, AIRFLOW_INSTANCE_RUN_TAG: encode_tag_value("i")}))
    dagster_instance.report_runless_asset_event(_evaluation("x", _id(7)))
    slot: stored.Slot = ("materialization", AssetKey("x"))
    check: stored.Slot = ("check", AssetCheckKey(AssetKey("x"), TASK_RUN_CHECK_NAME))
    wanted = {slot: {Entry("materialization", AssetKey("x"), (e.key,)) for e in (_id(5), _id(30), pushed, _id(999))},
              check: {Entry("check", check[1], (_id(7).key, "passed")), Entry("check", check[1], (_id(8).key, "passed"))}}
    since = dict.fromkeys(wanted, 0.0)
    batched = read_held(dagster_instance, "i", since, wanted)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(stored._SqlReader, "of", classmethod(lambda cls, instance: None))
        per_key = read_held(dagster_instance, "i", since, wanted)
    at_stake = set().union(*wanted.values())
    assert batched.entries & at_stake == per_key.entries & at_stake == at_stake - {
        Entry("materialization", AssetKey("x"), (_id(999).key,)), Entry("check", check[1], (_id(8).key, "passed"))}
    assert batched.records_read == 4, "three materializations and one evaluation hold a digest at stake"
    assert per_key.records_read == 42, "the per-key read decodes every event of the key"
