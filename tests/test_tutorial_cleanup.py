"""The tutorial script's cleanup without servers: signals after the first never interrupt the stop,
and leftovers recorded in the state file are found on start and stopped by ``--stop``."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "tutorial.py"


@pytest.fixture(scope="module")
def tutorial() -> Any:
    from airlift_testing.tutorial import load_tutorial_script

    return load_tutorial_script()


@pytest.fixture
def restore_signals() -> Iterator[None]:
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.mark.usefixtures("restore_signals")
@pytest.mark.parametrize("first", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_only_the_first_signal_interrupts(tutorial: Any, first: int) -> None:
    console = tutorial.Console(io.StringIO())
    guard = tutorial.SignalGuard(console)
    guard.install()
    def signal_self() -> None:
        os.kill(os.getpid(), first)
        time.sleep(1)  # the handler runs at the next bytecode, well before this ends

    with pytest.raises(tutorial.StopRequested):
        signal_self()
    output = console.stream
    for again in (signal.SIGINT, signal.SIGINT, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        os.kill(os.getpid(), again)  # arrives "during the stop": must not raise
        time.sleep(0.05)
    assert guard.received == first
    if first != signal.SIGHUP:  # after SIGHUP the terminal is gone: nothing is printed
        assert output.getvalue().count("already stopping, please wait") == 4


@pytest.fixture
def leftover(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A process group recorded in a state file whose owner is gone, as after ``kill -9`` of the script."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    state = {"pid": 999999999, "airflow": "3", "step": "peer", "process_groups": [
        {"name": "Airflow", "pgid": process.pid, "executable": sys.executable, "url": "http://127.0.0.1:1"}]}
    (tmp_path / "tutorial.json").write_text(json.dumps(state))
    yield tmp_path, process.pid
    if process.poll() is None:
        process.kill()
    process.wait()


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          timeout=120, env={**os.environ, "AIRLIFT_REPO_ROOT": str(ROOT)})


def test_start_names_leftovers_and_how_to_stop_them(leftover: tuple[Path, int], tutorial: Any) -> None:
    state_dir, pgid = leftover
    done = _run("--state-dir", str(state_dir), "--airflow-port", "1", "--dagster-port", "2")
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"Airflow (process group {pgid}, http://127.0.0.1:1)" in done.stdout
    assert "uv run scripts/tutorial.py --stop" in done.stdout
    assert tutorial.group_alive(pgid)


def test_stop_stops_leftovers_and_removes_the_state_file(leftover: tuple[Path, int], tutorial: Any) -> None:
    state_dir, pgid = leftover
    done = _run("--state-dir", str(state_dir), "--stop")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Stopping Airflow (process group {pgid})" in done.stdout
    assert not tutorial.group_alive(pgid)
    assert not (state_dir / "tutorial.json").exists()
    again = _run("--state-dir", str(state_dir), "--stop")
    assert "Nothing to stop" in again.stdout


def test_a_reused_process_group_id_is_not_ours(leftover: tuple[Path, int], tutorial: Any) -> None:
    state_dir, _ = leftover
    state = json.loads((state_dir / "tutorial.json").read_text())
    state["process_groups"][0]["executable"] = "/nonexistent/venv"
    owner, groups = tutorial.live_leftovers(state)
    assert owner is None and groups == []


def test_port_taken_by_another_program_says_so(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = _run("--state-dir", str(tmp_path), "--airflow-port", str(port), "--dagster-port", "2")
    assert done.returncode == 2
    assert f"port {port} on 127.0.0.1, wanted for Airflow, is in use by another program" in done.stdout
    assert f"--airflow-port {port + 1}" in done.stdout


def _only_python(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, version: str) -> None:
    """A machine whose only Python is ``version`` (no pyenv, no uv-managed Pythons)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / f"python{version}").symlink_to(sys.executable)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "no-pyenv"))


