from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

import pytest

from airlift_testing.procs import ServerProcess, ServerStartError, free_port, wait_until
from airlift_testing.venvs import cache_dir, repo_root

STUBBORN = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", "import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('child', flush=True); time.sleep(600)"])
print("parent", child.pid, flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[-1].split()[0] != "Z"


def test_stop_kills_a_group_that_ignores_sigterm(tmp_path: Path) -> None:
    process = ServerProcess([sys.executable, "-c", STUBBORN], log_path=tmp_path / "log.txt", env=dict(os.environ))
    child_pid = wait_until(
        lambda: next((int(line.split()[1]) for line in (tmp_path / "log.txt").read_text().splitlines() if line.startswith("parent")), None),
        timeout=20, what="the stubborn parent to start its child",
    )
    wait_until(lambda: "child" in (tmp_path / "log.txt").read_text().split(), timeout=20, what="child")
    started = time.monotonic()
    process.stop(timeout=1.0)
    assert time.monotonic() - started < 10
    assert not process.running()
    wait_until(lambda: not _alive(child_pid), timeout=10, what="the child to die")


def test_wait_until_reports_early_exit_with_log_tail(tmp_path: Path) -> None:
    process = ServerProcess([sys.executable, "-c", "print('boom: bad config'); raise SystemExit(3)"], log_path=tmp_path / "l.txt", env=dict(os.environ))
    with pytest.raises(ServerStartError, match=r"exited with code 3(.|\n)*boom: bad config"):
        wait_until(lambda: False, timeout=20, what="server", process=process)
    process.stop()


def test_wait_until_timeout_names_what_and_last_error() -> None:
    def fails() -> None:
        raise ConnectionError("refused")

    with pytest.raises(ServerStartError, match=r"waiting for the thing(.|\n)*refused"):
        wait_until(fails, timeout=0.3, what="the thing", interval=0.05)


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_repo_root_and_cache_dir() -> None:
    root = repo_root()
    assert (root / "noxfile.py").exists()
    assert cache_dir().name == ".airlift-cache" or "AIRLIFT_CACHE_DIR" in os.environ
