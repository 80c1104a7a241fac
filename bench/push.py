"""Push vs polling: from an Airflow task's end to its materialization in Dagster's event log.

One real Airflow (2.11 or 3.3, production shape: PostgreSQL + LocalExecutor) with airlift-airflow's
push listener on, and one real Dagster webserver + daemon holding TWO Airlift instances of that same
Airflow: ``bench_push`` (its sensor stopped: its events come from the listener only) and
``bench_poll`` (its sensor running at the default 30 s interval, no push: the listener reports for
``bench_push`` only). One DAG run of ``--tasks`` parallel tasks (each mapped to one asset per
instance) ends in a burst; for every task, the latency is the event's storage time in Dagster minus
the task's end date in Airflow (same machine, same clock). Also the time the listener held each task's
process (its own log line: handing the events to the push relay, after the
task's success was recorded).

    uvx nox -s bench_push -- --airflow 3        # or --airflow 2; about 10 minutes each

Prints a table and writes ``bench/results/push-airflow<N>.json``.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import textwrap
import time
from datetime import datetime
from pathlib import Path

from airlift_testing import AirflowServer, DagsterServer, free_port, repo_root, wait_until

DAG_ID = "push_bench"
PUSH, POLL = "bench_push", "bench_poll"

DAG = '''
from datetime import datetime
import time

try:
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG
except ImportError:
    from airflow import DAG
    from airflow.operators.python import PythonOperator

with DAG("{dag}", start_date=datetime(2024, 1, 1), schedule=None, catchup=False, max_active_tasks={tasks}):
    for i in range({tasks}):
        PythonOperator(task_id=f"t_{{i:03d}}", python_callable=lambda: time.sleep(0.5))
'''

DEFS = '''
import os
import dagster as dg
from airlift_dagster import AirflowInstance, BasicAuthBackend, build_defs_from_airflow_instance, dag_defs, task_defs

def _instance(name, status):
    auth = BasicAuthBackend(webserver_url=os.environ["BENCH_AIRFLOW_URL"], username="admin", password="admin")
    return build_defs_from_airflow_instance(
        airflow_instance=AirflowInstance(auth_backend=auth, name=name),
        defs=dag_defs("{dag}", *[task_defs(f"t_{{i:03d}}", dg.AssetSpec([name, f"t_{{i:03d}}"])) for i in range({tasks})]),
        default_sensor_status=status,
        dag_selector_fn=lambda dag: dag.dag_id == "{dag}",
    )

defs = dg.Definitions.merge(_instance("{push}", dg.DefaultSensorStatus.STOPPED), _instance("{poll}", dg.DefaultSensorStatus.RUNNING))
'''

EVENTS = """query($key: AssetKeyInput!) { assetOrError(assetKey: $key) { ... on Asset {
  assetMaterializations(limit: 5) { timestamp metadataEntries { label ... on TextMetadataEntry { text } } } } } }"""


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def stored_at(dagster: DagsterServer, path: list[str], run_id: str) -> float | None:
    data = dagster.graphql(EVENTS, {"key": {"path": path}})["assetOrError"]
    for m in data.get("assetMaterializations") or []:
        meta = {e["label"]: e.get("text") for e in m["metadataEntries"]}
        if meta.get("Airflow run id") == run_id:
            return float(m["timestamp"]) / 1000.0
    return None


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p95 = ordered[max(0, min(len(ordered) - 1, round(0.95 * len(ordered)) - 1))]
    return {"n": len(ordered), "p50": statistics.median(ordered), "p95": p95, "max": ordered[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--airflow", default="3", help="Airflow generation: 2 or 3")
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--shape", default="production", help="Airflow server shape (production: PostgreSQL + LocalExecutor)")
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args()
    packages = repo_root() / "packages"
    with tempfile.TemporaryDirectory(prefix="airlift-push-bench-") as tmp:
        root = Path(tmp)
        (root / "dags").mkdir()
        (root / "dags" / "push_bench.py").write_text(textwrap.dedent(DAG.format(dag=DAG_ID, tasks=args.tasks)))
        (root / "defs.py").write_text(textwrap.dedent(DEFS.format(dag=DAG_ID, tasks=args.tasks, push=PUSH, poll=POLL)))
        dagster_port = free_port()
        airflow = AirflowServer(
            version=args.airflow, dags_folder=root / "dags", home=root / "airflow", shape=args.shape,
            extra_packages=[packages / "airlift-protocol", packages / "airlift-airflow"],
            extra_env={
                "AIRFLOW_CONN_DAGSTER_DEFAULT": f"http://127.0.0.1:{dagster_port}",
                "AIRFLOW__AIRLIFT__PUSH_ENABLED": "True",
                "AIRFLOW__AIRLIFT__INSTANCE_NAME": PUSH,
                "AIRFLOW__AIRLIFT__RELAY_IDLE_SECONDS": "20",  # the push relay exits soon after the servers
                "AIRFLOW__CORE__PARALLELISM": "16",
            },
        )
        dagster = DagsterServer(defs_file=root / "defs.py", home=root / "dagster", port=dagster_port,
                                extra_env={"BENCH_AIRFLOW_URL": ""})
        try:
            airflow.start()
            airflow.wait_for_dags([DAG_ID])
            dagster.extra_env["BENCH_AIRFLOW_URL"] = airflow.url
            dagster.start()
            run_id = airflow.trigger(DAG_ID)
            run = airflow.wait_for_run(DAG_ID, run_id, timeout=args.timeout)
            tis = {t["task_id"]: t for t in airflow.task_instances(DAG_ID, run_id)}
            assert run["state"] == "success", (run, airflow.log_tail())
            ends = {task_id: _ts(t["end_date"]) for task_id, t in tis.items()}
            latency: dict[str, dict[str, float]] = {PUSH: {}, POLL: {}}

            def collected() -> bool:
                for name in (PUSH, POLL):
                    for task_id in ends:
                        if task_id not in latency[name]:
                            at = stored_at(dagster, [name, task_id], run_id)
                            if at is not None:
                                latency[name][task_id] = at - ends[task_id]
                return all(len(latency[n]) == len(ends) for n in (PUSH, POLL))

            wait_until(collected, timeout=args.timeout, what="every materialization, pushed and polled", interval=5.0)
            listener_ms = [float(m) for p in (root / "airflow" / "logs").rglob("*.log")
                           for m in re.findall(r"Airlift push: task events [^;]*; the listener took ([0-9.]+) ms", p.read_text(errors="replace"))]
            queued = sum(p.read_text(errors="replace").count("Airlift push: task events still queued")
                         for p in (root / "airflow" / "logs").rglob("*.log"))
            durations = [float(t["duration"]) for t in tis.values() if t.get("duration") is not None]
        finally:
            dagster.stop()
            airflow.stop()
    span = max(ends.values()) - min(ends.values())
    result = {
        "airflow": airflow.version, "shape": args.shape, "tasks": args.tasks, "end_span_s": span,
        "push": percentiles(list(latency[PUSH].values())), "poll": percentiles(list(latency[POLL].values())),
        "listener_ms": percentiles(listener_ms) if listener_ms else None, "listener_still_queued": queued,
        "task_duration_s": percentiles(durations), "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    print(f"\nAirflow {airflow.version} ({args.shape}), {args.tasks} tasks ending within {span:.1f} s, latency task end -> Dagster event log (s)")
    print(f"{'':<26}{'n':>5}{'p50':>9}{'p95':>9}{'max':>9}")
    for label, key in (("push (listener)", "push"), ("polling (sensor, 30 s)", "poll")):
        r = result[key]
        print(f"{label:<26}{r['n']:>5}{r['p50']:>9.2f}{r['p95']:>9.2f}{r['max']:>9.2f}")
    if listener_ms:
        r = result["listener_ms"]
        print(f"listener time per task (ms){r['n']:>4}{r['p50']:>9.1f}{r['p95']:>9.1f}{r['max']:>9.1f}   still queued after flush: {queued}")
    out = repo_root() / "bench" / "results" / f"push-airflow{args.airflow}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {out}")
    sys.exit(0)


if __name__ == "__main__":
    main()
