"""Which Dagster time-window partition an Airflow run stands for (pure; shared by both sides).

The rule: the partition is the window that contains the start of the Airflow run's data interval
(``data_interval_start``), or its logical date when the run has no data interval. Windows are those
of the Dagster partitions definition: its schedule (``Hourly``, ``Daily``, ``Weekly``, ``Monthly``,
or a cron string), start, timezone and key format, as Dagster's GraphQL describes them
(``partitionDefinition { fmt description }``). A data interval longer than one window is an error
(one Airflow run, one partition). For a cron schedule the key is the interval start in the key format
(the DAG's schedule must be that cron). A run with neither data interval nor logical date (Airflow 3 runs
triggered with ``logical_date: null``) has no partition: an error that says to trigger the run with
a logical date. For a cron schedule the interval start must fall on a window start.

>>> from datetime import datetime, timezone
>>> p = TimeWindowPartitioning.from_dagster(fmt="%Y-%m-%d", description="Daily, starting 2024-01-01 UTC.")
>>> partition_key_for_airflow_run(p, data_interval_start=datetime(2024, 3, 5, tzinfo=timezone.utc),
...                               data_interval_end=datetime(2024, 3, 6, tzinfo=timezone.utc))
'2024-03-05'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from airlift_protocol.errors import AirliftProtocolError

__all__ = [
    "DAGSTER_PARTITION_TAG",
    "PartitionKeyError",
    "TimeWindowPartitioning",
    "partition_key_for_airflow_run",
]

#: Dagster's run tag naming the partition a run materializes.
DAGSTER_PARTITION_TAG = "dagster/partition"

_PERIODS = {"Hourly": timedelta(hours=1), "Daily": timedelta(days=1), "Weekly": timedelta(weeks=1)}
_DESCRIPTION = re.compile(r"^(?P<schedule>.+?), starting (?P<start>.+) (?P<tz>\S+)\.(?: End offsetted.*)?$")


class PartitionKeyError(AirliftProtocolError, ValueError):
    """No single partition key follows from an Airflow run (or a partitions definition is not understood)."""


@dataclass(frozen=True)
class TimeWindowPartitioning:
    """A Dagster time-window partitions definition, as far as picking a key goes.

    >>> TimeWindowPartitioning(schedule="Daily", start=datetime(2024, 1, 1), timezone="UTC", fmt="%Y-%m-%d").schedule
    'Daily'
    """

    schedule: str
    start: datetime  # naive wall-clock time in ``timezone``: the first window's start
    timezone: str
    fmt: str

    @classmethod
    def from_dagster(cls, *, fmt: str, description: str) -> TimeWindowPartitioning:
        """Read Dagster's ``partitionDefinition { fmt description }`` of a TIME_WINDOW definition.

        >>> TimeWindowPartitioning.from_dagster(fmt="%Y-%m-%d-%H:%M", description="Hourly, starting 2024-01-01-00:00 UTC.").schedule
        'Hourly'
        """
        match = _DESCRIPTION.match(description.strip())
        if not match:
            raise PartitionKeyError(f"cannot read the time-window partitions definition {description!r}")
        try:
            start = datetime.strptime(match["start"], fmt)
            ZoneInfo(match["tz"])
        except (ValueError, ZoneInfoNotFoundError) as e:
            raise PartitionKeyError(f"cannot read the time-window partitions definition {description!r}: {e}") from e
        return cls(schedule=match["schedule"], start=start, timezone=match["tz"], fmt=fmt)

    def window_start(self, when: datetime) -> datetime:
        """Start (naive, in the definition's timezone) of the window holding the aware instant ``when``."""
        local = _wall_clock(when, self.timezone)
        if local < self.start:
            raise PartitionKeyError(
                f"{when.isoformat()} is before the first partition ({self.start:{self.fmt}} {self.timezone})"
            )
        if self.schedule in _PERIODS:
            period = _PERIODS[self.schedule]
            return self.start + period * ((local - self.start) // period)
        if self.schedule == "Monthly":
            months = (local.year - self.start.year) * 12 + local.month - self.start.month
            candidate = _add_months(self.start, months)
            return candidate if candidate <= local else _add_months(self.start, months - 1)
        return local  # a cron schedule: the instant must be a window start (checked by the caller)

    def window_end(self, start: datetime) -> datetime | None:
        """End of the window starting at ``start`` (``None`` for a cron schedule)."""
        if self.schedule in _PERIODS:
            return start + _PERIODS[self.schedule]
        if self.schedule == "Monthly":
            return _add_months(start, 1)
        return None


def _wall_clock(when: datetime, tz: str) -> datetime:
    """A plain naive ``datetime`` of the instant's wall-clock time in ``tz`` (also for datetime
    subclasses such as pendulum's, whose arithmetic differs)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return datetime.fromtimestamp(when.timestamp(), tz=ZoneInfo(tz)).replace(tzinfo=None)


def _add_months(moment: datetime, months: int) -> datetime:
    year, month = divmod(moment.month - 1 + months, 12)
    return moment.replace(year=moment.year + year, month=month + 1)


def partition_key_for_airflow_run(
    partitioning: TimeWindowPartitioning,
    *,
    logical_date: datetime | None = None,
    data_interval_start: datetime | None = None,
    data_interval_end: datetime | None = None,
    run_id: str = "",
) -> str:
    """The partition key of an Airflow run (see the module docstring for the rule).

    >>> p = TimeWindowPartitioning.from_dagster(fmt="%Y-%m-%d", description="Daily, starting 2024-01-01 UTC.")
    >>> partition_key_for_airflow_run(p, logical_date=datetime(2024, 3, 5, 13, 0, tzinfo=timezone.utc))
    '2024-03-05'
    """
    anchor = data_interval_start or logical_date
    where = f"Airflow run {run_id!r}" if run_id else "the Airflow run"
    if anchor is None:
        raise PartitionKeyError(
            f"{where} has no logical date and no data interval (an Airflow 3 run triggered with logical_date null), "
            "so it names no partition of the time-partitioned Dagster assets; trigger it with a logical date"
        )
    if anchor.tzinfo is None:
        anchor = anchor.replace(tzinfo=timezone.utc)
    start = partitioning.window_start(anchor)
    end = partitioning.window_end(start)
    if end is not None and data_interval_end is not None and data_interval_start is not None:
        local_end = _wall_clock(data_interval_end, partitioning.timezone)
        if local_end > end:
            raise PartitionKeyError(
                f"{where} has data interval {anchor.isoformat()} - {data_interval_end.isoformat()}, longer than one "
                f"{partitioning.schedule} partition ({start:{partitioning.fmt}}); align the DAG's schedule with the "
                "assets' partitions"
            )
    return start.strftime(partitioning.fmt)
