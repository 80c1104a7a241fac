# /// script
# requires-python = ">=3.10"
# dependencies = ["requests>=2.28", "filelock>=3.12"]
# ///
"""Start the Airlift tutorial: a real Airflow with the tutorial DAG, and Dagster for one guide step.

    uv run scripts/tutorial.py                      # Airflow 3, step "peer"
    uv run scripts/tutorial.py --airflow 2 --step observe
    uv run scripts/tutorial.py --push               # push mode on: Airflow reports each task to Dagster at once
    uv run scripts/tutorial.py --example datasets   # a feature example (examples/datasets, partitions, mirror-runs)
    uv run scripts/tutorial.py --stop               # stop servers an earlier run left behind
    uv run scripts/tutorial.py --check              # start, print the URLs, stop

Airflow: http://127.0.0.1:8080 (admin/admin). Dagster: http://127.0.0.1:3000. Ctrl-C stops both
(pressing it again while they stop is harmless; so are closing the terminal and SIGTERM). Each side
runs from its own virtual environment, built once with uv and cached in .airlift-cache/, with any
Python 3.10-3.13 found on PATH (Airflow 2.11 needs 3.10-3.12). Every server runs in its own process
group, recorded in examples/tutorial-example/.tutorial/tutorial.json until it is stopped, so the next
start can find and stop leftovers of a run that was killed. Exported ``AIRFLOW__AIRLIFT__*`` settings
(push mode's ``[airlift]`` section) reach the tutorial's Airflow; with push on, stopping the tutorial also
stops the push relay its tasks started (found by the tutorial's state folder in its environment).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "testing" / "airlift-testing" / "src"))
os.environ.setdefault("AIRLIFT_REPO_ROOT", str(ROOT))

from airlift_testing.airflow import AirflowServer, airflow_venv  # noqa: E402
from airlift_testing.dagster import DagsterServer, dagster_venv  # noqa: E402
from airlift_testing.procs import ServerStartError, group_alive, link_host, stop_group  # noqa: E402
from airlift_testing.venvs import VenvBuildError  # noqa: E402
from airlift_testing.versions import AIRFLOW_VERSIONS, find_python  # noqa: E402

EXAMPLE = ROOT / "examples" / "tutorial-example"
EXAMPLE_REL = "examples/tutorial-example"
#: Where the decommission step's files go (the folder tutorial_example/dagster_defs/decommission.py loads).
DECOMMISSIONED_REL = f"{EXAMPLE_REL}/tutorial_example/dagster_defs/decommissioned"
PACKAGES = ROOT / "packages"
DAG_ID = "rebuild_customers_list"
STEPS = ("peer", "observe", "observe_with_factory", "migrate", "decommission")
#: One code location name for every step: the sensor keeps its cursor when the step changes, so a
#: new step never records the Airflow history again.
LOCATION_NAME = "tutorial_example"
AIRFLOW_SIDE = [PACKAGES / "airlift-protocol", PACKAGES / "airlift-airflow", EXAMPLE]
AIRFLOW_REQUIREMENTS = ["dbt-core>=1.8,<1.12", "dbt-duckdb>=1.8", "duckdb>=1.0"]
DAGSTER_SIDE = [PACKAGES / p for p in ("airlift-protocol", "airlift-client", "airlift-dagster", "airlift-dbt")] + [EXAMPLE]
#: Pythons each side supports, in the order tried (the tested one first).
SUPPORTED_PYTHONS = {
    "airflow2": ("3.11", "3.12", "3.10"),
    "airflow3": ("3.11", "3.12", "3.13", "3.10"),
    "dagster": ("3.11", "3.12", "3.13", "3.10"),
}
#: The feature examples ``--example`` serves instead of the tutorial DAG: examples/<name> (its airflow_dags/ and
#: defs.py), and the DAGs Airflow must list before they are unpaused.
FEATURE_EXAMPLES = {
    "datasets": ("publish_orders", "build_orders_report"),
    "partitions": ("daily_sales",),
    "mirror-runs": ("nightly_export",),
}
STATE_FILE_NAME = "tutorial.json"
#: In the tutorial's Airflow environment, so in every push relay its tasks start: the state folder, which
#: tells the tutorial's relays from any other.
RELAY_MARKER_ENV = "AIRLIFT_TUTORIAL_STATE_DIR"
#: Where a push relay keeps its job (airlift_airflow.relay.JOB_ENV).
PUSH_JOB_ENV = "AIRLIFT_PUSH_JOB"
#: The relay's log (airlift_airflow.relay.relay_dir, push_status.LOG_FILE_NAME).
PUSH_LOG_HINT = f"{tempfile.gettempdir()}/airlift-push-{os.getuid()}/push-relay.log"
_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class TutorialError(Exception):
    """A problem the user can fix; the message says how."""


# ---------------------------------------------------------------------------------------------- output
class Console:
    """Prints progress; never raises (after SIGHUP the terminal is gone: output goes to the log only)."""

    def __init__(self, stream: TextIO, log_path: Path | None = None) -> None:
        self.stream = stream
        self.log_path = log_path
        self.lock = threading.Lock()
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        encoding = (getattr(stream, "encoding", None) or "").lower()
        self.fancy = self.tty and "utf" in encoding
        self.started = time.monotonic()

    def write(self, text: str, *, newline: bool = True) -> None:
        with self.lock:
            if self.stream is not None:
                try:
                    self.stream.write(text + ("\n" if newline else ""))
                    self.stream.flush()
                except (OSError, ValueError):
                    self.stream = None  # type: ignore[assignment]
            if self.log_path is not None and newline:
                with contextlib.suppress(OSError), self.log_path.open("a", encoding="utf-8") as log:
                    log.write(text.lstrip("\r") + "\n")

    def say(self, text: str) -> None:
        self.write(text)

    @contextlib.contextmanager
    def step(self, title: str) -> Iterator[Callable[[str], None]]:
        """``[  3.2s] title ...`` with a spinner and a running clock on a terminal; the result line
        ends with the step's own duration. The yielded callable sets a note shown after the title."""
        start = time.monotonic()
        note = {"text": ""}
        stop = threading.Event()
        frames = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏" if self.fancy else "|/-\\"

        def spin() -> None:
            i = 0
            while not stop.wait(0.12):
                self.write(f"\r  {frames[i % len(frames)]} {title} {note['text']} {time.monotonic() - start:5.1f}s ", newline=False)
                i += 1

        spinner = threading.Thread(target=spin, daemon=True) if self.tty else None
        if spinner is None:
            self.say(f"[{self.elapsed()}] {title} ...")
        else:
            spinner.start()
        outcome = "done"
        try:
            yield lambda text: note.__setitem__("text", text)
        except KeyboardInterrupt:
            outcome = "interrupted"
            raise
        except BaseException:
            outcome = "FAILED"
            raise
        finally:
            stop.set()
            if spinner is not None:
                spinner.join()
                self.write("\r" + " " * 100 + "\r", newline=False)
            mark = {"done": "✓" if self.fancy else "ok", "interrupted": "-", "FAILED": "✗" if self.fancy else "!!"}[outcome]
            extra = f" {note['text']}" if note["text"] else ""
            self.say(f"[{self.elapsed()}] {mark} {title}{extra} ({outcome}, {time.monotonic() - start:.1f}s)")

    def elapsed(self) -> str:
        return f"{time.monotonic() - self.started:6.1f}s"


