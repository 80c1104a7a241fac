"""The ``airlift`` command line against the fake Airflow (both REST generations)."""

from __future__ import annotations

import json
import os
import stat
import tempfile
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from click.testing import CliRunner, Result
from dagster import DagsterInstance, asset, materialize

from airlift_dagster.cli import EXIT_ERROR, EXIT_OK, EXIT_PROBLEMS, _yaml_edit, cli
from airlift_dagster.cli._connect import Connection
from airlift_dagster.cli._errors import CliError
from airlift_protocol import (
    MIGRATING_DAG_TAG,
    dagster_run_tags,
    load_dag_migration_state,
    task_migration_doc,
)
from airlift_protocol.push_status import (
    STATUS_FILE_NAME,
    PushProblem,
    PushStatus,
    merge_push_status,
)
from airlift_testing.fake_airflow import FakeAirflow, FakeAirflowState, FakeDag, FakeTask

DAG = "dag_00001"


@pytest.fixture(params=[2, 3], ids=["airflow2", "airflow3"])
def fake(request: pytest.FixtureRequest) -> Iterator[FakeAirflow]:
    state = FakeAirflowState.generate(dags=3, tasks_per_dag=3)
    state.add_run(DAG, start=datetime.now(timezone.utc) - timedelta(hours=1), state="failed", task_state="failed")
    with FakeAirflow(state, generation=int(request.param)) as server:
        yield server


@pytest.fixture
def env(fake: FakeAirflow) -> dict[str, str]:
    return {
        "AIRLIFT_AIRFLOW_URL": fake.url,
        "AIRLIFT_AIRFLOW_USERNAME": "admin",
        "AIRLIFT_AIRFLOW_PASSWORD": "admin",
        "NO_COLOR": "1",
        "COLUMNS": "200",
    }


