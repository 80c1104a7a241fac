"""What the servers are configured with, checked without starting them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from airlift_testing.airflow import AirflowServer, AirflowUser, _same_file
from airlift_testing.chaos import ChaosDagster
from airlift_testing.dagster import DagsterServer


def _server(tmp_path: Path, version: str, **kwargs: object) -> AirflowServer:
    server = AirflowServer(version=version, dags_folder=tmp_path / "dags", home=tmp_path / "home", **kwargs)  # type: ignore[arg-type]
    server.home.mkdir()
    server.venv = tmp_path / "venv"
    return server


def test_airflow2_environment(tmp_path: Path) -> None:
    server = _server(tmp_path, "2")
    env = server.env()
    assert server.version.startswith("2.") and server.generation == 2
    assert server.api_base == f"http://127.0.0.1:{server.port}/api/v1"
    assert env["PATH"].startswith(str(tmp_path / "venv" / "bin"))
    assert env["AIRFLOW_HOME"] == str(tmp_path / "home")
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert "basic_auth" in env["AIRFLOW__API__AUTH_BACKENDS"]
    assert env["AIRFLOW__WEBSERVER__WEB_SERVER_PORT"] == str(server.port)
    assert env["AIRFLOW__WEBSERVER__WEB_SERVER_HOST"] == "127.0.0.1"
    assert env["AIRFLOW__SCHEDULER__DAG_DIR_LIST_INTERVAL"]
    ports = {env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"], env["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"], str(server.port)}
    assert len(ports) == 3, "every instance gets its own log-server ports"


def test_airflow3_environment_and_users(tmp_path: Path) -> None:
    server = _server(tmp_path, "3", extra_users=[AirflowUser("viewer", "pw", "viewer")], extra_env={"X_EXTRA": "1"})
    env = server.env()
    assert server.generation == 3
    assert server.api_base.endswith("/api/v2")
    assert env["AIRFLOW__API__PORT"] == str(server.port)
    assert env["AIRFLOW__API__HOST"] == "127.0.0.1"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == f"http://127.0.0.1:{server.port}/execution/"
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == "admin:admin,viewer:viewer"
    passwords = json.loads(Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]).read_text())
    assert passwords == {"admin": "admin", "viewer": "pw"}
    assert env["AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL"]
    assert env["X_EXTRA"] == "1"


@pytest.mark.parametrize("version", ["2", "3"])
def test_production_shape_environment(tmp_path: Path, version: str) -> None:
    env = _server(tmp_path, version, shape="production").env()
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor" and int(env["AIRFLOW__CORE__PARALLELISM"]) >= 4
    if version == "2":
        assert "AIRFLOW__CORE__AUTH_MANAGER" not in env
        assert int(env["AIRFLOW__WEBSERVER__WORKERS"]) >= 2  # REST requests served more than one at a time
        return
    assert env["AIRFLOW__CORE__AUTH_MANAGER"].endswith("FabAuthManager")
    # the execution API of the task supervisors: more than one API worker, more than 5 s per call
    assert int(env["AIRFLOW__API__WORKERS"]) >= 2
    assert float(env["AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT"]) >= 30


def test_standalone_airflow_3_bounds_task_processes_and_execution_api_calls(tmp_path: Path) -> None:
    env = _server(tmp_path, "3").env()
    assert int(env["AIRFLOW__CORE__PARALLELISM"]) == 4  # SQLite locks under 32 task processes
    assert float(env["AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT"]) >= 30


def test_outer_airflow_settings_do_not_leak_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_HOME", "/somewhere/else")
    monkeypatch.setenv("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
    env = _server(tmp_path, "3").env()
    assert env["AIRFLOW_HOME"] == str(tmp_path / "home")
    assert "AIRFLOW__CORE__UNIT_TEST_MODE" not in env


def test_unknown_role_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown role 'boss' for user 'x'"):
        _server(tmp_path, "3", extra_users=[AirflowUser("x", "y", "boss")])


@pytest.mark.parametrize(
    ("fileloc", "filename", "same"),
    [
        ("/dags/a.py", "/dags/a.py", True),  # Airflow 2: absolute
        ("/dags/sub/a.py", "sub/a.py", True),  # Airflow 3: relative to the bundle
        ("/dags/other_a.py", "a.py", False),
        ("", "a.py", False),
    ],
)
def test_import_error_file_matching(fileloc: str, filename: str, same: bool) -> None:
    assert _same_file(fileloc, filename) is same


def test_dagster_needs_exactly_one_target(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="exactly one of defs_file or workspace_file"):
        DagsterServer()
    with pytest.raises(ValueError, match="exactly one"):
        DagsterServer(defs_file=tmp_path / "d.py", workspace_file=tmp_path / "w.yaml")
    server = DagsterServer(workspace_file=tmp_path / "workspace.yaml", home=tmp_path, extra_packages=[])
    assert server.target == ["-w", str((tmp_path / "workspace.yaml").resolve())]
    assert server.graphql_url == f"http://127.0.0.1:{server.port}/graphql"


@pytest.mark.parametrize("version", ["2", "3"])
def test_host_sets_the_listen_address_and_every_link(tmp_path: Path, version: str) -> None:
    server = _server(tmp_path, version, host="localhost", python="3.12")
    env = server.env()
    assert server.url == f"http://localhost:{server.port}" and server.python == "3.12"
    listen = "AIRFLOW__WEBSERVER__WEB_SERVER_HOST" if version == "2" else "AIRFLOW__API__HOST"
    base = "AIRFLOW__WEBSERVER__BASE_URL" if version == "2" else "AIRFLOW__API__BASE_URL"
    assert env[listen] == "localhost" and env[base] == server.url


def test_dagster_host_and_no_process_groups_before_start(tmp_path: Path) -> None:
    server = DagsterServer(workspace_file=tmp_path / "workspace.yaml", home=tmp_path / "home", host="localhost")
    assert server.url == f"http://localhost:{server.port}" and server.process_group_ids() == []
    assert _server(tmp_path, "3").process_group_ids() == []


def test_chaos_dagster_launches_queued_runs_together(tmp_path: Path) -> None:
    """A chaos Dagster's daemon, restarted on a backlog of queued runs, launches up to four at once."""
    plain = yaml.safe_load(DagsterServer(workspace_file=tmp_path / "workspace.yaml", home=tmp_path).instance_config())
    chaos = yaml.safe_load(ChaosDagster(workspace_file=tmp_path / "workspace.yaml", home=tmp_path).instance_config())
    assert "dequeue_use_threads" not in plain["run_coordinator"]["config"]
    assert chaos["run_coordinator"] == {**plain["run_coordinator"], "config": {
        **plain["run_coordinator"]["config"], "dequeue_use_threads": True, "dequeue_num_workers": 4}}
    assert chaos["telemetry"] == plain["telemetry"]


