"""Installing airlift-airflow next to Airflow pulls in no dagster, and importing it loads none."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from airlift_testing.versions import airflow_requirements

REPO = Path(__file__).resolve().parents[4]

PROBE = """
import importlib.metadata, json, sys
import airlift_airflow
from airlift_airflow import DagsterOperator, mark_as_dagster_migrating
names = sorted({(d.metadata["Name"] or "").lower() for d in importlib.metadata.distributions()})
print(json.dumps({"distributions": names, "modules": sorted(m for m in sys.modules if m.split(".")[0].startswith("dagster"))}))
"""


@pytest.mark.integration
def test_fresh_install_with_airflow_pulls_no_dagster(airflow_version: str, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    python = venv / "bin" / "python"
    subprocess.run(["uv", "venv", "-q", "-p", sys.executable, str(venv)], check=True)
    subprocess.run(["uv", "pip", "install", "-q", "-p", str(python),
                    str(REPO / "packages" / "airlift-protocol"), f"{REPO / 'packages' / 'airlift-airflow'}[airflow]",
                    *airflow_requirements(airflow_version)], check=True)
    listed = subprocess.run(["uv", "pip", "list", "-p", str(python)], capture_output=True, text=True, check=True).stdout
    assert f"apache-airflow {airflow_version}".split() in [line.split()[:2] for line in listed.splitlines()]
    assert "airlift-airflow" in listed
    assert "dagster" not in listed.lower()
    probe = subprocess.run([str(python), "-c", PROBE], capture_output=True, text=True, check=True,
                           env={"AIRFLOW_HOME": str(tmp_path / "airflow-home"), "PATH": "/usr/bin:/bin"})
    seen = json.loads(probe.stdout.strip().splitlines()[-1])
    assert "apache-airflow" in seen["distributions"] and "airlift-airflow" in seen["distributions"]
    assert [n for n in seen["distributions"] if n.startswith("dagster")] == []
    assert seen["modules"] == []
