"""Which tags carry Airflow's ids as they are: Dagster's own limits on tag values, measured.

Dagster validates the tags of asset events (materializations, observations) strictly: at most 63
characters of ``[A-Za-z0-9_.-]``. Airflow's run ids (``manual__2026-01-01T00:00:00+00:00``) do not fit,
so event tags carry :func:`airlift_protocol.encode_tag_value` of them. Run tags take any string, so
every Dagster run Airlift writes (a migrated task's run, a mirrored Airflow run) carries the real id,
and filtering runs by it finds them. If Dagster ever relaxes the event-tag rule, the first test fails:
event tags could then carry the real ids too.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import (
    AssetMaterialization,
    DagsterInstance,
    DagsterInvalidDefinitionError,
    RunsFilter,
    asset,
    materialize,
)
from dagster._utils.tags import is_valid_tag_key

from airlift_protocol import (
    AIRFLOW_RUN_ID_RUN_TAG,
    airflow_param_run_tags,
    encode_tag_value,
    operator_run_tags,
    parse_dagster_run_tags,
)
from airlift_protocol.tags import AirflowEventId

RUN_ID = "manual__2026-01-01T00:00:00+00:00"


@pytest.mark.parametrize("run_id", [RUN_ID, "scheduled__2026-01-01T00:00:00+00:00", "backfill:" + "x" * 40, "r" * 64])
def test_dagster_refuses_such_ids_in_event_tags_so_events_carry_the_encoded_value(run_id: str) -> None:
    with pytest.raises(DagsterInvalidDefinitionError, match="Allowed characters"):
        AssetMaterialization("a", tags={AIRFLOW_RUN_ID_RUN_TAG: run_id})
    tags = AirflowEventId("prod", "d", run_id, task_id="t", try_number=1).tags()
    assert tags[AIRFLOW_RUN_ID_RUN_TAG] == encode_tag_value(run_id) != run_id
    AssetMaterialization("a", tags=tags)  # accepted


def test_an_id_that_fits_is_the_event_tag_as_it_is() -> None:
    tags = AirflowEventId("prod", "d", "nightly_2026-01-01", task_id="t", try_number=1).tags()
    assert tags[AIRFLOW_RUN_ID_RUN_TAG] == "nightly_2026-01-01"
    AssetMaterialization("a", tags=tags)


def test_run_tags_carry_the_real_airflow_run_id_and_filtering_by_it_finds_the_run(tmp_path: Path) -> None:
    @asset
    def built() -> None:
        pass

    tags = operator_run_tags(instance_name="prod", dag_id="d", task_id="t", run_id=RUN_ID, try_number=1, map_index=-1,
                             location="defs")
    assert tags[AIRFLOW_RUN_ID_RUN_TAG] == RUN_ID
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        result = materialize([built], instance=instance, tags=tags)
        found = instance.get_runs(filters=RunsFilter(tags={AIRFLOW_RUN_ID_RUN_TAG: RUN_ID}))
        assert [run.run_id for run in found] == [result.run_id]
        ref = parse_dagster_run_tags(found[0].tags)
        assert ref is not None and ref.run_id == RUN_ID


def test_param_run_tags_are_keys_dagster_accepts_and_runs_are_found_by_them(tmp_path: Path) -> None:
    """Dagster warns about run tag keys whose name part is over 63 characters or has other characters
    (``filterwarnings = error`` makes that warning fail this test): parameter names that do not fit are
    written as digests, and a long value is left out."""
    @asset
    def built() -> None:
        pass

    params = {"region": "eu-west", "limit": 10, "a name with spaces": 1, "p" * 60: "long name", "blob": "x" * 500}
    tags = airflow_param_run_tags(params)
    assert len(tags) == 4 and all(is_valid_tag_key(key) for key in tags)
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        result = materialize([built], instance=instance, tags=tags)
        found = instance.get_runs(filters=RunsFilter(tags={"airlift/airflow_param.region": "eu-west"}))
        assert [run.run_id for run in found] == [result.run_id]
        assert found[0].tags["airlift/airflow_param.limit"] == "10"
