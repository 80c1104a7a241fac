from __future__ import annotations

import re

import pytest

from airlift_protocol import (
    AIRFLOW_DAG_ID_RUN_TAG,
    AIRFLOW_RUN_ID_RUN_TAG,
    AirflowTaskRef,
    dagster_run_tags,
    encode_tag_value,
    parse_dagster_run_tags,
    task_is_marked_migrated,
    task_migration_doc,
)

# Dagster's rule for asset tag values (dagster/_utils/tags.py: VALID_STRICT_TAG_VALUE_REGEX).
DAGSTER_STRICT_VALUE = re.compile(r"^[A-Za-z0-9_.-]{0,63}$")


@pytest.mark.parametrize(
    "airflow_id",
    ["rebuild_customers_list", "team.sales-daily_v2", "group.task_1", "a" * 63],
)
def test_valid_ids_are_kept(airflow_id: str) -> None:
    assert encode_tag_value(airflow_id) == airflow_id


@pytest.mark.parametrize(
    "airflow_id",
    ["a" * 64, "x" * 250, "données_clients", "airlift-sha1-spoof", "with space"],
)
def test_other_ids_are_encoded_stably_and_validly(airflow_id: str) -> None:
    encoded = encode_tag_value(airflow_id)
    assert encoded != airflow_id
    assert DAGSTER_STRICT_VALUE.match(encoded)
    assert encoded == encode_tag_value(airflow_id)
    assert encoded.startswith("airlift-sha1-")


def test_encoding_is_injective_on_distinct_long_ids() -> None:
    ids = [f"{'x' * 70}{i}" for i in range(500)]
    assert len({encode_tag_value(i) for i in ids}) == 500


def test_run_tags_round_trip() -> None:
    tags = dagster_run_tags(dag_id="d.x-1", task_id="t", run_id="manual__2026-01-01T00:00:00+00:00", try_number=2, map_index=3, instance_name="one")
    assert tags[AIRFLOW_DAG_ID_RUN_TAG] == "d.x-1"
    assert tags[AIRFLOW_RUN_ID_RUN_TAG] == "manual__2026-01-01T00:00:00+00:00"
    assert parse_dagster_run_tags(tags) == AirflowTaskRef("d.x-1", "t", "manual__2026-01-01T00:00:00+00:00", 2, 3, "one")


def test_run_tags_minimal_and_foreign() -> None:
    tags = dagster_run_tags(dag_id="d", task_id="t", run_id="r")
    assert parse_dagster_run_tags(tags) == AirflowTaskRef("d", "t", "r")
    assert parse_dagster_run_tags({"dagster/run": "x"}) is None
    assert parse_dagster_run_tags({**tags, "airlift/airflow_try_number": "abc"}) == AirflowTaskRef("d", "t", "r")


def test_migration_doc_marker() -> None:
    doc = task_migration_doc("Loads customers.", dagster_url="http://dagster:3000")
    assert task_is_marked_migrated(doc)
    assert doc.endswith("Loads customers.")
    assert "http://dagster:3000" in doc
    assert not task_is_marked_migrated("Loads customers.")
    assert not task_is_marked_migrated(None)
    assert task_is_marked_migrated(task_migration_doc(None))


def test_operator_run_tags_carry_the_whole_identity_and_parse_back() -> None:
    from airlift_protocol import (
        DAGSTER_CODE_LOCATION_RUN_TAG,
        operator_run_tags,
        parse_dagster_run_tags,
    )

    tags = operator_run_tags(instance_name="prod", dag_id="d", task_id="t", run_id="r", try_number=3,
                             map_index=-1, location="defs")
    assert tags["airlift/airflow_map_index"] == "-1" and tags[DAGSTER_CODE_LOCATION_RUN_TAG] == "defs"
    ref = parse_dagster_run_tags(tags)
    assert ref is not None
    assert (ref.instance_name, ref.dag_id, ref.task_id, ref.run_id, ref.try_number, ref.map_index) == (
        "prod", "d", "t", "r", 3, -1)
