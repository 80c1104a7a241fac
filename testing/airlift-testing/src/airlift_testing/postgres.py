"""A throwaway PostgreSQL cluster for production-shaped Airflow servers.

Uses the server binaries of Debian's ``postgresql`` package (``/usr/lib/postgresql/<major>/bin``, or
``initdb`` on PATH): ``initdb`` a fresh cluster in a temporary folder, ``pg_ctl start`` it on a free
127.0.0.1 port (socket in the same folder, trust auth for the local test user), create a database,
and ``pg_ctl stop`` + remove the folder at the end. PostgreSQL refuses to run as root; under root the
commands run as the ``postgres`` system user (``runuser``), which owns the folder.

>>> with PostgresServer() as db:  # doctest: +SKIP
...     url = db.sqlalchemy_url("airflow")
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from airlift_testing.procs import ServerStartError, free_port

__all__ = ["PostgresServer", "PostgresUnavailable", "postgres_bindir"]

USER = "airlift"


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries on this machine (the message says how to install them)."""


def postgres_bindir() -> Path:
    """The folder holding ``initdb`` and ``pg_ctl`` (newest Debian major version first, then PATH)."""
    majors = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if majors:
        return Path(majors[-1]).parent
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    raise PostgresUnavailable(
        "no PostgreSQL server binaries (initdb, pg_ctl) in /usr/lib/postgresql/*/bin or on PATH; "
        "install them: sudo apt-get install -y postgresql (.ci/run does this on CI machines)"
    )


class PostgresServer:
    """A private PostgreSQL cluster on a free 127.0.0.1 port; :meth:`create_database` adds databases."""

    def __init__(self, *, port: int | None = None, settings: Mapping[str, str] | None = None) -> None:
        """``settings``: server settings passed as ``-c name=value`` at start (e.g.
        ``{"shared_preload_libraries": "pg_stat_statements"}``)."""
        self.settings = dict(settings or {})
        self.bindir = postgres_bindir()
        self.port = port or free_port()
        self.root = Path(tempfile.mkdtemp(prefix="airlift-postgres-"))
        self.data = self.root / "data"
        self.log_path = self.root / "postgres.log"
        self._as_postgres = os.geteuid() == 0
        self._started = False

    def _cmd(self, *args: str) -> list[str]:
        command = [str(self.bindir / args[0]), *args[1:]]
        return ["runuser", "-u", "postgres", "--", *command] if self._as_postgres else command

    def _run(self, *args: str) -> None:
        done = subprocess.run(self._cmd(*args), capture_output=True, text=True, timeout=300, cwd=self.root)
        if done.returncode != 0:
            raise ServerStartError(f"PostgreSQL `{' '.join(args)}` failed (cluster {self.data}):\n{(done.stdout + done.stderr)[-3000:]}")

    def start(self) -> PostgresServer:
        """initdb, start and wait until it accepts connections."""
        if self._as_postgres:
            owner = pwd.getpwnam("postgres")
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        try:
            self._run("initdb", "-D", str(self.data), "-U", USER, "--auth=trust", "-E", "UTF8", "--no-sync")
            options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off"
            options += "".join(f" -c {name}={value}" for name, value in self.settings.items())
            self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log_path), "-o", options, "-w", "-t", "120", "start")
            self._started = True
        except BaseException:
            self.stop()
            raise
        return self

    def create_database(self, name: str) -> str:
        """Create database ``name`` (owned by the test user); returns its SQLAlchemy URL."""
        psql = shutil.which("psql") or str(self.bindir / "psql")
        done = subprocess.run(
            [psql, "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, "-d", "postgres", "-v", "ON_ERROR_STOP=1",
             "-c", f'CREATE DATABASE "{name}"'],
            capture_output=True, text=True, timeout=60,
        )
        if done.returncode != 0:
            raise ServerStartError(f"creating database {name!r} on 127.0.0.1:{self.port} failed:\n{done.stderr[-2000:]}")
        return self.sqlalchemy_url(name)

    def dump(self, database: str, path: Path) -> None:
        """Write ``database`` to ``path`` (``pg_dump`` custom format)."""
        self._client("pg_dump", "-d", database, "-Fc", "-f", str(path))

    def restore(self, database: str, path: Path) -> None:
        """Load a :meth:`dump` into the empty ``database``, in one transaction."""
        self._client("pg_restore", "-d", database, "--no-owner", "--no-privileges", "--single-transaction", str(path))

    def _client(self, tool: str, *args: str) -> None:
        done = subprocess.run([shutil.which(tool) or str(self.bindir / tool), "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, *args],
                              capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise ServerStartError(f"PostgreSQL `{tool} {' '.join(args)}` on 127.0.0.1:{self.port} failed:\n{done.stderr[-2000:]}")

    def psql(self, database: str, sql: str, *, timeout: float = 3600) -> str:
        """Run ``sql`` with ``psql`` on ``database`` (stops at the first error); returns its output
        (unaligned, tuples only)."""
        psql = shutil.which("psql") or str(self.bindir / "psql")
        done = subprocess.run(
            [psql, "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, "-d", database, "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql],
            capture_output=True, text=True, timeout=timeout,
        )
        if done.returncode != 0:
            raise ServerStartError(f"psql on {database!r} at 127.0.0.1:{self.port} failed:\n{done.stderr[-2000:]}")
        return done.stdout

    def sqlalchemy_url(self, database: str) -> str:
        """``postgresql+psycopg2://airlift@127.0.0.1:<port>/<database>``."""
        return f"postgresql+psycopg2://{USER}@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        """Stop the cluster (fast shutdown) and remove its folder."""
        if self._started:
            subprocess.run(self._cmd("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop"), capture_output=True, timeout=120)
            self._started = False
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, lines: int = 40) -> str:
        """The end of the server log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
