"""Real Airflow (2.11 or 3.3) and a real Dagster webserver + daemon: a DAG that runs every minute, its
one task migrated, is decommissioned with the ``airlift`` command line. Afterwards the Dagster
schedule materializes the asset every minute, Airflow's DAG is paused and starts no run for a later
tick, and the materializations made while Airflow ran the DAG remain; ``--undo`` unpauses it.

Extended (``uvx nox -t extended -- -k decommission``): 8.5 minutes on Airflow 2.11 on a loaded machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from airlift_testing import AirflowServer, DagsterServer, wait_until
from airlift_testing.procs import free_port

pytestmark = [pytest.mark.integration, pytest.mark.extended]
HERE = Path(__file__).parent / "decommission"
DAG_ID = "decom_minutely"
ASSET = ["decom", "minutely_table"]

MATERIALIZATIONS = """query($key: AssetKeyInput!) { assetOrError(assetKey: $key) {
  ... on Asset { assetMaterializations(limit: 500) { runId timestamp } } } }"""
RUNS = """query($value: String!) { runsOrError(filter: {tags: [{key: "airlift/decommissioned_dag", value: $value}]}) {
  ... on Runs { results { runId status tags { key value } } } } }"""
LOCATIONS = "{ workspaceOrError { ... on Workspace { locationEntries { name } } } }"
RELOAD = """mutation($name: String!) { reloadRepositoryLocation(repositoryLocationName: $name) {
  __typename ... on WorkspaceLocationEntry { locationOrLoadError { __typename ... on PythonError { message } } } } }"""
TICKS = """query($sel: ScheduleSelector!) { scheduleOrError(scheduleSelector: $sel) {
  __typename ... on Schedule { scheduleState { status ticks(limit: 20) { tickId status runIds timestamp } } } } }"""


def _materializations(dagster: DagsterServer) -> list[dict[str, Any]]:
    asset = dagster.graphql(MATERIALIZATIONS, {"key": {"path": ASSET}})["assetOrError"]
    return list(asset.get("assetMaterializations") or [])


def _airlift(dagster: DagsterServer, root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert dagster.venv is not None
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "250", "DECOM_AIRFLOW_URL": os.environ["DECOM_AIRFLOW_URL"]}
    return subprocess.run([str(dagster.venv / "bin" / "airlift"), "decommission", "-d", str(root / "dags"),
                           "--defs", str(root / "dagster_defs.py"), *args],
                          capture_output=True, text=True, env=env, timeout=300, check=False)


def _airflow_runs(airflow: AirflowServer) -> list[dict[str, Any]]:
    return list(airflow.get(f"/dags/{DAG_ID}/dagRuns?limit=100")["dag_runs"])


def _tick_time(run: dict[str, Any]) -> datetime:
    """When the run's tick was (Airflow 2: its data interval end; Airflow 3: run_after)."""
    value = run.get("run_after") or run.get("data_interval_end")
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


#: What each DAG of decommission/dags/decom_forms.py translates to, as Airflow serves it (Airflow 2, Airflow 3):
#: kind and cron, or the start of the refusal's reason.
FORMS = {
    "form_none": ("manual", None),
    "form_once": ("manual", None),
    "form_daily": ("cron", "0 0 * * *"),
    "form_cron": ("cron", "*/5 * * * *"),
    "form_delta": ("interval", None),
    "form_cron_trigger": ("cron or refused", "0 3 * * *"),
    "form_cron_interval": ("cron", "0 3 * * *"),
    "form_delta_interval": ("interval", None),
    "form_tz_mismatch": ("refused", "is not a tick of cron '0 3 * * *'"),
    "form_one_dataset": ("assets", None),
    "form_any_dataset": ("assets", None),
    "form_nested_dataset": ("refused", "the dataset condition"),
    "form_continuous": ("refused", "'@continuous'"),
}
TRANSLATE = """
import json, sys
from airlift_client import AirflowInstance, BasicAuthBackend
from airlift_dagster.decommission import TimetableNotSupportedError, schedule_from_timetable
instance = AirflowInstance(auth_backend=BasicAuthBackend(sys.argv[1], "admin", "admin"), name="forms")
out = {}
for dag_id in sys.argv[2:]:
    timetable = instance.get_dag_timetable(dag_id)
    try:
        s = schedule_from_timetable(timetable)
        out[dag_id] = {"kind": s.kind, "cron": s.cron, "timezone": s.timezone, "interval_seconds": s.interval_seconds,
                       "uris": list(s.uris), "condition": s.condition, "catchup": s.catchup, "source": s.source}
    except TimetableNotSupportedError as e:
        out[dag_id] = {"kind": "refused", "reason": str(e)}
print(json.dumps(out))
"""


