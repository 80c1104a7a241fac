"""Processes for test servers: own process group, log file, reliable stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

__all__ = ["ServerProcess", "ServerStartError", "free_port", "group_alive", "link_host", "stop_group", "tail", "wait_until"]

T = TypeVar("T")


class ServerStartError(RuntimeError):
    """A test server did not become healthy; the message carries the tail of its log."""


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def link_host(host: str) -> str:
    """The host name links use for a server listening on ``host``: the machine's name for a wildcard
    address (``0.0.0.0``, ``::``), else ``host`` itself.

    >>> link_host("127.0.0.1")
    '127.0.0.1'
    """
    if host in ("0.0.0.0", "::", ""):
        return socket.gethostname()
    return f"[{host}]" if ":" in host else host


def tail(path: Path, lines: int = 60) -> str:
    """The last ``lines`` lines of a log file ('' if it does not exist)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class ServerProcess:
    """A command running in its own process group with stdout/stderr in ``log_path``."""

    def __init__(self, args: Sequence[str], *, log_path: Path, env: Mapping[str, str], cwd: Path | None = None) -> None:
        self.args = list(args)
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            self.args,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env),
            cwd=str(cwd) if cwd else None,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the whole group, wait, then SIGKILL the group; always reaps the leader."""
        try:
            pgid = os.getpgid(self.popen.pid)
        except ProcessLookupError:
            pgid = None
        if pgid is not None:
            stop_group(pgid, timeout=timeout, waiting=self.popen.poll)
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=10)
        self._log.close()


def group_alive(pgid: int) -> bool:
    """Whether any process of group ``pgid`` still runs. Zombies count for ``killpg(0)``, so /proc
    decides where it exists (a zombie is not running); without /proc, ``killpg`` alone does."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False


def stop_group(pgid: int, *, timeout: float = 15.0, waiting: Callable[[], object] | None = None) -> None:
    """SIGTERM process group ``pgid``, wait up to ``timeout`` for it to go, then SIGKILL it and wait
    until it is gone (SIGKILL is not instant: a process in uninterruptible I/O dies when the I/O ends).
    ``waiting`` is called at each poll (e.g. ``Popen.poll`` to reap a leader of ours)."""

    def wait(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and group_alive(pgid):
            if waiting is not None:
                waiting()
            time.sleep(0.2)

    for sig, seconds in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
        if sig is signal.SIGKILL and not group_alive(pgid):
            return
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        wait(seconds)


def wait_until(
    predicate: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.5,
    log_path: Path | None = None,
    process: ServerProcess | None = None,
) -> T:
    """Call ``predicate`` until it returns a truthy value; raise :class:`ServerStartError` (with the
    log tail) on timeout or when ``process`` exits early. Exceptions from the predicate count as 'not yet'."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        if process is not None and not process.running():
            raise ServerStartError(
                f"{what}: the process exited with code {process.popen.returncode}.\n"
                f"--- tail of {process.log_path} ---\n{tail(process.log_path)}"
            )
        try:
            result = predicate()
        except Exception as e:
            last_error = e
        else:
            if result:
                return result
        time.sleep(interval)
    log = log_path or (process.log_path if process else None)
    detail = f"\nlast error: {last_error!r}" if last_error else ""
    log_tail = f"\n--- tail of {log} ---\n{tail(log)}" if log else ""
    raise ServerStartError(f"timed out after {timeout:.0f}s waiting for {what}{detail}{log_tail}")
