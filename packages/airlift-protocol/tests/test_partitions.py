"""The partition key an Airflow run stands for (pure rule shared by both sides)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from airlift_protocol import (
    PartitionKeyError,
    TimeWindowPartitioning,
    partition_key_for_airflow_run,
)

UTC = timezone.utc


def _p(description: str, fmt: str) -> TimeWindowPartitioning:
    return TimeWindowPartitioning.from_dagster(fmt=fmt, description=description)


def test_daily_from_data_interval_start_and_logical_date() -> None:
    daily = _p("Daily, starting 2024-01-01 UTC.", "%Y-%m-%d")
    start = datetime(2024, 3, 5, tzinfo=UTC)
    assert partition_key_for_airflow_run(daily, data_interval_start=start, data_interval_end=start + timedelta(days=1)) == "2024-03-05"
    # Airflow 2 manual run: a zero-length interval at the logical date
    noon = datetime(2024, 3, 5, 12, tzinfo=UTC)
    assert partition_key_for_airflow_run(daily, logical_date=noon, data_interval_start=noon, data_interval_end=noon) == "2024-03-05"
    assert partition_key_for_airflow_run(daily, logical_date=noon) == "2024-03-05"


def test_hourly_weekly_monthly_and_timezone() -> None:
    when = datetime(2024, 3, 6, 23, 30, tzinfo=UTC)
    assert partition_key_for_airflow_run(_p("Hourly, starting 2024-01-01-00:00 UTC.", "%Y-%m-%d-%H:%M"), logical_date=when) == "2024-03-06-23:00"
    # weekly from a Sunday start: 2024-03-06 is a Wednesday
    assert partition_key_for_airflow_run(_p("Weekly, starting 2024-01-07 UTC.", "%Y-%m-%d"), logical_date=when) == "2024-03-03"
    assert partition_key_for_airflow_run(_p("Monthly, starting 2024-01-01 UTC.", "%Y-%m-%d"), logical_date=when) == "2024-03-01"
    # 23:30 UTC is already the next day in Berlin
    berlin = _p("Daily, starting 2024-01-01 Europe/Berlin.", "%Y-%m-%d")
    assert partition_key_for_airflow_run(berlin, logical_date=when) == "2024-03-07"


def test_no_logical_date_is_a_clear_error() -> None:
    daily = _p("Daily, starting 2024-01-01 UTC.", "%Y-%m-%d")
    with pytest.raises(PartitionKeyError, match=r"Airflow run 'manual__x' has no logical date .*trigger it with a logical date"):
        partition_key_for_airflow_run(daily, run_id="manual__x")


def test_interval_longer_than_a_partition_and_before_the_start_are_errors() -> None:
    daily = _p("Daily, starting 2024-01-01 UTC.", "%Y-%m-%d")
    start = datetime(2024, 3, 4, tzinfo=UTC)
    with pytest.raises(PartitionKeyError, match="longer than one Daily partition"):
        partition_key_for_airflow_run(daily, data_interval_start=start, data_interval_end=start + timedelta(days=7))
    with pytest.raises(PartitionKeyError, match="before the first partition"):
        partition_key_for_airflow_run(daily, logical_date=datetime(2023, 1, 1, tzinfo=UTC))


def test_cron_schedule_and_bad_descriptions_are_errors() -> None:
    cron = _p("0 6 * * *, starting 2024-01-01-06:00 UTC.", "%Y-%m-%d-%H:%M")
    assert partition_key_for_airflow_run(cron, logical_date=datetime(2024, 2, 1, 6, tzinfo=UTC)) == "2024-02-01-06:00"
    with pytest.raises(PartitionKeyError, match="cannot read"):
        _p("whatever", "%Y")
