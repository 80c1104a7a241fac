import os
from pathlib import Path

from airlift_dagster import load_decommissioned_defs
from tutorial_example.dagster_defs import migrate

# `airlift decommission rebuild_customers_list` writes decommissioned/rebuild_customers_list.yaml next
# to this file (or in AIRLIFT_DECOMMISSIONED_DIR, which is also the command's --out-dir): a job of the
# DAG's assets, with the schedule of its Airflow timetable. (The module, not its `defs`, is imported:
# Dagster refuses a second Definitions object at module scope.)
folder = os.environ.get("AIRLIFT_DECOMMISSIONED_DIR") or Path(__file__).parent / "decommissioned"
defs = load_decommissioned_defs(folder, defs=migrate.defs)
