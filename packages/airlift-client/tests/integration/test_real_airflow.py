"""Every AirflowInstance method against a real Airflow (the version under test)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote

import pytest
import requests

from airlift_client import (
    AirflowAuthError,
    AirflowInstance,
    AirflowNotFoundError,
    AirflowResponseError,
    AuditLogForbiddenError,
    AuditLogUnavailableError,
    BasicAuthBackend,
    TokenAuthBackend,
    TooManyRows,
    release_tuple,
)
from airlift_protocol import ApiVersion, EventLog
from airlift_testing import SAMPLE_DAGS, AirflowServer, AirflowUser

pytestmark = pytest.mark.integration
DAGS = Path(__file__).parent / "dags"
DAG_IDS = ["team.sales-daily_v2", "mapped_dag", "failing_dag", "wide_dag"]
VIEWER = AirflowUser("auditless", "auditless", "viewer")


@pytest.fixture(scope="module")
def airflow(airflow_server_factory: Callable[..., AirflowServer], tmp_path_factory: pytest.TempPathFactory) -> AirflowServer:
    dags = tmp_path_factory.mktemp("dags")
    shutil.copy(SAMPLE_DAGS, dags)
    shutil.copy(DAGS / "wide_dag.py", dags)
    # a Viewer made with the server (FAB users are created before it starts: one created later is refused a token)
    server = airflow_server_factory(dags, extra_users=[VIEWER])
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


# ---------------------------------------------------------------------- the audit log (GET /eventLogs)
# What these tests found, per Airflow version, is the contract the audit-log-based sensor relies on.
#: A try's end as its row names it: Airflow 2 writes "failed" for a try that goes up for retry
#: (``handle_failure`` logs FAILED before it decides to retry); Airflow 3 logs the state the
#: execution API sets.
RETRY_EVENT = {2: "failed", 3: "up_for_retry"}
#: Task-try rows carry ``map_index`` and ``try_number`` over REST from Airflow 2.10 on.
TRY_FIELDS_SINCE = (2, 10)


#: The audit log is read by time window and run from Airflow 2.9 on (before, its rows name no run).
AUDIT_LOG_SINCE = (2, 9)


def _release(airflow_version: str) -> tuple[int, ...]:
    return release_tuple(airflow_version)[:2]


@pytest.fixture(scope="module")
def audit_log_served(airflow_version: str) -> None:
    """Skips (before any server starts: list it first) where the audit log cannot be read."""
    if _release(airflow_version) < AUDIT_LOG_SINCE:
        pytest.skip(f"Airflow {airflow_version}: the audit log is read from Airflow 2.9 on (test_event_logs_need_airflow_2_9)")


def test_event_logs_need_airflow_2_9(inst: AirflowInstance, airflow: AirflowServer, airflow_version: str) -> None:
    """Before 2.9 ``GET /eventLogs`` names no run (2.8 counts every row whatever the filters, 2.7 has no filters):
    a clear error naming the release, before any request to it."""
    if _release(airflow_version) >= AUDIT_LOG_SINCE:
        pytest.skip("the audit log is served")
    now = datetime.now(timezone.utc)
    rows = airflow.get("/eventLogs", params={"limit": 5})["event_logs"]
    assert rows and all("run_id" not in row for row in rows), rows
    if _release(airflow_version) < (2, 8):
        with pytest.raises(RuntimeError, match="400"):  # strict validation: a parameter the spec lacks
            airflow.get("/eventLogs", params={"after": (now - timedelta(hours=1)).isoformat()})
    with pytest.raises(AirflowResponseError, match=rf"runs Airflow {airflow_version}.*needs Airflow 2\.9 or later"):
        list(inst.iter_event_logs(after=now - timedelta(hours=1), before=now))
    with pytest.raises(AuditLogUnavailableError, match=rf"runs Airflow {airflow_version}"):
        inst.read_event_logs(after=now - timedelta(hours=1), before=now, skip_events=["running"])


def _rows_of_dag_during_run(inst: AirflowInstance, dag_id: str, run_id: str) -> list[EventLog]:
    """The DAG's rows from 5 s before its run started to 5 s after it ended."""
    run = inst.get_dag_run(dag_id, run_id)
    assert run.start_date is not None and run.end_date is not None
    return list(inst.iter_event_logs(after=run.start_date - timedelta(seconds=5), before=run.end_date + timedelta(seconds=5),
                                     dag_ids=[dag_id]))


