"""Costs at production size (``uvx nox -s bench_scale``; see bench/README.md).

    python bench/scale.py [--quick] [--parts airflow,ledger,loads] [--unrelated 1000000] [--keys 100]
                          [--load-dags 1000,10000] [--latency 0.02] [--airflow-versions 2,3]
                          [--airflow-dags 500] [--airflow-runs 1000] [--changed-per-minute 2000] [--busy-ticks 6]

0. ``airflow``: sensor ticks against a real Airflow 2.11 and 3.3 on PostgreSQL seeded by SQL with
   ``--airflow-dags`` x ``--airflow-runs`` DAG runs of 10 task instances each (5,000,000 by default),
   ``--changed-per-minute`` task instances finishing per simulated minute: wall, CPU, peak memory,
   requests, and the database's time and blocks per tick (``pg_stat_statements``), and the plans of
   the sensor's statements (``auto_explain``); see :mod:`scale_airflow`.

1. ``ledger``: the sensor's "already stored?" read (:func:`airlift_dagster.sensor.ledger.settle_deliveries`)
   on a Dagster instance (in-memory SQLite, as the unit tests use) before and after seeding
   ``--unrelated`` materializations of 1,000 other assets (bulk SQL inserts), for a steady tick (one
   candidate per key, half of them pushed already) and for a tick of a 1-day backlog (12 candidates
   per key spread over the day, the key pushed every 5 minutes all day). Prints the median time of
   3 evaluations, the records read and the SQL statements issued.
2. ``loads``: definitions built from the fake Airflow (``airlift_testing.fake_airflow``, ``--latency``
   seconds per request) at ``--load-dags`` DAGs x 10 tasks, two tasks per DAG mapped, with every
   option combination of a server-side DAG filter and the source switch: wall time, requests, peak
   RSS of a fresh process and the reconstruction metadata size.

Results go to ``bench/results/scale.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "testing" / "airlift-testing" / "src"))

INSTANCE = "bench"


# --------------------------------------------------------------------------------------- ledger
def _seed_unrelated(dagster: Any, count: int, now: datetime) -> float:
    """``count`` materializations of 1,000 unrelated assets spread over the last day, by SQL."""
    from dagster import AssetMaterialization

    started = time.perf_counter()
    for i in range(1000):
        dagster.report_runless_asset_event(AssetMaterialization(["unrelated", f"asset_{i:04d}"]))
    copies = max(0, count - 1000)
    day = 86400.0
    with dagster.event_log_storage.index_connection() as conn:
        first = conn.exec_driver_sql("SELECT min(id) FROM event_logs WHERE asset_key LIKE '%unrelated%'").scalar()
        conn.exec_driver_sql(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
            "INSERT INTO event_logs (run_id, event, dagster_event_type, timestamp, step_key, asset_key, partition) "
            "SELECT e.run_id, e.event, e.dagster_event_type, datetime(?, '+' || ((n.i * 7919) % ?) || ' seconds'), "
            "e.step_key, e.asset_key, e.partition FROM n JOIN event_logs e ON e.id = ? + (n.i % 1000)",
            (copies - 1, (now - timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S"), int(day), first),
        )
        conn.exec_driver_sql("ANALYZE")
    return time.perf_counter() - started


def _ledger_case(dagster: Any, emissions: list[Any], floor: datetime) -> dict[str, Any]:
    from sqlalchemy import event

    from airlift_dagster.sensor.ledger import BuiltTries, settle_deliveries

    statements = [0]
    engine = dagster.event_log_storage._engine

    def count(*_: Any) -> None:
        statements[0] += 1

    times = []
    event.listen(engine, "before_cursor_execute", count)
    try:
        for _ in range(3):
            statements[0] = 0
            started = time.perf_counter()
            out = settle_deliveries(emissions, instance=dagster, instance_name=INSTANCE, built=BuiltTries(), floor=floor)
            times.append(time.perf_counter() - started)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return {"seconds_median": round(statistics.median(times), 4), "records_read": out.records_read,
            "sql_statements": statements[0], "kept": len(out.kept), "held": out.held}


def _pushed(dagster: Any, key: list[str], event_id: Any, when: datetime) -> None:
    """Store what Dagster's report endpoint stores for a push (identity in metadata), at ``when``."""
    from dagster import AssetMaterialization
    from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData
    from dagster._core.events.log import EventLogEntry

    from airlift_protocol.tags import AIRFLOW_EVENT_TAG, AIRFLOW_INSTANCE_RUN_TAG, encode_tag_value

    materialization = AssetMaterialization(key, metadata={AIRFLOW_EVENT_TAG: event_id.key,
                                                          AIRFLOW_INSTANCE_RUN_TAG: encode_tag_value(INSTANCE)})
    dagster.event_log_storage.store_event(EventLogEntry(
        error_info=None, level="debug", user_message="", run_id="", timestamp=when.timestamp(),
        dagster_event=DagsterEvent(DagsterEventType.ASSET_MATERIALIZATION.value, "runless",
                                   event_specific_data=StepMaterializationData(materialization)),
    ))


