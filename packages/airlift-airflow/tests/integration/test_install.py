"""Installing airlift-airflow next to Airflow pulls in no dagster."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[4]


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
