"""The fixtures start real servers: Airflow (the version under test) and Dagster."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from airlift_testing import AirflowServer, DagsterServer

pytestmark = pytest.mark.integration
DAGS = Path(__file__).parent.parent / "dags"


def test_airflow_runs_a_two_task_dag(
    airflow_server_factory: Callable[..., AirflowServer],
    airflow_version: str,
) -> None:
    airflow = airflow_server_factory(DAGS)
    print(f"Airflow {airflow.version} healthy {airflow.startup_seconds or 0:.1f}s after db migrate")
    assert airflow.version == airflow_version
    assert airflow.api_base.endswith("/api/v1" if airflow_version.startswith("2.") else "/api/v2")
    # the known admin is the only one: standalone did not invent a random password
    assert not (airflow.home / "standalone_admin_password.txt").exists()

    airflow.wait_for_dags(["airlift_two_tasks"])
    run = airflow.trigger_and_wait("airlift_two_tasks")
    assert run["state"] == "success", airflow.log_tail()
    states = {ti["task_id"]: ti["state"] for ti in airflow.task_instances("airlift_two_tasks", run["dag_run_id"])}
    assert states == {"first": "success", "second": "success"}

    # a touched DAG file is parsed again
    airflow.reparse(DAGS / "two_tasks.py", timeout=60)

    # credentials are enforced
    anonymous = requests.get(f"{airflow.api_base}/dags", timeout=10)
    assert anonymous.status_code == (403 if airflow.generation == 2 else 401)

    airflow.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(airflow.url, timeout=5)


def test_dagster_answers_graphql(
    dagster_server_factory: Callable[..., DagsterServer],
    tmp_path: Path,
) -> None:
    defs = tmp_path / "defs.py"
    defs.write_text(
        "import dagster as dg\n\n"
        "@dg.asset\ndef hello() -> None:\n    pass\n\n"
        "defs = dg.Definitions(assets=[hello])\n"
    )
    dagster = dagster_server_factory(defs_file=defs, extra_packages=[])
    print(f"Dagster healthy {dagster.startup_seconds or 0:.1f}s after instance migrate")
    data = dagster.graphql("{ assetNodes { assetKey { path } } }")
    assert [node["assetKey"]["path"] for node in data["assetNodes"]] == [["hello"]]
    dagster.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(dagster.url, timeout=5)
