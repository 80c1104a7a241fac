"""Dagster side of the end-to-end tests: the assets of the migrated tasks, tagged by hand."""

import os
import time
from pathlib import Path

import dagster as dg


@dg.asset(key=["e2e", "middle_table"], tags={"airlift/dag_id": "e2e_pipeline", "airlift/task_id": "middle"})
def middle_table() -> None:
    markers = Path(os.environ["AIRLIFT_E2E_MARKERS"])
    if (markers / "make_dagster_fail").exists():
        raise RuntimeError("middle_table failed on purpose")
    (markers / "dagster_ran_middle").write_text("dagster")


@dg.asset(key=["e2e", "slow_table"], tags={"airlift/dag_id": "e2e_reattach", "airlift/task_id": "slow"})
def slow_table() -> None:
    """Outlives the Airflow task's execution_timeout, so the retry must re-attach to this run."""
    time.sleep(12)
    markers = Path(os.environ["AIRLIFT_E2E_MARKERS"])
    with (markers / "slow_table_runs").open("a") as f:
        f.write("ran\n")


defs = dg.Definitions(assets=[middle_table, slow_table])
