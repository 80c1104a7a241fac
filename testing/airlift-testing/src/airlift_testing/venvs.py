"""Cached virtual environments built with uv (one per Airflow version, one for Dagster)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from filelock import FileLock

from airlift_testing.versions import DEFAULT_PYTHON, find_python

__all__ = ["VenvBuildError", "cache_dir", "ensure_venv", "repo_root", "uv_command", "venv_dir", "venv_key"]


class VenvBuildError(RuntimeError):
    """uv could not build a test environment; the message has uv's output tail."""


def repo_root() -> Path:
    """The monorepo root (the folder holding noxfile.py); ``AIRLIFT_REPO_ROOT`` overrides."""
    env = os.environ.get("AIRLIFT_REPO_ROOT")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "noxfile.py").exists() and (parent / "packages").is_dir():
            return parent
    raise RuntimeError(f"cannot find the Airlift repository root above {here}; set AIRLIFT_REPO_ROOT")


def cache_dir() -> Path:
    """Where cached venvs live: ``AIRLIFT_CACHE_DIR`` or ``<repo>/.airlift-cache``."""
    return Path(os.environ.get("AIRLIFT_CACHE_DIR") or repo_root() / ".airlift-cache")


def uv_command() -> list[str]:
    """How to call uv: the ``uv`` on PATH, else ``python -m uv``."""
    found = shutil.which("uv")
    return [found] if found else [sys.executable, "-m", "uv"]


def venv_key(requirements: Sequence[str], *, python: str = DEFAULT_PYTHON, editable: Sequence[Path | str] = ()) -> str:
    """Short hash of what a venv holds: Python version, requirements (in order), editable paths and
    their ``pyproject.toml`` (install-time metadata such as entry points is not re-read from source)."""
    paths = [str(Path(p).resolve()) for p in editable]
    projects = [(Path(p) / "pyproject.toml").read_text() if (Path(p) / "pyproject.toml").is_file() else "" for p in paths]
    return hashlib.sha256("\n".join([python, *requirements, "--", *paths, "--", *projects]).encode()).hexdigest()[:12]


def venv_dir(name: str, requirements: Sequence[str], *, python: str = DEFAULT_PYTHON,
             editable: Sequence[Path | str] = ()) -> Path:
    """Where :func:`ensure_venv` keeps the venv for these inputs (it may not exist yet)."""
    return cache_dir() / "venvs" / f"{name}-{venv_key(requirements, python=python, editable=editable)}"


def ensure_venv(
    name: str,
    requirements: Sequence[str],
    *,
    python: str = DEFAULT_PYTHON,
    editable: Sequence[Path | str] = (),
) -> Path:
    """Build (or reuse) a venv holding ``requirements`` plus editable local ``editable`` folders.

    The folder name carries a hash of the inputs, so a changed requirement list builds a new venv;
    editable installs mean source edits of those folders need no rebuild. Concurrency-safe (file
    lock next to the venv) and atomic (a ``.complete`` marker is written last; a venv without it is
    removed and rebuilt). ``python`` is a version found with :func:`find_python` or an interpreter
    path. Returns the venv folder.
    """
    paths = [str(Path(p).resolve()) for p in editable]
    for path in paths:
        if not Path(path).is_dir():
            raise VenvBuildError(f"editable package folder {path} does not exist (venv {name!r})")
    venv = venv_dir(name, requirements, python=python, editable=paths)
    root = venv.parent
    root.mkdir(parents=True, exist_ok=True)
    marker = venv / ".complete"
    if marker.exists():
        return venv
    with FileLock(str(root / f"{venv.name}.lock"), timeout=1800):
        if marker.exists():  # built by another process while we waited
            return venv
        if venv.exists():
            shutil.rmtree(venv)
        uv = uv_command()
        env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
        env.pop("VIRTUAL_ENV", None)
        steps = [
            [*uv, "venv", "-q", "-p", python if os.sep in python else find_python(python), str(venv)],
            [*uv, "pip", "install", "-q", "-p", str(venv / "bin" / "python"), *requirements,
             *(arg for p in paths for arg in ("-e", p))],
        ]
        for step in steps:
            try:
                done = subprocess.run(step, capture_output=True, text=True, env=env)
            except FileNotFoundError as e:
                raise VenvBuildError(f"cannot run uv ({step[0]}): {e}; install uv or `pip install uv`") from None
            if done.returncode != 0:
                raise VenvBuildError(
                    f"building {venv} failed: {' '.join(step)}\n{(done.stdout + done.stderr)[-3000:]}"
                )
        marker.write_text("\n".join([f"python {python}", *requirements, *(f"-e {p}" for p in paths)]) + "\n")
    return venv
