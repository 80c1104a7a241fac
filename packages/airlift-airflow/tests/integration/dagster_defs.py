"""Dagster side of the end-to-end test: the middle task's asset, tagged by hand."""

import os
from pathlib import Path

import dagster as dg


@dg.asset(key=["e2e", "middle_table"], tags={"airlift/dag_id": "e2e_pipeline", "airlift/task_id": "middle"})
def middle_table() -> None:
    markers = Path(os.environ["AIRLIFT_E2E_MARKERS"])
    if (markers / "make_dagster_fail").exists():
        raise RuntimeError("middle_table failed on purpose")
    (markers / "dagster_ran_middle").write_text("dagster")


defs = dg.Definitions(assets=[middle_table])
