"""airlift-airflow runs inside Airflow: it must never bring dagster along."""

from __future__ import annotations

import ast
import importlib.metadata
from pathlib import Path

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
