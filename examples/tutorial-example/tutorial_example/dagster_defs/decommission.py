from pathlib import Path

from airlift_dagster import load_decommissioned_defs
from tutorial_example.dagster_defs.migrate import defs as migrate_defs

# `airlift decommission rebuild_customers_list` writes decommissioned/rebuild_customers_list.yaml next
# to this file: a job of the DAG's assets, with the schedule of its Airflow timetable
defs = load_decommissioned_defs(Path(__file__).parent / "decommissioned", defs=migrate_defs)