def _table(rows: list[EventLog]) -> str:
    return "\n".join(f"  {r.event_log_id:>5} {r.when.isoformat()} {r.event:<28} task={r.task_id} run={r.run_id} "
                     f"map={r.map_index} try={r.try_number}" for r in rows)


def test_event_logs_name_every_finished_try(audit_log_served: None, inst: AirflowInstance, finished_runs: dict[str, str],
                                            airflow: AirflowServer, airflow_version: str) -> None:
    """Every try of every finished task instance has a row naming its DAG, run, task (and, from 2.10 on,
    map index and try number) whose event is the state the try ended in; a "running" row starts each try;
    tasks the scheduler sets (upstream_failed) have none."""
    with_try = _release(airflow_version) >= TRY_FIELDS_SINCE
    seen = {}
    for dag_id, run_id in finished_runs.items():
        of_dag = _rows_of_dag_during_run(inst, dag_id, run_id)
        tis = list(inst.iter_task_instances(dag_ids=[dag_id], run_ids=[run_id]))
        seen[dag_id] = (of_dag, tis)
        states = sorted(f"{t.task_id}[{t.map_index}] try {t.try_number} {t.state}" for t in tis if t.task_id != "mapped")
        print(f"Airflow {airflow_version} {dag_id} / {run_id}: {len(of_dag)} row(s) of the DAG\n{_table(of_dag)}\n  tis: {states}")
    for dag_id, run_id in finished_runs.items():
        of_dag, tis = seen[dag_id]
        rows = [r for r in of_dag if r.run_id == run_id]
        for ti in tis:
            mine = [r for r in rows if r.task_id == ti.task_id and (not with_try or r.map_index == ti.map_index)]
            if ti.state == "upstream_failed":  # set by the scheduler (the sample DAGs skip nothing)
                assert mine == [], f"{ti.key} ({ti.state}, set by the scheduler) has rows:\n{_table(mine)}"
                continue
            if with_try:
                for try_number in range(1, ti.try_number + 1):
                    final = ti.state if try_number == ti.try_number else RETRY_EVENT[airflow.generation]
                    of_try = [r for r in mine if r.try_number == try_number]
                    assert [r.event for r in of_try] == ["running", final], f"{ti.key} try {try_number}:\n{_table(mine)}"
                    assert all(r.dag_id == dag_id and r.run_id == run_id for r in of_try)
            else:  # Airflow 2.9: no map index or try number over REST; one row per try start and end
                assert all(r.map_index is None and r.try_number is None for r in mine), _table(mine)
                maps = len([t for t in tis if t.task_id == ti.task_id])
                expected = ["running", RETRY_EVENT[2]] * (ti.try_number - 1) + ["running", str(ti.state)]
                assert sorted(r.event for r in mine) == sorted(expected * maps), f"{ti.key}:\n{_table(mine)}"


