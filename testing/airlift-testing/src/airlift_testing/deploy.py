"""The production-shaped deployment: Airflow with the CeleryExecutor, Dagster on PostgreSQL with a code server.

- :class:`CeleryAirflow`: Airflow's components as separate processes (scheduler, webserver on Airflow 2 /
  API server and DAG processor on Airflow 3, triggerer) on PostgreSQL, a Redis broker
  (:class:`~airlift_testing.redis.RedisServer`) and Celery workers, each its own process group, with its own
  queue (``default,<name>``), its own host name (the task instances' ``hostname``) and its own temporary
  folder (so each worker has its own push relay, as on separate machines). The settings common to every
  component are ``deploy_config/airflow.cfg``, written into AIRFLOW_HOME.
- :class:`DeployedDagster`: PostgreSQL storage (dagster-postgres), a ``dagster api grpc`` code server for one
  code location, the webserver and the daemon as separate processes, the QueuedRunCoordinator with a
  concurrency limit (``deploy_config/dagster.yaml``, written into DAGSTER_HOME).

>>> with CeleryAirflow(version="3", dags_folder=Path("dags")) as airflow:  # doctest: +SKIP
...     airflow.kill_worker("worker_b"); airflow.start_worker("worker_b")
"""

from __future__ import annotations

import configparser
import os
import shutil
import signal
import string
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from airlift_testing.airflow import AirflowServer
from airlift_testing.chaos import ChaosDagster
from airlift_testing.postgres import PostgresServer
from airlift_testing.procs import ServerProcess, ServerStartError, free_port, tail, wait_until
from airlift_testing.redis import RedisServer
from airlift_testing.versions import dagster_requirements

__all__ = ["AIRFLOW_CFG", "CELERY_REQUIREMENTS", "DAGSTER_YAML", "WORKERS", "CeleryAirflow", "DeployedDagster", "processes_using"]

CONFIG = Path(__file__).parent / "deploy_config"
#: The airflow.cfg template (``${DATABASE_URL}``, ``${BROKER_URL}``) and the dagster.yaml of the deployment.
AIRFLOW_CFG = CONFIG / "airflow.cfg"
DAGSTER_YAML = CONFIG / "dagster.yaml"
#: What the Airflow venv adds for the CeleryExecutor. The provider (3.26 with Airflow 2.11 and 3.3) imports
#: ``celery.backends.database.retry``, which Celery 5.7 removed: Celery stays below 5.7. Unbounded, the provider
#: resolved to 3.6.1 with Airflow 2.11, whose ``CeleryExecutor.change_state`` lacks ``remove_running``: the
#: scheduler then exits when it fails the task of a lost worker.
CELERY_REQUIREMENTS: tuple[str, ...] = ("apache-airflow-providers-celery>=3.26", "celery<5.7", "redis")
#: The Celery workers: each serves the queues ``default`` and its own name.
WORKERS: tuple[str, ...] = ("worker_a", "worker_b")
_HOSTNAME_MODULE = '''"""[core] hostname_callable of a test Celery worker: the name in AIRLIFT_WORKER_NAME."""
import os


def hostname() -> str:
    return os.environ["AIRLIFT_WORKER_NAME"]
'''


def _cfg_keys(text: str) -> list[str]:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    return [f"AIRFLOW__{section.upper()}__{key.upper()}" for section in parser.sections() for key in parser[section]]


