from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# Test helpers (fake_dagster, dag_shapes) are plain modules next to this file.
sys.path.insert(0, str(Path(__file__).parent))
from fake_dagster import FakeDagster

# Airflow must not write ~/airflow; nox sets AIRFLOW_HOME, this covers direct pytest runs.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="airlift-airflow-unit-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

try:
    # Airflow 2.7 configures every ORM mapper when a connection is first built, and TaskInstance names
    # Trigger by string; a worker has imported it by then, a test process has not.
    import airflow.models.trigger  # noqa: F401
except ImportError:  # the integration suites' venvs have no Airflow
    pass


@pytest.fixture
def fake_dagster(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDagster]:
    fake = FakeDagster()
    monkeypatch.setenv("AIRFLOW_CONN_DAGSTER_DEFAULT", json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": fake.server.server_address[1], "password": "dagster-token-SENTINEL"}))
    yield fake
    fake.stop()


@pytest.fixture(autouse=True)
def _failures_settle_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake Dagster writes a failed run's retry verdict with its status: no need to poll again."""
    try:
        from airlift_airflow import waiting
    except ImportError:  # the integration suites' venvs have no Airflow
        return
    monkeypatch.setattr(waiting, "FAILURE_SETTLE", 0.0)
