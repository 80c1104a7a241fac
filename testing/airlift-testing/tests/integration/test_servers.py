"""The fixtures start real servers: Airflow (the version under test) and Dagster."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
import requests

from airlift_testing import AirflowServer, DagsterServer

pytestmark = pytest.mark.integration
DAGS = Path(__file__).parent.parent / "dags"


def test_airflow_runs_a_two_task_dag(
    airflow_server_factory: Callable[..., AirflowServer],
    airflow_version: str,
    airflow_shape: str,
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

    _check_shape(airflow, airflow_shape, run["dag_run_id"])

    # a touched DAG file is parsed again
    airflow.reparse(DAGS / "two_tasks.py", timeout=60)

    # credentials are enforced
    anonymous = requests.get(f"{airflow.api_base}/dags", timeout=10)
    assert anonymous.status_code == (403 if airflow.generation == 2 else 401)

    airflow.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(airflow.url, timeout=5)


def _check_shape(airflow: AirflowServer, shape: str, run_id: str) -> None:
    """What the shape promises: production runs on its own PostgreSQL with a parallel executor, and
    Airflow 3 there keeps its users in FAB (password login and tokens from /auth/token)."""
    assert airflow.shape == shape
    airflow.wait_for_dags(["airlift_parallel"])
    parallel = airflow.trigger_and_wait("airlift_parallel")
    assert parallel["state"] == "success", airflow.log_tail()
    tis = airflow.task_instances("airlift_parallel", parallel["dag_run_id"])
    ends = sorted(datetime.fromisoformat(t["end_date"].replace("Z", "+00:00")) for t in tis)
    starts = sorted(datetime.fromisoformat(t["start_date"].replace("Z", "+00:00")) for t in tis)
    print(f"{shape}: 4 parallel tasks ended within {(ends[-1] - ends[0]).total_seconds():.1f}s")
    if shape == "standalone":
        assert airflow.postgres is None and (airflow.home / "airflow.db").exists()
        return
    assert starts[-1] < ends[0], f"LocalExecutor should run the 4 tasks at once: starts {starts}, ends {ends}"
    assert airflow.postgres is not None and not (airflow.home / "airflow.db").exists()
    rows = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-p", str(airflow.postgres.port), "-U", "airlift", "-d", "airflow", "-At",
         "-c", f"SELECT state FROM dag_run WHERE run_id = '{run_id}'"],
        capture_output=True, text=True, check=True,
    )
    assert rows.stdout.strip() == "success"
    assert airflow.venv is not None
    users = subprocess.run([str(airflow.venv / "bin" / "airflow"), "users", "list", "-o", "json"], env=airflow.env(),
                           capture_output=True, text=True, cwd=airflow.home)
    assert users.returncode == 0, users.stderr[-2000:]
    # Airflow may print "[warning ] ..." lines before the JSON list
    listed = re.search(r"^\[\s*[{\]]", users.stdout, re.MULTILINE)
    assert listed is not None, users.stdout[-2000:]
    assert [u["username"] for u in json.loads(users.stdout[listed.start():])] == ["admin"]
    if airflow.generation == 3:  # FAB auth manager: password login for a token, the token on the API
        refused = requests.post(f"{airflow.url}/auth/token", json={"username": "admin", "password": "wrong"}, timeout=30)
        assert refused.status_code in (401, 403), refused.text[:300]
        token = requests.post(f"{airflow.url}/auth/token", json={"username": "admin", "password": "admin"}, timeout=30)
        assert token.status_code in (200, 201), token.text[:300]
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        assert requests.get(f"{airflow.api_base}/dags", headers=headers, timeout=30).status_code == 200


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