class CeleryAirflow(AirflowServer):
    """Airflow with the CeleryExecutor on PostgreSQL and Redis, every component its own process, and
    :data:`WORKERS` as Celery workers (``kill_worker`` / ``start_worker`` one at a time)."""

    def __init__(self, *, workers: Sequence[str] = WORKERS, **kwargs: Any) -> None:
        kwargs["shape"] = "production"
        super().__init__(**kwargs)
        self.extra_requirements += list(CELERY_REQUIREMENTS)
        self.workers = tuple(workers)
        self.redis: RedisServer | None = None
        self._components: dict[str, ServerProcess] = {}
        self._worker_env: dict[str, str] = {}
        self._log_offsets: dict[str, int] = {}
        #: Each worker's temporary folder (TMPDIR: where its push relay keeps its socket, log and status).
        self.worker_tmp: dict[str, Path] = {}

    def env(self) -> dict[str, str]:
        """The components' environment: what the base server sets, minus every key airflow.cfg sets."""
        env = super().env()
        for key in _cfg_keys(AIRFLOW_CFG.read_text()):
            env.pop(key, None)
        env.update(self.extra_env)
        return env

    def start(self) -> CeleryAirflow:
        """Start Redis and PostgreSQL, write airflow.cfg, migrate, start every component and worker, and wait
        until the API is healthy and each worker is ready."""
        self.home.mkdir(parents=True, exist_ok=True)
        try:
            self.redis = RedisServer().start()
            self.postgres = PostgresServer().start()  # the base server creates its database "airflow"
            (self.home / "airflow.cfg").write_text(string.Template(AIRFLOW_CFG.read_text()).substitute(
                DATABASE_URL=self.postgres.sqlalchemy_url("airflow"), BROKER_URL=self.redis.url))
            host_module = self.home / "worker_host"
            host_module.mkdir(exist_ok=True)
            (host_module / "airlift_worker_host.py").write_text(_HOSTNAME_MODULE)
            super().start()
            for name in self.workers:
                self._wait_worker(name)
        except BaseException:
            self.stop()
            raise
        return self

    def _launch(self, airflow: str, env: Mapping[str, str]) -> ServerProcess:
        self._worker_env = dict(env)
        api = "webserver" if self.generation == 2 else "api-server"
        others = ["scheduler", "triggerer"] + (["dag-processor"] if self.generation >= 3 else [])
        for name in [api, *others]:
            self._components[name] = ServerProcess([airflow, name], log_path=self.home / f"{name}.log", env=env,
                                                   cwd=self.home)
        for name in self.workers:
            self._spawn_worker(name)
        return self._components[api]

    def _spawn_worker(self, name: str) -> ServerProcess:
        assert self.venv is not None
        if name not in self.worker_tmp:
            # short: the push relay's Unix socket path must stay under 108 bytes
            self.worker_tmp[name] = Path(tempfile.mkdtemp(prefix=f"airlift-{name}-"))
        tmp = self.worker_tmp[name]
        env = {
            **self._worker_env,
            "AIRLIFT_WORKER_NAME": name,
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "airlift_worker_host.hostname",
            "PYTHONPATH": os.pathsep.join(p for p in (str(self.home / "worker_host"), self._worker_env.get("PYTHONPATH")) if p),
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "TMPDIR": str(tmp),
        }
        log = self.home / f"{name}.log"
        self._log_offsets[name] = log.stat().st_size if log.exists() else 0
        args = [str(self.venv / "bin" / "airflow"), "celery", "worker", "--queues", f"default,{name}",
                "--celery-hostname", f"{name}@%h", "--concurrency", "4"]
        self._components[name] = ServerProcess(args, log_path=log, env=env, cwd=self.home)
        return self._components[name]

    def _wait_worker(self, name: str) -> None:
        process = self._components[name]
        offset = self._log_offsets.get(name, 0)

        def ready() -> bool:
            with open(process.log_path, "rb") as log:
                log.seek(offset)
                return b" ready." in log.read()

        wait_until(ready, timeout=self.startup_timeout, what=f"Celery worker {name} ({process.log_path})",
                   process=process, interval=1.0)

    def kill_worker(self, name: str) -> None:
        """SIGKILL a worker's whole process group (its tasks with it), as when its machine is lost."""
        process = self._components.pop(name)
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.stop(timeout=5)

    def start_worker(self, name: str) -> None:
        """Start a worker again and wait until it is ready."""
        if name not in self._components:
            self._spawn_worker(name)
            self._wait_worker(name)

    def stop(self) -> None:
        """Stop the workers, the components, PostgreSQL and Redis."""
        for name in reversed(list(self._components)):
            process = self._components.pop(name)
            if process is not self._process:
                process.stop()
        super().stop()
        for folder in self.worker_tmp.values():
            shutil.rmtree(folder, ignore_errors=True)
        if self.redis is not None:
            self.redis.stop()
            self.redis = None

    def process_group_ids(self) -> list[int]:
        """Process groups of every running component and worker (each in its own)."""
        return [p.pid for p in self._components.values() if p.running()]

    def log_tail(self, lines: int = 40) -> str:
        """The end of every component's log."""
        return "\n".join(f"--- {p.log_path.name} ---\n{tail(p.log_path, lines)}" for p in self._components.values())


_SERVER_ID_QUERY = """{ workspaceOrError { ... on Workspace { locationEntries { name
    locationOrLoadError { __typename ... on RepositoryLocation { serverId } } } } } }"""


def _library_pin(name: str) -> str:
    """``<name>==<minor>.*`` for a Dagster library at the minor the Dagster venv's dagster-dbt has."""
    dbt = next(r for r in dagster_requirements() if r.startswith("dagster-dbt=="))
    return name + dbt[len("dagster-dbt"):]