def test_event_logs_window_bounds_and_filters(audit_log_served: None, inst: AirflowInstance, finished_runs: dict[str, str]) -> None:
    """``after`` and ``before`` are strict bounds (Airflow's ``dttm > after`` and ``dttm < before``);
    the event filter and paging keep every row once."""
    run = inst.get_dag_run("mapped_dag", finished_runs["mapped_dag"])
    assert run.start_date is not None and run.end_date is not None
    window = {"after": run.start_date - timedelta(seconds=5), "before": run.end_date + timedelta(seconds=5)}
    rows = list(inst.iter_event_logs(**window, dag_ids=["mapped_dag"]))
    assert rows and len({r.event_log_id for r in rows}) == len(rows)
    assert [r.event_log_id for r in rows] == sorted(r.event_log_id for r in rows)
    paged = list(AirflowInstance(auth_backend=inst.auth_backend, name="paged", page_size=2).iter_event_logs(**window, dag_ids=["mapped_dag"]))
    assert paged == rows
    first = rows[0]
    at_first = {r.event_log_id for r in inst.iter_event_logs(after=first.when, before=window["before"], dag_ids=["mapped_dag"])}
    assert first.event_log_id not in at_first, "after is strict"
    until_first = {r.event_log_id for r in inst.iter_event_logs(after=window["after"], before=first.when, dag_ids=["mapped_dag"])}
    assert first.event_log_id not in until_first, "before is strict"
    around = inst.iter_event_logs(after=first.when - timedelta(microseconds=1), before=first.when + timedelta(microseconds=1),
                                  dag_ids=["mapped_dag"])
    assert first.event_log_id in {r.event_log_id for r in around}
    ends = list(inst.iter_event_logs(**window, dag_ids=["mapped_dag", "failing_dag"], events=["success", "failed"]))
    assert ends and {r.event for r in ends} <= {"success", "failed"} and {r.dag_id for r in ends} <= {"mapped_dag", "failing_dag"}
    assert [r.event_log_id for r in ends] == sorted(r.event_log_id for r in ends)
    # every DAG's rows but the tries' starts, sized by the first page's count (the sensor's window read)
    everything = list(inst.iter_event_logs(**window))
    read = inst.read_event_logs(**window, skip_events=["running"])
    assert isinstance(read, list) and read == [r for r in everything if r.event != "running"]
    assert "running" in {r.event for r in everything}, "the window holds try starts, which were left out"
    assert inst.count_event_logs(**window, skip_events=["running"]) == len(read)
    assert inst.read_event_logs(**window, skip_events=["running"], max_rows=len(read) - 1) == TooManyRows(len(read))


def test_event_logs_of_a_rest_mark_and_a_clear(audit_log_served: None, inst: AirflowInstance, finished_runs: dict[str, str],
                                               airflow: AirflowServer, airflow_version: str) -> None:
    """Marking a finished task failed over REST writes an audit row naming the DAG, the run and the
    task; clearing it writes one too, and its re-run writes the next try's rows."""
    dag_id, task_id = "team.sales-daily_v2", "load"
    run_id = finished_runs[dag_id]
    path = f"/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}"
    before_mark = datetime.now(timezone.utc) - timedelta(seconds=1)
    airflow.patch(path, json={"new_state": "failed", **({"dry_run": False} if airflow.generation == 2 else {})})
    after_mark = datetime.now(timezone.utc) + timedelta(seconds=1)
    marked = list(inst.iter_event_logs(after=before_mark, before=after_mark, dag_ids=[dag_id]))
    print(f"mark on Airflow {airflow_version}:\n{_table(marked)}")
    action = "api.patch_task_instance" if airflow.generation == 2 else "patch_task_instance"
    audit = [r for r in marked if r.event == action]
    assert len(audit) == 1, _table(marked)
    assert (audit[0].dag_id, audit[0].task_id, audit[0].run_id) == (dag_id, task_id, run_id)
    assert (audit[0].map_index, audit[0].try_number) == (None, None), "the action's row names no map index or try"
    assert not [r for r in marked if r.event == "failed"], "a mark writes no state-named row"
    assert inst.get_dag_run(dag_id, run_id).state in ("success", "failed")

    before_clear = datetime.now(timezone.utc) - timedelta(seconds=1)
    airflow.post(f"/dags/{quote(dag_id, safe='')}/clearTaskInstances", json={
        "dry_run": False, "task_ids": [task_id], "dag_run_id": run_id, "reset_dag_runs": True, "only_failed": False})
    deadline = datetime.now(timezone.utc) + timedelta(seconds=240)
    while True:
        ti = next(iter(inst.iter_task_instances(dag_ids=[dag_id], run_ids=[run_id], task_ids=[task_id])))
        if ti.state in ("success", "failed") or datetime.now(timezone.utc) > deadline:
            break
        time.sleep(2)
    assert (ti.state, ti.try_number) == ("success", 2)
    rerun = list(inst.iter_event_logs(after=before_clear, before=datetime.now(timezone.utc) + timedelta(seconds=1), dag_ids=[dag_id]))
    print(f"clear and re-run on Airflow {airflow_version}:\n{_table(rerun)}")
    clear_action = "api.post_clear_task_instances" if airflow.generation == 2 else "post_clear_task_instances"
    cleared = [r for r in rerun if r.event == clear_action]
    assert len(cleared) == 1 and cleared[0].dag_id == dag_id, _table(rerun)
    # The clear's row names the DAG; Airflow 3 also the run (the body's dag_run_id), Airflow 2 neither run
    # nor task (it takes them from the URL and form fields only); no version names the task (task_ids is a list).
    assert (cleared[0].run_id, cleared[0].task_id) == ((None if airflow.generation == 2 else run_id), None), _table(cleared)
    tries = [(r.event, r.task_id, r.run_id) for r in rerun if r.event in ("running", "success")]
    assert tries == [("running", task_id, run_id), ("success", task_id, run_id)], _table(rerun)
    if _release(airflow_version) >= TRY_FIELDS_SINCE:
        assert [r.try_number for r in rerun if r.event in ("running", "success")] == [2, 2]


