"""What Dagster stores for the keys a tick has at stake, read in a few statements.

The ledger (:mod:`.ledger`) asks, for each slot (kind of event, asset or check key) at stake, for the
events stored since a time. Dagster's public reads take one key per call, and dagster-postgres opens
a database connection per statement (``NullPool``): a tick with 400 keys at stake paid 400 reads,
800 statements and as many connections. Here:

1. One batched read of the keys' latest events (the asset records; the checks' latest executions)
   leaves out the slots with nothing stored since their time (:func:`quiet_slots`).
2. The other slots are read by key, as Dagster's own per-key reads do (asset events oldest first
   from the slot's time, ``event_logs`` by asset key, event type and id; check executions newest
   first down to the slot's time, ``asset_check_executions`` by asset key and check name), but on
   Dagster's SQL storages (SQLite, PostgreSQL, in memory) one statement serves up to
   :data:`KEYS_PER_STATEMENT` keys, :data:`ROWS_PER_STATEMENT` rows in all (at least :data:`FIRST_ROWS`
   per key), in rounds for the keys that need more. A key's read stops once the caller has what it
   wanted, and a row is decoded only when the caller gets to it. With the identities at stake given
   (40 hex characters each, carried in the event's tags or metadata), the statement returns only the
   rows whose stored text holds one of them (``LIKE``): the database skips the key's other events
   instead of sending and decoding them (the caller still checks each row it gets). Other storages (Dagster+)
   are read per key through Dagster's public API.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from dagster import AssetCheckKey, AssetKey, AssetRecordsFilter, DagsterInstance

#: (kind, key): kind is "materialization", "observation" or "check".
Slot = tuple[str, AssetKey | AssetCheckKey]
#: Called with each event read for a slot (``None`` for a record without one); returns True when
#: the slot needs no more.
Take = Callable[[Slot, Any], bool]

#: Keys per batched statement (SQLite allows 500 terms in a compound SELECT).
KEYS_PER_STATEMENT = 100
#: Rows a batched statement asks for, shared by its keys (what one statement's rows hold in memory)...
ROWS_PER_STATEMENT = 2000
#: ... and at least this many per key.
FIRST_ROWS = 16
#: Records per page of a per-key read.
PAGE = 1000


def quiet_slots(instance: DagsterInstance, since: Mapping[Slot, float]) -> tuple[set[Slot], dict[AssetKey, float]]:
    """The materialization and check slots with nothing to read (Dagster stores no event of the
    key, or its latest is older than the slot's time), and when each asset key was last wiped
    (seconds). One batched read of the asset records (each carries the key's latest
    materialization), one of the checks' latest executions."""
    quiet: set[Slot] = set()
    wiped: dict[AssetKey, float] = {}
    assets = {key for (kind, key) in since if kind != "check" and isinstance(key, AssetKey)}
    if assets:
        records = {record.asset_entry.asset_key: record.asset_entry for record in instance.get_asset_records(sorted(assets, key=str))}
        for key in assets:
            entry = records.get(key)
            details = entry.asset_details if entry is not None else None
            if details is not None and details.last_wipe_timestamp:
                wiped[key] = details.last_wipe_timestamp
            last = entry.last_materialization_record if entry is not None else None
            if ("materialization", key) in since and (last is None or last.timestamp < since[("materialization", key)]):
                quiet.add(("materialization", key))
    checks = {key: after for (kind, key), after in since.items() if kind == "check" and isinstance(key, AssetCheckKey)}
    if checks:
        executions = instance.event_log_storage.get_latest_asset_check_execution_by_key(list(checks))
        for check_key, after in checks.items():
            execution = executions.get(check_key)
            if execution is None or execution.create_timestamp < after:
                quiet.add(("check", check_key))
    return quiet, wiped


def read_stored(instance: DagsterInstance, since: Mapping[Slot, float], take: Take,
                holding: Mapping[Slot, Sequence[str]] | None = None) -> None:
    """Every event Dagster stores for each slot since its time (seconds, Dagster's clock), handed
    to ``take`` slot by slot until ``take`` says the slot needs no more. ``holding``: for a slot, the
    only texts (identity digests) an event of interest holds; a batched read leaves out the others."""
    quiet, wiped = quiet_slots(instance, since)
    hot = {slot: max(after, wiped.get(slot[1], 0.0)) if isinstance(slot[1], AssetKey) else after
           for slot, after in since.items() if slot not in quiet}
    if not hot:
        return
    batched = _SqlReader.of(instance)
    if batched is not None:
        batched.read(hot, take, holding or {})
        return
    for slot in sorted(hot, key=_slot_order):
        for event in _per_key(instance, slot, hot[slot]):
            if take(slot, event):
                break


def _slot_order(slot: Slot) -> tuple[str, str]:
    """Slots are read in one order (by kind, then key), whichever way they are read."""
    return slot[0], str(slot[1])


def _evaluation(record: Any) -> Any:
    """The check evaluation of an ``AssetCheckExecutionRecord`` (``None`` while only planned)."""
    return record.event.asset_check_evaluation if record.event is not None else None


# --------------------------------------------------------------------------------- per key (public API)
def _per_key(instance: DagsterInstance, slot: Slot, after: float) -> Iterator[Any]:
    kind, key = slot
    if isinstance(key, AssetCheckKey):
        yield from (_evaluation(record) for record in _check_records(instance, key, after))
        return
    fetch = instance.fetch_materializations if kind == "materialization" else instance.fetch_observations
    cursor: str | None = None
    while True:
        result = fetch(AssetRecordsFilter(asset_key=key, after_timestamp=after), limit=PAGE, cursor=cursor, ascending=True)
        for record in result.records:
            yield record.event_log_entry.asset_materialization or record.event_log_entry.asset_observation
        if not result.has_more:
            return
        cursor = result.cursor


def _check_records(instance: DagsterInstance, key: AssetCheckKey, after: float) -> Iterator[Any]:
    cursor: int | None = None
    while True:
        records = instance.event_log_storage.get_asset_check_execution_history(key, limit=PAGE, cursor=cursor)
        for record in records:
            if record.create_timestamp < after:
                return
            yield record
        if len(records) < PAGE:
            return
        cursor = records[-1].id


# ------------------------------------------------------------------------------ batched (SQL storages)
def _chunks(slots: Iterable[Slot]) -> Iterator[list[Slot]]:
    """Slots in statements: checks and asset events apart (two tables), :data:`KEYS_PER_STATEMENT` at most."""
    for table in (True, False):
        of_table = [slot for slot in slots if (slot[0] == "check") is table]
        for start in range(0, len(of_table), KEYS_PER_STATEMENT):
            yield of_table[start:start + KEYS_PER_STATEMENT]


class _SqlReader:
    """Reads of many keys per statement on a Dagster SQL event log storage: a ``UNION ALL`` of one
    ``ORDER BY id LIMIT n`` select per key, each the select Dagster's per-key read issues."""

    def __init__(self, storage: Any, events: Any, checks: Any, check_record: Any, entry_type: Any, deserialize: Any,
                 utc_from_naive: Any) -> None:
        self._storage, self._events, self._checks = storage, events, checks
        self._check_record, self._entry_type, self._deserialize = check_record, entry_type, deserialize
        self._utc_from_naive = utc_from_naive

    @classmethod
    def of(cls, instance: DagsterInstance) -> _SqlReader | None:
        """The reader of the instance's event log storage, or ``None`` when it is not one of
        Dagster's SQL storages (or this Dagster lays them out differently)."""
        try:
            from dagster import deserialize_value
            from dagster._core.events.log import EventLogEntry
            from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecord
            from dagster._core.storage.event_log.schema import (
                AssetCheckExecutionsTable,
                SqlEventLogStorageTable,
            )
            from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage
            from dagster._time import utc_datetime_from_naive
        except ImportError:  # pragma: no cover - a Dagster release that moved them: read per key
            return None
        storage = instance.event_log_storage
        if not isinstance(storage, SqlEventLogStorage):
            return None
        return cls(storage, SqlEventLogStorageTable, AssetCheckExecutionsTable, AssetCheckExecutionRecord, EventLogEntry,
                   deserialize_value, utc_datetime_from_naive)

    def read(self, since: Mapping[Slot, float], take: Take, holding: Mapping[Slot, Sequence[str]]) -> None:
        pending: dict[Slot, int | None] = dict.fromkeys(sorted(since, key=_slot_order))
        while pending:
            for chunk in _chunks(pending):
                rows_per_key = min(PAGE, max(FIRST_ROWS, ROWS_PER_STATEMENT // len(chunk)))
                by_slot = self._rows(chunk, pending, since, holding, rows_per_key)
                for index, slot in enumerate(chunk):
                    rows = by_slot.get(index, [])
                    pending[slot] = rows[-1].id if len(rows) == rows_per_key else None
                    for row in rows:
                        created, event = self._parse(slot, row)
                        # check executions come newest first: the first one older than the slot ends it
                        if created < since[slot] or take(slot, event):
                            pending[slot] = None
                            break
            pending = {slot: past for slot, past in pending.items() if past is not None}

    def _rows(self, chunk: Sequence[Slot], past: Mapping[Slot, int | None], since: Mapping[Slot, float],
              holding: Mapping[Slot, Sequence[str]], limit: int) -> dict[int, list[Any]]:
        """The next ``limit`` rows of each slot of ``chunk`` past the id read last (``past``), by the
        slot's index in ``chunk``, in reading order."""
        import sqlalchemy as db

        selects = [self._select(index, slot, past[slot], since[slot], holding.get(slot, ()), limit) for index, slot in enumerate(chunk)]
        wrapped = [db.select(*s.c).select_from(s) for s in (select.subquery() for select in selects)]
        query = wrapped[0] if len(wrapped) == 1 else db.union_all(*wrapped)
        out: dict[int, list[Any]] = {}
        with self._storage.index_connection() as conn:
            # PostgreSQL compiles a plan whose estimated cost passes jit_above_cost (100 keys of a long history
            # do): 0.7 s of compiling for 25 ms of reading, measured. Off for this statement only (a failed
            # statement's transaction rolls the SET back; dagster-postgres closes the connection after).
            jit = conn.dialect.name == "postgresql" and (conn.dialect.server_version_info or (0,)) >= (11,)
            if jit:
                conn.exec_driver_sql("SET jit = off")
            rows = conn.execute(query).fetchall()
            if jit:
                conn.exec_driver_sql("RESET jit")
        for row in rows:
            out.setdefault(row.slot, []).append(row)
        for index, found in out.items():
            found.sort(key=lambda r: r.id, reverse=chunk[index][0] == "check")
        return out

    def _select(self, index: int, slot: Slot, past: int | None, after: float, holding: Sequence[str], limit: int) -> Any:
        """Dagster's per-key select: check executions by id down from ``past``; asset events of the
        kind stored after ``after`` (naive UTC, as Dagster stores and filters them) by id up from
        ``past``; with ``holding`` (alphanumeric texts only: no ``LIKE`` wildcard or escape), only the
        rows whose stored event holds one of them."""
        import sqlalchemy as db

        kind, key = slot
        if isinstance(key, AssetCheckKey):
            table = self._checks
            columns = [table.c.id, table.c.run_id, table.c.execution_status, table.c.evaluation_event,
                       table.c.create_timestamp, table.c.partition]
            where = [table.c.asset_key == key.asset_key.to_string(), table.c.check_name == key.name]
            if past is not None:
                where.append(table.c.id < past)
            order, text = table.c.id.desc(), table.c.evaluation_event
        else:
            table = self._events
            columns = [table.c.id, table.c.event, table.c.timestamp]
            event_type = "ASSET_MATERIALIZATION" if kind == "materialization" else "ASSET_OBSERVATION"
            where = [table.c.asset_key == key.to_string(), table.c.dagster_event_type == event_type,
                     table.c.timestamp > datetime.fromtimestamp(after, timezone.utc).replace(tzinfo=None)]
            if past is not None:
                where.append(table.c.id > past)
            order, text = table.c.id.asc(), table.c.event
        if holding and all(part.isalnum() and part.isascii() for part in holding):
            where.append(db.or_(*(text.like(f"%{part}%") for part in holding)))
        return db.select(db.literal(index).label("slot"), *columns).where(*where).order_by(order).limit(limit)

    def _parse(self, slot: Slot, row: Any) -> tuple[float, Any]:
        key = slot[1]
        if isinstance(key, AssetCheckKey):
            record = self._check_record.from_db_row(row._mapping, key=key)
            return record.create_timestamp, _evaluation(record)
        entry = self._deserialize(row.event, self._entry_type)
        return self._utc_from_naive(row.timestamp).timestamp(), entry.asset_materialization or entry.asset_observation