class DeployedDagster(ChaosDagster):
    """Dagster on PostgreSQL with a ``dagster api grpc`` code server serving ``defs_file`` as code location
    ``location_name``; the webserver and daemon load it from there (workspace ``grpc_server``)."""

    def __init__(self, *, defs_file: Path, location_name: str, home: Path, **kwargs: Any) -> None:
        home = Path(home)
        home.mkdir(parents=True, exist_ok=True)
        super().__init__(workspace_file=home / "workspace.yaml", home=home, **kwargs)
        self.extra_requirements.append(_library_pin("dagster-postgres"))
        self.defs_file = Path(defs_file).resolve()
        self.location_name = location_name
        self.code_port = free_port()
        self.postgres: PostgresServer | None = None

    def instance_config(self) -> str:
        """deploy_config/dagster.yaml."""
        return DAGSTER_YAML.read_text()

    def start(self) -> DeployedDagster:
        """Start PostgreSQL and the code server, then the webserver and daemon (waiting for each)."""
        try:
            self.postgres = PostgresServer().start()
            self.extra_env["DAGSTER_POSTGRES_URL"] = self.postgres.create_database("dagster")
            (self.home / "workspace.yaml").write_text(
                f"load_from:\n  - grpc_server:\n      host: {self.host}\n      port: {self.code_port}\n"
                f"      location_name: {self.location_name}\n")
            (self.home / "dagster.yaml").write_text(self.instance_config())
            from airlift_testing.dagster import dagster_venv

            self.venv = dagster_venv(self.extra_packages, self.extra_requirements, python=self.python)
            migrate = subprocess.run([str(self.venv / "bin" / "dagster"), "instance", "migrate"], env=self.env(),
                                     cwd=self.home, capture_output=True, text=True, timeout=300)
            if migrate.returncode != 0:
                raise ServerStartError(f"dagster instance migrate failed in {self.home}:\n{(migrate.stdout + migrate.stderr)[-3000:]}")
            self.start_code_server()
            super().start()
        except BaseException:
            self.stop()
            raise
        return self

    def start_code_server(self) -> None:
        """Start the code server (same port each time) and wait until it answers its health check."""
        assert self.venv is not None
        dagster = str(self.venv / "bin" / "dagster")
        process = ServerProcess(
            [dagster, "api", "grpc", "-h", self.host, "-p", str(self.code_port), "-f", str(self.defs_file),
             "--location-name", self.location_name],
            log_path=self.home / "code_server.log", env=self.env(), cwd=self.home)
        self._processes.insert(0, process)

        def healthy() -> bool:
            check = subprocess.run([dagster, "api", "grpc-health-check", "-h", self.host, "-p", str(self.code_port)],
                                   env=self.env(), capture_output=True, timeout=60)
            return check.returncode == 0

        wait_until(healthy, timeout=self.startup_timeout, what=f"the Dagster code server on port {self.code_port}",
                   process=process, interval=1.0)

    def server_id(self) -> str | None:
        """The id of the code server the webserver loaded the location from (a new one per server start)."""
        entries = self.graphql(_SERVER_ID_QUERY)["workspaceOrError"]["locationEntries"]
        loaded = [e["locationOrLoadError"] for e in entries if e["name"] == self.location_name]
        return loaded[0].get("serverId") if loaded and loaded[0] else None

    def restart_code_server(self) -> None:
        """Stop the code server, start it again, and wait until the webserver has loaded the location from
        the new server."""
        before = self.server_id()
        self._stop("code_server")
        self.start_code_server()
        wait_until(lambda: self._loaded() and self.server_id() not in (None, before), timeout=self.startup_timeout,
                   what=f"the code location from the restarted code server ({self.url})", interval=1.0)

    def stop(self) -> None:
        """Stop daemon, webserver, code server and PostgreSQL."""
        super().stop()
        if self.postgres is not None:
            self.postgres.stop()
            self.postgres = None


def processes_using(path: Path) -> list[str]:
    """``pid command`` of every running process whose command line, working folder or environment names
    ``path`` (what a test deployment under that folder left running)."""
    needle = str(path).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z":
                continue
            cmdline = (entry / "cmdline").read_bytes()
            where = os.readlink(entry / "cwd").encode()
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in cmdline or needle in where or needle in environ:
            command = cmdline.replace(b"\0", b" ").decode(errors="replace")
            found.append(f"{entry.name} {command[:200]}")
    return found


def wait_no_processes_using(path: Path, *, timeout: float = 90.0) -> None:
    """Wait until :func:`processes_using` ``path`` finds nothing (push relays exit after their idle time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and processes_using(path):
        time.sleep(1)
    left = processes_using(path)
    if left:
        raise AssertionError(f"processes still running under {path}:\n  " + "\n  ".join(left))