def ledger(args: argparse.Namespace) -> dict[str, Any]:
    from dagster import AssetMaterialization, DagsterInstance

    from airlift_dagster.sensor.emissions import Emission
    from airlift_protocol.tags import AirflowEventId

    now = datetime.now(timezone.utc).replace(microsecond=0)
    keys = [["mapped", f"asset_{k:04d}"] for k in range(args.keys)]

    def steady(dagster: Any) -> list[Any]:
        out = []
        for k, key in enumerate(keys):
            eid = AirflowEventId(INSTANCE, "dag", f"steady_{k}", task_id="t", try_number=1)
            out.append(Emission(AssetMaterialization(key, tags=eid.tags()), eid, now - timedelta(minutes=1)))
        return out

    def backlog(dagster: Any) -> list[Any]:
        out = []
        for k, key in enumerate(keys):
            for j in range(12):
                eid = AirflowEventId(INSTANCE, "dag", f"backlog_{k}_{j}", task_id="t", try_number=1)
                out.append(Emission(AssetMaterialization(key, tags=eid.tags()), eid, now - timedelta(days=1) + timedelta(hours=2 * j)))
        return out

    results: dict[str, Any] = {}
    with DagsterInstance.ephemeral() as dagster:
        for k, key in enumerate(keys):  # half the steady candidates pushed already
            if k % 2 == 0:
                _pushed(dagster, key, AirflowEventId(INSTANCE, "dag", f"steady_{k}", task_id="t", try_number=1), now)
        for k, key in enumerate(keys):  # the key pushed every 5 minutes for the whole day
            for j in range(288):
                _pushed(dagster, key, AirflowEventId(INSTANCE, "dag", f"other_{k}_{j}", task_id="t", try_number=1),
                        now - timedelta(days=1) + timedelta(minutes=5 * j))
        cases = {"steady": steady(dagster), "backlog": backlog(dagster)}
        for name, emissions in cases.items():
            results[f"{name}_0"] = _ledger_case(dagster, emissions, now - timedelta(days=1))
        seeded = _seed_unrelated(dagster, args.unrelated, now)
        results["seed_seconds"] = round(seeded, 1)
        with dagster.event_log_storage.index_connection() as conn:
            results["event_log_rows"] = conn.exec_driver_sql("SELECT count(*) FROM event_logs").scalar()
        for name, emissions in cases.items():
            results[f"{name}_{args.unrelated}"] = _ledger_case(dagster, emissions, now - timedelta(days=1))
    print(f"\nLedger read, {args.keys} keys at stake, Dagster on in-memory SQLite ({results['event_log_rows']:,} event rows after "
          f"seeding {args.unrelated:,} unrelated in {results['seed_seconds']} s)")
    print(f"{'tick':<10}{'unrelated':>12}{'median s':>10}{'records':>10}{'SQL':>6}{'held':>6}")
    for name in cases:
        for n in (0, args.unrelated):
            r = results[f"{name}_{n}"]
            print(f"{name:<10}{n:>12,}{r['seconds_median']:>10}{r['records_read']:>10}{r['sql_statements']:>6}{r['held']:>6}")
    return results


# ---------------------------------------------------------------------------------------- loads
LOAD_CASES = {
    "all DAGs, default": {},
    "all DAGs, sources": {"include_sources": True},
    "all DAGs, no sources": {"include_sources": False},
    "id glob dag_0000*, no sources": {"include_sources": False, "id_pattern": "dag_0000*"},
}


def _serve_fake(dags: int, latency: float) -> None:
    """Child process: serve the fake Airflow (``dags`` x 10 tasks) until stdin closes; prints its URL."""
    from airlift_testing.fake_airflow import FakeAirflow, FakeAirflowState

    with FakeAirflow(FakeAirflowState.generate(dags=dags, tasks_per_dag=10), generation=2, latency=latency) as fake:
        print(fake.url, flush=True)
        sys.stdin.read()


