"""The tutorial's real servers, shared by its tests: Airflow serving a copy of the tutorial's DAG folder (the
dbt project parsed, Airflow's DagsterOperator told the Dagster port up front), and a Dagster webserver +
daemon on that port loading one of the tutorial's ``dagster_defs`` files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airlift_testing import AirflowServer, DagsterServer, free_port, repo_root

EXAMPLE = Path(__file__).resolve().parent.parent
DAG_ID = "rebuild_customers_list"


@pytest.fixture(scope="module")
def world(airflow_server_factory: Callable[..., AirflowServer], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Airflow with the tutorial's DAG parsed: ``airflow``, its ``dags`` folder (a copy the test may edit),
    the ``env`` the tutorial's code reads (DuckDB file, export folder), a ``tmp`` folder and the ``dagster_port``."""
    tmp = tmp_path_factory.mktemp("tutorial")
    dags = tmp / "airflow_dags"
    shutil.copytree(EXAMPLE / "airflow_dags", dags)
    env = {
        "TUTORIAL_DUCKDB_PATH": str(tmp / "jaffle_shop.duckdb"),
        "TUTORIAL_EXPORT_DIR": str(tmp / "export"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    project = EXAMPLE / "dbt_project"
    subprocess.run([str(Path(sys.executable).parent / "dbt"), "parse", "--project-dir", str(project), "--profiles-dir", str(project)],
                   check=True, capture_output=True, env={**os.environ, **env})
    packages = repo_root() / "packages"
    dagster_port = free_port()
    airflow = airflow_server_factory(
        dags,
        extra_packages=[packages / "airlift-protocol", packages / "airlift-airflow", EXAMPLE],
        extra_requirements=["dbt-core>=1.8,<1.12", "dbt-duckdb>=1.8", "duckdb>=1.0"],
        extra_env={**env, "AIRFLOW_CONN_DAGSTER_DEFAULT": f"http://127.0.0.1:{dagster_port}"},
    )
    airflow.wait_for_dags([DAG_ID])
    return {"airflow": airflow, "dags": dags, "env": env, "tmp": tmp, "dagster_port": dagster_port}


@pytest.fixture(scope="module")
def tutorial_dagster(world: dict[str, Any], dagster_server_factory: Callable[..., DagsterServer]) -> Callable[..., DagsterServer]:
    """Start Dagster on ``world``'s port loading ``tutorial_example/dagster_defs/<step>.py`` (with the
    tutorial's environment and the Airflow URL, plus ``extra_env``)."""

    def start(step: str, **extra_env: str) -> DagsterServer:
        packages = repo_root() / "packages"
        return dagster_server_factory(
            defs_file=EXAMPLE / "tutorial_example" / "dagster_defs" / f"{step}.py",
            extra_packages=[*(packages / p for p in ("airlift-protocol", "airlift-client", "airlift-dagster", "airlift-dbt")), EXAMPLE],
            extra_env={**world["env"], "TUTORIAL_AIRFLOW_URL": world["airflow"].url, **extra_env},
            port=world["dagster_port"],
        )

    return start
