"""A real Dagster webserver + daemon for tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import requests

from airlift_testing.procs import (
    ServerProcess,
    ServerStartError,
    free_port,
    link_host,
    tail,
    wait_until,
)
from airlift_testing.venvs import ensure_venv, repo_root
from airlift_testing.versions import DEFAULT_PYTHON, dagster_requirements

__all__ = ["DagsterServer", "dagster_venv"]

_LOCATION_QUERY = """
{ workspaceOrError { __typename ... on Workspace { locationEntries { name
    locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""


_DAEMON_QUERY = """
{ instance { daemonHealth { daemonStatus(daemonType: "QUEUED_RUN_COORDINATOR") { healthy } } } }
"""


def dagster_venv(extra_packages: Sequence[Path | str] = (), extra_requirements: Sequence[str] = (),
                 *, python: str = DEFAULT_PYTHON) -> Path:
    """The cached Dagster venv (the requirements of the Dagster minor under test, see
    :func:`~airlift_testing.versions.dagster_requirements`, + editable local packages + extras);
    ``python`` is a version ("3.11") or an interpreter path."""
    return ensure_venv("dagster", [*dagster_requirements(), *extra_requirements], python=python,
                       editable=list(extra_packages))


def airlift_dagster_packages() -> list[Path]:
    """Local packages a Dagster code location of Airlift needs (editable)."""
    root = repo_root() / "packages"
    return [root / p for p in ("airlift-protocol", "airlift-client", "airlift-dagster", "airlift-dbt")]


class DagsterServer:
    """``dagster-webserver`` and ``dagster-daemon run`` for one definitions file (``-f``) or
    workspace (``-w``), with a temporary DAGSTER_HOME, on a free 127.0.0.1 port."""

    def __init__(
        self,
        *,
        defs_file: Path | None = None,
        workspace_file: Path | None = None,
        home: Path | None = None,
        extra_packages: Sequence[Path | str] | None = None,
        extra_requirements: Sequence[str] = (),
        extra_env: Mapping[str, str] | None = None,
        port: int | None = None,
        with_daemon: bool = True,
        startup_timeout: float = 180.0,
        python: str = DEFAULT_PYTHON,
        host: str = "127.0.0.1",
    ) -> None:
        self.python = python
        self.host = host
        if (defs_file is None) == (workspace_file is None):
            raise ValueError("give exactly one of defs_file or workspace_file")
        self.target = ["-f", str(Path(defs_file).resolve())] if defs_file else ["-w", str(Path(workspace_file).resolve())]  # type: ignore[arg-type]
        self._own_home = home is None
        self.home = Path(home) if home else Path(tempfile.mkdtemp(prefix="dagster-home-"))
        self.extra_packages: list[Path | str] = [*airlift_dagster_packages()] if extra_packages is None else list(extra_packages)
        self.extra_requirements = list(extra_requirements)
        self.extra_env = dict(extra_env or {})
        self.port = port or free_port()
        self.with_daemon = with_daemon
        self.startup_timeout = startup_timeout
        self.venv: Path | None = None
        self._processes: list[ServerProcess] = []
        self.startup_seconds: float | None = None

    @property
    def url(self) -> str:
        """Base URL of the webserver."""
        return f"http://{link_host(self.host)}:{self.port}"

    @property
    def graphql_url(self) -> str:
        """The GraphQL endpoint (``<url>/graphql``)."""
        return f"{self.url}/graphql"

    def env(self) -> dict[str, str]:
        """The environment both processes run with."""
        assert self.venv is not None
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "DAGSTER_HOME")}
        env.update({
            "PATH": f"{self.venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
            "VIRTUAL_ENV": str(self.venv),
            "DAGSTER_HOME": str(self.home),
            "PYTHONUNBUFFERED": "1",
        })
        env.update(self.extra_env)
        return env

    def start(self) -> DagsterServer:
        """Build/reuse the venv, migrate the instance, start webserver (+ daemon) and wait until the
        code location is loaded (and the daemon's run queue is healthy). Sets :attr:`startup_seconds`."""
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "dagster.yaml").write_text(self.instance_config())
        self.venv = dagster_venv(self.extra_packages, self.extra_requirements, python=self.python)
        env = self.env()
        bin_dir = self.venv / "bin"
        started = time.monotonic()
        # Create the instance's storage once, before two processes race to migrate the same SQLite
        # files (which leaves alembic with two heads and the code location unloadable).
        migrate = subprocess.run([str(bin_dir / "dagster"), "instance", "migrate"], env=env, cwd=self.home,
                                 capture_output=True, text=True, timeout=300)
        if migrate.returncode != 0:
            raise ServerStartError(f"dagster instance migrate failed in {self.home}:\n{(migrate.stdout + migrate.stderr)[-3000:]}")
        self._processes.append(ServerProcess(
            [str(bin_dir / "dagster-webserver"), "-h", self.host, "-p", str(self.port), *self.target],
            log_path=self.home / "webserver.log", env=env, cwd=self.home))
        if self.with_daemon:
            self._processes.append(ServerProcess(
                [str(bin_dir / "dagster-daemon"), "run", *self.target],
                log_path=self.home / "daemon.log", env=env, cwd=self.home))
        try:
            wait_until(self._loaded, timeout=self.startup_timeout, what=f"Dagster at {self.url}",
                       process=self._processes[0], interval=1.0)
            if self.with_daemon:
                wait_until(self._daemon_healthy, timeout=self.startup_timeout,
                           what=f"the Dagster daemon's run queue ({self.home / 'daemon.log'})",
                           process=self._processes[1], interval=1.0)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def instance_config(self) -> str:
        """The instance's ``dagster.yaml``: SQLite storage in DAGSTER_HOME, the QueuedRunCoordinator."""
        return (
            "telemetry:\n  enabled: false\n"
            "run_coordinator:\n  module: dagster.core.run_coordinator\n  class: QueuedRunCoordinator\n"
            "  config:\n    dequeue_interval_seconds: 1\n"
        )

    def _daemon_healthy(self) -> bool:
        data = self.graphql(_DAEMON_QUERY)
        return bool(data["instance"]["daemonHealth"]["daemonStatus"]["healthy"])

    def _loaded(self) -> bool:
        data = self.graphql(_LOCATION_QUERY)
        entries = data["workspaceOrError"]["locationEntries"]
        for entry in entries:
            location = entry["locationOrLoadError"]
            if location and location["__typename"] == "PythonError":
                raise ServerStartError(f"Dagster code location {entry['name']!r} failed to load:\n{location['message']}")
        return bool(entries) and all(e["locationOrLoadError"] for e in entries)

    def graphql(self, query: str, variables: Mapping[str, Any] | None = None, *, timeout: float = 30) -> dict[str, Any]:
        """POST a GraphQL query; return ``data`` or raise with the errors."""
        response = requests.post(self.graphql_url, json={"query": query, "variables": dict(variables or {})}, timeout=timeout)
        response.raise_for_status()
        body = response.json()
        if body.get("errors"):
            raise RuntimeError(f"GraphQL errors from {self.graphql_url}: {body['errors']}")
        return dict(body["data"])

    def sensor_state(self, selector: Mapping[str, str]) -> dict[str, Any]:
        """The sensor's status, cursor and latest ticks (timestamp, status, error message)."""
        data = self.graphql(
            "query($s: SensorSelector!) { sensorOrError(sensorSelector: $s) { __typename ... on Sensor { sensorState { "
            "status typeSpecificData { ... on SensorData { lastCursor } } ticks(limit: 10) { timestamp status "
            "cursor error { message } } } } ... on PythonError { message } } }", {"s": dict(selector)})["sensorOrError"]
        if data["__typename"] != "Sensor":
            raise RuntimeError(f"sensor {dict(selector)} at {self.url}: {data}")
        return dict(data["sensorState"])

    def log_tail(self, lines: int = 80) -> str:
        """The end of the webserver and daemon logs, for failure messages."""
        return "\n".join(f"--- {p.log_path.name} ---\n{tail(p.log_path, lines)}" for p in self._processes)

    def stop(self) -> None:
        """Stop daemon and webserver (each by process group; SIGKILL after a timeout)."""
        for process in reversed(self._processes):
            process.stop()
        self._processes.clear()

    def process_group_ids(self) -> list[int]:
        """Process groups of the running webserver and daemon (each in its own)."""
        return [p.pid for p in self._processes if p.running()]

    def cleanup(self) -> None:
        """Stop and remove the DAGSTER_HOME folder if this object created it."""
        self.stop()
        if self._own_home:
            shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> DagsterServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