# --------------------------------------------------------------------------------------------- signals
class StopRequested(KeyboardInterrupt):
    """Raised once, in the main thread, by the first SIGINT/SIGTERM/SIGHUP."""


class SignalGuard:
    """The first SIGINT, SIGTERM or SIGHUP stops the tutorial; later ones only say it is stopping, so
    any number of Ctrl-C, a closed terminal or a signalled process group never interrupt the stop."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.received: int | None = None

    def install(self) -> None:
        for sig in _SIGNALS:
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        if signum == signal.SIGHUP:
            self.console.stream = None  # type: ignore[assignment]  # the terminal is gone
        if self.received is None:
            self.received = signum
            raise StopRequested(signal.Signals(signum).name)
        self.console.say(f"({signal.Signals(signum).name} received: already stopping, please wait)")


# ------------------------------------------------------------------------------------ process groups
def command_of(pid: int) -> str:
    """The command line of ``pid`` ('' if it is gone)."""
    done = subprocess.run(["ps", "-o", "args=", "-p", str(pid)], capture_output=True, text=True)
    return done.stdout.strip()


# ------------------------------------------------------------------------------------------ state file
class StateFile:
    """``tutorial.json``: who runs the tutorial and which process groups it started (written as each
    server starts, removed once they are stopped)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {}

    def read(self) -> dict[str, Any] | None:
        try:
            return dict(json.loads(self.path.read_text()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}

    def write(self, **values: Any) -> None:
        self.data.update(values)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        tmp.replace(self.path)

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def live_leftovers(state: dict[str, Any]) -> tuple[int | None, list[dict[str, Any]]]:
    """(pid of a tutorial still running, process groups still alive whose leader is the recorded one)."""
    owner = state.get("pid")
    owner_alive = isinstance(owner, int) and owner != os.getpid() and "tutorial.py" in command_of(owner)
    groups = []
    for group in state.get("process_groups", []):
        pgid = int(group.get("pgid", 0))
        if pgid > 0 and group_alive(pgid):
            leader = command_of(pgid)
            if not leader or group.get("executable", "") in leader:
                groups.append(group)
    return (owner if owner_alive else None), groups


def describe(groups: Sequence[dict[str, Any]]) -> str:
    return ", ".join(f"{g['name']} (process group {g['pgid']}{', ' + g['url'] if g.get('url') else ''})" for g in groups)


def stop_leftovers(state_file: StateFile, console: Console) -> bool:
    """Stop a running tutorial and every recorded process group still alive; True if anything was."""
    state = state_file.read()
    if state is None:
        return False
    owner, groups = live_leftovers(state)
    if owner is not None:
        console.say(f"Stopping the tutorial running as pid {owner} ...")
        with contextlib.suppress(ProcessLookupError):
            os.kill(owner, signal.SIGTERM)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and "tutorial.py" in command_of(owner):
            time.sleep(0.3)
        owner, groups = live_leftovers(state)
    for group in groups:
        console.say(f"Stopping {group['name']} (process group {group['pgid']}) ...")
        stop_group(int(group["pgid"]), timeout=20.0)
    state_file.remove()
    return bool(groups) or owner is not None or bool(state.get("process_groups"))


def _environ_of(pid: int) -> dict[str, str] | None:
    """The environment ``pid`` started with (``None``: gone or not ours to read)."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    pairs = (entry.split(b"=", 1) for entry in raw.split(b"\0") if b"=" in entry)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}


def tutorial_relays(state_root: Path) -> list[int]:
    """Pids of the push relays (and one-shot senders) that tasks of the tutorial with this state
    folder started: processes with a push job whose environment names the folder. Relays start in a
    session of their own, so stopping Airflow's process group does not reach them."""
    marker = str(state_root.resolve())
    found: list[int] = []
    if Path("/proc/self/environ").exists():
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != os.getpid():
                env = _environ_of(int(entry.name))
                if env is not None and PUSH_JOB_ENV in env and env.get(RELAY_MARKER_ENV) == marker:
                    found.append(int(entry.name))
        return sorted(found)
    # no /proc (macOS): ps shows each process's environment after its command line
    done = subprocess.run(["ps", "eww", "-ax", "-o", "pid=,command="], capture_output=True, text=True)
    for line in done.stdout.splitlines():
        pid, _, command = line.strip().partition(" ")
        if pid.isdigit() and int(pid) != os.getpid() and f" {PUSH_JOB_ENV}=" in command and f" {RELAY_MARKER_ENV}={marker}" in command:
            found.append(int(pid))
    return sorted(found)


def stop_relays(state_root: Path, console: Console) -> int:
    """Stop the tutorial's push relays; how many there were."""
    relays = tutorial_relays(state_root)
    for pid in relays:
        console.say(f"Stopping the push relay (pid {pid}) ...")
        try:
            leader = os.getpgid(pid) == pid
        except ProcessLookupError:
            continue
        if leader:
            stop_group(pid, timeout=10.0)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    return len(relays)


def airflow_settings(push: bool) -> dict[str, str]:
    """The ``[airlift]`` settings of the tutorial's Airflow: the exported ``AIRFLOW__AIRLIFT__*`` variables
    (the server otherwise starts without ``AIRFLOW_*`` variables of the caller), push mode on with ``push``."""
    settings = {k: v for k, v in os.environ.items() if k.startswith("AIRFLOW__AIRLIFT__")}
    if push:
        settings["AIRFLOW__AIRLIFT__PUSH_ENABLED"] = "True"
    return settings


def ask(question: str) -> bool:
    if not sys.stdin.isatty():
        return False
    try:
        return input(question).strip().lower() in ("", "y", "yes")
    except EOFError:
        return False


# --------------------------------------------------------------------------------------------- pythons
def pick_python(side: str, console: Console) -> str:
    """An interpreter path for ``side``: a supported Python on PATH (or pyenv), else one uv fetches."""
    supported = SUPPORTED_PYTHONS[side]
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    for version in supported:
        with contextlib.suppress(RuntimeError):
            find_python(version)
            return version  # a version the venv cache shares with the test sessions
    if here in supported:  # the interpreter uv runs this script with (its base, not uv's script venv)
        base = Path(sys.base_prefix) / "bin" / f"python{here}"
        return str(base if base.exists() else Path(sys.executable).resolve())
    uv = shutil.which("uv")
    if uv:
        for version in supported:  # Pythons uv installed earlier (not on PATH)
            done = subprocess.run([uv, "python", "find", "--no-python-downloads", version], capture_output=True, text=True)
            if done.returncode == 0 and done.stdout.strip():
                return done.stdout.strip()
        if os.environ.get("UV_PYTHON_DOWNLOADS", "").lower() != "never":
            console.say(f"No Python {', '.join(supported)} found; asking uv to install Python {supported[0]} ...")
            subprocess.run([uv, "python", "install", supported[0]], check=False)
            done = subprocess.run([uv, "python", "find", "--no-python-downloads", supported[0]], capture_output=True, text=True)
            if done.returncode == 0 and done.stdout.strip():
                return done.stdout.strip()
    raise TutorialError(
        f"the {side.replace('airflow', 'Airflow ')} side needs Python {' or '.join(sorted(supported))}, and none is on PATH "
        f"(this script runs on Python {here}). Install one (e.g. `uv python install {supported[0]}` or your OS package), "
        "or unset UV_PYTHON_DOWNLOADS=never so uv can fetch it."
    )


# ------------------------------------------------------------------------------------------- tutorial
def tutorial_env(state_dir: Path, airflow_url: str, dagster_url: str) -> dict[str, str]:
    """Environment both sides share: where the warehouse is and how they reach each other."""
    return {
        "TUTORIAL_DUCKDB_PATH": str(state_dir / "jaffle_shop.duckdb"),
        "TUTORIAL_EXPORT_DIR": str(state_dir),
        "TUTORIAL_AIRFLOW_URL": airflow_url,
        "EXAMPLE_AIRFLOW_URL": airflow_url,
        "AIRFLOW_CONN_DAGSTER_DEFAULT": dagster_url,
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }


def write_workspace(state_dir: Path, step: str, example: str | None = None) -> Path:
    """A workspace file loading the step's definitions under the one location name (a feature example:
    its ``defs.py``, in a location named after it)."""
    path = state_dir / "workspace.yaml"
    if example is not None:
        path.write_text(
            "load_from:\n  - python_file:\n"
            f"      relative_path: {ROOT / 'examples' / example / 'defs.py'}\n"
            f"      location_name: {example.replace('-', '_')}_example\n"
        )
        return path
    path.write_text(
        "load_from:\n  - python_module:\n"
        f"      module_name: tutorial_example.dagster_defs.{step}\n"
        f"      location_name: {LOCATION_NAME}\n"
    )
    return path


def port_in_use(host: str, port: int) -> bool:
    target = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)
    family = socket.AF_INET6 if ":" in target else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        return sock.connect_ex((target, port)) == 0


