"""airlift-airflow runs inside Airflow: it must never bring dagster along."""

from __future__ import annotations

import ast
import importlib.metadata
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

SRC = Path(__file__).parent.parent / "src" / "airlift_airflow"
REPO = Path(__file__).resolve().parents[3]


def test_no_module_imports_dagster() -> None:
    for file in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(file.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.split(".")[0].startswith("dagster") for n in names), f"{file} imports dagster"


def test_this_environment_has_no_dagster() -> None:
    installed = {d.metadata["Name"].lower() for d in importlib.metadata.distributions()}
    assert "apache-airflow" in installed
    assert not {n for n in installed if n.startswith("dagster")}


@pytest.mark.integration
def test_fresh_install_with_airflow_pulls_no_dagster() -> None:
    from airlift_testing.versions import AIRFLOW_VERSIONS

    with tempfile.TemporaryDirectory() as tmp:
        venv = Path(tmp) / "venv"
        subprocess.run(["uv", "venv", "-q", "-p", sys.executable, str(venv)], check=True)
        subprocess.run(["uv", "pip", "install", "-q", "-p", str(venv / "bin" / "python"),
                        str(REPO / "packages" / "airlift-protocol"), f"{REPO / 'packages' / 'airlift-airflow'}[airflow]",
                        f"apache-airflow=={AIRFLOW_VERSIONS['3']}"], check=True)
        listed = subprocess.run(["uv", "pip", "list", "-p", str(venv / "bin" / "python")], capture_output=True, text=True, check=True).stdout
        assert "apache-airflow " in listed
        assert "dagster" not in listed.lower()
