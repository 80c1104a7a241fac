"""Airflow timetables → Dagster schedules: every supported form, every refusal, on the REST shapes of
both Airflow generations (``/api/v1`` ``schedule_interval``, ``/api/v2`` ``timetable_summary``)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from airlift_dagster.decommission import (
    DagSchedule,
    TimetableNotSupportedError,
    due_intervals,
    schedule_from_timetable,
)
from airlift_protocol import ApiVersion, DagTimetable

UTC = timezone.utc
START = "2024-01-01T00:00:00+00:00"


def details(generation: int, schedule: Any, **extra: Any) -> DagTimetable:
    """The details of DAG ``d`` whose schedule is ``schedule`` as that generation serves it."""
    raw: dict[str, Any] = {"dag_id": "d", "catchup": False, "start_date": START, "end_date": None, "timezone": "UTC",
                           "timetable_description": "desc", "next_dagrun_data_interval_start": None,
                           "next_dagrun_data_interval_end": None}
    if generation == 2:
        if isinstance(schedule, timedelta):
            raw["schedule_interval"] = {"__type": "TimeDelta", "days": schedule.days, "seconds": schedule.seconds,
                                        "microseconds": schedule.microseconds}
        elif isinstance(schedule, dict):
            raw["schedule_interval"] = schedule
        else:
            raw["schedule_interval"] = None if schedule is None else {"__type": "CronExpression", "value": schedule}
        raw["dataset_expression"] = extra.pop("datasets", None)
    else:
        raw["timetable_summary"] = str(schedule) if isinstance(schedule, timedelta) else schedule
        raw["asset_expression"] = extra.pop("datasets", None)
    raw.update(extra)
    return DagTimetable.from_rest(raw, api=ApiVersion.V1 if generation == 2 else ApiVersion.V2)


generations = pytest.mark.parametrize("generation", [2, 3])


@generations
@pytest.mark.parametrize(("preset", "cron"), [
    ("@hourly", "0 * * * *"), ("@daily", "0 0 * * *"), ("@weekly", "0 0 * * 0"), ("@monthly", "0 0 1 * *"),
    ("@quarterly", "0 0 1 */3 *"), ("@yearly", "0 0 1 1 *"), ("@annually", "0 0 1 1 *"),
    ("*/5 * * * *", "*/5 * * * *"), ("30 4 * * MON-FRI", "30 4 * * MON-FRI"),
])
def test_cron_presets_and_strings(generation: int, preset: str, cron: str) -> None:
    s = schedule_from_timetable(details(generation, preset))
    assert (s.kind, s.cron, s.source) == ("cron", cron, preset)
    assert s.start == datetime(2024, 1, 1, tzinfo=UTC)


@generations
def test_data_interval_read_from_the_next_run_else_the_generation_default(generation: int) -> None:
    planned = details(generation, "@daily", next_dagrun_data_interval_start="2024-01-02T00:00:00+00:00",
                      next_dagrun_data_interval_end="2024-01-03T00:00:00+00:00")
    assert schedule_from_timetable(planned).data_interval is True
    trigger = details(generation, "@daily", next_dagrun_data_interval_start="2024-01-03T00:00:00+00:00",
                      next_dagrun_data_interval_end="2024-01-03T00:00:00+00:00")
    assert schedule_from_timetable(trigger).data_interval is False
    unknown = schedule_from_timetable(details(generation, "@daily"))
    assert unknown.data_interval is (generation == 2)
    assert "assumed" in unknown.notes[0]


@generations
def test_timedelta_of_whole_minutes(generation: int) -> None:
    s = schedule_from_timetable(details(generation, timedelta(hours=2), catchup=True))
    assert (s.kind, s.interval_seconds, s.catchup) == ("interval", 7200, True)
    week = schedule_from_timetable(details(generation, timedelta(days=7)))
    assert week.interval_seconds == 7 * 86400


@generations
def test_a_data_interval_timetable_summarised_as_a_timedelta(generation: int) -> None:
    # DeltaDataIntervalTimetable(timedelta(days=7)): Airflow 2 serves its summary as the schedule_interval value
    s = schedule_from_timetable(details(generation, "7 days, 0:00:00"))
    assert (s.kind, s.interval_seconds) == ("interval", 7 * 86400)


@generations
def test_a_cron_whose_planned_next_run_is_not_a_tick_in_the_dag_timezone_is_refused(generation: int) -> None:
    # CronTriggerTimetable("0 3 * * *", timezone="Europe/Paris") in a UTC DAG: Airflow plans 02:00 UTC
    key = "next_dagrun_create_after" if generation == 2 else "next_dagrun_run_after"
    with pytest.raises(TimetableNotSupportedError, match=r"next run \(2024-03-05T02:00:00\+00:00\) is not a tick of cron '0 3 \* \* \*'"):
        schedule_from_timetable(details(generation, "0 3 * * *", **{key: "2024-03-05T02:00:00+00:00"}))
    paris = details(generation, "0 3 * * *", timezone="Europe/Paris", **{key: "2024-03-05T02:00:00+00:00"})
    assert schedule_from_timetable(paris).timezone == "Europe/Paris"


@generations
def test_no_schedule_and_once_are_a_job_without_schedule(generation: int) -> None:
    assert schedule_from_timetable(details(generation, None)).kind == "manual"
    once = schedule_from_timetable(details(generation, "@once"))
    assert once.kind == "manual" and "@once" in once.notes[0]


@generations
def test_timezone_end_date_and_catchup_are_kept(generation: int) -> None:
    tz = "Timezone('Europe/Paris')" if generation == 2 else "Europe/Paris"
    s = schedule_from_timetable(details(generation, "0 3 * * *", timezone=tz, catchup=True, end_date="2025-01-01T00:00:00Z"))
    assert (s.timezone, s.catchup, s.end) == ("Europe/Paris", True, datetime(2025, 1, 1, tzinfo=UTC))


@pytest.mark.parametrize(("generation", "expression", "condition", "uris"), [
    (2, {"all": ["s3://a"]}, "all", ("s3://a",)),
    (2, {"any": ["s3://a", "s3://b"]}, "any", ("s3://a", "s3://b")),
    (2, "s3://a", "all", ("s3://a",)),
    (3, {"all": [{"asset": {"uri": "s3://a", "name": "a", "group": "asset"}}]}, "all", ("s3://a",)),
    (3, {"any": [{"asset": {"uri": "s3://a", "name": "a"}}, {"asset": {"uri": "s3://b", "name": "b"}}]}, "any", ("s3://a", "s3://b")),
    (3, {"asset": {"uri": "s3://a", "name": "a"}}, "all", ("s3://a",)),
])
def test_dataset_triggers(generation: int, expression: Any, condition: str, uris: tuple[str, ...]) -> None:
    schedule = "Dataset" if generation == 2 else "Asset"
    s = schedule_from_timetable(details(generation, schedule, datasets=expression))
    assert (s.kind, s.condition, s.uris) == ("assets", condition, uris)


@pytest.mark.parametrize(("generation", "schedule", "extra", "reason"), [
    (2, "@continuous", {}, "'@continuous'"),
    (3, "@continuous", {}, "'@continuous'"),
    (2, {"__type": "RelativeDelta", "months": 1}, {}, "relativedelta"),
    (2, "my_plugin.EveryFullMoon", {}, "only cron presets"),
    (3, "EveryFullMoon()", {}, "only cron presets"),
    (2, "0 0 * * * *", {}, "five-field"),
    (3, "0 0 * * * *", {}, "five-field"),
    (2, timedelta(seconds=90), {}, "whole numbers of minutes"),
    (3, timedelta(seconds=90), {}, "whole numbers of minutes"),
    (2, "Dataset", {"datasets": {"any": ["s3://a", {"all": ["s3://b", "s3://c"]}]}}, "flat list"),
    (3, "Asset", {"datasets": {"any": [{"alias": {"name": "x"}}]}}, "flat list"),
    (3, "Asset or 0 0 * * *", {"datasets": {"any": [{"asset": {"uri": "s3://a"}}]}}, "mixes datasets and time"),
    (2, "Dataset or 0 0 * * *", {"datasets": {"any": ["s3://a"]}}, "mixes datasets and time"),
    (3, "@daily", {"timezone": "Mars/Olympus"}, "IANA timezone"),
    (2, timedelta(hours=1), {"start_date": None}, "start_date"),
])
def test_refusals_name_the_dag_and_the_reason(generation: int, schedule: Any, extra: dict[str, Any], reason: str) -> None:
    with pytest.raises(TimetableNotSupportedError) as caught:
        schedule_from_timetable(details(generation, schedule, **extra))
    message = str(caught.value)
    assert message.startswith("DAG 'd': cannot decommission") and reason in message and "\n" not in message


def _at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_due_intervals_of_a_cron_data_interval_latest_only() -> None:
    s = DagSchedule(kind="cron", source="@daily", cron="0 0 * * *", start=_at(2024, 1, 1), data_interval=True)
    assert due_intervals(s, now=_at(2024, 3, 5), after=None) == [(_at(2024, 3, 4), _at(2024, 3, 5))]
    assert due_intervals(s, now=_at(2024, 3, 5, 7), after=None) == [(_at(2024, 3, 4), _at(2024, 3, 5))]
    # the interval Airflow already ran before the pause is not run again
    assert due_intervals(s, now=_at(2024, 3, 5), after=_at(2024, 3, 5)) == []


def test_due_intervals_of_a_trigger_timetable_are_the_ticks() -> None:
    s = DagSchedule(kind="cron", source="*/5 * * * *", cron="*/5 * * * *", start=_at(2024, 1, 1), data_interval=False)
    assert due_intervals(s, now=_at(2024, 3, 5, 0, 7), after=None) == [(_at(2024, 3, 5, 0, 5), _at(2024, 3, 5, 0, 5))]


def test_catchup_runs_every_missed_interval_since_the_pause_oldest_first() -> None:
    s = DagSchedule(kind="cron", source="@hourly", cron="0 * * * *", start=_at(2024, 1, 1), catchup=True, data_interval=True)
    due = due_intervals(s, now=_at(2024, 3, 5, 4), after=_at(2024, 3, 5, 1, 30))
    assert due == [(_at(2024, 3, 5, 1), _at(2024, 3, 5, 2)), (_at(2024, 3, 5, 2), _at(2024, 3, 5, 3)),
                   (_at(2024, 3, 5, 3), _at(2024, 3, 5, 4))]


def test_catchup_in_the_dag_timezone_and_not_past_its_end_date() -> None:
    s = DagSchedule(kind="cron", source="0 3 * * *", cron="0 3 * * *", timezone="Europe/Paris", start=_at(2024, 1, 1),
                    end=_at(2024, 3, 4, 12), catchup=True, data_interval=False)
    due = due_intervals(s, now=_at(2024, 3, 6, 12), after=_at(2024, 3, 2, 12))
    assert [tick.astimezone(UTC) for tick, _ in due] == [_at(2024, 3, 3, 2), _at(2024, 3, 4, 2)]


def test_due_intervals_of_a_timedelta_count_from_the_start() -> None:
    s = DagSchedule(kind="interval", source="7 days", interval_seconds=7 * 86400, start=_at(2024, 1, 3), data_interval=True)
    assert due_intervals(s, now=_at(2024, 1, 20), after=None) == [(_at(2024, 1, 10), _at(2024, 1, 17))]
    trigger = DagSchedule(kind="interval", source="2:00:00", interval_seconds=7200, start=_at(2024, 1, 1), catchup=True)
    assert [t for t, _ in due_intervals(trigger, now=_at(2024, 1, 1, 5), after=_at(2024, 1, 1, 1))] == [_at(2024, 1, 1, 2), _at(2024, 1, 1, 4)]


def test_nothing_is_due_before_the_first_interval_ends() -> None:
    s = DagSchedule(kind="cron", source="@daily", cron="0 0 * * *", start=_at(2024, 1, 1), data_interval=True)
    assert due_intervals(s, now=_at(2024, 1, 1, 12), after=None) == []
