"""The story on the production-shaped deployment (airlift_testing.deploy), on the Airflow major under test:
Airflow with the CeleryExecutor (PostgreSQL, Redis, two Celery workers, push on) and Dagster on PostgreSQL
(a code server, the webserver and the daemon as separate processes, a run queue of one). Peer, observe,
migrate two tasks of one DAG onto the two workers, roll one back, fill the run queue while the migrated
tasks wait, kill a worker while its task waits, restart the code server and the webserver. Every step
prints the ledger (Airflow tries vs materializations, see conftest.py) and passes only when each success is
in Dagster exactly once; the last test prints it for the whole story.

    uvx nox -s deploy-airflow3                         # the story on Airflow 3.3 (also in `uvx nox -t production`)
    uvx nox -s deploy-airflow2 -- -k workers           # one step
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from airlift_testing.deploy import CeleryAirflow, DeployedDagster

if TYPE_CHECKING:
    from conftest import Chaos

pytestmark = [pytest.mark.integration, pytest.mark.deploy]
MAIN = "chaos_main"
#: Every run of the story, for the last ledger.
STORY: list[tuple[str, str]] = []
LAUNCH = """mutation($p: ExecutionParams!) { launchRun(executionParams: $p) { __typename
  ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }"""
STATUS = "query($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status } } }"


def _tis(chaos: Chaos, run_id: str) -> dict[str, dict[str, Any]]:
    return {ti["task_id"]: ti for ti in chaos.task_instances(MAIN, run_id) if ti.get("map_index", -1) < 0}


def _succeeded(chaos: Chaos, run_id: str) -> None:
    run = chaos.get_run(MAIN, run_id)
    states = {task: ti["state"] for task, ti in _tis(chaos, run_id).items()}
    assert run["state"] == "success", (run["state"], states, chaos.airflow.log_tail(30))


def _story(chaos: Chaos, run_id: str, title: str) -> None:
    STORY.append((MAIN, run_id))
    _succeeded(chaos, run_id)
    chaos.check([(MAIN, run_id)], title=title)


def _dagster_run_status(chaos: Chaos, run_id: str) -> str:
    return str(chaos.dagster.graphql(STATUS, {"id": run_id})["runOrError"].get("status"))


def _set_migrated(chaos: Chaos, task_id: str, migrated: bool) -> None:
    """Flip a task's flag in chaos_main's migration state and wait until Airflow parsed the DAG again."""
    dags = chaos.airflow.dags_folder
    state = dags / "migration_state" / f"{MAIN}.yaml"
    lines = [f"  {task_id}: {{migrated: {str(migrated).lower()}}}" if line.strip().startswith(f"{task_id}:") else line
             for line in state.read_text().splitlines()]
    state.write_text("\n".join(lines) + "\n")
    chaos.airflow.reparse(dags / "chaos_dags.py")


def test_migrated_tasks_run_on_two_workers(deployed: Chaos) -> None:
    """Peer, observe, migrate: the two migrated tasks run on different Celery workers (their queues), push on."""
    run_id = deployed.run()
    _story(deployed, run_id, "two migrated tasks on two Celery workers, push on")
    tis = _tis(deployed, run_id)
    placed = {task: (tis[task]["queue"], tis[task]["hostname"]) for task in ("migrated", "flaky")}
    assert placed == {"migrated": ("worker_a", "worker_a"), "flaky": ("worker_b", "worker_b")}, placed
    assert {ti["hostname"] for ti in deployed.task_instances(MAIN, run_id)} <= {"worker_a", "worker_b"}
    pushed = {s.asset for s in deployed.seen() if s.airflow_run_id == run_id and s.source == "push"}
    assert pushed, "push delivered nothing from the Celery workers"
    airflow = deployed.airflow
    assert isinstance(airflow, CeleryAirflow)
    relays = sorted(name for name, tmp in airflow.worker_tmp.items() if list(tmp.glob("airlift-push-*/push-relay.log")))
    print(f"push relay folders (one per worker that reported): {relays}; pushed: {sorted(pushed)}")
    assert relays, "no worker's push relay wrote its log in the worker's temporary folder"


def test_one_task_rolled_back(deployed: Chaos) -> None:
    """flaky rolled back (migrated: false): Airflow runs it, no Dagster run, its asset once (push/sensor)."""
    _set_migrated(deployed, "flaky", False)
    try:
        run_id = deployed.run()
        _story(deployed, run_id, "flaky rolled back")
        assert deployed.dagster_runs(run_id, "flaky") == []
        assert len(deployed.dagster_runs(run_id, "migrated")) == 1
    finally:
        _set_migrated(deployed, "flaky", True)


def test_run_queue_full_then_a_worker_killed_while_migrated_tasks_wait(deployed: Chaos) -> None:
    """A run of `hold` fills Dagster's run queue (one at a time): the migrated tasks' runs wait QUEUED while the
    tasks wait on their workers. worker_b is killed (SIGKILL, its tasks with it) while flaky waits: Airflow
    fails that try after the heartbeat timeout, the retry runs on the restarted worker_b and re-attaches to
    the queued run. Then the queue is released: every run goes, once."""
    data = deployed.dagster.graphql(LAUNCH, {"p": {
        "selector": {"repositoryLocationName": "chaos_defs", "repositoryName": "__repository__", "jobName": "__ASSET_JOB",
                     "assetSelection": [{"path": ["chaos", "hold"]}]},
        "runConfigData": {}}})["launchRun"]
    assert data["__typename"] == "LaunchRunSuccess", data
    hold = data["run"]["runId"]
    deployed.wait_for(lambda: _dagster_run_status(deployed, hold) == "STARTED", what="the hold run to start")
    run_id = deployed.trigger(wait_on_worker=True)

    def waiting() -> bool:
        runs = deployed.dagster_runs(run_id)
        tasks = {r["tags"].get("airlift/airflow_task_id"): r["status"] for r in runs}
        return tasks == {"migrated": "QUEUED", "flaky": "QUEUED"}

    deployed.wait_for(waiting, what="both migrated tasks' Dagster runs queued behind the hold run")
    tis = _tis(deployed, run_id)
    assert (tis["migrated"]["state"], tis["flaky"]["state"]) == ("running", "running"), tis
    airflow = deployed.airflow
    assert isinstance(airflow, CeleryAirflow)
    airflow.kill_worker("worker_b")
    deployed.wait_for(lambda: _tis(deployed, run_id)["flaky"]["state"] != "running", what="Airflow to fail flaky's try on the lost worker")
    airflow.start_worker("worker_b")
    deployed.wait_for(lambda: (lambda ti: ti["state"] == "running" and int(ti["try_number"]) == 2)(_tis(deployed, run_id)["flaky"]),
                      what="flaky's retry running on worker_b")
    assert _dagster_run_status(deployed, hold) == "STARTED"
    (deployed.state / "release").write_text("1")
    deployed.wait(MAIN, run_id)
    _story(deployed, run_id, "run queue full, then worker_b killed while flaky waited")
    (deployed.state / "release").unlink()
    tis = _tis(deployed, run_id)
    assert (int(tis["flaky"]["try_number"]), tis["flaky"]["hostname"]) == (2, "worker_b"), tis["flaky"]
    runs = deployed.dagster_runs(run_id, "flaky")
    assert [(r["tags"].get("airlift/airflow_try_number"), r["status"]) for r in runs] == [("1", "SUCCESS")], runs
    assert _dagster_run_status(deployed, hold) == "SUCCESS"


def test_code_server_restarted(deployed: Chaos) -> None:
    """The code server restarts: the definitions load again from the stored Airflow state with no request to
    Airflow (the daemon, whose sensor reads Airflow, is stopped meanwhile); runs go on once."""
    dagster, proxy = deployed.dagster, deployed.airflow_proxy
    assert isinstance(dagster, DeployedDagster) and proxy is not None
    dagster.stop_daemon()
    before = proxy.requests
    dagster.restart_code_server()
    assert proxy.requests == before, f"{proxy.requests - before} requests to Airflow while the code server restarted"
    dagster.start_daemon()
    run_id = deployed.run()
    _story(deployed, run_id, "Dagster code server restarted")


def test_webserver_restarted_while_a_run_goes(deployed: Chaos) -> None:
    run_id = deployed.trigger()
    deployed.wait_for(lambda: _tis(deployed, run_id)["extract"]["state"] == "success", what="the first task")
    deployed.dagster.restart_webserver(down_seconds=10)
    deployed.wait(MAIN, run_id)
    _story(deployed, run_id, "Dagster webserver restarted during a run")


def test_exactly_once_over_the_whole_story(deployed: Chaos) -> None:
    assert STORY, "no step of the story ran"
    deployed.check(STORY, title="the whole story: Airflow tries vs materializations")