NEXT = {
    "peer": (
        "tutorial_example/dagster_defs/peer.py",
        "Read {defs}: one call peers the whole Airflow instance.",
        "uv run scripts/tutorial.py{flags} --step observe",
    ),
    "observe": (
        "tutorial_example/dagster_defs/observe.py",
        "Read {defs}: task_defs maps each task to the assets it builds (dbt models via dbt_defs).",
        "uv run scripts/tutorial.py{flags} --step observe_with_factory",
    ),
    "observe_with_factory": (
        "tutorial_example/dagster_defs/observe_with_factory.py",
        "Read {defs} and tutorial_example/dagster_defs/factories.py: the AssetSpec comes from the operator's arguments.",
        "uv run scripts/tutorial.py{flags} --step migrate",
    ),
    "migrate": (
        "tutorial_example/dagster_defs/migrate.py",
        "Migrate load_raw_customers with the `airlift` command of the Dagster environment, which checks the task in\n"
        "      Airflow and edits airflow_dags/migration_state/rebuild_customers_list.yaml:\n"
        "        export AIRLIFT_AIRFLOW_URL={airflow_url} AIRLIFT_AIRFLOW_USERNAME=admin AIRLIFT_AIRFLOW_PASSWORD=admin\n"
        "        {airlift} state set -d airflow_dags rebuild_customers_list load_raw_customers --migrated\n"
        "      wait ~10 s for Airflow to re-parse, trigger again: the task now runs in Dagster. Roll it back with\n"
        "        {airlift} state rollback -d airflow_dags rebuild_customers_list load_raw_customers",
        "uv run scripts/tutorial.py{flags} --step decommission",
    ),
    "decommission": (
        "tutorial_example/dagster_defs/decommission.py",
        "Migrate every task, wait ~10 s for Airflow to re-parse, then hand the DAG to Dagster (--dry-run shows the file\n"
        "      and the pause first):\n"
        "        export AIRLIFT_AIRFLOW_URL={airflow_url} AIRLIFT_AIRFLOW_USERNAME=admin AIRLIFT_AIRFLOW_PASSWORD=admin\n"
        "        {airlift} state set -d airflow_dags rebuild_customers_list load_raw_customers run_dbt_model export_customers --migrated\n"
        "        {airlift} decommission -d airflow_dags --instance airflow_instance_one --out-dir {decommissioned} rebuild_customers_list --dry-run\n"
        "        {airlift} decommission -d airflow_dags --instance airflow_instance_one --out-dir {decommissioned} rebuild_customers_list\n"
        "      Airflow pauses the DAG; reload the code location in Dagster (Deployment > Reload): the DAG has no schedule,\n"
        "      so Dagster gets the job rebuild_customers_list_decommissioned only (Jobs > it > Launchpad > Launch run builds\n"
        "      the DAG's assets; their history and the DAG asset's stay). Undo with\n"
        "        {airlift} decommission --undo -d airflow_dags --instance airflow_instance_one --out-dir {decommissioned} rebuild_customers_list",
        "",
    ),
}


