"""Models parse real responses of Airflow 2.11 (/api/v1) and 3.3 (/api/v2) to the same shapes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from airlift_protocol import (
    ApiVersion,
    DagInfo,
    DagRun,
    TaskInfo,
    TaskInstance,
    with_upstream_task_ids,
)

SAMPLES = Path(__file__).parent / "samples"
GENERATIONS = {"airflow2": ApiVersion.V1, "airflow3": ApiVersion.V2}


def body(generation: str, name: str) -> Any:
    return json.loads((SAMPLES / generation / f"{name}.json").read_text())["body"]


@pytest.fixture(params=sorted(GENERATIONS))
def generation(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_dags(generation: str) -> None:
    api = GENERATIONS[generation]
    dags = {d.dag_id: d for d in (DagInfo.from_rest(raw, api=api) for raw in body(generation, "dags_list")["dags"])}
    assert set(dags) == {"team.sales-daily_v2", "mapped_dag", "failing_dag"}
    sales = dags["team.sales-daily_v2"]
    assert sales.tags and set(sales.tags) == {"sales", "daily"}
    assert sales.owners == ("sales-team",)
    assert sales.description == "A DAG id with dots and dashes, and parallel branches."
    assert sales.is_active
    assert sales.file_token
    assert sales.fileloc and sales.fileloc.endswith("shapes.py")
    assert sales.raw["dag_id"] == "team.sales-daily_v2"
    single = DagInfo.from_rest(body(generation, "dag"), api=api)
    assert single == sales


def test_tasks_with_branches(generation: str) -> None:
    api = GENERATIONS[generation]
    tasks = with_upstream_task_ids(
        TaskInfo.from_rest(raw, dag_id="team.sales-daily_v2", api=api) for raw in body(generation, "tasks")["tasks"]
    )
    by_id = {t.task_id: t for t in tasks}
    assert by_id["extract"].operator == "PythonOperator"
    assert set(by_id["extract"].downstream_task_ids) == {"transform_left", "transform_right"}
    assert by_id["load"].upstream_task_ids == ("transform_left", "transform_right")
    assert by_id["extract"].upstream_task_ids == ()
    mapped = {t.task_id: t for t in (TaskInfo.from_rest(raw, dag_id="mapped_dag", api=api) for raw in body(generation, "tasks_mapped")["tasks"])}
    assert mapped["process"].is_mapped
    assert not mapped["make_items"].is_mapped
    failing = {t.task_id: t for t in (TaskInfo.from_rest(raw, dag_id="failing_dag", api=api) for raw in body(generation, "tasks_failing")["tasks"])}
    assert failing["broken"].retries == 1


def test_dag_runs(generation: str) -> None:
    api = GENERATIONS[generation]
    runs = [DagRun.from_rest(raw, api=api) for raw in body(generation, "dag_runs_batch")["dag_runs"]]
    states = {r.dag_id: r.state for r in runs}
    assert states == {"team.sales-daily_v2": "success", "mapped_dag": "success", "failing_dag": "failed"}
    for run in runs:
        assert run.run_type == "manual"
        assert run.start_date and run.end_date and run.end_date >= run.start_date
        assert run.run_after is not None
        assert run.is_finished
    if api is ApiVersion.V1:
        assert all(r.logical_date is not None for r in runs)
    single = DagRun.from_rest(body(generation, "dag_run"), api=api)
    assert single.state == "failed"
    assert single == next(r for r in runs if r.dag_id == "failing_dag")
    triggered = DagRun.from_rest(body(generation, "trigger"), api=api)
    assert triggered.state == "queued"
    assert not triggered.is_finished
    assert triggered.raw["conf"] == {"k": "v"}


def test_task_instances(generation: str) -> None:
    api = GENERATIONS[generation]
    tis = [TaskInstance.from_rest(raw, api=api) for raw in body(generation, "task_instances_batch")["task_instances"]]
    by_key = {(ti.dag_id, ti.task_id, ti.map_index): ti for ti in tis}
    # the mapped task has one instance per map index
    assert {k[2] for k in by_key if k[1] == "process"} == {0, 1, 2}
    assert all(by_key[("mapped_dag", "process", i)].is_success for i in range(3))
    assert by_key[("mapped_dag", "make_items", -1)].map_index == -1
    broken = by_key[("failing_dag", "broken", -1)]
    assert broken.state == "failed"
    assert broken.try_number == 2, "one retry happened"
    assert by_key[("failing_dag", "after_broken", -1)].state == "upstream_failed"
    assert by_key[("team.sales-daily_v2", "load", -1)].operator == "PythonOperator"
    for ti in tis:
        if ti.state == "success":
            assert ti.start_date and ti.end_date
            assert ti.run_id.startswith("manual__")


def test_error_bodies_per_generation(generation: str) -> None:
    statuses = {name: json.loads((SAMPLES / generation / f"{name}.json").read_text())["status"]
                for name in ("error_404_dag", "error_unauthenticated", "error_wrong_credentials")}
    if generation == "airflow2":
        assert statuses == {"error_404_dag": 404, "error_unauthenticated": 403, "error_wrong_credentials": 403}
    else:
        assert statuses == {"error_404_dag": 404, "error_unauthenticated": 401, "error_wrong_credentials": 401}
