"""``scripts/tutorial.py`` in tests: its module (for its functions) and a start as a user's terminal runs it."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import time
from pathlib import Path
from types import ModuleType

from airlift_testing.venvs import repo_root

__all__ = ["BANNER_END", "load_tutorial_script", "output_of", "start_tutorial", "wait_for_banner"]

#: The banner's last line: both servers are up.
BANNER_END = "Press Ctrl-C to stop both servers."


def load_tutorial_script() -> ModuleType:
    """``scripts/tutorial.py`` imported as a module (nothing starts)."""
    spec = importlib.util.spec_from_file_location("tutorial_script", repo_root() / "scripts" / "tutorial.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def start_tutorial(*args: str, log: Path) -> subprocess.Popen[bytes]:
    """``uv run scripts/tutorial.py ARGS`` in a process group of its own, as a terminal runs a command
    (Ctrl-C signals the whole group), its output going to ``log``."""
    uv = shutil.which("uv")
    assert uv, "uv must be on PATH (the README's first step installs it)"
    with log.open("wb") as out:
        return subprocess.Popen([uv, "run", str(repo_root() / "scripts" / "tutorial.py"), *args], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=repo_root(), start_new_session=True)


def output_of(log: Path) -> str:
    """What the tutorial printed so far."""
    return log.read_text(errors="replace") if log.exists() else ""


def wait_for_banner(process: subprocess.Popen[bytes], log: Path, *, timeout: float = 1500) -> str:
    """The tutorial's output once its banner is printed (a cold cache builds both environments first)."""
    deadline = time.monotonic() + timeout
    while BANNER_END not in output_of(log):
        assert process.poll() is None, f"tutorial.py exited with {process.returncode}:\n{output_of(log)}"
        assert time.monotonic() < deadline, f"no banner after {timeout:.0f} s:\n{output_of(log)}"
        time.sleep(2)
    return output_of(log)
