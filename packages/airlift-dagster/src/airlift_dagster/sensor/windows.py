"""Step 1 (pure): which ``updated_at`` windows a tick reads: the fresh window after the high-water
mark, a window to read again once the lateness window passed, DAGs new to the mapping to backfill."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from airlift_dagster.sensor._time import _TICK
from airlift_dagster.sensor.cursor import AirliftSensorCursor, SweepWindow
from airlift_dagster.sensor.settings import SensorSettings

#: DAGs new to the mapping backfilled per tick.
BACKFILL_DAGS_PER_TICK = 20


@dataclass(frozen=True)
class TickPlan:
    """What one tick reads: ``fresh`` (``updated_at`` window after the high-water mark, its upper
    bound may shrink when sized, first to what ``density`` says fits), ``sweep`` (a window to read
    again), ``backfill`` (DAGs new to the mapping, with their history from ``backfill_since``).
    A fresh window ending by ``read_late_before`` is read after the lateness window: every commit
    the second read would wait for is visible already, so it is not read again."""

    fresh: tuple[datetime, datetime] | None
    sweep: SweepWindow | None
    backfill: tuple[str, ...]
    backfill_since: datetime
    first_start: bool
    #: where the backfill of ``backfill[0]`` resumes (its history was read in part by earlier ticks)
    resume: datetime | None = None
    #: rows the last fresh window's reads listed per second of it (``None``: unknown or none)
    density: float | None = None
    read_late_before: datetime | None = None

    def backfill_start(self, dag_id: str) -> datetime:
        """Runs of ``dag_id`` ending from this time on are backfilled this tick."""
        if self.resume is not None and self.backfill and dag_id == self.backfill[0]:
            return max(self.resume, self.backfill_since)
        return self.backfill_since


def plan_tick(cursor: AirliftSensorCursor, *, now: datetime, coverage: Mapping[str, str], settings: SensorSettings) -> TickPlan:
    """Step 1 (pure): what to read this tick. ``coverage``: DAG id → :func:`dag_digest`.

    >>> now = datetime(2026, 1, 2, tzinfo=timezone.utc)
    >>> plan = plan_tick(AirliftSensorCursor(), now=now, coverage={"d": dag_digest("d")}, settings=SensorSettings())
    >>> plan.first_start, plan.fresh[0] == now - timedelta(days=1)
    (True, True)
    """
    first = cursor.high_water is None
    lo = now - settings.history_window if cursor.high_water is None else cursor.high_water + _TICK
    hi = now - settings.settle
    sweep = cursor.pending[0] if cursor.pending and cursor.pending[0].hi <= now - settings.lateness_window else None
    backfill: tuple[str, ...] = ()
    resume: datetime | None = None
    if not first and cursor.dags is not None:
        pending = sorted(d for d, digest in coverage.items() if digest not in cursor.dags)
        partial = cursor.backfilling
        resumed = [d for d in pending if partial is not None and coverage[d] == partial[0]][:1]
        if resumed and partial is not None:  # the DAG whose history earlier ticks read in part goes first
            resume = partial[1] + _TICK
        backfill = tuple([*resumed, *(d for d in pending if d not in resumed)][:BACKFILL_DAGS_PER_TICK])
    return TickPlan(fresh=(lo, hi) if hi >= lo else None, sweep=sweep, backfill=backfill,
                    backfill_since=now - settings.history_window, first_start=first, resume=resume,
                    density=cursor.density, read_late_before=now - settings.lateness_window)

