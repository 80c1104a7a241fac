"""The production-shaped deployment (airlift_testing.deploy), on the Airflow major under test: Airflow with
the CeleryExecutor (PostgreSQL, Redis, two Celery workers, push on) and Dagster on PostgreSQL (a code server,
the webserver and the daemon as separate processes, a run queue of one). Peer, observe, migrate two tasks of
one DAG onto the two workers; the ledger (Airflow tries vs materializations, see conftest.py) must show each
success in Dagster exactly once.

    uvx nox -s deploy-airflow3                         # on Airflow 3.3 (also in `uvx nox -t production`)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from airlift_testing.deploy import CeleryAirflow

if TYPE_CHECKING:
    from conftest import Chaos

pytestmark = [pytest.mark.integration, pytest.mark.deploy]
MAIN = "chaos_main"


def _tis(chaos: Chaos, run_id: str) -> dict[str, dict[str, Any]]:
    return {ti["task_id"]: ti for ti in chaos.task_instances(MAIN, run_id) if ti.get("map_index", -1) < 0}


def _succeeded(chaos: Chaos, run_id: str) -> None:
    run = chaos.get_run(MAIN, run_id)
    states = {task: ti["state"] for task, ti in _tis(chaos, run_id).items()}
    assert run["state"] == "success", (run["state"], states, chaos.airflow.log_tail(30))


def _story(chaos: Chaos, run_id: str, title: str) -> None:
    _succeeded(chaos, run_id)
    chaos.check([(MAIN, run_id)], title=title)


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
