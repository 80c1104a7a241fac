"""The sensor's cursor: a small versioned JSON record of its progress, and how a tick advances it
(the high-water mark, windows to re-read after the lateness window, settled windows the late-commit
audit counts, and the DAGs covered)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING

from airlift_dagster.errors import AirliftDagsterError
from airlift_dagster.sensor._time import _TICK, _from_us, _iso, _us
from airlift_dagster.sensor.settings import SensorSettings
from airlift_dagster.sensor.sources import AUDIT_LOG, SCAN

if TYPE_CHECKING:
    from airlift_dagster.sensor.fetch import Audit, Fetched
    from airlift_dagster.sensor.windows import TickPlan

CURSOR_VERSION = 2

#: Windows remembered for the lateness re-read before neighbours are merged (keeps the cursor small).
MAX_SWEEP_WINDOWS = 32

#: Settled windows the late-commit audit keeps apart (older ones are merged: still counted, too large
#: to re-read in one tick once they exceed ``max_rows_per_tick``).
MAX_SETTLED_WINDOWS = 16


#: :attr:`SweepWindow.rows` of a window whose first read is not known (the rest of a window read in parts).
UNKNOWN_ROWS = -1


@dataclass(frozen=True)
class SweepWindow:
    """An ``updated_at`` window already read, to read once more after the lateness window:
    its bounds, how many rows it held and an order-free digest of them. ``size``: set on a window
    first read after the lateness window (a backlog): no second read, it settles with this count
    (the source's) once the windows before it have."""

    lo: datetime
    hi: datetime
    rows: int
    digest: int
    size: int | None = None

    def merged(self, other: SweepWindow) -> SweepWindow:
        rows = UNKNOWN_ROWS if UNKNOWN_ROWS in (self.rows, other.rows) else self.rows + other.rows
        size = None if self.size is None or other.size is None else self.size + other.size
        return SweepWindow(lo=self.lo, hi=other.hi, rows=rows, digest=self.digest ^ other.digest, size=size)

    def rest_after(self, hi: datetime) -> SweepWindow:
        """The part after ``hi`` of a window read only up to ``hi`` (what it held is unknown: its
        rows are all treated as changed when it is read)."""
        return SweepWindow(lo=hi + _TICK, hi=self.hi, rows=UNKNOWN_ROWS, digest=0)


@dataclass(frozen=True)
class SettledWindow:
    """An ``updated_at`` window read twice (fresh, then after the lateness window) with the number
    of rows (runs + task instances of every DAG, any state) Airflow listed in it when last counted.
    Rows only leave a settled window (a changed row gets a new ``updated_at``); more rows than
    counted means a commit landed later than the lateness window."""

    lo: datetime
    hi: datetime
    rows: int


@dataclass
class AirliftSensorCursor:
    """The sensor's progress: a small versioned JSON record (kilobytes at any run rate).

    ``high_water``: every row changed up to here (Airflow's ``updated_at``) was processed;
    ``tick_started``: when the tick that wrote the cursor started (Dagster's clock);
    ``pending``: windows to read again after the lateness window; ``settled``: windows read twice,
    with how many rows Airflow listed in them (the late-commit audit); ``dags``: digests of the DAGs the
    sensor covers (a DAG new to the mapping gets its history backfilled; ``None``: take the current
    ones as covered, as after an upgrade from the end-date cursor of earlier releases);
    ``backfilling``: the digest of a DAG whose history is being backfilled over several ticks (more
    rows than one tick reads) and the end date its runs were read up to; ``audited_at``: when (the
    sensor's clock) the settled windows were last counted; ``source``: which change source
    (:mod:`airlift_dagster.sensor.sources`) read and counted the windows; ``density``: rows listed
    per second of the last fresh window, if it held any (the next one is first asked up to twice
    what fits the budget at that density); ``listening``: the time of the earliest run-event row
    found (airlift-airflow's listener writes one per DAG-run start and end: windows starting later
    read their runs from those rows, :class:`~airlift_dagster.sensor.sources.AuditLogSource`);
    ``unheard``: when a run was found ended without its run-event row (rows before that time are
    not trusted again).

    >>> AirliftSensorCursor.parse(AirliftSensorCursor().serialize()).high_water is None
    True
    """

    high_water: datetime | None = None
    tick_started: float = 0.0
    pending: list[SweepWindow] = field(default_factory=list)
    dags: frozenset[str] | None = frozenset()
    settled: list[SettledWindow] = field(default_factory=list)
    backfilling: tuple[str, datetime] | None = None
    audited_at: datetime | None = None
    source: str = SCAN
    density: float | None = None
    listening: datetime | None = None
    unheard: datetime | None = None

    def for_source(self, source: str) -> AirliftSensorCursor:
        """This cursor for windows read by ``source``: the windows another source read are read
        again as changed (their counts and digests do not compare) and the settled ones start again."""
        if source == self.source:
            return self
        pending = [SweepWindow(w.lo, w.hi, UNKNOWN_ROWS, 0) for w in self.pending]
        return replace(self, pending=pending, settled=[], audited_at=None, source=source, density=None)

    def with_listening(self, listening: datetime | None, *, unheard: datetime | None = None) -> AirliftSensorCursor:
        """This cursor for windows whose runs come from run-event rows after ``listening`` (``None``:
        from the scan): the windows whose way of reading changes with it are read again as changed,
        and settled ones of them leave the audit (their counts and digests do not compare); the
        others keep theirs. ``unheard``: the time a missing run-event row was found."""
        unheard = unheard if unheard is not None else self.unheard
        if listening == self.listening:
            return replace(self, unheard=unheard)

        def changes(lo: datetime) -> bool:
            return (self.listening is not None and lo > self.listening) != (listening is not None and lo > listening)

        pending = [SweepWindow(w.lo, w.hi, UNKNOWN_ROWS, 0) if changes(w.lo) else w for w in self.pending]
        settled = [w for w in self.settled if not changes(w.lo)]
        return replace(self, pending=pending, settled=settled, listening=listening, unheard=unheard,
                       audited_at=self.audited_at if len(settled) == len(self.settled) else None)

    def serialize(self) -> str:
        record: dict[str, object] = {
            "v": CURSOR_VERSION,
            "hw": _iso(self.high_water) if self.high_water else None,
            "at": round(self.tick_started, 3),
            "sw": [[_us(w.lo), _us(w.hi), w.rows, w.digest] for w in self.pending],
            "dags": None if self.dags is None else "".join(sorted(self.dags)),
            "au": [[_us(w.lo), _us(w.hi), w.rows] for w in self.settled],
        }
        if self.backfilling is not None:
            record["bf"] = [self.backfilling[0], _us(self.backfilling[1])]
        if self.audited_at is not None:
            record["ad"] = _us(self.audited_at)
        if self.source != SCAN:
            record["src"] = self.source
        late = [[i, w.size] for i, w in enumerate(self.pending) if w.size is not None]
        if late:  # apart from "sw": a release that does not know them reads those windows again
            record["sl"] = late
        if self.density is not None:
            record["dn"] = round(self.density, 3)
        if self.listening is not None:
            record["ls"] = _us(self.listening)
        if self.unheard is not None:
            record["uh"] = _us(self.unheard)
        return json.dumps(record, separators=(",", ":"))

    @classmethod
    def parse(cls, text: str | None) -> AirliftSensorCursor:
        if not text:
            return cls()
        try:
            data = json.loads(text)
            version = data.get("v")
            if version == 1:  # the end-date cursor of earlier releases: continue from its mark
                hw = data.get("hw")
                return cls(high_water=datetime.fromisoformat(hw) if hw else None, dags=None)
            if version != CURSOR_VERSION:
                raise ValueError(f"cursor format {version!r}")
            hw = data.get("hw")
            raw_dags = data.get("dags")
            dags = None if raw_dags is None else str(raw_dags)
            pending = [SweepWindow(_from_us(lo), _from_us(hi), int(n), int(d)) for lo, hi, n, d in data.get("sw") or []]
            for i, size in data.get("sl") or []:
                pending[int(i)] = replace(pending[int(i)], size=int(size))
            return cls(
                high_water=datetime.fromisoformat(hw) if hw else None,
                tick_started=float(data.get("at") or 0.0),
                pending=pending,
                dags=None if dags is None else frozenset(dags[i: i + 8] for i in range(0, len(dags), 8)),
                settled=[SettledWindow(_from_us(lo), _from_us(hi), int(n)) for lo, hi, n in data.get("au") or []],
                backfilling=(str(data["bf"][0]), _from_us(int(data["bf"][1]))) if data.get("bf") else None,
                audited_at=_from_us(int(data["ad"])) if data.get("ad") else None,
                source=_source(data.get("src")),
                density=float(data["dn"]) if data.get("dn") else None,
                listening=_from_us(int(data["ls"])) if data.get("ls") else None,
                unheard=_from_us(int(data["uh"])) if data.get("uh") else None,
            )
        except (ValueError, TypeError, AttributeError, IndexError) as e:
            raise AirliftDagsterError(
                f"the Airlift sensor cursor {text[:80]!r} cannot be read ({e}); reset the sensor's cursor in the UI"
            ) from e


def _source(value: object) -> str:
    if value is None:
        return SCAN
    if value not in (SCAN, AUDIT_LOG):
        raise ValueError(f"change source {value!r}")
    return str(value)


def advance_cursor(
    cursor: AirliftSensorCursor,
    plan: TickPlan,
    fetched: Fetched,
    *,
    coverage: Mapping[str, str],
    tick_started: float,
    settings: SensorSettings,
    audit: Audit | None = None,
    audited_at: datetime | None = None,
) -> AirliftSensorCursor:
    """Step 5 (pure): the cursor after a tick whose events were all emitted (``audit``: the
    settled windows' counts the late-commit audit saw, at ``audited_at``; ``None``: no audit this tick)."""
    pending = list(cursor.pending)
    if plan.sweep is not None and pending and pending[0] == plan.sweep:
        pending.pop(0)
        if fetched.sweep_read is not None and fetched.sweep_read[1] < plan.sweep.hi:
            pending.insert(0, plan.sweep.rest_after(fetched.sweep_read[1]))
    high_water = cursor.high_water
    density = cursor.density
    if fetched.fresh is not None:
        lo, hi = fetched.fresh
        rows, digest = fetched.fresh_signature
        late = plan.read_late_before is not None and hi <= plan.read_late_before
        pending.append(SweepWindow(lo, hi, rows, digest, size=fetched.fresh_total if late else None))
        high_water = hi
        span = (hi - lo).total_seconds()
        density = fetched.fresh_listed / span if fetched.fresh_listed and span > 0 else None  # none: the next tick counts
    elif high_water is None and plan.fresh is None:
        high_water = plan.backfill_since
    settled = list(audit.settled) if audit is not None else list(cursor.settled)
    if fetched.sweep_read is not None and fetched.sweep_total is not None:
        settled = settle_window(settled, SettledWindow(*fetched.sweep_read, fetched.sweep_total))
    while pending and (size := pending[0].size) is not None:  # read after the lateness window: settled as first read
        window = pending.pop(0)
        settled = settle_window(settled, SettledWindow(window.lo, window.hi, size))
    while len(pending) > MAX_SWEEP_WINDOWS:
        merged = _merge_smallest(pending, settings.max_rows_per_tick)
        if len(merged) == len(pending):
            break
        pending = merged
    current = set(coverage.values())
    backfilling = cursor.backfilling
    if plan.first_start or cursor.dags is None:
        dags = frozenset(current)
        backfilling = None
    else:
        dags = frozenset((cursor.dags & current) | {coverage[d] for d in fetched.backfill_done})
        if fetched.backfill_partial is not None:
            backfilling = (coverage[fetched.backfill_partial[0]], fetched.backfill_partial[1])
        elif backfilling is not None and (backfilling[0] in dags or backfilling[0] not in current):
            backfilling = None  # finished, or the DAG left the mapping (or its mapping changed)
    return AirliftSensorCursor(high_water=high_water, tick_started=tick_started, pending=pending, dags=dags, settled=settled,
                               backfilling=backfilling, audited_at=audited_at if audit is not None else cursor.audited_at,
                               source=cursor.source, density=density, listening=cursor.listening, unheard=cursor.unheard)


def _merge_smallest(pending: list[SweepWindow], budget: int) -> list[SweepWindow]:
    """Merge the adjacent pair with the fewest rows (it stays readable in one tick if it fits)."""
    best = min(range(len(pending) - 1), key=lambda i: pending[i].rows + pending[i + 1].rows)
    if pending[best].rows + pending[best + 1].rows > budget and len(pending) <= MAX_SWEEP_WINDOWS * 4:
        return pending
    return [*pending[:best], pending[best].merged(pending[best + 1]), *pending[best + 2:]]


def settle_window(settled: Sequence[SettledWindow], window: SettledWindow) -> list[SettledWindow]:
    """Step 5b (pure): add a window read twice to the audited ones; a window that does not follow
    the last one starts the list again; past :data:`MAX_SETTLED_WINDOWS` the two oldest merge.

    >>> t = datetime(2026, 1, 1, tzinfo=timezone.utc)
    >>> out = settle_window([SettledWindow(t, t + timedelta(minutes=1), 3)],
    ...                     SettledWindow(t + timedelta(minutes=1, microseconds=1), t + timedelta(minutes=2), 4))
    >>> [w.rows for w in out]
    [3, 4]
    """
    out = list(settled)
    if out and window.lo != out[-1].hi + _TICK:
        out = []
    out.append(window)
    while len(out) > MAX_SETTLED_WINDOWS:
        out[:2] = [SettledWindow(out[0].lo, out[1].hi, out[0].rows + out[1].rows)]
    return out

