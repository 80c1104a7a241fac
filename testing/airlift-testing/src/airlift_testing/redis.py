"""A throwaway Redis server: the Celery broker of the production-shaped Airflow.

Uses Debian's ``redis-server`` binary (on PATH, or ``/usr/bin/redis-server``): one server on a free
127.0.0.1 port, no persistence, its working folder in a temporary directory removed at the end.

>>> with RedisServer() as redis:  # doctest: +SKIP
...     broker_url = redis.url  # redis://127.0.0.1:<port>/0
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from pathlib import Path
from types import TracebackType

from airlift_testing.procs import ServerProcess, free_port, wait_until

__all__ = ["RedisServer", "RedisUnavailable", "redis_server_binary"]


class RedisUnavailable(RuntimeError):
    """No ``redis-server`` on this machine (the message says how to install it)."""


def redis_server_binary() -> str:
    """Path of ``redis-server`` (PATH first, then Debian's ``/usr/bin``)."""
    found = shutil.which("redis-server") or ("/usr/bin/redis-server" if os.access("/usr/bin/redis-server", os.X_OK) else None)
    if found:
        return found
    raise RedisUnavailable(
        "no redis-server on PATH or in /usr/bin; install it: sudo apt-get install -y redis-server "
        "(.ci/run does this on CI machines)"
    )


class RedisServer:
    """``redis-server`` on a free 127.0.0.1 port (no persistence); :attr:`url` is its ``redis://`` URL."""

    def __init__(self, *, port: int | None = None, startup_timeout: float = 60.0) -> None:
        self.binary = redis_server_binary()
        self.port = port or free_port()
        self.startup_timeout = startup_timeout
        self.root = Path(tempfile.mkdtemp(prefix="airlift-redis-"))
        self._process: ServerProcess | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Start the server and wait until it answers PING."""
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.root),
                "--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "yes"]
        self._process = ServerProcess(args, log_path=self.root / "redis.log", env=dict(os.environ), cwd=self.root)
        try:
            wait_until(self.ping, timeout=self.startup_timeout, what=f"redis-server on 127.0.0.1:{self.port}",
                       process=self._process, interval=0.2)
        except BaseException:
            self.stop()
            raise
        return self

    def ping(self) -> bool:
        """Whether the server answers ``PING`` with ``+PONG``."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")

    def process_group_ids(self) -> list[int]:
        """The server's process group (empty once stopped)."""
        return [self._process.pid] if self._process is not None and self._process.running() else []

    def stop(self) -> None:
        """Stop the server and remove its folder."""
        if self._process is not None:
            self._process.stop()
            self._process = None
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