def test_decommissioned_dag_runs_on_a_dagster_schedule(
    airflow_server_factory: Callable[..., AirflowServer],
    dagster_server_factory: Callable[..., DagsterServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = tmp_path / "project"
    shutil.copytree(HERE, root)
    airflow_port, dagster_port = free_port(), free_port()
    airflow_url = f"http://127.0.0.1:{airflow_port}"
    monkeypatch.setenv("DECOM_AIRFLOW_URL", airflow_url)
    packages = Path(__file__).resolve().parents[3]
    airflow = airflow_server_factory(  # first: the code location reads Airflow's DAGs when it loads
        root / "dags", port=airflow_port,
        extra_packages=[packages / "airlift-protocol", packages / "airlift-airflow"],
        extra_env={"AIRFLOW_CONN_DAGSTER_DEFAULT": f"http://127.0.0.1:{dagster_port}"}, startup_timeout=600,
    )
    airflow.wait_for_dags([DAG_ID, *FORMS])
    dagster = dagster_server_factory(defs_file=root / "dagster_defs.py", port=dagster_port,
                                     extra_env={"DECOM_AIRFLOW_URL": airflow_url}, startup_timeout=600)
    location = dagster.graphql(LOCATIONS)["workspaceOrError"]["locationEntries"][0]["name"]

    def reload() -> None:
        answer = dagster.graphql(RELOAD, {"name": location}, timeout=300)["reloadRepositoryLocation"]  # it reads Airflow again
        assert answer["locationOrLoadError"]["__typename"] != "PythonError", answer

    # 1. Airflow runs the DAG every minute; its migrated task materializes the asset through Dagster
    airflow.unpause(DAG_ID)
    done = wait_until(lambda: [r for r in _airflow_runs(airflow) if r["state"] == "success"] or None,
                      timeout=600, interval=5, what="a successful Airflow run", log_path=airflow.log_path)
    assert done
    before = _materializations(dagster)
    assert before, "the migrated task's Dagster run materialized the asset"

    # 2. dry run: the file and the pause are shown, nothing changes
    dry = _airlift(dagster, root, DAG_ID, "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "+  cron: '* * * * *'" in dry.stdout and "dry run: would write" in dry.stdout
    assert not (root / "decommissioned").exists()
    assert not airflow.get(f"/dags/{DAG_ID}")["is_paused"]

    # 3. decommission: Airflow's DAG is paused, Dagster gets the job and its running schedule
    result = _airlift(dagster, root, DAG_ID)
    assert result.returncode == 0, result.stdout + result.stderr
    paused_at = datetime.now(timezone.utc)
    print(f"\n--- airlift decommission {DAG_ID} (Airflow {airflow.version}) ---\n{result.stdout}")
    assert airflow.get(f"/dags/{DAG_ID}")["is_paused"] is True
    assert (root / "decommissioned" / f"{DAG_ID}.yaml").exists()
    reload()
    wait_until(lambda: all(r["state"] in ("success", "failed") for r in _airflow_runs(airflow)) or None, timeout=300, interval=5,
               what="Airflow's runs started before the pause to finish")
    before = _materializations(dagster)

    # 4. the Dagster schedule materializes the asset every minute
    def schedule_runs() -> list[dict[str, Any]]:
        return [r for r in dagster.graphql(RUNS, {"value": DAG_ID})["runsOrError"]["results"] if r["status"] == "SUCCESS"]

    wait_until(lambda: schedule_runs()[1:] or None, timeout=420, interval=5, what="two successful runs of the Dagster schedule")
    after = _materializations(dagster)
    runs = schedule_runs()
    selector = {"repositoryLocationName": location, "repositoryName": "__repository__",
                "scheduleName": "decom_minutely_decommissioned_schedule"}
    state = dagster.graphql(TICKS, {"sel": selector})["scheduleOrError"]["scheduleState"]
    ticks = [t for t in state["ticks"] if t["runIds"]]
    print(f"schedule {state['status']}; ticks with runs: " + ", ".join(f"{t['tickId']}->{t['runIds']}" for t in ticks))
    print(f"materializations of {'/'.join(ASSET)}: {len(before)} before the schedule's runs, {len(after)} after; "
          f"schedule runs: {[r['runId'] for r in runs]}")
    assert state["status"] == "RUNNING" and len(ticks) >= 2
    assert {r["runId"] for r in runs} <= {m["runId"] for m in after}
    assert {m["runId"] for m in before} <= {m["runId"] for m in after}, "earlier materializations remain"
    assert len(after) >= len(before) + 2
    tags = {t["key"]: t["value"] for t in runs[0]["tags"]}
    assert "airlift/data_interval_start" in tags

    # 5. Airflow started no run for a tick after the pause
    late = [r["dag_run_id"] for r in _airflow_runs(airflow) if _tick_time(r).timestamp() > paused_at.timestamp() + 5]
    assert not late, late
    assert airflow.get(f"/dags/{DAG_ID}")["is_paused"] is True

    # 6. undo: Airflow schedules the DAG again, the file is gone
    undone = _airlift(dagster, root, DAG_ID, "--undo")
    assert undone.returncode == 0, undone.stdout + undone.stderr
    assert airflow.get(f"/dags/{DAG_ID}")["is_paused"] is False
    assert not (root / "decommissioned" / f"{DAG_ID}.yaml").exists()
    airflow.patch(f"/dags/{DAG_ID}", json={"is_paused": True})

    # 7. every timetable form as this Airflow serves it translates as documented (or is refused)
    assert dagster.venv is not None
    translated = json.loads(subprocess.run([str(dagster.venv / "bin" / "python"), "-c", TRANSLATE, airflow_url, *FORMS],
                                           capture_output=True, text=True, check=True, timeout=300).stdout)
    print(f"\n--- timetables of Airflow {airflow.version} ---\n" + "\n".join(f"{d}: {t}" for d, t in translated.items()))
    for dag_id, (kind, detail) in FORMS.items():
        got = translated[dag_id]
        if kind == "cron or refused":  # a timetable timezone: translated in that timezone, or refused (Airflow 2.11)
            assert (got["kind"], got.get("timezone")) == ("cron", "Europe/Paris") or "is not a tick" in got.get("reason", ""), got
            continue
        assert got["kind"] == kind, (dag_id, got)
        if kind == "cron":
            assert got["cron"] == detail, (dag_id, got)
        if kind == "refused":
            assert detail in got["reason"], (dag_id, got)
    assert translated["form_cron"]["catchup"] is True
    assert translated["form_delta"]["interval_seconds"] == 7200
    assert translated["form_delta_interval"]["interval_seconds"] == 7 * 86400
    assert translated["form_one_dataset"]["uris"] == ["warehouse://decom/a"]
    assert (translated["form_any_dataset"]["condition"], translated["form_any_dataset"]["uris"]) == (
        "any", ["warehouse://decom/a", "warehouse://decom/b"])