def test_event_logs_show_no_row_for_the_clients_own_reads(audit_log_served: None, inst: AirflowInstance,
                                                          finished_runs: dict[str, str]) -> None:
    """The client's reads leave nothing in the listing. (Airflow 3 does write a ``get_task_instances_batch`` row
    for each task-instance batch read, with dag_id and run_id ``"~"`` from the path, but its REST API hides rows
    of DAGs the user cannot read and ``"~"`` is none: seen in the SQLite database of a 3.3.2 server.)"""
    start = datetime.now(timezone.utc)  # (rows the tests before wrote are stamped earlier)
    list(inst.iter_task_instances(dag_ids=["mapped_dag"], run_ids=[finished_runs["mapped_dag"]]))
    list(inst.iter_dag_runs(dag_ids=["mapped_dag"]))
    rows = list(inst.iter_event_logs(after=start, before=datetime.now(timezone.utc) + timedelta(seconds=1)))
    assert rows == [], _table(rows)


def test_event_logs_need_the_audit_log_permission(audit_log_served: None, airflow: AirflowServer, inst: AirflowInstance,
                                                  finished_runs: dict[str, str]) -> None:
    """Airflow 2 gives the audit log to Admin only: a Viewer gets a 403 that names the permission. Airflow 3 serves
    it to a Viewer, the same rows as to the admin: its simple auth manager (standalone) lets every role read every
    view, and with the FAB auth manager (provider 3.10.2, the production shape) a Viewer, whose role lacks "can read
    on Audit Logs", is served too (seen on 3.3.2)."""
    viewer = AirflowInstance(auth_backend=BasicAuthBackend(webserver_url=airflow.url, username=VIEWER.username,
                                                           password=VIEWER.password), name="viewer")
    assert viewer.list_dags(), "a Viewer reads the DAGs"
    before = datetime.now(timezone.utc)
    after = before - timedelta(hours=1)
    if airflow.generation >= 3:
        read = viewer.read_event_logs(after=after, before=before, skip_events=["running"])
        assert read and read == inst.read_event_logs(after=after, before=before, skip_events=["running"]), read
        return
    with pytest.raises(AirflowAuthError, match="can read on Audit Logs") as info:
        list(viewer.iter_event_logs(after=after, before=before))
    assert info.value.status == 403 and "/eventLogs" in str(info.value)
    with pytest.raises(AuditLogForbiddenError, match="can read on Audit Logs"):
        viewer.read_event_logs(after=after, before=before, skip_events=["running"])
