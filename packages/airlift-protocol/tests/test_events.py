"""The shared event fields (sensor and push listener), UI links and the task -> asset index."""

from __future__ import annotations

from datetime import datetime, timezone

from airlift_protocol.events import dag_run_success_event, metadata_json, task_success_event
from airlift_protocol.links import ui_links_for
from airlift_protocol.models import ApiVersion
from airlift_protocol.tags import (
    AIRFLOW_EVENT_TAG,
    AirflowEventId,
    airflow_event_key_of,
    dump_task_asset_index,
    parse_task_asset_index,
)

END = datetime(2026, 1, 1, 0, 0, 5, 123456, tzinfo=timezone.utc)


def test_task_event_identity_travels_in_tags_and_metadata() -> None:
    links = ui_links_for(ApiVersion.V1, "http://af:8080")
    event = task_success_event(instance_name="prod", links=links, dag_id="d", run_id="r", task_id="t", map_index=3,
                               try_number=2, start_date=END, end_date=END)
    expected = AirflowEventId("prod", "d", "r", task_id="t", map_index=3, try_number=2)
    assert event.event_id == expected
    assert airflow_event_key_of(event.tags(), instance_name="prod") == expected.key
    body = metadata_json(event.metadata)
    assert airflow_event_key_of(None, instance_name="prod", metadata=body) == expected.key
    assert airflow_event_key_of(None, instance_name="staging", metadata=body) is None
    assert body["Map index"] == 3 and body["End date"] == END.timestamp()
    assert body["Airflow task log"] == "http://af:8080/dags/d/grid?dag_run_id=r&task_id=t&map_index=3&tab=logs&try_number=2"
    assert "Marked in Airflow" not in body


def test_dag_run_event_identity_uses_the_utc_end_date() -> None:
    links = ui_links_for(ApiVersion.V2, "http://af:8080")
    event = dag_run_success_event(instance_name="prod", links=links, dag_id="d", run_id="r", run_type=None,
                                  start_date=None, end_date=END, marked=True)
    assert event.event_id == AirflowEventId("prod", "d", "r", run_end_date="2026-01-01T00:00:05.123456+00:00")
    assert event.metadata[AIRFLOW_EVENT_TAG].value == event.event_id.key
    assert "Marked in Airflow" in event.metadata and "Marked in Airflow" not in event.check_metadata


def test_task_asset_index_round_trips_and_rejects_other_values() -> None:
    value = dump_task_asset_index({"b": [["x", "2"], ["x", "1"]]}, [["dag_level"]])
    assert parse_task_asset_index(value) == {"b": [("x", "1"), ("x", "2")], None: [("dag_level",)]}
    import json

    assert parse_task_asset_index(json.dumps(value)) == parse_task_asset_index(value)
    assert parse_task_asset_index("not json") is None
    assert parse_task_asset_index({"other": 1}) is None
    assert parse_task_asset_index({"tasks": {"t": 5}}) is None


def test_task_asset_index_leaves_time_partitioned_assets_out_of_pushes() -> None:
    value = dump_task_asset_index({"t": [["plain"], ["daily"]]}, [["dag_level"]], partitioned=[["daily"]])
    # the operator's own-asset lookup sees every asset of the task
    assert parse_task_asset_index(value) == {"t": [("daily",), ("plain",)], None: [("dag_level",)]}
    # a push reports only what it can report rightly: the sensor records the partition
    assert parse_task_asset_index(value, without_partitioned=True) == {"t": [("plain",)], None: [("dag_level",)]}