def run(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def scaffold(env: dict[str, str], folder: Path, *extra: str) -> Path:
    result = run(env, "state", "scaffold", str(folder), *extra)
    assert result.exit_code == EXIT_OK, result.output
    return folder / "migration_state"


def test_scaffold_writes_every_live_dag_and_never_overwrites(env: dict[str, str], fake: FakeAirflow, tmp_path: Path) -> None:
    state_dir = scaffold(env, tmp_path)
    assert sorted(p.name for p in state_dir.iterdir()) == ["dag_00000.yaml", "dag_00001.yaml", "dag_00002.yaml"]
    state = load_dag_migration_state(state_dir / f"{DAG}.yaml")
    assert [(t.task_id, t.migrated) for t in state.tasks.values()] == [
        ("task_000", False), ("task_001", False), ("task_002", False)
    ]

    edited = state_dir / f"{DAG}.yaml"
    edited.write_text("# mine\n" + edited.read_text())
    before = edited.read_text()
    again = run(env, "state", "scaffold", str(tmp_path), "--dag", DAG)
    assert again.exit_code == EXIT_OK
    assert "exists" in again.output and edited.read_text() == before

    # a task added in Airflow: --update appends it, keeps the comment and the flags
    fake.state.dag(DAG).tasks.append(FakeTask("task_new"))  # type: ignore[union-attr]
    updated = run(env, "state", "scaffold", str(tmp_path), "--dag", DAG, "--update")
    assert updated.exit_code == EXIT_OK, updated.output
    assert "+  task_new:" in updated.output
    text = edited.read_text()
    assert text.startswith("# mine\n") and text.endswith("  task_new:\n    migrated: false\n")
    assert not [p for p in state_dir.iterdir() if p.name.startswith(".")]


def test_scaffold_writes_nothing_when_an_existing_file_is_invalid(env: dict[str, str], tmp_path: Path) -> None:
    state_dir = tmp_path / "migration_state"
    state_dir.mkdir()
    (state_dir / "dag_00002.yaml").write_text("tasks:\n  task_000:\n    migrated: maybe\n")
    result = run(env, "state", "scaffold", str(tmp_path), "--update")
    assert result.exit_code == EXIT_ERROR
    assert "dag_00002.yaml, line 3, key 'tasks.task_000.migrated'" in result.output
    assert [p.name for p in state_dir.iterdir()] == ["dag_00002.yaml"]


def test_connection_repr_hides_secrets() -> None:
    conn = Connection(url="http://x", username="admin", password="s3cret", token="t0ken")
    assert "s3cret" not in repr(conn) and "t0ken" not in repr(conn)


def test_scaffold_pattern_selects_dags(env: dict[str, str], tmp_path: Path) -> None:
    state_dir = scaffold(env, tmp_path, "--dag", "*02")
    assert [p.name for p in state_dir.iterdir()] == ["dag_00002.yaml"]
    nothing = run(env, "state", "scaffold", str(tmp_path / "other"), "--dag", "nope_*")
    assert nothing.exit_code == EXIT_ERROR
    assert "matches nope_*" in nothing.output and not (tmp_path / "other").exists()


def test_set_and_rollback_edit_in_place_keeping_comments(env: dict[str, str], tmp_path: Path) -> None:
    state_dir = scaffold(env, tmp_path)
    path = state_dir / f"{DAG}.yaml"
    path.write_text(
        "# owned by the data team\ntasks:\n  task_000:  # extract\n    migrated: false\n"
        "  task_001:\n    migrated: false   # next one\n  task_002:\n    migrated: false\n"
    )
    result = run(env, "state", "set", "-d", str(tmp_path), DAG, "task_000", "task_001", "--migrated")
    assert result.exit_code == EXIT_OK, result.output
    assert "-    migrated: false" in result.output and "+    migrated: true" in result.output
    assert path.read_text() == (
        "# owned by the data team\ntasks:\n  task_000:  # extract\n    migrated: true\n"
        "  task_001:\n    migrated: true    # next one\n  task_002:\n    migrated: false\n"
    )
    assert load_dag_migration_state(path).migrated_task_ids == ("task_000", "task_001")

    same = run(env, "state", "set", "-d", str(tmp_path), DAG, "task_000", "--migrated")
    assert same.exit_code == EXIT_OK and "nothing changed" in same.output

    one = run(env, "state", "rollback", "-d", str(tmp_path), DAG, "task_001")
    assert one.exit_code == EXIT_OK, one.output
    assert load_dag_migration_state(path).migrated_task_ids == ("task_000",)
    every = run(env, "state", "rollback", "-d", str(tmp_path), DAG)
    assert every.exit_code == EXIT_OK, every.output
    assert load_dag_migration_state(path).migrated_task_ids == ()
    assert "# extract" in path.read_text() and "# next one" in path.read_text()


@pytest.mark.parametrize("fake", [3], indirect=True)  # the edit does not depend on Airflow's generation
@pytest.mark.parametrize("failing", ["replace", "mkdtemp"])
def test_an_unwritable_state_file_is_one_line_naming_it(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    # Run as root, a read-only file or folder would still be written: the refusal is simulated where
    # the operating system reports it.
    state_dir = scaffold(env, tmp_path)
    path = state_dir / f"{DAG}.yaml"
    before = path.read_text()

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(os if failing == "replace" else tempfile, failing, refuse)
    result = run(env, "state", "set", "-d", str(tmp_path), DAG, "task_000", "--migrated")
    assert result.exit_code == EXIT_ERROR
    assert result.output.strip() == (
        f"error: {path}: cannot write the migration-state file (Permission denied); nothing changed. Make the "
        "file and its folder writable for this user (or run as their owner) and re-run."
    )
    assert path.read_text() == before
    assert not [p for p in state_dir.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("fake", [3], indirect=True)  # the edit does not depend on Airflow's generation
def test_an_edit_keeps_the_file_mode(env: dict[str, str], tmp_path: Path) -> None:
    state_dir = scaffold(env, tmp_path)
    path = state_dir / f"{DAG}.yaml"
    path.chmod(0o640)
    result = run(env, "state", "set", "-d", str(tmp_path), DAG, "task_000", "--migrated")
    assert result.exit_code == EXIT_OK, result.output
    assert load_dag_migration_state(path).migrated_task_ids == ("task_000",)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


@pytest.mark.parametrize("fake", [3], indirect=True)  # the edit does not depend on Airflow's generation
def test_an_edit_never_overwrites_a_file_changed_since_it_was_read(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state_dir = scaffold(env, tmp_path)
    path = state_dir / f"{DAG}.yaml"
    theirs = "tasks:\n  task_002:\n    migrated: true\n"
    real_load = _yaml_edit.load_dag_migration_state

    def load_while_someone_else_saves(file: Path) -> Any:
        if Path(file) != path:  # the edited copy is being checked: another editor saves meanwhile
            path.write_text(theirs)
        return real_load(file)

    monkeypatch.setattr(_yaml_edit, "load_dag_migration_state", load_while_someone_else_saves)
    result = run(env, "state", "set", "-d", str(tmp_path), DAG, "task_000", "--migrated")
    assert result.exit_code == EXIT_ERROR
    assert result.output.strip() == (
        f"error: {path}: the file changed since this command read it (another edit?); nothing written. "
        "Re-run the command to apply it to the current file."
    )
    assert path.read_text() == theirs
    assert not [p for p in state_dir.iterdir() if p.name.startswith(".")]


def test_set_and_rollback_switch_a_whole_dag_file(env: dict[str, str], tmp_path: Path) -> None:
    state_dir = scaffold(env, tmp_path)
    path = state_dir / f"{DAG}.yaml"
    path.write_text("# the whole DAG runs in Dagster\nmigrated: true  # since March\n")
    back = run(env, "state", "rollback", "-d", str(tmp_path), DAG)
    assert back.exit_code == EXIT_OK, back.output
    assert path.read_text() == "# the whole DAG runs in Dagster\nmigrated: false # since March\n"
    assert load_dag_migration_state(path).dag_migrated is False
    again = run(env, "state", "set", "-d", str(tmp_path), DAG, "--migrated")
    assert again.exit_code == EXIT_OK, again.output
    assert load_dag_migration_state(path).dag_migrated is True

    before = path.read_text()
    for args in (("set", DAG, "task_000", "--migrated"), ("rollback", DAG, "task_000")):
        refused = run(env, "state", args[0], "-d", str(tmp_path), *args[1:])
        assert refused.exit_code == EXIT_ERROR
        assert refused.output.strip() == (
            f"error: {path}: DAG {DAG!r} is switched as a whole ('migrated: true'), so it has no task entries; "
            f"nothing changed. Switch the whole DAG with `airlift state set {DAG} --migrated` or "
            f"`airlift state rollback {DAG}` (no task ids), or replace the switch by 'tasks' to migrate task by task."
        )
    updated = run(env, "state", "scaffold", str(tmp_path), "--update")
    assert updated.exit_code == EXIT_OK, updated.output
    assert path.read_text() == before
    assert not [p for p in state_dir.iterdir() if p.name.startswith(".")]

    per_task = state_dir / "dag_00002.yaml"
    unnamed = run(env, "state", "set", "-d", str(tmp_path), "dag_00002", "--migrated")
    assert unnamed.exit_code == EXIT_ERROR and "name the tasks of DAG 'dag_00002' to set" in unnamed.output
    assert load_dag_migration_state(per_task).migrated_task_ids == ()


def test_an_invalid_edit_names_the_state_file_not_a_temporary_copy(tmp_path: Path) -> None:
    path = tmp_path / "migration_state" / f"{DAG}.yaml"
    path.parent.mkdir()
    path.write_text("tasks: {}\n")
    with pytest.raises(CliError) as raised:
        _yaml_edit._write_validated(path, "tasks:\n  a:\n    migrated: maybe\n", overwrite=True, before="tasks: {}\n")
    assert str(raised.value) == (
        f"{path}, line 3, key 'tasks.a.migrated': expected true or false, found 'maybe'. "
        f"(in the edited text: the edit is not written, {path} is unchanged)"
    )
    assert path.read_text() == "tasks: {}\n"
    assert [p.name for p in path.parent.iterdir()] == [f"{DAG}.yaml"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("nodag", "t"), "no migration-state file for DAG 'nodag'"),
        ((DAG, "nope"), "DAG 'dag_00001' has no task 'nope' in Airflow"),
    ],
)
def test_set_rejects_unknown_dag_or_task_without_writing(
    env: dict[str, str], tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    state_dir = scaffold(env, tmp_path)
    before = {p.name: p.read_text() for p in state_dir.iterdir()}
    result = run(env, "state", "set", "-d", str(tmp_path), *args, "--migrated")
    assert result.exit_code == EXIT_ERROR
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert {p.name: p.read_text() for p in state_dir.iterdir()} == before


def test_a_dag_gone_from_airflow_is_refused_unless_offline(env: dict[str, str], fake: FakeAirflow, tmp_path: Path) -> None:
    state_dir = scaffold(env, tmp_path)
    fake.state.dags = [d for d in fake.state.dags if d.dag_id != DAG]
    refused = run(env, "state", "set", "-d", str(tmp_path), DAG, "task_000", "--migrated")
    assert refused.exit_code == EXIT_ERROR and f"DAG {DAG!r} is not in" in refused.output
    offline = run(env, "state", "set", "-d", str(tmp_path), DAG, "task_000", "--migrated", "--offline")
    assert offline.exit_code == EXIT_OK
    assert load_dag_migration_state(state_dir / f"{DAG}.yaml").migrated_task_ids == ("task_000",)


def test_bad_yaml_is_one_line_naming_file_and_line(env: dict[str, str], tmp_path: Path) -> None:
    state_dir = scaffold(env, tmp_path)
    bad = state_dir / f"{DAG}.yaml"
    bad.write_text("tasks:\n  task_000:\n    migrated: yes\n")
    result = run(env, "state", "set", "-d", str(tmp_path), DAG, "task_001", "--migrated")
    assert result.exit_code == EXIT_ERROR
    assert result.output.strip() == (
        f"error: {bad}, line 3, key 'tasks.task_000.migrated': expected true or false, found 'yes'."
    )
    assert bad.read_text() == "tasks:\n  task_000:\n    migrated: yes\n"

    validate = run(env, "state", "validate", "-d", str(tmp_path))
    assert validate.exit_code == EXIT_PROBLEMS
    assert f"error: {bad}: line 3, key 'tasks.task_000.migrated'" in validate.output


def test_validate_against_live_dags(env: dict[str, str], fake: FakeAirflow, tmp_path: Path) -> None:
    state_dir = scaffold(env, tmp_path)
    ok = run(env, "state", "validate", "-d", str(tmp_path))
    assert ok.exit_code == EXIT_OK, ok.output
    assert "3 state file(s) checked: 0 error(s), 0 warning(s)" in ok.output

    (state_dir / "ghost.yaml").write_text("tasks:\n  a:\n    migrated: false\n")
    (state_dir / f"{DAG}.yaml").write_text("tasks:\n  task_000:\n    migrated: false\n  gone:\n    migrated: false\n")
    result = run(env, "state", "validate", "-d", str(tmp_path), "--json")
    assert result.exit_code == EXIT_PROBLEMS
    report = json.loads(result.output)
    assert not report["ok"]
    messages = {(p["level"], Path(p["where"]).name, p["message"]) for p in report["problems"]}
    assert messages == {
        ("error", "ghost.yaml", "DAG 'ghost' is not in Airflow"),
        ("error", f"{DAG}.yaml", f"task 'gone' is not in Airflow's DAG {DAG!r}"),
        ("warning", f"{DAG}.yaml", "tasks not listed (they run in Airflow): task_001, task_002"),
    }
    offline = run(env, "state", "validate", "-d", str(tmp_path), "--offline", "--url", "http://127.0.0.1:9")
    assert offline.exit_code == EXIT_OK, offline.output


DEFS_FILE = '''
import os
from dagster import AssetSpec, Definitions
from airlift_dagster import AirflowInstance, BasicAuthBackend, dag_defs, task_defs

airflow_instance = AirflowInstance(
    auth_backend=BasicAuthBackend(webserver_url=os.environ["FAKE_URL"], username="admin", password="admin"),
    name="fake_airflow",
)
defs = Definitions.merge(
    dag_defs("dag_00001", task_defs("task_000", AssetSpec("raw")), task_defs("task_001", AssetSpec("clean"))),
    dag_defs("dag_00002", task_defs("no_such_task", AssetSpec("orphan"))),
)
'''


def test_validate_and_status_against_the_dagster_mapping(env: dict[str, str], fake: FakeAirflow, tmp_path: Path) -> None:
    scaffold(env, tmp_path)
    defs = tmp_path / "defs.py"
    defs.write_text(DEFS_FILE)
    # the Airflow instance comes from the definitions: no URL or credentials needed
    code_env = {"FAKE_URL": fake.url, "NO_COLOR": "1", "COLUMNS": "200"}
    assert run(code_env, "state", "set", "-d", str(tmp_path), "dag_00000", "task_000", "--migrated", "--defs", str(defs)).exit_code == 0
    result = run(code_env, "state", "validate", "-d", str(tmp_path), "--defs", str(defs), "--json")
    assert result.exit_code == EXIT_PROBLEMS
    messages = {p["message"] for p in json.loads(result.output)["problems"]}
    assert messages == {
        f"task 'task_000' is migrated but no Dagster asset is mapped to it in {defs.resolve()}",
        "assets orphan are mapped to task 'no_such_task' of DAG 'dag_00002', which Airflow does not have",
    }

    status = run(code_env, "state", "status", "-d", str(tmp_path), "--defs", str(defs), "--json")
    assert status.exit_code == EXIT_OK, status.output
    rows = {(r["dag_id"], r["task_id"]): r for r in json.loads(status.output)["tasks"]}
    assert rows[(DAG, "task_000")]["assets"] == ["raw"]
    assert rows[(DAG, "task_000")]["last_airflow_state"] == "failed (try 1)"
    assert rows[("dag_00000", "task_000")]["migrated"] is True
    assert rows[("dag_00000", "task_000")]["last_airflow_state"] is None
    assert set(rows[("dag_00000", "task_000")]["warnings"]) == {
        "Airflow still runs the original operator (not deployed or not re-parsed yet)",
        "migrated, but no Dagster asset is mapped to it",
    }

    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    failed = run(code_env, "state", "status", "-d", str(tmp_path), "--defs", str(broken))
    assert failed.exit_code == EXIT_ERROR
    assert failed.output.strip() == f"error: {broken.resolve()}: loading your definitions failed: RuntimeError: boom"


def test_status_table_and_drift(env: dict[str, str], fake: FakeAirflow, tmp_path: Path) -> None:
    scaffold(env, tmp_path)
    # Airflow already runs task_002 in Dagster (its doc carries the marker), the file says it should not
    task = fake.state.dag(DAG).tasks[2]  # type: ignore[union-attr]
    task.doc_md = task_migration_doc(None)
    result = run(env, "state", "status", "-d", str(tmp_path))
    assert result.exit_code == EXIT_OK, result.output
    assert "\x1b[" not in result.output  # NO_COLOR and not a terminal: plain text
    line = next(x for x in result.output.splitlines() if "task_002" in x and DAG in x)
    assert "failed (try 1)" in line and "Airflow still runs it in Dagster" in line


@pytest.mark.parametrize("release", ["2.9.3", "2.10.5"])
def test_status_shows_the_try_that_runs(env: dict[str, str], fake: FakeAirflow, tmp_path: Path, release: str) -> None:
    """Before 2.10 Airflow's REST API shows a deferred task's try one lower and a queued try before it is
    counted (seen on a real 2.9.3: try 0 for a deferred first try); status shows the try that runs, as
    Airflow 2.10+ and 3 do, with the version the client read when it detected the API generation."""
    scaffold(env, tmp_path)
    lowered = fake.generation == 2 and release == "2.9.3"
    if fake.generation == 2:
        fake.airflow_version = release
    run_ = fake.state.add_run(DAG, start=datetime.now(timezone.utc) - timedelta(minutes=5), state="running")
    raw = {"task_000": ("success", 1), "task_001": ("deferred", 0 if lowered else 1), "task_002": ("queued", 0 if lowered else 1)}
    for ti in fake.state.task_instances:
        if ti.run_id == run_.run_id:
            ti.state, ti.try_number = raw[ti.task_id]
    fake.requests.clear()
    status = run(env, "state", "status", "-d", str(tmp_path), "--json")
    assert status.exit_code == EXIT_OK, status.output
    shown = {t["task_id"]: t["last_airflow_state"] for t in json.loads(status.output)["tasks"] if t["dag_id"] == DAG}
    assert shown == {"task_000": "success (try 1)", "task_001": "deferred (try 1)", "task_002": "queued (try 1)"}
    assert sum(n for key, n in fake.requests.items() if key.endswith("/version")) == 1  # the generation's check only


def test_diff_shows_what_a_deploy_changes(env: dict[str, str], fake: FakeAirflow, tmp_path: Path) -> None:
    scaffold(env, tmp_path)
    dag = fake.state.dag(DAG)
    assert dag is not None
    dag.tags.append(MIGRATING_DAG_TAG)
    dag.tasks[2].doc_md = task_migration_doc("exports")
    assert run(env, "state", "set", "-d", str(tmp_path), DAG, "task_000", "--migrated").exit_code == 0
    fake.state.dags.append(FakeDag("orphan_dag", tasks=[FakeTask("t", doc_md=task_migration_doc(None))], tags=[MIGRATING_DAG_TAG]))

    result = run(env, "state", "diff", "-d", str(tmp_path), "--json", "--exit-code")
    assert result.exit_code == EXIT_PROBLEMS
    changes = {c["dag_id"]: c for c in json.loads(result.output)["changes"]}
    assert changes[DAG]["to_dagster"] == ["task_000"] and changes[DAG]["back_to_airflow"] == ["task_002"]
    assert changes["orphan_dag"]["back_to_airflow"] == ["t"]
    assert "no state file" in changes["orphan_dag"]["note"]
    assert "not tagged" in changes["dag_00000"]["note"] and not changes["dag_00000"]["to_dagster"]

    text = run(env, "state", "diff", "-d", str(tmp_path))
    assert text.exit_code == EXIT_OK
    assert "+ task_000  Airflow → Dagster" in text.output and "- task_002  Dagster → Airflow" in text.output


def test_a_dag_whose_file_fails_to_import_is_named_by_every_command(env: dict[str, str], fake: FakeAirflow, tmp_path: Path) -> None:
    scaffold(env, tmp_path)
    fake.break_dag(DAG, "Traceback (most recent call last):\n  File \"x.py\", line 3\nSyntaxError: invalid syntax\n")
    fileloc = fake.state.dag(DAG).fileloc  # type: ignore[union-attr]
    filename = fileloc if fake.generation == 2 else fileloc.rsplit("/", 1)[-1]
    named = f"Airflow fails to import the file of DAG {DAG!r} ({filename}): SyntaxError: invalid syntax"

    validate = run(env, "state", "validate", "-d", str(tmp_path), "--json")
    assert validate.exit_code == EXIT_PROBLEMS
    problems = {(p["level"], Path(p["where"]).name, p["message"].split(";")[0]) for p in json.loads(validate.output)["problems"]}
    assert problems == {("error", f"{DAG}.yaml", named)}

    diff = run(env, "state", "diff", "-d", str(tmp_path), "--json", "--exit-code")
    assert diff.exit_code == EXIT_PROBLEMS
    assert named in {c["dag_id"]: c for c in json.loads(diff.output)["changes"]}[DAG]["note"]

    status = run(env, "state", "status", "-d", str(tmp_path), "--json")
    assert status.exit_code == EXIT_OK, status.output
    assert {d["dag_id"]: d["warnings"] for d in json.loads(status.output)["dags"]}[DAG] == [named + "; fix the file (`airflow dags list-import-errors` shows the whole error)"]

    doctor = run(env, "doctor", "--json")
    checks = {c["name"]: c for c in json.loads(doctor.output)["checks"]}
    assert checks["DAG imports"]["status"] == "WARN"
    assert f"1 file(s) fail to import: {filename}: SyntaxError: invalid syntax" == checks["DAG imports"]["detail"]


def test_doctor_reports_each_check(env: dict[str, str], fake: FakeAirflow) -> None:
    result = run(env, "doctor", "--json")
    assert result.exit_code == EXIT_OK, result.output
    checks = {c["name"]: c for c in json.loads(result.output)["checks"]}
    assert [c["status"] for c in checks.values()] == ["OK"] * 6 + ["WARN", "OK", "WARN"]
    assert checks["DAG imports"]["detail"] == "Airflow imports every DAG file"
    assert checks["Run events"]["detail"].startswith("no run-event row in Airflow's audit log in the last 24 hours")
    assert "install airlift-airflow where Airflow's scheduler runs" in checks["Run events"]["hint"]
    assert checks["REST API"]["detail"].startswith(f"Airflow {fake.generation} REST API")
    assert checks["Airflow version"]["detail"] == ("2.11.2" if fake.generation == 2 else "3.3.2")
    assert "list task instances (batch)" in checks["API permissions"]["detail"]
    table = run(env, "doctor")
    assert table.exit_code == EXIT_OK and "OK    Clock skew" in table.output


def test_doctor_finds_the_run_event_rows(env: dict[str, str], fake: FakeAirflow) -> None:
    fake.state.run_events = True
    fake.state.add_run(DAG, start=datetime.now(timezone.utc) - timedelta(minutes=10))
    result = run(env, "doctor", "--json")
    checks = {c["name"]: c for c in json.loads(result.output)["checks"]}
    assert checks["Run events"]["status"] == "OK", checks["Run events"]
    assert checks["Run events"]["detail"].startswith("airlift-airflow's listener writes them")


def test_doctor_fails_on_wrong_password_and_refused_permissions(env: dict[str, str], fake: FakeAirflow) -> None:
    wrong = run({**env, "AIRLIFT_AIRFLOW_PASSWORD": "s3cret-x"}, "doctor", "--json")
    assert wrong.exit_code == EXIT_PROBLEMS
    checks = {c["name"]: c for c in json.loads(wrong.output)["checks"]}
    assert checks["Authentication"]["status"] == "FAIL" and "s3cret-x" not in wrong.output
    assert "Airflow version" not in checks

    fake.fail_next(r"taskInstances/list", 403, times=2)
    refused = run(env, "doctor", "--json")
    assert refused.exit_code == EXIT_PROBLEMS
    checks = {c["name"]: c for c in json.loads(refused.output)["checks"]}
    assert checks["API permissions"]["status"] == "FAIL"
    assert "list task instances (batch)" in checks["API permissions"]["detail"]


def test_doctor_checks_dagster(env: dict[str, str]) -> None:
    result = run(env, "doctor", "--json", "--dagster-url", "http://127.0.0.1:9")
    assert result.exit_code == EXIT_PROBLEMS
    dagster = json.loads(result.output)["checks"][-1]
    assert dagster["name"] == "Dagster" and dagster["status"] == "FAIL"


def test_doctor_shows_push_delivery_from_the_status_file(env: dict[str, str], tmp_path: Path) -> None:
    """--push-status: the counters an Airflow machine's push relay keeps (WARN when anything was left to
    the sensor) and each problem the user must act on (FAIL, exit code 1)."""
    path = tmp_path / STATUS_FILE_NAME
    clean = merge_push_status(PushStatus(), {"delivered": 12}, [], now="2026-12-01T10:00:00+00:00")
    path.write_text(json.dumps(clean.to_json()))
    result = run(env, "doctor", "--json", "--push-status", str(path))
    assert result.exit_code == EXIT_OK, result.output
    push = json.loads(result.output)["checks"][-1]
    assert push["name"] == "Push delivery" and push["status"] == "OK" and "delivered 12, dropped too old 0" in push["detail"]

    problems = [
        PushProblem("2026-12-01T10:01:00+00:00", "dropped_too_old", "d1", "task d1.t run r try 1", "9.2s after the event"),
        PushProblem("2026-12-01T10:02:00+00:00", "unresolved_instance_name", "d2", "task d2.t run r try 1",
                    "Dagster has DAG assets ['a', 'dag', 'd2'] and ['b', 'dag', 'd2']", actionable=True),
    ]
    busy = merge_push_status(clean, {"dropped_too_old": 1, "unresolved_instance_name": 1}, problems, now="2026-12-01T10:03:00+00:00")
    path.write_text(json.dumps(busy.to_json()))
    result = run(env, "doctor", "--json", "--push-status", str(path))
    assert result.exit_code == EXIT_PROBLEMS
    delivery, problem = json.loads(result.output)["checks"][-2:]
    assert delivery["status"] == "WARN" and "dropped too old 1" in delivery["detail"] and "unresolved instance name 1" in delivery["detail"]
    assert problem["status"] == "FAIL" and "task d2.t" in problem["detail"] and "instance_name" in problem["hint"]
    table = run(env, "doctor", "--push-status", str(path))
    assert "FAIL  Push problem" in table.output and "d1.t" not in table.output

    missing = run(env, "doctor", "--json", "--push-status", str(tmp_path / "nope.json"))
    assert missing.exit_code == EXIT_PROBLEMS
    assert "no push status file at" in json.loads(missing.output)["checks"][-1]["detail"]


def test_doctor_names_the_sensor_settle_when_push_refused_to_send(env: dict[str, str], tmp_path: Path) -> None:
    """Push sends nothing for an instance whose sensor settle leaves it no time: a FAIL saying what to set."""
    path = tmp_path / STATUS_FILE_NAME
    problem = PushProblem("2026-12-01T10:02:00+00:00", "settle_too_short", "d", "task d.t run r try 1",
                          "Dagster at http://dagster:3000 ... settle is 0s", actionable=True)
    path.write_text(json.dumps(merge_push_status(PushStatus(), {"settle_too_short": 1}, [problem], now="2026-12-01T10:03:00+00:00").to_json()))
    result = run(env, "doctor", "--json", "--push-status", str(path))
    assert result.exit_code == EXIT_PROBLEMS
    delivery, shown = json.loads(result.output)["checks"][-2:]
    assert delivery["status"] == "WARN" and "settle too short 1" in delivery["detail"]
    assert shown["status"] == "FAIL" and "task d.t" in shown["detail"]
    assert "SensorSettings(settle=" in shown["hint"] and "settle_seconds" in shown["hint"]


def test_unreachable_and_wrong_password_are_one_line_and_write_nothing(env: dict[str, str], tmp_path: Path) -> None:
    down = run({**env, "AIRLIFT_AIRFLOW_URL": "http://127.0.0.1:9", "AIRLIFT_TIMEOUT": "2"}, "state", "scaffold", str(tmp_path))
    assert down.exit_code == EXIT_ERROR
    assert len(down.output.strip().splitlines()) == 1 and "cannot reach Airflow at http://127.0.0.1:9" in down.output
    wrong = run({**env, "AIRLIFT_AIRFLOW_PASSWORD": "s3cret-wrong"}, "state", "scaffold", str(tmp_path))
    assert wrong.exit_code == EXIT_ERROR
    assert len(wrong.output.strip().splitlines()) == 1 and "refused" in wrong.output
    assert "s3cret-wrong" not in wrong.output
    assert not (tmp_path / "migration_state").exists()
    doctor = run({**env, "AIRLIFT_AIRFLOW_URL": "http://127.0.0.1:9"}, "doctor")
    assert doctor.exit_code == EXIT_PROBLEMS and "FAIL  Reachable" in doctor.output


def test_missing_connection_and_usage_errors() -> None:
    none = run({"NO_COLOR": "1"}, "state", "scaffold", "x")
    assert none.exit_code == EXIT_ERROR and "no Airflow to talk to" in none.output
    usage = run({}, "state", "set", "d", "t")
    assert usage.exit_code == 2


class _FakeDagsterGraphql(BaseHTTPRequestHandler):
    """Answers the two queries the command line sends to Dagster's /graphql (shapes of Dagster 1.13)."""

    runs: ClassVar[dict[tuple[str, str], list[dict[str, str]]]] = {}
    #: The Dagster+ API token every request must carry (None: no token needed), and the tokens seen.
    token: ClassVar[str | None] = None
    tokens_seen: ClassVar[list[str | None]] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.tokens_seen.append(self.headers.get("Dagster-Cloud-Api-Token"))
        if self.token is not None and self.headers.get("Dagster-Cloud-Api-Token") != self.token:
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if body["query"].strip() == "{ version }":
            data: dict[str, Any] = {"version": "1.13.0"}
        else:
            tags = {t["key"]: t["value"] for t in body["variables"]["tags"]}
            key = (tags["airlift/airflow_dag_id"], tags["airlift/airflow_task_id"])
            data = {"runsOrError": {"results": self.runs.get(key, [])[:1]}}
        payload = json.dumps({"data": data}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def dagster_url() -> Iterator[str]:
    _FakeDagsterGraphql.token, _FakeDagsterGraphql.tokens_seen = None, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeDagsterGraphql)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_doctor_and_status_read_dagster_over_graphql(env: dict[str, str], tmp_path: Path, dagster_url: str) -> None:
    doctor = run(env, "doctor", "--json", "--dagster-url", dagster_url)
    assert doctor.exit_code == EXIT_OK, doctor.output
    dagster = json.loads(doctor.output)["checks"][-1]
    assert (dagster["status"], dagster["detail"]) == ("OK", f"{dagster_url} (Dagster 1.13.0)")
    assert f"AIRFLOW_CONN_DAGSTER_DEFAULT='{dagster_url}'" in dagster["hint"]

    scaffold(env, tmp_path)
    _FakeDagsterGraphql.runs = {(DAG, "task_001"): [{"runId": "0123456789abcdef", "status": "SUCCESS"}]}
    status = run(env, "state", "status", "-d", str(tmp_path), "--json", "--dagster-url", dagster_url)
    assert status.exit_code == EXIT_OK, status.output
    rows = {(r["dag_id"], r["task_id"]): r for r in json.loads(status.output)["tasks"]}
    assert rows[(DAG, "task_001")]["last_dagster_run"] == "SUCCESS 01234567"
    assert rows[(DAG, "task_000")]["last_dagster_run"] is None


@pytest.mark.parametrize("fake", [3], indirect=True)  # reading Dagster does not depend on Airflow's generation
def test_status_and_doctor_send_the_dagster_plus_token(env: dict[str, str], tmp_path: Path, dagster_url: str) -> None:
    secret = "dagster-token-SENTINEL"
    _FakeDagsterGraphql.token = secret
    _FakeDagsterGraphql.runs = {(DAG, "task_001"): [{"runId": "0123456789abcdef", "status": "SUCCESS"}]}
    scaffold(env, tmp_path)
    with_token = {**env, "AIRLIFT_DAGSTER_URL": dagster_url, "AIRLIFT_DAGSTER_API_TOKEN": secret}
    status = run(with_token, "state", "status", "-d", str(tmp_path), "--json")
    assert status.exit_code == EXIT_OK, status.output
    rows = {(r["dag_id"], r["task_id"]): r for r in json.loads(status.output)["tasks"]}
    assert rows[(DAG, "task_001")]["last_dagster_run"] == "SUCCESS 01234567"
    doctor = run(with_token, "doctor", "--json")
    assert json.loads(doctor.output)["checks"][-1]["status"] == "OK"
    assert _FakeDagsterGraphql.tokens_seen and set(_FakeDagsterGraphql.tokens_seen) == {secret}
    assert secret not in status.output + doctor.output

    wrong = {**with_token, "AIRLIFT_DAGSTER_API_TOKEN": "wrong-SENTINEL"}
    refused = run(wrong, "state", "status", "-d", str(tmp_path))
    assert refused.exit_code == EXIT_ERROR
    assert refused.output.strip() == (
        f"error: {dagster_url}: could not read Dagster runs (HTTP 401). Dagster refused the request: give a valid "
        "Dagster+ API token in AIRLIFT_DAGSTER_API_TOKEN (or --dagster-token)."
    )
    check = json.loads(run(wrong, "doctor", "--json").output)["checks"][-1]
    assert (check["status"], check["hint"]) == ("FAIL", "Dagster refused the request: give a valid Dagster+ API token in "
                                                        "AIRLIFT_DAGSTER_API_TOKEN (or --dagster-token)")
    assert "SENTINEL" not in refused.output


@pytest.mark.parametrize("fake", [3], indirect=True)  # reading Dagster does not depend on Airflow's generation
def test_status_reads_the_local_dagster_instance_with_defs(env: dict[str, str], fake: FakeAirflow, tmp_path: Path) -> None:
    scaffold(env, tmp_path)
    defs = tmp_path / "defs.py"
    defs.write_text(DEFS_FILE)
    home = tmp_path / "dagster_home"
    home.mkdir()

    @asset(key="raw")
    def raw() -> None:
        pass

    with DagsterInstance.from_config(str(home)) as instance:
        result = materialize([raw], instance=instance, tags=dagster_run_tags(dag_id=DAG, task_id="task_000", run_id="r1"))
        run_id = result.run_id
    status = run({"FAKE_URL": fake.url, "DAGSTER_HOME": str(home)}, "state", "status", "-d", str(tmp_path), "--defs", str(defs), "--json")
    assert status.exit_code == EXIT_OK, status.output
    report = json.loads(status.output)
    rows = {(r["dag_id"], r["task_id"]): r for r in report["tasks"]}
    assert report["dagster"] == f"DAGSTER_HOME={home}"
    assert rows[(DAG, "task_000")]["last_dagster_run"] == f"SUCCESS {run_id[:8]}"
    assert rows[(DAG, "task_001")]["last_dagster_run"] is None


def test_module_option_and_errors_printed_verbatim(fake: FakeAirflow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    module = f"cli_defs_{fake.generation}"
    (tmp_path / f"{module}.py").write_text(DEFS_FILE)
    scaffold({"FAKE_URL": fake.url, "AIRLIFT_DEFS_MODULE": module}, tmp_path)
    status = run({"FAKE_URL": fake.url}, "state", "status", "-m", module, "--json")
    assert status.exit_code == EXIT_OK, status.output
    assert json.loads(status.output)["airflow"] == fake.url

    (tmp_path / "odd.py").write_text("raise ValueError('use [bold]this[/bold] literally')\n")
    odd = run({}, "state", "status", "--defs", "odd.py")
    assert odd.exit_code == EXIT_ERROR and "use [bold]this[/bold] literally" in odd.output


def test_doctor_names_an_mwaa_environment_it_cannot_resolve(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    env = {"AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}
    result = run(env, "doctor", "--json", "--mwaa-env", "my_env", "--mwaa-region", "eu-west-1")
    assert result.exit_code == EXIT_PROBLEMS
    first = json.loads(result.output)["checks"][0]
    assert (first["name"], first["status"]) == ("Airflow location", "FAIL")
    assert "MWAA environment 'my_env'" in first["detail"]


def test_help_texts_show_no_docstring_markup() -> None:
    def walk(command: Any, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
        yield path
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            yield from walk(sub, (*path, name))

    for path in walk(cli, ()):
        shown = CliRunner().invoke(cli, [*path, "--help"], env={"NO_COLOR": "1", "COLUMNS": "200"})
        assert shown.exit_code == 0, (path, shown.output)
        assert "``" not in shown.output, f"airlift {' '.join(path)} --help shows raw markup:\n{shown.output}"
