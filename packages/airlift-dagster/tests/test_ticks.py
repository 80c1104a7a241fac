"""A sensor tick that recorded events says so in Dagster's tick history instead of "empty result"."""

from __future__ import annotations

from dagster import (
    AssetCheckEvaluation,
    AssetCheckKey,
    AssetKey,
    AssetMaterialization,
    AssetObservation,
    RunRequest,
    build_sensor_context,
    sensor,
)

from airlift_dagster.ticks import build_sensor_result, describe_tick_events


def test_describe_counts_each_kind() -> None:
    events = [
        AssetMaterialization("a"),
        AssetMaterialization("b"),
        AssetObservation("dag"),
        AssetCheckEvaluation(asset_key=AssetKey("a"), check_name="airflow_task_succeeded", passed=True),
    ]
    assert describe_tick_events(events) == (
        "Recorded 2 asset materializations, 1 asset observation and 1 asset check result from Airflow "
        "(no Dagster run needed)."
    )
    assert describe_tick_events([]) == "No Airflow run finished since the last tick; nothing to record."


def test_tick_with_events_carries_the_summary_not_empty_result() -> None:
    @sensor(name="s")
    def s(context):  # type: ignore[no-untyped-def]
        return build_sensor_result(asset_events=[AssetMaterialization("a")], cursor="1")

    data = s.evaluate_tick(build_sensor_context(cursor=None))
    assert data.skip_message == "Recorded 1 asset materialization from Airflow (no Dagster run needed)."
    assert "empty result" not in (data.skip_message or "")
    assert [e.asset_key for e in data.asset_events] == [AssetKey("a")]
    assert data.cursor == "1"


def test_run_requests_keep_no_reason() -> None:
    request = RunRequest(asset_selection=[], asset_check_keys=[AssetCheckKey(AssetKey("a"), "c")])
    result = build_sensor_result(asset_events=[AssetMaterialization("a")], cursor=None, run_requests=[request])
    assert result.skip_reason is None and list(result.run_requests or []) == [request]


def test_warnings_follow_the_summary_in_the_reason_of_a_tick_without_runs() -> None:
    result = build_sensor_result(asset_events=[AssetMaterialization("a")], cursor="c", warnings=["2 rows were committed late"])
    assert result.skip_reason is not None
    assert result.skip_reason.skip_message == (
        "Recorded 1 asset materialization from Airflow (no Dagster run needed). WARNING: 2 rows were committed late")
