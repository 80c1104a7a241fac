"""The run-event listener: one audit-log row per DAG-run start and end, in the run's own session."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy.orm import Session

from airlift_airflow import run_events
from airlift_airflow.plugin import AirliftPlugin
from airlift_airflow.version_compat import AIRFLOW_V_3_0_PLUS
from airlift_protocol import (
    RUN_FAILED,
    RUN_RUNNING,
    RUN_SUCCESS,
    ApiVersion,
    EventLog,
    run_of_event,
)


@pytest.fixture
def log_db(tmp_path: Path) -> Iterator[sqlalchemy.engine.Engine]:
    """A SQLite file holding Airflow's own ``log`` table (the model's DDL)."""
    from airflow.models.log import Log

    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'log.db'}")
    Log.__table__.create(engine)
    yield engine
    engine.dispose()


def _rows(engine: sqlalchemy.engine.Engine) -> list[Any]:
    from airflow.models.log import Log

    with Session(engine) as session:
        return [SimpleNamespace(event=r.event, dag_id=r.dag_id, run_id=r.run_id, task_id=r.task_id, owner=r.owner,
                                extra=json.loads(r.extra)) for r in session.query(Log).order_by(Log.id)]


START = datetime(2026, 1, 1, 0, 0, 5, tzinfo=timezone.utc)


def _run(state: str, run_id: str = "scheduled__2026-01-01T00:00:00+00:00") -> Any:
    return SimpleNamespace(dag_id="sales", run_id=run_id, state=SimpleNamespace(value=state), run_type="scheduled",
                           start_date=START, end_date=START + timedelta(seconds=30) if state != "running" else None,
                           execution_date=START, logical_date=START, run_after=START, data_interval_start=START,
                           data_interval_end=START, queued_at=START, conf={"password": "SENTINEL"})


def test_the_row_joins_the_session_holding_the_run(log_db: sqlalchemy.engine.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    session = Session(log_db)
    monkeypatch.setattr(sqlalchemy.orm, "object_session", lambda obj: session)
    listener = run_events.RunEventListener()
    listener.on_dag_run_running(dag_run=_run("running"), msg="")
    listener.on_dag_run_success(dag_run=_run("success"), msg="success")
    listener.on_dag_run_failed(dag_run=_run("failed", run_id="manual__1"), msg="task_failure")
    assert _rows(log_db) == []  # nothing is written before the run's own transaction commits
    session.commit()
    session.close()
    rows = _rows(log_db)
    assert [(r.event, r.dag_id, r.run_id, r.task_id, r.owner) for r in rows] == [
        (RUN_RUNNING, "sales", "scheduled__2026-01-01T00:00:00+00:00", None, "airlift"),
        (RUN_SUCCESS, "sales", "scheduled__2026-01-01T00:00:00+00:00", None, "airlift"),
        (RUN_FAILED, "sales", "manual__1", None, "airlift"),
    ]
    assert {k: rows[1].extra[k] for k in ("v", "state", "msg")} == {"v": 1, "state": "success", "msg": "success"}
    assert "SENTINEL" not in json.dumps([r.extra for r in rows]), "never the run's conf"
    api = ApiVersion.V2 if AIRFLOW_V_3_0_PLUS else ApiVersion.V1
    read_back = [run_of_event(EventLog(event_log_id=i, event=r.event, when=START, api=api, dag_id=r.dag_id, task_id=None, run_id=r.run_id,
                                       map_index=None, try_number=None, extra=json.dumps(r.extra))) for i, r in enumerate(rows)]
    assert [(r.run_id, r.state, r.end_date) for r in read_back if r is not None] == [
        ("scheduled__2026-01-01T00:00:00+00:00", "running", None),
        ("scheduled__2026-01-01T00:00:00+00:00", "success", START + timedelta(seconds=30)),
        ("manual__1", "failed", START + timedelta(seconds=30)),
    ], "the reader gets the run from the row"
    assert read_back[1] is not None and read_back[1].logical_date == START and read_back[1].run_type == "scheduled"


def test_a_run_held_by_no_session_gets_a_session_of_its_own(log_db: sqlalchemy.engine.Engine,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import contextlib

    import airflow.utils.session

    @contextlib.contextmanager
    def own_session() -> Iterator[Session]:
        with Session(log_db) as session:
            yield session
            session.commit()

    monkeypatch.setattr(sqlalchemy.orm, "object_session", lambda obj: None)
    monkeypatch.setattr(airflow.utils.session, "create_session", own_session)
    run_events.run_event_listener.on_dag_run_success(dag_run=_run("success"), msg="manual")
    assert [(r.event, r.run_id) for r in _rows(log_db)] == [(RUN_SUCCESS, "scheduled__2026-01-01T00:00:00+00:00")]


def test_switched_off_nothing_is_written(log_db: sqlalchemy.engine.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    session = Session(log_db)
    monkeypatch.setattr(sqlalchemy.orm, "object_session", lambda obj: session)
    monkeypatch.setenv("AIRFLOW__AIRLIFT__RUN_EVENTS", "False")
    run_events.run_event_listener.on_dag_run_success(dag_run=_run("success"), msg="")
    session.commit()
    assert _rows(log_db) == []


def test_a_failure_is_logged_and_never_reaches_the_run(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def broken(obj: Any) -> Any:
        raise RuntimeError("database gone")

    monkeypatch.setattr(sqlalchemy.orm, "object_session", broken)
    run_events.run_event_listener.on_dag_run_failed(dag_run=_run("failed"), msg="")
    assert "could not record airlift.run.failed for run 'scheduled__2026-01-01T00:00:00+00:00' of DAG 'sales'" in caplog.text


def test_the_plugin_registers_the_run_event_listener() -> None:
    assert run_events.run_event_listener in AirliftPlugin.listeners
