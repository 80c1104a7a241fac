"""The production-shaped deployment's configuration, checked without starting it."""

from __future__ import annotations

import configparser
import string
import subprocess
from pathlib import Path

import yaml

from airlift_testing.deploy import (
    AIRFLOW_CFG,
    DAGSTER_YAML,
    CeleryAirflow,
    DeployedDagster,
    _library_pin,
    processes_using,
)
from airlift_testing.versions import dagster_requirements


def test_airflow_cfg_decides_what_it_sets(tmp_path: Path) -> None:
    server = CeleryAirflow(version="3", dags_folder=tmp_path, home=tmp_path / "home", extra_env={"X_EXTRA": "1"})
    server.home.mkdir()
    server.venv = tmp_path / "venv"
    env = server.env()
    assert not {"AIRFLOW__CORE__EXECUTOR", "AIRFLOW__CORE__PARALLELISM", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"} & set(env)
    assert env["X_EXTRA"] == "1" and env["AIRFLOW_HOME"] == str(tmp_path / "home")
    assert {"apache-airflow-providers-celery>=3.26", "redis", "psycopg2-binary"} <= set(server.extra_requirements)
    template = string.Template(AIRFLOW_CFG.read_text())
    assert set(template.get_identifiers()) == {"DATABASE_URL", "BROKER_URL"}
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(template.substitute(DATABASE_URL="postgresql+psycopg2://u@h/db", BROKER_URL="redis://h:1/0"))
    assert parser["core"]["executor"] == "CeleryExecutor"
    assert parser["celery"]["result_backend"] == "db+postgresql+psycopg2://u@h/db"
    assert float(parser["celery"]["operation_timeout"]) >= 10  # the default 1 s failed tasks on a loaded machine
    assert parser["airlift"]["push_enabled"] == "True"


def test_dagster_yaml_and_its_library_pin(tmp_path: Path) -> None:
    config = yaml.safe_load(DAGSTER_YAML.read_text())
    assert config["storage"]["postgres"]["postgres_url"] == {"env": "DAGSTER_POSTGRES_URL"}
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert config["run_coordinator"]["config"]["max_concurrent_runs"] == 1
    server = DeployedDagster(defs_file=tmp_path / "defs.py", location_name="loc", home=tmp_path / "home")
    assert server.instance_config() == DAGSTER_YAML.read_text()
    dbt = next(r for r in dagster_requirements() if r.startswith("dagster-dbt=="))
    assert _library_pin("dagster-postgres") == "dagster-postgres" + dbt.removeprefix("dagster-dbt")
    assert server.extra_requirements[-1] == _library_pin("dagster-postgres")


def test_processes_using_a_folder(tmp_path: Path) -> None:
    child = subprocess.Popen(["sleep", "60"], cwd=tmp_path)
    try:
        assert any(line.split()[0] == str(child.pid) for line in processes_using(tmp_path))
    finally:
        child.kill()
        child.wait()
    assert processes_using(tmp_path) == []
