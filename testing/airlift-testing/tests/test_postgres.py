from __future__ import annotations

import subprocess

import pytest

from airlift_testing import postgres
from airlift_testing.postgres import PostgresServer, PostgresUnavailable
from airlift_testing.procs import ServerStartError


def test_cluster_starts_serves_a_database_and_is_removed() -> None:
    with PostgresServer() as db:
        url = db.create_database("airflow")
        assert url == f"postgresql+psycopg2://airlift@127.0.0.1:{db.port}/airflow"
        out = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(db.port), "-U", "airlift", "-d", "airflow", "-At", "-c", "SELECT 40 + 2"],
                             capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "42"
        root = db.root
    assert not root.exists()


def test_missing_binaries_say_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(postgres.glob, "glob", lambda pattern: [])
    monkeypatch.setattr(postgres.shutil, "which", lambda name: None)
    with pytest.raises(PostgresUnavailable, match="apt-get install -y postgresql"):
        PostgresServer()


def test_settings_reach_the_server_and_psql_reports_errors() -> None:
    with PostgresServer(settings={"shared_preload_libraries": "pg_stat_statements", "work_mem": "16MB"}) as db:
        db.create_database("airflow")
        assert db.psql("airflow", "SHOW shared_preload_libraries; SHOW work_mem").split() == ["pg_stat_statements", "16MB"]
        db.psql("airflow", "CREATE EXTENSION pg_stat_statements")
        assert db.psql("airflow", "SELECT count(*) >= 0 FROM pg_stat_statements").strip() == "t"
        with pytest.raises(ServerStartError, match="no_such_table"):
            db.psql("airflow", "SELECT * FROM no_such_table")