def airlift_command(dagster: DagsterServer) -> str:
    """The ``airlift`` command of the tutorial's Dagster environment (relative to the working folder)."""
    executable = Path(dagster.venv or "", "bin", "airlift")
    with contextlib.suppress(ValueError):
        executable = executable.relative_to(Path.cwd())
    return str(executable)


def example_banner(args: argparse.Namespace, airflow: AirflowServer, dagster: DagsterServer, console: Console) -> None:
    dags = ", ".join(FEATURE_EXAMPLES[args.example])
    console.say("\n".join([
        "",
        f"Airlift example {args.example!r} is running (Airflow {airflow.version}, Dagster code location "
        f"{args.example.replace('-', '_')}_example):",
        f"  Airflow  {airflow.url}/dags   (user admin, password admin; DAGs {dags}, unpaused)",
        f"  Dagster  {dagster.url}/asset-groups   (global asset lineage)",
        "",
        f"What to do now: follow examples/{args.example}/README.md (its DAGs: examples/{args.example}/airflow_dags/, "
        f"its definitions: examples/{args.example}/defs.py).",
        "",
        f"Logs: {airflow.log_path}, {dagster.home / 'webserver.log'}, {dagster.home / 'daemon.log'}",
        "Press Ctrl-C to stop both servers.",
    ]))


