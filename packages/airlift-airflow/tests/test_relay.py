"""The push relay: task processes hand items over as datagrams; one relay process per machine and
Dagster target delivers them, and exits when idle. Real processes against the fake Dagster."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fake_dagster import FakeDagster  # type: ignore[import-not-found]

from airlift_airflow import relay
from airlift_airflow.listener import AirliftListener, PushSettings
from airlift_airflow.push import PushItem
from airlift_airflow.version_compat import AIRFLOW_V_2_10_PLUS
from airlift_protocol import ApiVersion
from airlift_protocol.push_status import load_push_status

DAG_ID, TASK_ID, RUN_ID = "rebuild.customers", "load_raw", "manual__2026-01-01T00:00:00+00:00"
START = datetime(2026, 1, 1, 0, 0, 1, tzinfo=timezone.utc)
END = datetime(2026, 1, 1, 0, 0, 5, tzinfo=timezone.utc)


def _wait(condition: Any, timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


#: These tests are about the hand-over, not the age limit (test_push): a spawned interpreter may take
#: longer than the default 8 s to start on a loaded machine.
MAX_AGE = 120.0


def _target(fake: FakeDagster, *, idle: float = 3.0) -> relay.RelayTarget:
    return relay.RelayTarget(fake.url, "dagster-token-SENTINEL", "prod", ApiVersion.V2, "http://af:8080", max_age=MAX_AGE,
                             idle_seconds=idle)


def _paths(target: relay.RelayTarget) -> tuple[Path, Path]:
    folder = relay.relay_dir()
    assert folder is not None
    return folder / f"{target.name()}.sock", folder / f"{target.name()}.lock"


def _item(try_number: int = 1, task_id: str = TASK_ID) -> PushItem:
    return PushItem.for_task(dag_id=DAG_ID, run_id=RUN_ID, task_id=task_id, map_index=-1, try_number=try_number,
                             start_date=START, end_date=END)


def _task_instance(try_number: int) -> SimpleNamespace:
    """A finished try as the listener receives it: before Airflow 2.10 ``try_number`` is then already the next try."""
    return SimpleNamespace(dag_id=DAG_ID, run_id=RUN_ID, task_id=TASK_ID, map_index=-1, prev_attempted_tries=try_number,
                           try_number=try_number if AIRFLOW_V_2_10_PLUS else try_number + 1,
                           start_date=START, end_date=END, task=None)


def _relay_gone(target: relay.RelayTarget) -> None:
    sock, _ = _paths(target)
    _wait(lambda: not sock.exists(), timeout=30, what="the relay to exit")
    for process in relay._spawned:
        process.wait(timeout=30)


def test_the_first_task_starts_the_relay_later_ones_send_a_datagram(fake_dagster: FakeDagster) -> None:
    """The listener starts the relay when a task starts (it fetches the DAG's index once), hands each
    success over without waiting for Dagster, and the relay exits after ``relay_idle_seconds``."""
    fake_dagster.dag_indexes[("prod", "dag", DAG_ID)] = {"tasks": {TASK_ID: [["a"]]}, "dag": []}
    listener = AirliftListener(PushSettings(enabled=True, instance_name="prod", relay_idle_seconds=2.0, max_age=MAX_AGE))
    relay._spawned.clear()
    listener.on_task_instance_running(previous_state=None, task_instance=_task_instance(1))
    target = _target_of(listener)
    sock, _ = _paths(target)
    _wait(sock.exists, what="the relay's socket")
    _wait(lambda: fake_dagster.operations.count("AirliftDagIndex") == 1, what="the prefetched index")
    fake_dagster.report_gate.clear()  # Dagster takes no report until the listener returned
    for try_number in (1, 2, 3):
        listener.on_task_instance_success(previous_state=None, task_instance=_task_instance(try_number))
    assert fake_dagster.reports == []
    fake_dagster.report_gate.set()
    _wait(lambda: len(fake_dagster.reports) == 6, what="three tries' reports")
    assert sorted(body["metadata"]["Try number"] for path, body in fake_dagster.reports if "materialization" in path) == [1, 2, 3]
    assert len(relay._spawned) == 1, "one process: the relay"
    assert fake_dagster.operations.count("AirliftDagIndex") == 1, "the relay's cache serves every task"
    assert {h.get("Dagster-Cloud-Api-Token") for h in fake_dagster.headers} == {"dagster-token-SENTINEL"}
    _relay_gone(target)
    listener.on_task_instance_success(previous_state=None, task_instance=_task_instance(4))
    _wait(lambda: len(fake_dagster.reports) == 8, what="the report after the relay exited")
    assert len(relay._spawned) >= 1
    _relay_gone(target)


def _target_of(listener: AirliftListener) -> relay.RelayTarget:
    assert listener._target is not None
    return listener._target


def test_many_tasks_ending_at_once_without_a_relay_lose_nothing_and_send_nothing_twice(fake_dagster: FakeDagster) -> None:
    fake_dagster.dag_indexes[("prod", "dag", DAG_ID)] = {"tasks": {TASK_ID: [["a"]]}, "dag": []}
    target = _target(fake_dagster, idle=2.0)
    relay._spawned.clear()
    outcomes: list[str] = []
    barrier = threading.Barrier(12)

    def one(try_number: int) -> None:
        barrier.wait()
        outcomes.append(relay.send_or_spawn(_item(try_number), target))

    threads = [threading.Thread(target=one, args=(n,)) for n in range(1, 13)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert "failed" not in outcomes
    _wait(lambda: len(fake_dagster.reports) >= 24, what="every try's reports")
    time.sleep(0.5)
    tries = sorted(body["metadata"]["Try number"] for path, body in fake_dagster.reports if "materialization" in path)
    assert tries == list(range(1, 13)), "each try reported exactly once"
    _relay_gone(target)


def test_a_socket_left_by_a_dead_relay_is_replaced(fake_dagster: FakeDagster) -> None:
    fake_dagster.dag_indexes[("prod", "dag", DAG_ID)] = {"tasks": {TASK_ID: [["a"]]}, "dag": []}
    target = _target(fake_dagster, idle=1.0)
    sock_path, _ = _paths(target)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    dead.bind(str(sock_path))
    dead.close()  # the file stays, nobody reads it
    relay._spawned.clear()
    assert relay.send_or_spawn(_item(1), target) == "spawned"
    _wait(lambda: len(fake_dagster.reports) == 2, what="the report")
    _relay_gone(target)


def test_the_spawned_process_imports_no_airflow_and_gets_the_token_from_its_environment(fake_dagster: FakeDagster) -> None:
    fake_dagster.dag_indexes[("prod", "dag", DAG_ID)] = {"tasks": {TASK_ID: [["a"]]}, "dag": []}
    job = {**_target(fake_dagster).job(), "item": relay.encode_item(_item(1)), "relay": False}
    probe = relay._BOOT + "; print(sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.')))"
    env = {**os.environ, relay.JOB_ENV: json.dumps(job), relay.TOKEN_ENV: "dagster-token-SENTINEL"}
    out = subprocess.run([sys.executable, "-c", probe, str(Path(relay.__file__).parent)], env=env, capture_output=True,
                         text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"
    assert "SENTINEL" not in json.dumps(job)
    assert [p for p, _ in fake_dagster.reports] == ["/report_asset_materialization/a", "/report_asset_check/a"]
    assert fake_dagster.operations.count("AirliftDagIndex") == 1, "one process, one index read"
    assert {h.get("Dagster-Cloud-Api-Token") for h in fake_dagster.headers} == {"dagster-token-SENTINEL"}


def test_items_survive_the_datagram_round_trip() -> None:
    item = _item(3)
    back = relay.decode_item(json.loads(json.dumps(relay.encode_item(item))))
    assert back == item
    assert abs(back.created - item.created) < 1.0


def test_a_private_folder_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(relay.tempfile, "gettempdir", lambda: str(tmp_path))
    folder = relay.relay_dir()
    assert folder is not None and folder.stat().st_mode & 0o777 == 0o700
    folder.chmod(0o755)
    assert relay.relay_dir() is None, "a folder others can read is not used"


def test_a_spawned_sender_logs_to_its_file_and_counts_in_the_status_file(fake_dagster: FakeDagster, tmp_path: Path) -> None:
    """Dagster refuses the token: the spawned process's failure is in push-relay.log and counted, as
    one the user must act on, in push-status.json (its stdout and stderr go nowhere)."""
    fake_dagster.dag_indexes[("prod", "dag", DAG_ID)] = {"tasks": {TASK_ID: [["a"]]}, "dag": []}
    fake_dagster.report_statuses = [403]
    job = {**_target(fake_dagster).job(), "item": relay.encode_item(_item(1)), "relay": False}
    env = {**os.environ, relay.JOB_ENV: json.dumps(job), relay.TOKEN_ENV: "dagster-token-SENTINEL", "TMPDIR": str(tmp_path)}
    subprocess.run([sys.executable, "-c", relay._BOOT, str(Path(relay.__file__).parent)], env=env, timeout=60, check=True)
    folder = tmp_path / f"airlift-push-{os.getuid()}"
    logged = (folder / "push-relay.log").read_text()
    assert "HTTP 403" in logged and "the Airlift sensor reports it" in logged and "SENTINEL" not in logged
    status = load_push_status(folder / "push-status.json")
    assert status.counters["failed"] == 1 and status.counters["delivered"] == 0
    problem = status.problem_of(DAG_ID)
    assert problem is not None and "HTTP 403" in problem.reason


def test_the_relay_log_is_bounded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(relay, "LOG_MAX_BYTES", 2_000)
    logger = logging.getLogger("airlift_airflow")
    before, level = list(logger.handlers), logger.level
    try:
        relay._log_to_file(tmp_path)
        for n in range(500):
            logging.getLogger("airlift_airflow.push").warning("Airlift push: line %d of a busy relay", n)
    finally:
        for handler in [h for h in logger.handlers if h not in before]:
            handler.close()
            logger.removeHandler(handler)
        logger.setLevel(level)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["push-relay.log", "push-relay.log.1"]
    assert all((tmp_path / name).stat().st_size <= 2_000 for name in files)
    assert "line 499" in (tmp_path / "push-relay.log").read_text()
