"""A real Airflow server (``airflow standalone``) for tests, with a small REST helper."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple
from urllib.parse import quote

import requests
from filelock import FileLock

from airlift_testing.postgres import PostgresServer
from airlift_testing.procs import (
    ServerProcess,
    ServerStartError,
    free_port,
    link_host,
    tail,
    wait_until,
)
from airlift_testing.venvs import cache_dir, ensure_venv
from airlift_testing.versions import DEFAULT_PYTHON, airflow_requirements, resolve_airflow_version
from airlift_testing.versions import SHAPES as SHAPE_TABLE

__all__ = ["ADMIN_PASSWORD", "ADMIN_USER", "SHAPES", "AirflowServer", "AirflowUser", "airflow_venv"]

ADMIN_USER = "admin"
ADMIN_PASSWORD = "admin"
_TIMEOUT = 30
_ROLES = ("viewer", "user", "op", "admin")
#: Deployment shapes of a test server (see :data:`airlift_testing.versions.SHAPES`). "production"
#: starts a private PostgreSQL cluster per server (torn down with it).
SHAPES: tuple[str, ...] = tuple(SHAPE_TABLE)
_FAB_AUTH_MANAGER = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"


class AirflowUser(NamedTuple):
    """An extra login of a test server; ``role`` is one of viewer, user, op, admin."""

    username: str
    password: str
    role: str = "viewer"


def _resolve_version(version: str) -> str:
    return resolve_airflow_version(str(version))


def airflow_venv(version: str, extra_packages: Sequence[Path | str] = (), extra_requirements: Sequence[str] = (),
                 *, python: str = DEFAULT_PYTHON) -> Path:
    """The cached venv of an Airflow version (plus editable local packages and extra requirements);
    ``python`` is a version ("3.11") or an interpreter path."""
    full = _resolve_version(version)
    return ensure_venv(
        f"airflow-{full}",
        [*airflow_requirements(full), *extra_requirements],
        python=python,
        editable=list(extra_packages),
    )


def _api_workers() -> str:
    """One web or API server worker per CPU core, at least 2 and at most 4 (Airflow 2's default)."""
    return str(max(2, min(os.cpu_count() or 2, 4)))


def _production_api_settings() -> dict[str, str]:
    """How a production Airflow 3 sizes its API server for LocalExecutor work.

    Every running task's supervisor reports heartbeats and state changes to the API server's execution
    API, which shares the API server with the REST API. Airflow 3 starts ONE API worker by default
    (``[api] workers``; its configuration reference says to match the CPU cores) and gives each
    execution-API call 5 seconds (``[workers] execution_api_timeout``, which it says to raise "if you
    experience timeout errors under high load"); after 5 attempts the task fails with a ReadTimeout.
    With several tasks in flight on a busy 2-core host, one worker behind a 5-second budget is exactly
    that case. So: one worker per core (at least 2); the 30-second budget per call is set for every
    Airflow 3 server (see :meth:`AirflowServer.env`).
    """
    return {
        "AIRFLOW__CORE__AUTH_MANAGER": _FAB_AUTH_MANAGER,
        "AIRFLOW__API__WORKERS": _api_workers(),
    }


def _same_file(fileloc: str, filename: str) -> bool:
    return bool(fileloc and filename) and (fileloc == filename or fileloc.endswith("/" + filename.lstrip("/")))


class AirflowServer:
    """``airflow standalone`` on a free 127.0.0.1 port with a given DAG folder, no examples, and user
    admin/admin; ``shape`` (see :data:`SHAPES`) picks SQLite or PostgreSQL + LocalExecutor (+ FAB auth
    on Airflow 3). Use as a context manager or call :meth:`start` / :meth:`stop`.

    >>> with AirflowServer(version="3", dags_folder=Path("dags")) as airflow:  # doctest: +SKIP
    ...     run_id = airflow.trigger("my_dag"); airflow.wait_for_run("my_dag", run_id)
    """

    def __init__(
        self,
        *,
        version: str,
        dags_folder: Path,
        home: Path | None = None,
        extra_packages: Sequence[Path | str] = (),
        extra_requirements: Sequence[str] = (),
        extra_env: Mapping[str, str] | None = None,
        extra_users: Sequence[AirflowUser] = (),
        port: int | None = None,
        startup_timeout: float = 240.0,
        python: str = DEFAULT_PYTHON,
        host: str = "127.0.0.1",
        shape: str = "standalone",
        api_only: bool = False,
        postgres: PostgresServer | None = None,
    ) -> None:
        if shape not in SHAPES:
            raise ValueError(f"unknown Airflow server shape {shape!r}; use one of {SHAPES}")
        self.shape = shape
        self.python = python
        self.host = host
        self.version = _resolve_version(version)
        self.generation = int(self.version.split(".")[0])
        self.dags_folder = Path(dags_folder).resolve()
        self._own_home = home is None
        self.home = Path(home) if home else Path(tempfile.mkdtemp(prefix=f"airflow-{self.version}-"))
        self.extra_packages = list(extra_packages)
        self.extra_requirements = list(extra_requirements)
        if shape == "production":
            self.extra_requirements.append("psycopg2-binary")
            if self.generation >= 3:  # Airflow 3 also opens an async engine on the metadata database
                self.extra_requirements += ["asyncpg", "apache-airflow-providers-fab"]
        #: serve the REST API only (no scheduler, no DAG processor): the DAG files are serialized once
        #: (``airflow dags reserialize``) before the API server starts, so the database sees the API's
        #: own work and nothing else (benches of the API's database cost)
        self.api_only = api_only
        #: a cluster to use for the production shape (started by the caller, stopped by :meth:`stop`)
        self.postgres: PostgresServer | None = postgres
        self._database_url = f"sqlite:///{self.home / 'airflow.db'}"
        self.extra_env = dict(extra_env or {})
        for user in extra_users:
            if user.role not in _ROLES:
                raise ValueError(f"unknown role {user.role!r} for user {user.username!r}; use one of {_ROLES}")
        self.extra_users = list(extra_users)
        self.port = port or free_port()
        self.startup_timeout = startup_timeout
        self.username = ADMIN_USER
        self.password = ADMIN_PASSWORD
        self.log_path = self.home / "standalone.log"
        self.venv: Path | None = None
        self._process: ServerProcess | None = None
        self._session: requests.Session | None = None
        self.startup_seconds: float | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        """Base URL of the webserver / API server."""
        return f"http://{link_host(self.host)}:{self.port}"

    @property
    def api_base(self) -> str:
        """``<url>/api/v1`` on Airflow 2, ``<url>/api/v2`` on Airflow 3."""
        return f"{self.url}/api/v{1 if self.generation == 2 else 2}"

    def env(self) -> dict[str, str]:
        """The environment the Airflow processes run with."""
        assert self.venv is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "AIRFLOW__", "VIRTUAL_ENV"))}
        env.update(
            {
                "PATH": f"{self.venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
                "VIRTUAL_ENV": str(self.venv),
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self._database_url,
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
                "AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL": "1",
                "AIRFLOW__CORE__MIN_SERIALIZED_DAG_FETCH_INTERVAL": "1",
                "PYTHONUNBUFFERED": "1",
            }
        )
        if self.generation == 2:
            env.update(
                {
                    "AIRFLOW__API__AUTH_BACKENDS": "airflow.api.auth.backend.basic_auth,airflow.api.auth.backend.session",
                    "AIRFLOW__WEBSERVER__WEB_SERVER_HOST": self.host,
                    "AIRFLOW__WEBSERVER__WEB_SERVER_PORT": str(self.port),
                    "AIRFLOW__WEBSERVER__BASE_URL": self.url,
                    "AIRFLOW__WEBSERVER__WORKERS": "1",
                    "AIRFLOW__SCHEDULER__DAG_DIR_LIST_INTERVAL": "5",
                    "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "2",
                }
            )
        else:
            passwords = self.home / "simple_auth_manager_passwords.json"
            passwords.write_text(json.dumps({self.username: self.password, **{u.username: u.password for u in self.extra_users}}))
            users = ",".join([f"{self.username}:admin", *(f"{u.username}:{u.role}" for u in self.extra_users)])
            env.update(
                {
                    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": users,
                    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
                    "AIRFLOW__API__HOST": self.host,
                    "AIRFLOW__API__PORT": str(self.port),
                    "AIRFLOW__API__BASE_URL": self.url,
                    "AIRFLOW__API__WORKERS": "1",
                    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
                    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "2",
                    "AIRFLOW__API_AUTH__JWT_SECRET": "airlift-test-secret-airlift-test-secret",
                }
            )
            # Every running task's supervisor calls the execution API; past its 5-second budget per call
            # (after 5 attempts) the task is killed. Busy 2-core hosts need more, whatever the database.
            env["AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT"] = "30"
            if self.shape != "production":
                # Airflow 3 runs LocalExecutor even on SQLite, with 32 task processes by default: under a
                # burst of runs their writes lock the SQLite file ("database is locked"). Four at a time.
                env["AIRFLOW__CORE__PARALLELISM"] = "4"
            if self.version.startswith("3.0."):
                # Airflow 3.0 passes an empty issuer list to PyJWT when none is set, which PyJWT 2.10+
                # (required by Airflow 3.0.6) refuses: every /auth/token answers 500.
                env["AIRFLOW__API_AUTH__JWT_ISSUER"] = "airlift-tests"
        if self.shape == "production":
            env.update(
                {
                    "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                    "AIRFLOW__CORE__PARALLELISM": "8",
                    "AIRFLOW__WEBSERVER__SECRET_KEY": "airlift-test-web-secret",
                }
            )
            if self.generation >= 3:
                env.update(_production_api_settings())
            else:
                # Airflow 2's webserver serves the REST API with gunicorn sync workers, one request each
                # at a time (4 by default; the test servers start 1 to save memory).
                env["AIRFLOW__WEBSERVER__WORKERS"] = _api_workers()
        env.update(self.extra_env)
        return env

    def start(self) -> AirflowServer:
        """Build/reuse the venv, prepare the database and user, start standalone, wait for health.

        Sets :attr:`startup_seconds` (from the first Airflow command to a healthy API; venv build excluded).
        """
        self.home.mkdir(parents=True, exist_ok=True)
        self.venv = airflow_venv(self.version, self.extra_packages, self.extra_requirements, python=self.python)
        if self.shape == "production":
            if self.postgres is None:
                self.postgres = PostgresServer().start()
            self._database_url = self.postgres.create_database("airflow")
        env = self.env()
        airflow = str(self.venv / "bin" / "airflow")
        started = time.monotonic()
        if self.generation == 2 or self.shape == "production":
            self._prepare_database(airflow, env)
        elif self.api_only:
            # `airflow standalone` migrates the database itself before it starts anything (10 s of a start here):
            # only the FAB users (``_prepare_database``) and the API server alone need it done first.
            self._run([airflow, "db", "migrate"], env)
        self._process = self._launch(airflow, env)
        try:
            wait_until(self._healthy, timeout=self.startup_timeout, what=f"Airflow {self.version} at {self.url}",
                       process=self._process, interval=1.0)
            if self.generation == 2 and (self.home / "standalone_admin_password.txt").exists():
                raise ServerStartError(
                    f"airflow standalone created its own admin with a random password in {self.home}; "
                    "the user created before it was not found"
                )
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def _prepare_database(self, airflow: str, env: Mapping[str, str]) -> None:
        """Migrate the database and create the FAB users (Airflow 2, or Airflow 3 with the FAB auth manager) before
        standalone starts, so it does not invent an admin with a random password; or load the snapshot of what
        that left, taken the first time with the same venv, class, shape, database kind and users (``db migrate``
        and ``users create`` take 18 s of a start on Airflow 2; the snapshot holds no Fernet-encrypted value:
        ``db migrate`` of an empty database writes no connection, and users' passwords are hashed)."""
        snapshot = self._snapshot_path()
        snapshot.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(f"{snapshot}.lock"):
            if snapshot.exists():
                if self.postgres is not None:
                    self.postgres.restore("airflow", snapshot)
                else:
                    shutil.copyfile(snapshot, self.home / "airflow.db")
                return
            self._run([airflow, "db", "migrate"], env)
            if self.extra_users:
                self._run([airflow, "sync-perm"], env)  # creates the Viewer/User/Op roles
            for user in self._users():
                self._run(
                    [airflow, "users", "create", "--username", user.username, "--password", user.password,
                     "--role", user.role.capitalize(), "--email", f"{user.username}@example.com",
                     "--firstname", user.username, "--lastname", "Airlift"],
                    env,
                )
            # the audit-log rows of those commands would come back, stamped with this start's time, in every later start
            partial = snapshot.with_name(f"{snapshot.name}.{os.getpid()}.partial")
            if self.postgres is not None:
                self.postgres.psql("airflow", "DELETE FROM log")
                self.postgres.dump("airflow", partial)
            else:
                with sqlite3.connect(self.home / "airflow.db") as db:
                    db.execute("DELETE FROM log")
                db.close()
                shutil.copyfile(self.home / "airflow.db", partial)
            os.replace(partial, snapshot)

    def _users(self) -> list[AirflowUser]:
        """The admin and the extra users, as :meth:`_prepare_database` creates them."""
        return [AirflowUser(self.username, self.password, "admin"), *self.extra_users]

    def _snapshot_path(self) -> Path:
        """Where :meth:`_prepare_database` keeps the database it prepared (in the venv cache)."""
        assert self.venv is not None
        users = [(u.username, u.password, u.role) for u in self._users()]
        built = (self.venv / "pyvenv.cfg").stat().st_mtime_ns  # a venv built again gets a snapshot of its own
        kind = "postgres" if self.postgres is not None else "sqlite"
        key = hashlib.sha256(json.dumps([type(self).__name__, self.venv.name, built, self.shape, kind, users]).encode()).hexdigest()[:16]
        return cache_dir() / "airflow-db" / f"{self.venv.name}-{kind}-{key}"

    def _launch(self, airflow: str, env: Mapping[str, str]) -> ServerProcess:
        """Start the server's processes once the database is ready; returns the one serving the API
        (``airflow standalone`` here: every component in one process group; only the API with ``api_only``)."""
        command = [airflow, "standalone"]
        if self.api_only:
            self._run([airflow, "dags", "reserialize"], env)
            command = [airflow, "webserver" if self.generation == 2 else "api-server"]
        return ServerProcess(command, log_path=self.log_path, env=env, cwd=self.home)

    def _run(self, args: list[str], env: Mapping[str, str]) -> None:
        done = subprocess.run(args, env=dict(env), capture_output=True, text=True, cwd=self.home, timeout=600)
        if done.returncode != 0:
            shown = ["***" if i and args[i - 1] == "--password" else a for i, a in enumerate(args)]
            raise ServerStartError(
                f"`airflow {' '.join(shown[1:])}` failed for Airflow {self.version} (AIRFLOW_HOME={self.home}):\n"
                f"{(done.stdout + done.stderr)[-3000:]}"
            )

    def _healthy(self) -> bool:
        path = "/api/v1/health" if self.generation == 2 else "/api/v2/monitor/health"
        response = requests.get(self.url + path, timeout=5)
        if response.status_code != 200:
            return False
        health = response.json()
        scheduler = (health.get("scheduler") or {}).get("status")
        return bool(health.get("metadatabase", {}).get("status") == "healthy" and (self.api_only or scheduler == "healthy"))

    def stop(self) -> None:
        """Stop every process this server started (process group; SIGKILL after a timeout)."""
        if self._session is not None:
            self._session.close()
            self._session = None
        if self._process is not None:
            self._process.stop()
            self._process = None
        if self.postgres is not None:
            self.postgres.stop()
            self.postgres = None

    def process_group_ids(self) -> list[int]:
        """Process groups of the running server (one: ``airflow standalone`` and its children)."""
        return [self._process.pid] if self._process is not None and self._process.running() else []

    def cleanup(self) -> None:
        """Stop and remove the home folder if this object created it."""
        self.stop()
        if self._own_home:
            shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> AirflowServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def log_tail(self, lines: int = 80) -> str:
        """The end of the standalone log, for failure messages."""
        return tail(self.log_path, lines)

    # ------------------------------------------------------------------ REST helper
    def session(self) -> requests.Session:
        """An authenticated requests session of the admin (basic auth on Airflow 2, a JWT on Airflow 3)."""
        if self._session is None:
            self._session = self.login(self.username, self.password)
        return self._session

    def login(self, username: str, password: str) -> requests.Session:
        """A new requests session logged in as ``username`` (raises naming the URL if refused)."""
        session = requests.Session()
        if self.generation == 2:
            session.auth = (username, password)
            return session
        response = requests.post(f"{self.url}/auth/token", json={"username": username, "password": password},
                                 timeout=_TIMEOUT)
        if response.status_code >= 400:
            raise RuntimeError(f"POST {self.url}/auth/token as {username!r} -> {response.status_code}: {response.text[:300]}")
        session.headers["Authorization"] = f"Bearer {response.json()['access_token']}"
        return session

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call the REST API (``path`` relative to :attr:`api_base`); raise with the body on errors."""
        kwargs.setdefault("timeout", _TIMEOUT)
        response = self.session().request(method, self.api_base + path, **kwargs)
        if response.status_code == 401 and self.generation == 3:
            self._session = None  # token expired: get a new one once
            response = self.session().request(method, self.api_base + path, **kwargs)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {self.api_base + path} -> {response.status_code}: {response.text[:500]}")
        return response.json() if response.content else None

    def get(self, path: str, **kwargs: Any) -> Any:
        """GET ``path`` (relative to :attr:`api_base`); the decoded JSON."""
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        """POST ``path`` (relative to :attr:`api_base`); the decoded JSON."""
        return self.request("POST", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> Any:
        """PATCH ``path`` (relative to :attr:`api_base`); the decoded JSON."""
        return self.request("PATCH", path, **kwargs)

    def import_errors(self) -> list[dict[str, Any]]:
        """Current DAG import errors (file name and stack trace), all pages."""
        return self._all_pages("/importErrors", "import_errors")

    def dags(self) -> list[dict[str, Any]]:
        """Every DAG the server lists (all pages)."""
        return self._all_pages("/dags", "dags")

    def _all_pages(self, path: str, key: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        while True:
            page = self.get(path, params={"limit": 100, "offset": len(items)})
            batch = list(page.get(key, []))
            items.extend(batch)
            if not batch or len(items) >= int(page.get("total_entries") or 0):
                return items

    def wait_for_dags(self, dag_ids: Sequence[str], *, timeout: float = 180.0) -> None:
        """Wait until every DAG id is parsed and listed, and its file has no import error.

        On timeout (or an import error in one of their files) the error shows ``/importErrors``.
        """
        wanted = set(dag_ids)
        files: set[str] = set()

        def listed() -> bool:
            found = {d["dag_id"]: d for d in self.dags()}
            if not wanted <= set(found):
                return False
            files.update(str(found[d].get("fileloc") or "") for d in wanted)
            return True

        try:
            wait_until(listed, timeout=timeout, what=f"DAGs {sorted(wanted)} to be parsed", interval=1.0,
                       process=self._process)
        except ServerStartError as e:
            raise ServerStartError(f"{e}\n--- {self.api_base}/importErrors ---\n{self._import_errors_text()}") from None
        # Airflow 2 names the absolute path, Airflow 3 the path relative to the DAG bundle.
        broken = [e for e in self.import_errors() if any(_same_file(f, str(e.get("filename") or "")) for f in files)]
        if broken:
            raise ServerStartError(
                f"DAGs {sorted(wanted)} are listed but their files have import errors "
                f"({self.api_base}/importErrors):\n{json.dumps(broken, indent=1)[:4000]}"
            )

    def _import_errors_text(self) -> str:
        try:
            return json.dumps(self.import_errors(), indent=1)[:4000]
        except Exception as e:  # the server may be down: say so instead of hiding the first error
            return f"(could not read import errors: {e})"

    def unpause(self, dag_id: str) -> None:
        """Unpause a DAG (Airflow DAGs start paused)."""
        self.patch(f"/dags/{dag_id}", json={"is_paused": False})

    def trigger(self, dag_id: str, *, conf: Mapping[str, Any] | None = None, unpause: bool = True) -> str:
        """Trigger a run (unpausing the DAG first) and return its run id."""
        if unpause:
            self.unpause(dag_id)
        body: dict[str, Any] = {"conf": dict(conf or {})}
        if self.generation == 3:
            body["logical_date"] = None
        return str(self.post(f"/dags/{dag_id}/dagRuns", json=body)["dag_run_id"])

    def get_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        """One DAG run as the REST API returns it."""
        return dict(self.get(f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}"))

    def wait_for_run(self, dag_id: str, run_id: str, *, timeout: float = 240.0) -> dict[str, Any]:
        """Wait until a run is ``success`` or ``failed``; return the run dict."""

        def finished() -> dict[str, Any] | None:
            run = self.get_run(dag_id, run_id)
            return run if run["state"] in ("success", "failed") else None

        return wait_until(finished, timeout=timeout, what=f"run {dag_id}/{run_id} to finish", interval=1.0,
                          process=self._process)

    def trigger_and_wait(self, dag_id: str, *, conf: Mapping[str, Any] | None = None, timeout: float = 240.0) -> dict[str, Any]:
        """Trigger a run and wait for it to finish; return the finished run dict."""
        return self.wait_for_run(dag_id, self.trigger(dag_id, conf=conf), timeout=timeout)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """Every task instance of a run (all map indexes)."""
        items: list[dict[str, Any]] = []
        while True:
            page = self.get(f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances", params={"limit": 100, "offset": len(items)})
            batch = page.get("task_instances", [])
            items.extend(batch)
            if not batch or len(items) >= page.get("total_entries", 0):
                return items

    def reparse(self, dag_file: Path, *, timeout: float = 120.0) -> None:
        """Touch a DAG file and wait until Airflow parsed it again: every DAG listed from that file has
        a ``last_parsed_time`` after the touch, or a fresh import error names the file."""
        path = Path(dag_file).resolve()
        touched = datetime.now(timezone.utc)
        os.utime(path, None)

        def reparsed() -> bool:
            errors = [e for e in self.import_errors() if _same_file(str(path), str(e.get("filename") or ""))]
            if any(_parse_time(e.get("timestamp")) >= touched for e in errors):
                return True
            mine = [d for d in self.dags() if d.get("fileloc") and Path(d["fileloc"]).resolve() == path]
            return bool(mine) and all(_parse_time(d.get("last_parsed_time")) >= touched for d in mine)

        wait_until(reparsed, timeout=timeout, what=f"Airflow to re-parse {path}", interval=1.0, process=self._process)


def _parse_time(value: object) -> datetime:
    """An Airflow timestamp (``...+00:00`` on v1, ``...Z`` on v2); the epoch when missing."""
    if not isinstance(value, str) or not value:
        return datetime.min.replace(tzinfo=timezone.utc)
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