def banner(args: argparse.Namespace, airflow: AirflowServer, dagster: DagsterServer, console: Console) -> None:
    if getattr(args, "example", None):
        example_banner(args, airflow, dagster, console)
        return
    defs, what, next_command = NEXT[args.step]
    trigger = "the Trigger button (top right)" if airflow.generation == 3 else "the ▶ (Trigger DAG) button"
    flags = "" if args.airflow == "3" else " --airflow 2"
    if args.host != "127.0.0.1":
        flags += f" --host {args.host}"
    if args.push:
        flags += " --push"
    lines = [
        "",
        f"Airlift tutorial, step {args.step!r}, is running (Airflow {airflow.version}, Dagster code location {LOCATION_NAME!r}):",
        f"  Airflow  {airflow.url}/dags/{DAG_ID}   (user admin, password admin)",
        f"  Dagster  {dagster.url}/asset-groups   (global asset lineage)",
        "",
        "What to do now:",
        f"  1. In Airflow, open {DAG_ID} (already unpaused) and press {trigger}.",
        "  2. In Dagster, within a sensor interval (30 s) plus its settle time (10 s) and the tick's own time of the run\n"
        "     finishing (sensor airflow_instance_one__airflow_sensor), the assets are materialized." if not args.push else
        "  2. In Dagster, each task's assets are materialized within seconds of the task (push mode; the relay's log is\n"
        f"     {PUSH_LOG_HINT}); the sensor airflow_instance_one__airflow_sensor records what push missed.",
        f"  3. {what.format(defs=f'{EXAMPLE_REL}/{defs}', airlift=airlift_command(dagster), airflow_url=airflow.url, decommissioned=DECOMMISSIONED_REL)}".replace(
            " airflow_dags", f" {EXAMPLE_REL}/airflow_dags"),
    ]
    if next_command:
        lines.append(f"  4. Next step: press Ctrl-C, then run  {next_command.format(flags=flags)}")
    else:
        lines.append("  4. That is the whole guide. Press Ctrl-C to stop; `git checkout` the YAML file to reset it.")
    lines += [
        "",
        f"Logs: {airflow.log_path}, {dagster.home / 'webserver.log'}, {dagster.home / 'daemon.log'}",
        "Press Ctrl-C to stop both servers.",
    ]
    console.say("\n".join(lines))


