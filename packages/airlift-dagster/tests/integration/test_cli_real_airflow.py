"""The ``airlift`` command line against a real Airflow (the version under test), one server per run
of this module: scaffold, set a task migrated, see Airflow pick it up, validate, diff, roll back; and
the bad inputs (unknown DAG, bad YAML, unreachable URL, wrong password)."""

from __future__ import annotations

import functools
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from airlift_client import AirflowInstance, BasicAuthBackend
from airlift_dagster.cli import EXIT_ERROR, EXIT_OK, EXIT_PROBLEMS, cli
from airlift_protocol import load_dag_migration_state, task_is_marked_migrated
from airlift_testing import SAMPLE_DAGS, AirflowServer, free_port, repo_root, wait_until

pytestmark = pytest.mark.integration
HERE = Path(__file__).parent
DAG_ID = "cli_pipeline"
SAMPLE_DAG_IDS = ["team.sales-daily_v2", "mapped_dag", "failing_dag"]
DEFERRED_DAG_ID = "cli_deferred"


@pytest.fixture(scope="module")
def airflow(airflow_server_factory: Callable[..., AirflowServer], tmp_path_factory: pytest.TempPathFactory) -> AirflowServer:
    dags = tmp_path_factory.mktemp("cli-dags")
    shutil.copy(SAMPLE_DAGS, dags)
    shutil.copy(HERE / "cli_dags" / "cli_pipeline.py", dags)
    shutil.copy(HERE / "cli_dags" / "cli_deferred.py", dags)
    (dags / "migration_state").mkdir()
    packages = repo_root() / "packages"
    server = airflow_server_factory(dags, extra_packages=[packages / "airlift-protocol", packages / "airlift-airflow"])
    server.wait_for_dags([*SAMPLE_DAG_IDS, DAG_ID, DEFERRED_DAG_ID])
    return server


def _env(airflow: AirflowServer, **overrides: str) -> dict[str, str]:
    return {
        "AIRLIFT_AIRFLOW_URL": airflow.url,
        "AIRLIFT_AIRFLOW_USERNAME": airflow.username,
        "AIRLIFT_AIRFLOW_PASSWORD": airflow.password,
        "NO_COLOR": "1",
        "COLUMNS": "160",
        **overrides,
    }


def airlift(airflow: AirflowServer, *args: str, **env: str) -> Result:
    result = CliRunner().invoke(cli, list(args), env=_env(airflow, **env), catch_exceptions=False)
    print(f"$ airlift {' '.join(args)}\n{result.output}(exit {result.exit_code})")
    return result


@functools.cache
def _client(airflow: AirflowServer) -> AirflowInstance:
    backend = BasicAuthBackend(webserver_url=airflow.url, username=airflow.username, password=airflow.password)
    return AirflowInstance(auth_backend=backend, name="airflow")


def _marked(airflow: AirflowServer, task_id: str) -> bool:
    # through the client: on Airflow before 2.10 the task list has no doc_md and it reads the DAG's doc
    return task_is_marked_migrated(next(t for t in _client(airflow).list_tasks(DAG_ID) if t.task_id == task_id).doc_md)


def test_doctor(airflow: AirflowServer) -> None:
    result = airlift(airflow, "doctor", "--json")
    assert result.exit_code == EXIT_OK, result.output
    checks = {c["name"]: c for c in json.loads(result.output)["checks"]}
    assert {n: c["status"] for n, c in checks.items()} == {
        "Reachable": "OK", "REST API": "OK", "Authentication": "OK", "Airflow version": "OK",
        "API permissions": "OK", "DAG imports": "OK", "Run events": "WARN", "Clock skew": "OK", "Dagster": "WARN",
    }  # no run has started yet: no run-event row
    assert checks["Airflow version"]["detail"] == airflow.version
    assert airlift(airflow, "doctor").exit_code == EXIT_OK


def test_scaffold_migrate_validate_and_roll_back(airflow: AirflowServer) -> None:
    dags = airflow.dags_folder
    state_dir = dags / "migration_state"
    run = airflow.trigger_and_wait(DAG_ID)
    assert run["state"] == "success"
    events = {c["name"]: c for c in json.loads(airlift(airflow, "doctor", "--json").output)["checks"]}["Run events"]
    assert events["status"] == "OK", events  # airlift-airflow's listener in the scheduler wrote the run's rows

    scaffold = airlift(airflow, "state", "scaffold", str(dags))
    assert scaffold.exit_code == EXIT_OK
    assert sorted(p.stem for p in state_dir.glob("*.yaml")) == sorted([*SAMPLE_DAG_IDS, DAG_ID, DEFERRED_DAG_ID])
    assert list(load_dag_migration_state(state_dir / f"{DAG_ID}.yaml").tasks) == ["extract", "publish"]
    sales = list(load_dag_migration_state(state_dir / "team.sales-daily_v2.yaml").tasks)
    assert (sales[0], sorted(sales[1:3]), sales[3]) == ("extract", ["transform_left", "transform_right"], "load")
    assert airlift(airflow, "state", "validate", "-d", str(dags)).exit_code == EXIT_OK

    migrated = airlift(airflow, "state", "set", "-d", str(dags), DAG_ID, "publish", "--migrated")
    assert migrated.exit_code == EXIT_OK and "+    migrated: true" in migrated.output
    # (what `state diff` reports before Airflow re-parses is timing-dependent here; the unit tests
    # cover it. Airflow re-parses on its own every few seconds.)

    (dags / "cli_pipeline.py").touch()  # a deploy: Airflow re-parses the DAG file
    wait_until(lambda: _marked(airflow, "publish"), timeout=180, interval=2, what="Airflow to re-parse the migrated DAG")
    converged = airlift(airflow, "state", "diff", "-d", str(dags), "--exit-code", "--json")
    assert converged.exit_code == EXIT_OK
    assert next(c for c in json.loads(converged.output)["changes"] if c["dag_id"] == "mapped_dag")["note"].startswith("not tagged")
    status = airlift(airflow, "state", "status", "-d", str(dags))
    assert status.exit_code == EXIT_OK
    rows = {r["task_id"]: r for r in json.loads(airlift(airflow, "state", "status", "-d", str(dags), "--json").output)["tasks"]
            if r["dag_id"] == DAG_ID}
    assert rows["publish"]["migrated"] is True and rows["publish"]["airflow_shows_migrated"] is True
    # Airflow before 2.10 marks an EmptyOperator task successful without running it: its try number stays 0
    first_try = 0 if tuple(int(p) for p in airflow.version.split(".")[:2]) < (2, 10) else 1
    assert rows["publish"]["warnings"] == [] and rows["extract"]["last_airflow_state"] == f"success (try {first_try})"

    back = airlift(airflow, "state", "rollback", "-d", str(dags), DAG_ID)
    assert back.exit_code == EXIT_OK and "+    migrated: false" in back.output
    assert load_dag_migration_state(state_dir / f"{DAG_ID}.yaml").migrated_task_ids == ()
    (dags / "cli_pipeline.py").touch()
    wait_until(lambda: not _marked(airflow, "publish"), timeout=180, interval=2, what="Airflow to re-parse the rolled-back DAG")
    assert airlift(airflow, "state", "diff", "-d", str(dags), "--exit-code").exit_code == EXIT_OK