def _one_load(dags: int, latency: float, case: str) -> dict[str, Any]:
    """Run in a fresh process: definitions built from the fake Airflow, which serves from its own
    process (its CPU and memory are not the code server's); wall, CPU, requests, peak RSS."""
    import resource

    import requests
    from dagster import AssetSpec, Definitions
    from dagster._core.definitions.metadata.metadata_value import (
        CodeLocationReconstructionMetadataValue,
    )

    from airlift_dagster import (
        AirflowInstance,
        BasicAuthBackend,
        DagFilter,
        build_defs_from_airflow_instance,
        dag_defs,
        task_defs,
    )

    options = dict(LOAD_CASES[case])
    pattern = options.pop("id_pattern", None)
    server = subprocess.Popen([sys.executable, __file__, "--serve-fake", f"{dags}:{latency}"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        instance = AirflowInstance(auth_backend=BasicAuthBackend(webserver_url=url, username="admin", password="admin"), name=INSTANCE)
        selected = [f"dag_{d:05d}" for d in range(dags) if pattern is None or f"dag_{d:05d}".startswith(pattern.rstrip("*"))]
        mapping_started = time.perf_counter()
        mapped = Definitions.merge(*(dag_defs(d, *[task_defs(f"task_{t:03d}", AssetSpec([d, f"t{t}"])) for t in range(2)])
                                     for d in selected))
        mapping_seconds = time.perf_counter() - mapping_started
        started, cpu = time.perf_counter(), time.process_time()
        defs = build_defs_from_airflow_instance(airflow_instance=instance, defs=mapped, refresh=True,
                                                dag_filter=DagFilter(id_pattern=pattern) if pattern else None, **options)
        specs = defs.resolve_all_asset_specs()
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        metadata = sum(len(v.value) for v in (defs.metadata or {}).values() if isinstance(v, CodeLocationReconstructionMetadataValue))
        total = requests.get(f"{url}/__bench/requests", timeout=30).json()["total"]
    finally:
        if server.stdin is not None:
            server.stdin.close()
        server.wait(timeout=60)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"dags": dags, "case": case, "seconds": round(wall, 1), "cpu_seconds": round(cpu, 1), "requests": total,
            "mapping_seconds": round(mapping_seconds, 1),
            "assets": len(specs), "peak_rss_mb": round(rss / 1024), "reconstruction_metadata_bytes": metadata}


def loads(args: argparse.Namespace) -> list[dict[str, Any]]:
    out = []
    print(f"\nDefinitions load from the fake Airflow ({args.latency * 1000:.0f} ms per request, Airflow 2 API, in its own process), "
          "10 tasks per DAG, 2 mapped per selected DAG; peak RSS of the loading process")
    print("(wall and CPU: the load, from build_defs_from_airflow_instance to the resolved asset graph; mapping s: the "
          "dag_defs/task_defs mapping built before it, user code, not in the load's figures)")
    print(f"{'DAGs':>7}  {'case':<32}{'assets':>8}{'wall s':>8}{'CPU s':>7}{'requests':>10}{'RSS MB':>8}{'metadata KB':>13}"
          f"{'mapping s':>11}")
    for dags in [int(n) for n in args.load_dags.split(",")]:
        for case in LOAD_CASES:
            proc = subprocess.run([sys.executable, __file__, "--one-load", f"{dags}:{args.latency}:{case}"], capture_output=True,
                                  text=True, check=True)
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            out.append(r)
            print(f"{dags:>7,}  {case:<32}{r['assets']:>8,}{r['seconds']:>8}{r['cpu_seconds']:>7}{r['requests']:>10,}{r['peak_rss_mb']:>8,}"
                  f"{r['reconstruction_metadata_bytes'] / 1024:>13,.0f}{r['mapping_seconds']:>11}", flush=True)
    return out


# ---------------------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100,000 unrelated events, 1,000 DAGs only")
    parser.add_argument("--parts", default="airflow,ledger,loads")
    parser.add_argument("--airflow-versions", default="2,3")
    parser.add_argument("--airflow-dags", type=int, default=500)
    parser.add_argument("--airflow-runs", type=int, default=1000, help="runs per DAG (10 task instances each)")
    parser.add_argument("--changed-per-minute", type=int, default=2000, help="task instances finishing per simulated minute")
    parser.add_argument("--busy-ticks", type=int, default=6)
    parser.add_argument("--by-run-probe", action=argparse.BooleanOptionalAction, default=True,
                        help="after the ticks, time the reads of task instances by run instead of by updated_at")
    parser.add_argument("--unrelated", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--load-dags", default="1000,10000")
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--one-load", help=argparse.SUPPRESS)
    parser.add_argument("--serve-fake", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fake:
        dags, latency = args.serve_fake.split(":")
        _serve_fake(int(dags), float(latency))
        return
    if args.one_load:
        dags, latency, case = args.one_load.split(":", 2)
        print(json.dumps(_one_load(int(dags), float(latency), case)))
        return
    if args.quick:
        args.unrelated, args.load_dags, args.airflow_dags, args.airflow_runs = 100_000, "1000", 50, 100
    parts = args.parts.split(",")
    results: dict[str, Any] = {"args": vars(args)}
    if "airflow" in parts:
        from scale_airflow import airflow_part

        results["airflow"] = airflow_part(args)
    if "ledger" in parts:
        results["ledger"] = ledger(args)
    if "loads" in parts:
        results["loads"] = loads(args)
    out = HERE / "results" / "scale.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
