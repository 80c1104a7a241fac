"""The one table of versions the matrix, the fixtures and CI use."""

from __future__ import annotations

import glob
import os
import shutil

__all__ = [
    "AIRFLOW_VERSIONS",
    "DAGSTER_REQUIREMENTS",
    "DEFAULT_PYTHON",
    "PYTHONS",
    "airflow_requirement",
    "find_python",
]

#: Airflow generation (major version) -> exact release tested.
AIRFLOW_VERSIONS: dict[str, str] = {"2": "2.11.2", "3": "3.3.2"}
DEFAULT_PYTHON = "3.11"
PYTHONS: tuple[str, ...] = ("3.10", "3.11", "3.12", "3.13")
DAGSTER_REQUIREMENTS: tuple[str, ...] = (
    "dagster==1.13.*",
    "dagster-webserver==1.13.*",
    "dagster-graphql==1.13.*",
    "dagster-dbt==0.29.*",
    "dbt-duckdb",
    "dbt-core<1.12",
)


def airflow_requirement(version: str) -> str:
    """``apache-airflow==X`` for a version or a generation key ("2"/"3")."""
    return f"apache-airflow=={AIRFLOW_VERSIONS.get(version, version)}"


def _patch_level(path: str) -> tuple[int, ...]:
    name = os.path.basename(os.path.dirname(os.path.dirname(path)))
    return tuple(int(part) if part.isdigit() else -1 for part in name.split("."))


def find_python(version: str) -> str:
    """Path of a CPython ``version`` ("3.11").

    Looks in pyenv's versions folder (``$PYENV_ROOT/versions/X.Y.*/bin/python``, newest patch
    release first) and then for ``pythonX.Y`` on PATH, skipping pyenv shims: a shim of a version
    that is not pyenv's global one fails when run. Raises ``RuntimeError`` naming both places.
    """
    pyenv_root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates = glob.glob(os.path.join(pyenv_root, "versions", f"{version}.*", "bin", "python"))
    for candidate in sorted(candidates, key=_patch_level, reverse=True):
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(f"python{version}")
    if found and "/shims/" not in found:
        return found
    raise RuntimeError(
        f"No Python {version} found on PATH or under {pyenv_root}/versions; install it (e.g. pyenv install {version})."
    )
