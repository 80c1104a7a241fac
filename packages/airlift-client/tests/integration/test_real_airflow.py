"""Every AirflowInstance method against a real Airflow (the version under test)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests

from airlift_client import (
    AirflowAuthError,
    AirflowInstance,
    AirflowNotFoundError,
    BasicAuthBackend,
    TokenAuthBackend,
)
from airlift_protocol import ApiVersion
from airlift_testing import SAMPLE_DAGS, AirflowServer

pytestmark = pytest.mark.integration
DAGS = Path(__file__).parent / "dags"
DAG_IDS = ["team.sales-daily_v2", "mapped_dag", "failing_dag", "wide_dag"]


@pytest.fixture(scope="module")
def airflow(airflow_server_factory: Callable[..., AirflowServer], tmp_path_factory: pytest.TempPathFactory) -> AirflowServer:
    dags = tmp_path_factory.mktemp("dags")
    shutil.copy(SAMPLE_DAGS, dags)
    shutil.copy(DAGS / "wide_dag.py", dags)
    server = airflow_server_factory(dags)
    server.wait_for_dags(DAG_IDS)
    return server


@pytest.fixture(scope="module")
def inst(airflow: AirflowServer) -> AirflowInstance:
    return AirflowInstance(
        auth_backend=BasicAuthBackend(webserver_url=airflow.url, username="admin", password="admin"),
        name="real",
    )


@pytest.fixture(scope="module")
def finished_runs(inst: AirflowInstance) -> dict[str, str]:
    started = datetime.now(timezone.utc) - timedelta(seconds=1)
    runs = {}
    for dag_id in DAG_IDS:
        inst.unpause_dag(dag_id)
        runs[dag_id] = inst.trigger_dag(dag_id).run_id
    for dag_id, run_id in runs.items():
        run = inst.wait_for_run(dag_id, run_id, timeout=600, poll_interval=2)
        assert run.start_date is not None and run.start_date >= started
    return runs


def test_generation_and_dags(inst: AirflowInstance, airflow: AirflowServer) -> None:
    assert inst.api_version is (ApiVersion.V1 if airflow.generation == 2 else ApiVersion.V2)
    inst.list_dags()
    if airflow.generation == 2:  # one web login; the API accepts its session cookie (no password hash per request)
        assert inst.auth_backend.v1_mode == "session"  # type: ignore[attr-defined]
    dags = {d.dag_id: d for d in inst.iter_dags()}
    assert set(dags) == set(DAG_IDS)
    assert dags["team.sales-daily_v2"].tags and set(dags["team.sales-daily_v2"].tags) == {"sales", "daily"}
    assert [d.dag_id for d in inst.list_dags(tags=["mapped"])] == ["mapped_dag"]
    assert [d.dag_id for d in inst.list_dags(dag_id_pattern="sales")] == ["team.sales-daily_v2"]
    small_pages = AirflowInstance(auth_backend=inst.auth_backend, name="paged", page_size=1)
    assert [d.dag_id for d in small_pages.iter_dags()] == sorted(DAG_IDS)
    assert inst.get_dag("failing_dag").dag_id == "failing_dag"
    with pytest.raises(AirflowNotFoundError, match="DAG 'no.such-dag'"):
        inst.get_dag("no.such-dag")


def test_tasks_and_sources(inst: AirflowInstance) -> None:
    tasks = inst.list_tasks_for_dags(DAG_IDS)
    sales = {t.task_id: t for t in tasks["team.sales-daily_v2"]}
    assert sales["load"].upstream_task_ids == ("transform_left", "transform_right")
    assert {t.task_id: t.is_mapped for t in tasks["mapped_dag"]} == {"make_items": False, "process": True}
    sources = inst.get_dag_sources(inst.list_dags())
    assert "team.sales-daily_v2" in sources["team.sales-daily_v2"]
    assert "wide_dag" in inst.get_dag_source("wide_dag")


def test_runs_and_task_instances(inst: AirflowInstance, finished_runs: dict[str, str], airflow: AirflowServer) -> None:
    now = datetime.now(timezone.utc)
    runs = {r.dag_id: r for r in inst.iter_dag_runs(end_date_lte=now, end_date_gte=now - timedelta(hours=1))}
    assert {d: runs[d].state for d in DAG_IDS} == {
        "team.sales-daily_v2": "success", "mapped_dag": "success", "failing_dag": "failed", "wide_dag": "failed",
    }
    assert sorted(r.dag_id for r in inst.iter_dag_runs(states=["failed"])) == ["failing_dag", "wide_dag"]
    every_run = [(r.dag_id, r.run_id) for r in AirflowInstance(auth_backend=inst.auth_backend, name="paged", page_size=1).iter_dag_runs()]
    assert len(every_run) == len(set(every_run)) == len(DAG_IDS), "one run per DAG, across pages of one"
    assert inst.get_dag_run("failing_dag", finished_runs["failing_dag"]).state == "failed"

    wide = list(inst.iter_task_instances(dag_ids=["wide_dag"], run_ids=[finished_runs["wide_dag"]]))
    assert len(wide) == len({t.key for t in wide}) == 266, "every task instance across three pages, once"
    mapped_260 = [t for t in wide if t.task_id == "mapped"]
    assert sorted(t.map_index for t in mapped_260) == list(range(260)), "all map indexes across pages"
    assert {t.state for t in mapped_260} == {"upstream_failed"}
    assert [(t.task_id, t.state) for t in wide if t.task_id == "gate"] == [("gate", "failed")]
    small = AirflowInstance(auth_backend=inst.auth_backend, name="small", page_size=7)
    again = list(small.iter_task_instances(dag_ids=["wide_dag"], task_ids=["mapped"]))
    assert sorted(t.map_index for t in again) == list(range(260)), "same with 38 pages of 7"
    paged = AirflowInstance(auth_backend=inst.auth_backend, name="paged", page_size=2)
    mapped = [t for t in paged.iter_task_instances(dag_ids=["mapped_dag"]) if t.task_id == "process"]
    assert sorted(t.map_index for t in mapped) == [0, 1, 2], "map indexes across pages"
    assert all(t.is_success for t in mapped)
    failed = list(inst.iter_task_instances(dag_ids=["failing_dag"], states=["failed"]))
    assert [(t.task_id, t.try_number) for t in failed] == [("broken", 2)]
    upstream_failed = list(inst.iter_task_instances(dag_ids=["failing_dag"], task_ids=["after_broken"]))
    assert [t.state for t in upstream_failed] == ["upstream_failed"]
    all_tis = list(inst.iter_task_instances(end_date_lte=now))
    assert len({t.key for t in all_tis}) == len(all_tis)


def test_ui_links_resolve(inst: AirflowInstance, finished_runs: dict[str, str], airflow: AirflowServer) -> None:
    run_id = finished_runs["team.sales-daily_v2"]
    for url in (
        inst.dag_url("team.sales-daily_v2"),
        inst.run_url("team.sales-daily_v2", run_id),
        inst.task_instance_url("team.sales-daily_v2", run_id, "load"),
        inst.log_url("team.sales-daily_v2", run_id, "load", try_number=1),
        inst.task_instance_url("mapped_dag", finished_runs["mapped_dag"], "process", map_index=1),
    ):
        assert url.startswith(airflow.url)
        session = requests.Session()
        if airflow.generation == 2:
            session.auth = ("admin", "admin")
        response = session.get(url, timeout=30)
        assert response.status_code == 200, url


def test_wrong_credentials_are_a_clear_error(airflow: AirflowServer) -> None:
    bad = AirflowInstance(
        auth_backend=BasicAuthBackend(webserver_url=airflow.url, username="admin", password="not-the-password"),
        name="bad",
    )
    with pytest.raises(AirflowAuthError) as info:
        bad.list_dags()
    assert "not-the-password" not in str(info.value)
    if airflow.generation == 2:
        assert bad.auth_backend.v1_mode == "basic"  # type: ignore[attr-defined]  # the web login was refused
    assert airflow.url in str(info.value)


def test_token_backend(airflow: AirflowServer) -> None:
    if airflow.generation == 2:  # basic auth on every request (no web session)
        backend = BasicAuthBackend(webserver_url=airflow.url, username="admin", password="admin", web_login=False)
    else:
        def provider() -> str:
            return str(requests.post(f"{airflow.url}/auth/token", json={"username": "admin", "password": "admin"}, timeout=30).json()["access_token"])

        backend = TokenAuthBackend(webserver_url=airflow.url, token_provider=provider)
    inst = AirflowInstance(auth_backend=backend, name="tok")
    assert len(inst.list_dags()) == len(DAG_IDS)
