"""Dagster side of the end-to-end tests: the assets of the migrated tasks, tagged by hand."""

import os
import time
from pathlib import Path

import dagster as dg


def _markers() -> Path:
    return Path(os.environ["AIRLIFT_E2E_MARKERS"])


@dg.asset(key=["e2e", "middle_table"], tags={"airlift/dag_id": "e2e_pipeline", "airlift/task_id": "middle"})
def middle_table() -> None:
    if (_markers() / "make_dagster_fail").exists():
        raise RuntimeError("middle_table failed on purpose")
    (_markers() / "dagster_ran_middle").write_text("dagster")


@dg.asset(key=["e2e", "slow_table"], tags={"airlift/dag_id": "e2e_kill", "airlift/task_id": "slow"})
def slow_table() -> None:
    """Outlives the Airflow task's execution_timeout: the task's on_kill terminates this run."""
    time.sleep(300)
    (_markers() / "slow_table_finished").write_text("1")


@dg.asset(key=["e2e", "proxied_table"], tags={"airlift/dag_id": "e2e_slow_launch", "airlift/task_id": "via_proxy"})
def proxied_table() -> None:
    with (_markers() / "proxied_table_runs").open("a") as f:
        f.write("ran\n")


@dg.asset(key=["e2e", "deferred_table"], tags={"airlift/dag_id": "e2e_deferred", "airlift/task_id": "deferred"})
def deferred_table() -> None:
    time.sleep(8)


@dg.asset(key=["e2e", "loc_one_table"], tags={"airlift/dag_id": "e2e_two_locations", "airlift/task_id": "both"})
def loc_one_table() -> None:
    with (_markers() / "loc_one_runs").open("a") as f:
        f.write("ran\n")


@dg.asset(
    key=["e2e", "daily_table"],
    partitions_def=dg.DailyPartitionsDefinition(start_date="2024-01-01"),
    tags={"airlift/dag_id": "e2e_daily", "airlift/task_id": "daily"},
)
def daily_table(context: dg.AssetExecutionContext) -> None:
    (_markers() / f"daily_partition_{context.partition_key}").write_text(context.run.run_id)


@dg.asset(key=["e2e", "whole_table"], tags={"airlift/dag_id": "e2e_whole"})
def whole_table() -> None:
    (_markers() / "dagster_ran_whole").write_text("dagster")


@dg.asset(key=["e2e", "retried_table"], tags={"airlift/dag_id": "e2e_dagster_retry", "airlift/task_id": "retried"})
def retried_table() -> None:
    """Fails on its first run; Dagster's run retry (dagster/max_retries) runs it again."""
    with (_markers() / "retried_table_runs").open("a") as f:
        f.write("ran\n")
    if (_markers() / "retried_table_runs").read_text().count("ran") == 1:
        raise RuntimeError("retried_table fails on its first run")


@dg.asset(key=["e2e", "outage_table"], tags={"airlift/dag_id": "e2e_outage", "airlift/task_id": "waits_out"})
def outage_table() -> None:
    """Runs until the test has stopped and restarted the webserver (at most 10 minutes)."""
    with (_markers() / "outage_table_runs").open("a") as f:
        f.write("ran\n")
    deadline = time.monotonic() + 600
    while not (_markers() / "outage_over").exists() and time.monotonic() < deadline:
        time.sleep(0.5)


@dg.asset(key=["e2e", "mark_failed_table"], tags={"airlift/dag_id": "e2e_mark_failed", "airlift/task_id": "deferred_long"})
def mark_failed_table() -> None:
    """Runs until the test releases it (at most 10 minutes)."""
    deadline = time.monotonic() + 600
    while not (_markers() / "release_mark_failed").exists() and time.monotonic() < deadline:
        time.sleep(0.5)


@dg.asset(key=["e2e", "custom_table"], partitions_def=dg.MonthlyPartitionsDefinition(start_date="2024-01-01"))
def custom_table(context: dg.AssetExecutionContext) -> None:
    """No Airlift tags: the migrated task names it with asset_keys."""
    (_markers() / f"custom_partition_{context.partition_key}").write_text(context.run.run_id)


class ParamsConfig(dg.Config):
    region: str = "nowhere"
    limit: int = 1


@dg.asset(key=["e2e", "params_table"], tags={"airlift/dag_id": "e2e_params", "airlift/task_id": "with_params"})
def params_table(context: dg.AssetExecutionContext, config: ParamsConfig) -> None:
    """Writes the config it got: the Airflow run's params overridden by its conf."""
    (_markers() / "params").write_text(f"{config.region} {config.limit} {context.run.run_id}")


# The DAG assets ``[instance, "dag", dag_id]`` a peered Airflow has: the operator learns its instance name from them.
INSTANCE = "e2e_airflow"
DAG_IDS = ("e2e_pipeline", "e2e_kill", "e2e_slow_launch", "e2e_two_locations", "e2e_deferred", "e2e_daily", "e2e_whole",
           "e2e_dagster_retry", "e2e_outage", "e2e_mark_failed", "e2e_custom", "e2e_params")
dag_assets = [dg.AssetSpec([INSTANCE, "dag", dag_id]) for dag_id in DAG_IDS]

defs = dg.Definitions(
    assets=[middle_table, slow_table, proxied_table, deferred_table, loc_one_table, daily_table, whole_table,
            retried_table, outage_table, mark_failed_table, custom_table, params_table, *dag_assets]
)