def test_each_side_picks_a_python_it_supports(tutorial: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    _only_python(monkeypatch, tmp_path, here)
    console = tutorial.Console(io.StringIO())
    for side in ("airflow2", "airflow3", "dagster"):
        if here in tutorial.SUPPORTED_PYTHONS[side]:
            assert tutorial.pick_python(side, console) == here


def test_no_supported_python_says_which_are_needed(tutorial: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _only_python(monkeypatch, tmp_path, "3.9")
    monkeypatch.setitem(tutorial.SUPPORTED_PYTHONS, "airflow2", ("3.98", "3.99"))  # not the one running this test
    with pytest.raises(tutorial.TutorialError, match=r"the Airflow 2 side needs Python 3\.98 or 3\.99, and none is on PATH"):
        tutorial.pick_python("airflow2", tutorial.Console(io.StringIO()))


def test_the_migrate_banner_gives_the_airlift_commands_not_a_hand_edit(tutorial: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse
    from types import SimpleNamespace

    monkeypatch.chdir(ROOT)
    airflow = SimpleNamespace(url="http://127.0.0.1:8080", generation=3, version="3.3.2", log_path=Path("airflow.log"))
    dagster = SimpleNamespace(url="http://127.0.0.1:3000", venv=ROOT / ".airlift-cache" / "venvs" / "dagster-x", home=Path("home"))
    out = io.StringIO()
    tutorial.banner(argparse.Namespace(step="migrate", airflow="3", host="127.0.0.1", push=False), airflow, dagster, tutorial.Console(out))
    shown = out.getvalue()
    airlift = ".airlift-cache/venvs/dagster-x/bin/airlift"
    assert "export AIRLIFT_AIRFLOW_URL=http://127.0.0.1:8080 AIRLIFT_AIRFLOW_USERNAME=admin AIRLIFT_AIRFLOW_PASSWORD=admin" in shown
    assert f"{airlift} state set -d examples/tutorial-example/airflow_dags rebuild_customers_list load_raw_customers --migrated" in shown
    assert f"{airlift} state rollback -d examples/tutorial-example/airflow_dags rebuild_customers_list load_raw_customers" in shown
    assert "Edit " not in shown and "`migrated: true`" not in shown


def _relay_like(state_dir: Path) -> subprocess.Popen[bytes]:
    """A process as a push relay started by a task of the tutorial with ``state_dir``: in its own session,
    the push job and the tutorial's state folder in its environment."""
    env = {**os.environ, "AIRLIFT_PUSH_JOB": "{}", "AIRLIFT_TUTORIAL_STATE_DIR": str(state_dir.resolve())}
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], env=env, start_new_session=True)


def test_stop_stops_the_push_relays_of_this_tutorial_only(tmp_path: Path, tutorial: Any) -> None:
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    relay, other = _relay_like(ours), _relay_like(theirs)
    try:
        deadline = time.monotonic() + 30
        while tutorial.tutorial_relays(ours) != [relay.pid]:  # the environment is readable once exec is done
            assert time.monotonic() < deadline, tutorial.tutorial_relays(ours)
            time.sleep(0.1)
        done = _run("--state-dir", str(ours), "--stop")
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"Stopping the push relay (pid {relay.pid})" in done.stdout and "Stopped." in done.stdout
        assert relay.wait(timeout=30) is not None
        assert other.poll() is None and tutorial.tutorial_relays(theirs) == [other.pid]
        again = _run("--state-dir", str(ours), "--stop")
        assert "Nothing to stop" in again.stdout and "no push relay of it runs" in again.stdout
    finally:
        for process in (relay, other):
            if process.poll() is None:
                process.kill()
            process.wait()


def test_exported_airlift_settings_reach_the_tutorials_airflow(tutorial: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__AIRLIFT__MAX_AGE", "5")
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "CeleryExecutor")  # not the tutorial's to take
    assert tutorial.airflow_settings(False) == {"AIRFLOW__AIRLIFT__MAX_AGE": "5"}
    assert tutorial.airflow_settings(True) == {"AIRFLOW__AIRLIFT__MAX_AGE": "5", "AIRFLOW__AIRLIFT__PUSH_ENABLED": "True"}


def test_the_dg_project_names_the_location_the_guides_dagster_dev_command_loads() -> None:
    """Dagster warns at every load when ``code_location_name`` differs from the location ``dagster dev -m`` registers."""
    import re

    import tomllib

    command = re.search(r"^dagster dev -m (\S+)$", (ROOT / "docs" / "guide.md").read_text(), re.M)
    assert command, "the guide's `dagster dev -m` command of the YAML peer step"
    project = tomllib.loads((ROOT / "examples" / "tutorial-example" / "pyproject.toml").read_text())["tool"]["dg"]["project"]
    assert project["code_location_name"] == command.group(1)
    assert project["code_location_target_module"] == command.group(1)


def test_each_feature_example_is_served_from_its_folder(tutorial: Any, tmp_path: Path) -> None:
    for example, dag_ids in tutorial.FEATURE_EXAMPLES.items():
        folder = ROOT / "examples" / example
        sources = "".join(p.read_text() for p in (folder / "airflow_dags").glob("*.py"))
        assert all(f'DAG("{dag_id}"' in sources for dag_id in dag_ids), f"{example}: the DAGs the script waits for"
        assert (folder / "README.md").is_file()
        workspace = tutorial.write_workspace(tmp_path, "peer", example).read_text()
        assert f"relative_path: {folder / 'defs.py'}" in workspace
        assert f"location_name: {example.replace('-', '_')}_example" in workspace
    assert "module_name: tutorial_example.dagster_defs.observe" in tutorial.write_workspace(tmp_path, "observe").read_text()


def test_an_example_takes_no_step(capsys: pytest.CaptureFixture[str]) -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), "--example", "datasets", "--step", "observe"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "testing" / "airlift-testing" / "src")})
    assert done.returncode == 2
    assert "--example datasets serves examples/datasets/defs.py: it takes no --step" in done.stderr
