"""The sensor that turns Airflow history into Dagster events, exactly once.

The unit of truth is the task-instance TRY, ``(instance, dag_id, run_id, task_id, map_index,
try_number)``: one successful try gives one materialization per mapped asset; one DAG run becoming
successful, ``(instance, dag_id, run_id, end_date)``, gives one materialization of the DAG asset.
Every event the sensor emits carries that identity (:class:`airlift_protocol.tags.AirflowEventId`):
materializations in their tags, check evaluations and observations in their metadata.

Airflow history is mutable (tasks are cleared and re-run, runs and tasks are marked, commits land
late), so a tick reads what CHANGED in a time window rather than what finished. A change source
(:mod:`.sources`) says what changed: the runs whose ``updated_at`` is in the window, and by default
the task instances named by the rows of Airflow's audit log written in the window (indexed by time),
read by run; without access to the audit log, the task instances whose ``updated_at`` is in the
window (a scan of the largest table). A tick (:mod:`.tick`) is five steps,
each testable alone, each in the module named after it:

1. :func:`plan_tick` (:mod:`.windows`, pure): the time window after the cursor's
   high-water mark, an older window to re-read once the lateness window has passed, DAGs new to the mapping to backfill;
2. :func:`fetch_changes` (:mod:`.fetch`, Airflow I/O): the older window (within half of ``max_rows_per_tick``
   while a new window waits), the new window with the rows left, then the rest of the older window; each is sized
   to the rows it may take (cut to the share of its count that fits), then read with strict paging: a failing or
   changing page fails the tick, the cursor does not move;
   :func:`fetch_dataset_events` reads the dataset / asset events of the same windows (only when
   datasets are mapped) and :func:`fetch_partition_runs` the runs naming the partitions of
   time-partitioned assets (only when some are mapped);
3. :func:`build_emissions` (:mod:`.emissions`, pure): events in Airflow's execution order, run by
   run: task assets by the DAG's task dependencies and end dates, then the DAG asset (candidates: step 4 drops what was
   delivered already); :func:`build_dataset_emissions` gives one materialization per dataset / asset event;
4. :func:`~.ledger.settle_deliveries` (:mod:`.ledger`, reads bounded by the asset and check keys at
   stake): the one place that decides "already delivered?" for every candidate, whichever path
   (sensor, push, a migrated task's Dagster run) or replay delivered it, within the tick too;
5. :func:`advance_cursor` (:mod:`.cursor`, pure): move the high-water mark over what was read and
   emitted.

The user's event transformer (:mod:`airlift_dagster.transform`), if any, then sees what is left.

Late commits: a window read by step 2 is remembered as (bounds, row count, digest) and read once more
when ``lateness_window`` has passed; if its rows differ, the difference is emitted (after step 4).
Then it is *settled*: the cursor keeps its row count, and each tick counts the settled windows at once
(:func:`audit_settled`); a window holding more rows than counted got a commit later than the lateness
window: it is re-read and its new rows are reported (marked ``Committed late``) with a warning, or, if it
is too large to re-read, warned about with the way to recover (:func:`late_warnings`).
The cursor stays a few kilobytes whatever the run rate.

The sensor definition is built in :mod:`.definition`; :mod:`.settings` holds the knobs and the plan
fixed by the definitions.
"""

from __future__ import annotations

from airlift_dagster.sensor.cursor import CURSOR_VERSION, AirliftSensorCursor
from airlift_dagster.sensor.definition import build_airflow_sensor
from airlift_dagster.sensor.settings import SensorPlan, SensorSettings
from airlift_dagster.sensor.tick import TickOutcome, evaluate_tick
from airlift_protocol.events import DAG_RUN_CHECK_NAME, PARTITION_CHECK_NAME, TASK_RUN_CHECK_NAME

__all__ = [
    "CURSOR_VERSION",
    "DAG_RUN_CHECK_NAME",
    "PARTITION_CHECK_NAME",
    "TASK_RUN_CHECK_NAME",
    "AirliftSensorCursor",
    "SensorPlan",
    "SensorSettings",
    "TickOutcome",
    "build_airflow_sensor",
    "evaluate_tick",
]
