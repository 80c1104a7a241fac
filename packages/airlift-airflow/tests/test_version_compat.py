"""airlift-airflow's one module of Airflow-version branches works on the installed Airflow (the unit
session runs once per supported Airflow major), and no other module imports Airflow internals."""

from __future__ import annotations

import ast
from datetime import datetime, timezone
from pathlib import Path

import pytest
from airflow import __version__ as airflow_version

import airlift_airflow
from airlift_airflow import version_compat

SRC = Path(airlift_airflow.__file__).parent


def test_version_flag_matches_the_installed_airflow() -> None:
    assert (int(airflow_version.split(".")[0]) >= 3) == version_compat.AIRFLOW_V_3_0_PLUS
    assert airflow_version == version_compat.AIRFLOW_VERSION


def test_authoring_classes_and_dag_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    # DAG files are parsed with an autoregister module name set; a `with DAG(...)` block then registers
    monkeypatch.setattr(version_compat.DagContext, "current_autoregister_module_name", __name__, raising=False)
    monkeypatch.setattr(version_compat.DagContext, "autoregistered_dags", set(), raising=False)
    # Airflow 2.7 refuses tasks in a DAG without a start date
    with version_compat.DAG("compat_probe", schedule=None, start_date=datetime(2024, 1, 1, tzinfo=timezone.utc)) as dag:
        version_compat.BaseOperator(task_id="a")
        version_compat.BaseOperator(task_id="b")
    dag.get_task("a") >> dag.get_task("b")
    assert "compat_probe" in [d.dag_id for d in version_compat.autoregistered_dags()]
    removed = version_compat.remove_task(dag, "a")
    assert removed.task_id == "a" and "a" not in dag.task_dict
    errors = version_compat.connection_not_found_errors()
    assert errors and all(issubclass(e, BaseException) for e in errors)
    assert isinstance(version_compat.BaseHook, type)


def test_only_the_compat_module_imports_airflow_internals_and_nothing_prints() -> None:
    for path in sorted(SRC.rglob("*.py")):
        if path.name == "version_compat.py":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "airflow":
                assert "._" not in f".{node.module}", f"{path.name} imports private {node.module}; use version_compat"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and path.name != "cli.py":  # the command line prints
                assert node.func.id != "print", f"{path.name}:{node.lineno} prints; log through logging"