def test_chaos_dagster_waits_for_slow_code_server_answers(tmp_path: Path) -> None:
    """A launch waits until the run's process has loaded the code location: 300 s, not Dagster's 60."""
    server = ChaosDagster(workspace_file=tmp_path / "workspace.yaml", home=tmp_path)
    server.venv = tmp_path / "venv"
    assert server.env()["DAGSTER_GRPC_TIMEOUT_SECONDS"] == "300"
    server.extra_env["DAGSTER_GRPC_TIMEOUT_SECONDS"] = "90"
    assert server.env()["DAGSTER_GRPC_TIMEOUT_SECONDS"] == "90"


def test_the_prepared_database_is_kept_and_loaded_for_the_same_venv_and_users(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Airflow 2 (FAB users) migrates and creates its users once per venv, shape and users; later servers load
    the snapshot (without the commands' audit-log rows) instead of running the commands again."""
    import sqlite3

    monkeypatch.setenv("AIRLIFT_CACHE_DIR", str(tmp_path / "cache"))
    ran: list[tuple[str, list[str]]] = []  # (server, command)

    def fake_run(self: AirflowServer, args: list[str], env: object) -> None:
        ran.append((self.home.parent.name, args[1:3]))
        with sqlite3.connect(self.home / "airflow.db") as db:
            db.execute("CREATE TABLE IF NOT EXISTS log (event TEXT)")
            db.execute("CREATE TABLE IF NOT EXISTS ab_user (username TEXT)")
            db.execute("INSERT INTO log VALUES (?)", (f"cli_{args[1]}",))
            if args[1] == "users":
                db.execute("INSERT INTO ab_user VALUES (?)", (args[args.index("--username") + 1],))
        db.close()

    monkeypatch.setattr(AirflowServer, "_run", fake_run)

    def prepared(name: str, **kwargs: object) -> AirflowServer:
        folder = tmp_path / name
        folder.mkdir()
        server = _server(folder, "2", shape="standalone", **kwargs)
        server.venv = tmp_path / "venv"  # one venv for all of them
        server._prepare_database("airflow", {})
        return server

    (tmp_path / "venv").mkdir()
    (tmp_path / "venv" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    first = prepared("first")
    assert [args for _, args in ran] == [["db", "migrate"], ["users", "create"]]
    second = prepared("second")
    assert len(ran) == 2, "the second server ran no command"
    with sqlite3.connect(second.home / "airflow.db") as db:
        assert db.execute("SELECT username FROM ab_user").fetchall() == [("admin",)]
        assert db.execute("SELECT count(*) FROM log").fetchone() == (0,), "the commands' audit-log rows are not kept"
    db.close()
    assert first._snapshot_path() == second._snapshot_path()
    prepared("third", extra_users=[AirflowUser("viewer", "pw", "viewer")])
    assert [args for _, args in ran[2:]] == [["db", "migrate"], ["sync-perm"], ["users", "create"], ["users", "create"]]
    snapshots = [p for p in (tmp_path / "cache" / "airflow-db").iterdir() if not p.name.endswith(".lock")]
    assert len(snapshots) == 2, "other users: a snapshot of their own"