def run(args: argparse.Namespace, console: Console, guard: SignalGuard) -> int:
    state_root = Path(args.state_dir).resolve()
    state_file = StateFile(state_root / STATE_FILE_NAME)
    if args.stop:
        stopped = stop_leftovers(state_file, console)
        relays = stop_relays(state_root, console)
        console.say("Stopped." if stopped or relays else
                    f"Nothing to stop ({state_file.path} lists no running server, and no push relay of it runs).")
        return 0
    previous = state_file.read()
    if previous is not None:
        owner, groups = live_leftovers(previous)
        if owner is not None or groups:
            if owner is not None:
                what = f"another tutorial is running (pid {owner}, Airflow {previous.get('airflow')}, step {previous.get('step')})"
                how = "press Ctrl-C in its terminal, or run `uv run scripts/tutorial.py --stop`, then start again"
            else:
                what = f"servers left by an earlier tutorial are still running: {describe(groups)}"
                how = "stop them with `uv run scripts/tutorial.py --stop`, then start again"
            if sys.stdin.isatty():
                console.say(f"{what[0].upper()}{what[1:]}.")
            if ask("Stop them now? [Y/n] "):
                stop_leftovers(state_file, console)
            else:
                raise TutorialError(f"{what}; {how}")
        else:
            state_file.remove()
    for port, what, flag in ((args.airflow_port, "Airflow", "--airflow-port"), (args.dagster_port, "Dagster", "--dagster-port")):
        if port_in_use(args.host, port):
            raise TutorialError(
                f"port {port} on {args.host}, wanted for {what}, is in use by another program (not by a tutorial: "
                f"{state_file.path} lists none running). Stop that program, or choose another port with {flag} {port + 1}."
            )

    # a feature example keeps its own databases: its DAGs' history never mixes with the tutorial's
    state_dir = state_root / (f"{args.example}-airflow{args.airflow}" if args.example else f"airflow{args.airflow}")
    state_dir.mkdir(parents=True, exist_ok=True)
    console.log_path = state_dir / "tutorial.log"
    host = link_host(args.host)
    env = tutorial_env(state_dir, f"http://{host}:{args.airflow_port}", f"http://{host}:{args.dagster_port}")
    stop_relays(state_root, console)  # a relay of a killed earlier run would deliver to this run's Dagster
    state_file.write(pid=os.getpid(), airflow=args.airflow, step=args.step, host=args.host, process_groups=[],
                     started=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    try:
        return start_and_wait(args, console, guard, state_file, state_dir, env, state_root)
    finally:
        if not live_leftovers(state_file.read() or {})[1]:  # keep the record of anything still running
            state_file.remove()


def start_and_wait(args: argparse.Namespace, console: Console, guard: SignalGuard, state_file: StateFile,
                   state_dir: Path, env: dict[str, str], state_root: Path) -> int:
    """Build the environments, start both servers, print the banner, wait for a signal; always stops
    what it started."""
    with console.step("Choosing Python for each side") as note:
        airflow_python = pick_python(f"airflow{args.airflow}", console)
        dagster_python = pick_python("dagster", console)
        note(f"(Airflow side: Python {airflow_python}, Dagster side: Python {dagster_python})")
    with console.step("Dagster environment (uv; minutes the first time)"):
        venv = dagster_venv(DAGSTER_SIDE, python=dagster_python)
    with console.step("dbt parse (the manifest Dagster reads)"):
        project = EXAMPLE / "dbt_project"
        parsed = subprocess.run([str(venv / "bin" / "dbt"), "parse", "--project-dir", str(project), "--profiles-dir", str(project)],
                                env={**os.environ, **env}, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if parsed.returncode != 0:
            raise TutorialError(f"`dbt parse` failed in {project}:\n{(parsed.stdout + parsed.stderr)[-3000:]}")
    with console.step(f"Airflow {AIRFLOW_VERSIONS[args.airflow]} environment (uv; minutes the first time)"):
        airflow_venv(args.airflow, AIRFLOW_SIDE, AIRFLOW_REQUIREMENTS, python=airflow_python)

    airflow = AirflowServer(
        version=args.airflow, dags_folder=ROOT / "examples" / args.example / "airflow_dags" if args.example else EXAMPLE / "airflow_dags",
        home=state_dir / "airflow-home",
        extra_packages=AIRFLOW_SIDE, extra_requirements=AIRFLOW_REQUIREMENTS, port=args.airflow_port,
        extra_env={**env, **airflow_settings(args.push), RELAY_MARKER_ENV: str(state_root.resolve())},
        python=airflow_python, host=args.host,
    )
    dagster = DagsterServer(
        workspace_file=write_workspace(state_dir, args.step, args.example), home=state_dir / "dagster-home",
        extra_packages=DAGSTER_SIDE, extra_env=env, port=args.dagster_port, python=dagster_python, host=args.host,
    )
    recorder = GroupRecorder(state_file, airflow, dagster)
    recorder.start()
    try:
        with console.step(f"Starting Airflow on {airflow.url} (about a minute; a new database takes longer)"):
            airflow.start()
        dag_ids = FEATURE_EXAMPLES[args.example] if args.example else (DAG_ID,)
        with console.step(f"Waiting for DAG {', '.join(dag_ids)} to be parsed, then unpausing {'it' if len(dag_ids) == 1 else 'them'}"):
            airflow.wait_for_dags(list(dag_ids))
            for dag_id in dag_ids:
                airflow.unpause(dag_id)
        with console.step(f"Starting Dagster ({f'example {args.example}' if args.example else args.step}) on {dagster.url}"):
            dagster.start()
        recorder.record()
        banner(args, airflow, dagster, console)
        if args.check:
            return 0
        while True:
            time.sleep(1)
            if not airflow.process_group_ids():
                raise TutorialError(f"Airflow stopped on its own; see {airflow.log_path}")
            if len(dagster.process_group_ids()) < 2:
                raise TutorialError(f"Dagster stopped on its own; see {dagster.home / 'webserver.log'} and daemon.log")
    except StopRequested as e:
        console.say(f"\n{e} received.")
        return 0 if guard.received != signal.SIGHUP else 129
    finally:
        # Further signals only print (SignalGuard): nothing interrupts this block.
        if guard.received is None:
            guard.received = -1
        with console.step("Stopping Dagster and Airflow"):
            recorder.stop()
            dagster.stop()
            airflow.stop()
            for group in recorder.known:  # whatever a server's own stop left in its process group
                if group_alive(group["pgid"]):
                    stop_group(group["pgid"], timeout=5)
            stop_relays(state_root, console)  # after Airflow: no task starts another one
            if still := [g for g in recorder.known if group_alive(g["pgid"])]:
                raise TutorialError(f"could not stop {describe(still)}; they stay listed in {state_file.path}")


class GroupRecorder(threading.Thread):
    """Writes the servers' process groups to the state file as soon as they exist (a server's start
    blocks until it is healthy; a kill during that time must still leave a record)."""

    def __init__(self, state_file: StateFile, airflow: AirflowServer, dagster: DagsterServer) -> None:
        super().__init__(daemon=True)
        self.state_file = state_file
        self.airflow = airflow
        self.dagster = dagster
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.known: list[dict[str, Any]] = []

    def run(self) -> None:
        while not self.done.wait(0.2):
            self.record()

    def record(self) -> None:
        with self.lock:
            groups = [("Airflow", self.airflow, pgid) for pgid in self.airflow.process_group_ids()]
            groups += [("Dagster " + ("webserver", "daemon")[i], self.dagster, pgid)
                       for i, pgid in enumerate(self.dagster.process_group_ids())]
            # Keep groups recorded earlier: a group stays listed until it is stopped.
            merged = {g["pgid"]: g for g in self.known}
            for name, server, pgid in groups:
                merged.setdefault(pgid, {"name": name, "pgid": pgid, "executable": str(server.venv or ""), "url": server.url})
            if list(merged.values()) != self.known:
                self.known = list(merged.values())
                self.state_file.write(process_groups=self.known)

    def stop(self) -> None:
        self.done.set()
        self.record()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--airflow", choices=["2", "3"], default="3", help="Airflow major version (default 3)")
    parser.add_argument("--step", choices=STEPS, default="peer", help="which guide step Dagster shows (default peer)")
    parser.add_argument("--example", choices=list(FEATURE_EXAMPLES),
                        help="serve a feature example (examples/NAME: its DAGs in Airflow, its defs.py in Dagster) "
                             "instead of the tutorial DAG")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address both servers listen on and links use (default 127.0.0.1; 0.0.0.0 for every "
                             "interface, links then use this machine's name)")
    parser.add_argument("--airflow-port", type=int, default=8080)
    parser.add_argument("--dagster-port", type=int, default=3000)
    parser.add_argument("--state-dir", default=str(EXAMPLE / ".tutorial"),
                        help="where the databases, logs and the state file live (default examples/tutorial-example/.tutorial)")
    parser.add_argument("--push", action="store_true",
                        help="push mode on in the tutorial's Airflow (AIRFLOW__AIRLIFT__PUSH_ENABLED=True): each task "
                             "success reaches Dagster within seconds, through a relay process the tutorial stops with the servers")
    parser.add_argument("--stop", action="store_true",
                        help="stop a running tutorial, servers an earlier run left and its push relays, then exit")
    parser.add_argument("--check", action="store_true", help="start everything, print the URLs, then stop")
    args = parser.parse_args(argv)
    if args.example and args.step != "peer":
        parser.error(f"--example {args.example} serves examples/{args.example}/defs.py: it takes no --step")
    console = Console(sys.stdout)
    guard = SignalGuard(console)
    guard.install()
    try:
        return run(args, console, guard)
    except TutorialError as e:
        console.say(f"error: {e}")
        return 2
    except StopRequested:
        console.say("Stopped before any server started.")
        return 0
    except (ServerStartError, VenvBuildError) as e:
        console.say(f"error: {e}")
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
