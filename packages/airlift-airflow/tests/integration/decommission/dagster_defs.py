"""Dagster side of the decommission test: the peered Airflow, the migrated task's asset, and the
definitions of decommissioned DAGs (decommissioned/ next to this file)."""

import os
from pathlib import Path

import dagster as dg

from airlift_dagster import (
    AirflowInstance,
    BasicAuthBackend,
    build_defs_from_airflow_instance,
    dag_defs,
    load_decommissioned_defs,
    task_defs,
)

airflow_instance = AirflowInstance(
    auth_backend=BasicAuthBackend(os.environ["DECOM_AIRFLOW_URL"], "admin", "admin"), name="decom_airflow"
)


@dg.asset(key=["decom", "minutely_table"])
def minutely_table() -> None:
    pass


defs = load_decommissioned_defs(
    Path(__file__).parent / "decommissioned",
    defs=build_defs_from_airflow_instance(
        airflow_instance=airflow_instance,
        defs=dag_defs("decom_minutely", task_defs("build", dg.Definitions(assets=[minutely_table]))),
    ),
)
