"""A second Dagster code location: its asset belongs to the same Airflow task as one in the first."""

import os
from pathlib import Path

import dagster as dg


@dg.asset(key=["e2e", "loc_two_table"], tags={"airlift/dag_id": "e2e_two_locations", "airlift/task_id": "both"})
def loc_two_table() -> None:
    markers = Path(os.environ["AIRLIFT_E2E_MARKERS"])
    if not (markers / "loc_two_failed_once").exists():
        (markers / "loc_two_failed_once").write_text("1")
        raise RuntimeError("loc_two_table fails on its first run")


defs = dg.Definitions(assets=[loc_two_table])
