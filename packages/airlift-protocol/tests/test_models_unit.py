"""Model parsing edge cases (the shapes of real responses are covered in test_samples.py)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from airlift_protocol import (
    ApiVersion,
    DagInfo,
    DagRun,
    RestPayloadError,
    TaskInfo,
    TaskInstance,
    parse_airflow_datetime,
    with_upstream_task_ids,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-24T04:10:00+00:00", datetime(2026, 11, 24, 4, 10, tzinfo=timezone.utc)),
        ("2026-11-24T04:10:00Z", datetime(2026, 11, 24, 4, 10, tzinfo=timezone.utc)),
        ("2026-11-24T04:10:00.123Z", datetime(2026, 11, 24, 4, 10, 0, 123000, tzinfo=timezone.utc)),
        ("2026-11-24T04:10:00.1234567Z", datetime(2026, 11, 24, 4, 10, 0, 123456, tzinfo=timezone.utc)),
        ("2026-11-24T04:10:00.12345+00:00", datetime(2026, 11, 24, 4, 10, 0, 123450, tzinfo=timezone.utc)),
        ("2026-11-24T04:10:00", datetime(2026, 11, 24, 4, 10, tzinfo=timezone.utc)),
        (None, None),
        ("", None),
    ],
)
def test_parse_datetime(text: str | None, expected: datetime | None) -> None:
    assert parse_airflow_datetime(text) == expected


def test_parse_datetime_errors_name_the_field() -> None:
    with pytest.raises(RestPayloadError, match="run x start_date: 'yesterday'"):
        parse_airflow_datetime("yesterday", what="run x start_date")
    with pytest.raises(RestPayloadError, match="expected an ISO-8601 string"):
        parse_airflow_datetime(12, what="x")


def test_missing_required_field_is_named() -> None:
    with pytest.raises(RestPayloadError, match="no 'dag_run_id' field"):
        DagRun.from_rest({"dag_id": "d"}, api=ApiVersion.V1)
    with pytest.raises(RestPayloadError, match="expected a JSON object"):
        DagInfo.from_rest(["not", "a", "dict"], api=ApiVersion.V2)  # type: ignore[arg-type]
    with pytest.raises(RestPayloadError, match="field 'dag_id' is null"):
        DagInfo.from_rest({"dag_id": None}, api=ApiVersion.V2)


def test_v1_run_uses_execution_date_when_logical_date_absent() -> None:
    run = DagRun.from_rest(
        {"dag_id": "d", "dag_run_id": "r", "execution_date": "2026-01-01T00:00:00+00:00", "state": "success"},
        api=ApiVersion.V1,
    )
    assert run.logical_date == datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert run.run_after == run.logical_date
    assert run.is_finished and run.is_success


def test_v2_run_with_null_logical_date() -> None:
    run = DagRun.from_rest(
        {"dag_id": "d", "dag_run_id": "r", "logical_date": None, "run_after": "2026-01-01T00:00:00Z", "state": "running"},
        api=ApiVersion.V2,
    )
    assert run.logical_date is None
    assert run.run_after == datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert not run.is_finished


def test_dag_active_flag_per_generation() -> None:
    assert DagInfo.from_rest({"dag_id": "d", "is_stale": True}, api=ApiVersion.V2).is_active is False
    assert DagInfo.from_rest({"dag_id": "d", "is_active": False}, api=ApiVersion.V1).is_active is False
    dag = DagInfo.from_rest(
        {"dag_id": "d", "tags": [{"name": "a"}, {"name": "b", "dag_id": "d"}], "owners": ["x"],
         "schedule_interval": {"__type": "CronExpression", "value": "0 * * * *"}},
        api=ApiVersion.V1,
    )
    assert dag.tags == ("a", "b")
    assert dag.schedule == "0 * * * *"
    assert dag.display_name == "d"


def test_task_instance_defaults_and_key() -> None:
    ti = TaskInstance.from_rest(
        {"dag_id": "d", "task_id": "t", "dag_run_id": "r", "state": None, "map_index": 4, "try_number": 2},
        api=ApiVersion.V2,
    )
    assert ti.key == ("d", "r", "t", 4)
    assert ti.state is None and not ti.is_finished
    unmapped = TaskInstance.from_rest({"dag_id": "d", "task_id": "t", "dag_run_id": "r", "state": "success"}, api=ApiVersion.V1)
    assert unmapped.map_index == -1 and unmapped.is_success


def test_upstreams_derived_from_downstreams_with_branches() -> None:
    def task(task_id: str, *down: str) -> TaskInfo:
        return TaskInfo.from_rest({"task_id": task_id, "downstream_task_ids": list(down)}, dag_id="d", api=ApiVersion.V1)

    tasks = with_upstream_task_ids([task("start", "b1", "b2"), task("b1", "end"), task("b2", "end"), task("end")])
    assert {t.task_id: t.upstream_task_ids for t in tasks} == {
        "start": (), "b1": ("start",), "b2": ("start",), "end": ("b1", "b2"),
    }


def test_models_do_not_show_raw_in_repr() -> None:
    dag = DagInfo.from_rest({"dag_id": "d", "description": "x", "secret_field": "s3cr3t"}, api=ApiVersion.V1)
    assert "s3cr3t" not in repr(dag)
