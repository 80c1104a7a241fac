"""A minimal `dg` project (a defs folder loaded by ``load_from_defs_folder``) for real-server tests of
``AirflowInstanceComponent``, and the commands of the test venv (``dg``, ``dagster``) run in it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PYPROJECT = """
[project]
name = "{name}"
version = "0.1.0"
requires-python = ">=3.10"
dependencies = ["airlift-dagster"]

[tool.dg]
directory_type = "project"

[tool.dg.project]
root_module = "{name}"
"""

DEFINITIONS = """
from pathlib import Path

from dagster import definitions, load_from_defs_folder


@definitions
def defs():
    return load_from_defs_folder(path_within_project=Path(__file__).parent)
"""


def write_dg_project(project: Path, name: str) -> Path:
    """Write the project ``name`` (module ``name``) into ``project``; return its package folder."""
    package = project / "src" / name
    (package / "defs").mkdir(parents=True)
    (project / "pyproject.toml").write_text(PYPROJECT.format(name=name))
    (package / "__init__.py").write_text("")
    (package / "defs" / "__init__.py").write_text("")
    (package / "definitions.py").write_text(DEFINITIONS)
    return package


def workspace_for(path: Path, project: Path, name: str) -> Path:
    """A workspace file at ``path`` loading the project's definitions as code location ``name``."""
    path.write_text(
        f"load_from:\n  - python_module:\n      module_name: {name}.definitions\n"
        f"      working_directory: {project / 'src'}\n      location_name: {name}\n"
    )
    return path


def run_in(project: Path, env: dict[str, str], *args: str) -> str:
    """Run a command of the test venv (``dg``, ``dagster``) in the project; its output (failing the test otherwise)."""
    done = subprocess.run([str(Path(sys.executable).parent / args[0]), *args[1:]], cwd=project, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr
