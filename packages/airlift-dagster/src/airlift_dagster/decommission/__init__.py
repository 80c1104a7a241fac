"""Decommission: a DAG whose tasks all run in Dagster becomes a Dagster job with the schedule (or
dataset automation) of its Airflow timetable; the Airflow DAG is paused, its history stays in Dagster.

``airlift decommission DAG_ID`` writes ``<folder>/<dag_id>.yaml`` (:mod:`.plan`) from the DAG's
timetable (:mod:`.timetable`); :func:`load_decommissioned_defs` (:mod:`.build`) turns the folder into
definitions.
"""

from __future__ import annotations

from airlift_dagster.decommission.build import (
    DATA_INTERVAL_END_TAG,
    DATA_INTERVAL_START_TAG,
    DECOMMISSIONED_DAG_TAG,
    decommissioned_job_name,
    due_intervals,
    load_decommissioned_defs,
)
from airlift_dagster.decommission.plan import (
    DecommissionFileError,
    DecommissionPlan,
    dump_decommission_plan,
    load_decommission_plan,
)
from airlift_dagster.decommission.timetable import (
    DagSchedule,
    TimetableNotSupportedError,
    schedule_from_timetable,
)

__all__ = [
    "DATA_INTERVAL_END_TAG",
    "DATA_INTERVAL_START_TAG",
    "DECOMMISSIONED_DAG_TAG",
    "DagSchedule",
    "DecommissionFileError",
    "DecommissionPlan",
    "TimetableNotSupportedError",
    "decommissioned_job_name",
    "due_intervals",
    "dump_decommission_plan",
    "load_decommission_plan",
    "load_decommissioned_defs",
    "schedule_from_timetable",
]