def test_status_shows_the_try_of_a_deferred_task(airflow: AirflowServer, tmp_path: Path) -> None:
    # Before 2.10 Airflow's REST API shows a deferred task's try one lower (0 for the first); status shows the
    # try that runs on every release
    (tmp_path / "migration_state").mkdir()
    (tmp_path / "migration_state" / f"{DEFERRED_DAG_ID}.yaml").write_text("tasks:\n  wait:\n    migrated: false\n")
    run_id = airflow.trigger(DEFERRED_DAG_ID)
    try:
        def deferred() -> bool:
            tis = airflow.get(f"/dags/{DEFERRED_DAG_ID}/dagRuns/{run_id}/taskInstances")["task_instances"]
            return bool(tis) and tis[0]["state"] == "deferred"

        wait_until(deferred, timeout=180, interval=1, what=f"task 'wait' of {DEFERRED_DAG_ID} to defer")
        status = airlift(airflow, "state", "status", "-d", str(tmp_path), "--json")
        assert status.exit_code == EXIT_OK, status.output
        rows = {r["task_id"]: r for r in json.loads(status.output)["tasks"]}
        assert rows["wait"]["last_airflow_state"] == "deferred (try 1)"
    finally:
        airflow.patch(f"/dags/{DEFERRED_DAG_ID}/dagRuns/{run_id}", json={"state": "failed"})


def test_bad_inputs_give_one_line_and_write_nothing(airflow: AirflowServer, tmp_path: Path) -> None:
    state_dir = tmp_path / "migration_state"
    state_dir.mkdir()
    (state_dir / "mapped_dag.yaml").write_text("tasks:\n  process:\n    migrated: false\n")
    snapshot = (state_dir / "mapped_dag.yaml").read_text()

    unknown = airlift(airflow, "state", "set", "-d", str(tmp_path), "mapped_dag", "no_such_task", "--migrated")
    assert unknown.exit_code == EXIT_ERROR and len(unknown.output.strip().splitlines()) == 1
    assert "no task 'no_such_task'" in unknown.output
    (state_dir / "ghost_dag.yaml").write_text("tasks: {}\n")
    ghost = airlift(airflow, "state", "set", "-d", str(tmp_path), "ghost_dag", "t", "--migrated")
    assert ghost.exit_code == EXIT_ERROR and "DAG 'ghost_dag' is not in" in ghost.output
    invalid = airlift(airflow, "state", "validate", "-d", str(tmp_path))
    assert invalid.exit_code == EXIT_PROBLEMS and "DAG 'ghost_dag' is not in Airflow" in invalid.output
    (state_dir / "ghost_dag.yaml").unlink()

    (state_dir / "failing_dag.yaml").write_text("tasks:\n  fine:\n    migrated: true\n  broken: [\n")
    bad = airlift(airflow, "state", "set", "-d", str(tmp_path), "failing_dag", "fine", "--not-migrated")
    assert bad.exit_code == EXIT_ERROR and len(bad.output.strip().splitlines()) == 1
    assert f"{state_dir / 'failing_dag.yaml'}, line" in bad.output
    assert (state_dir / "failing_dag.yaml").read_text().endswith("broken: [\n")

    down = airlift(airflow, "state", "set", "-d", str(tmp_path), "mapped_dag", "process", "--migrated",
                   AIRLIFT_AIRFLOW_URL=f"http://127.0.0.1:{free_port()}", AIRLIFT_TIMEOUT="3")
    assert down.exit_code == EXIT_ERROR and len(down.output.strip().splitlines()) == 1
    assert "cannot reach Airflow" in down.output
    wrong = airlift(airflow, "state", "set", "-d", str(tmp_path), "mapped_dag", "process", "--migrated",
                    AIRLIFT_AIRFLOW_PASSWORD="not-the-password")
    assert wrong.exit_code == EXIT_ERROR and len(wrong.output.strip().splitlines()) == 1
    assert "refused" in wrong.output and "not-the-password" not in wrong.output
    assert (state_dir / "mapped_dag.yaml").read_text() == snapshot
    assert sorted(p.name for p in state_dir.iterdir()) == ["failing_dag.yaml", "mapped_dag.yaml"]
