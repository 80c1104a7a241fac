"""The sensor's backlog catch-up and the size of the reconstruction metadata, against the fake Airflow.

    python bench/sensor.py [--dags 100] [--tasks 10] [--runs 100] [--budget 5000] [--generation 2]
                           [--no-tracemalloc] [--profile sensor.prof]

1. Backlog: ``dags x tasks x runs`` task instances (100,000 by default) finished while the sensor was
   off; one task per DAG is mapped to an asset. The sensor starts with a history window covering all of
   it and ticks (as Dagster's daemon does: events stored, then the cursor saved) until it has caught
   up (only materializations are stored: storing is the slow part of this harness, not of the sensor).
   Prints ticks, the longest tick in wall time and in CPU time of this process (the fake Airflow
   serves from a thread of it, so its CPU counts too; CPU time stays meaningful on a busy machine), peak
   Python memory of a tick (tracemalloc, which also slows the ticks it measures; ``--no-tracemalloc``
   to time without it), the largest cursor, and checks every successful try was reported exactly once.
   ``--profile FILE`` writes cProfile statistics of all sensor evaluations (``python -m pstats FILE``).
2. Metadata: the reconstruction metadata a code location carries to run workers at 1,000 DAGs x 10
   tasks with 2,000 mapped assets (the definitions built from the fake's state).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import sys
import time
import tracemalloc
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "testing" / "airlift-testing" / "src"))

from airlift_testing.fake_airflow import EPOCH, FakeAirflow, FakeAirflowState  # noqa: E402


def _defs(url: str, dag_ids: list[str], settings: Any, *, mapped_per_dag: int = 2) -> Any:
    from dagster import AssetSpec, Definitions

    from airlift_dagster import (
        AirflowInstance,
        BasicAuthBackend,
        build_defs_from_airflow_instance,
        dag_defs,
        task_defs,
    )

    instance = AirflowInstance(auth_backend=BasicAuthBackend(webserver_url=url, username="admin", password="admin"), name="bench")
    mapped = Definitions.merge(*(
        dag_defs(d, *[task_defs(f"task_{t:03d}", AssetSpec([d, f"t{t}"])) for t in range(mapped_per_dag)])
        for d in dag_ids
    ))
    return build_defs_from_airflow_instance(airflow_instance=instance, defs=mapped, sensor_settings=settings)


def backlog(args: argparse.Namespace) -> dict[str, Any]:
    from dagster import AssetMaterialization, DagsterInstance, build_sensor_context

    from airlift_dagster import SensorSettings

    state = FakeAirflowState.generate(dags=args.dags, tasks_per_dag=args.tasks, runs_per_dag=args.runs)
    tis = len(state.task_instances)
    now = EPOCH + timedelta(minutes=args.dags * args.runs) + timedelta(hours=1)
    settings = SensorSettings(history_window=now - EPOCH + timedelta(days=1), max_rows_per_tick=args.budget, clock=lambda: now)
    with FakeAirflow(state, generation=args.generation) as fake:
        defs = _defs(fake.url, [d.dag_id for d in state.dags], settings, mapped_per_dag=1)
        sensor = defs.resolve_sensor_def("bench__airflow_sensor")
        cursor: str | None = None
        ticks: list[dict[str, Any]] = []
        seen: Counter[tuple[str, str]] = Counter()
        profiler = cProfile.Profile() if args.profile else None
        with DagsterInstance.ephemeral() as instance:
            while len(ticks) < 500:
                context = build_sensor_context(instance=instance, definitions=defs, cursor=cursor)
                requests_before = fake.total_requests
                if args.tracemalloc:
                    tracemalloc.start()
                started, cpu_started = time.perf_counter(), time.process_time()
                if profiler is not None:
                    profiler.enable()
                result = sensor(context)
                if profiler is not None:
                    profiler.disable()
                seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
                peak = 0
                if args.tracemalloc:
                    _, peak = tracemalloc.get_traced_memory()
                    tracemalloc.stop()
                for event in result.asset_events:
                    if isinstance(event, AssetMaterialization):  # what the next tick's dedupe reads
                        instance.report_runless_asset_event(event)
                        seen[(event.asset_key.to_user_string(), str(event.metadata["Airflow run id"].value))] += 1
                cursor = result.cursor
                materialized = sum(isinstance(e, AssetMaterialization) for e in result.asset_events)
                ticks.append({"seconds": round(seconds, 3), "cpu_s": round(cpu, 3), "peak_mb": round(peak / 2**20, 1), "materializations": materialized,
                              "requests": fake.total_requests - requests_before, "cursor_bytes": len(cursor or "")})
                print(f"  tick {len(ticks):3d}: {seconds:6.2f} s ({cpu:5.2f} s CPU), peak {peak / 2**20:6.1f} MB, {materialized:6d} materializations, "
                      f"{ticks[-1]['requests']:4d} requests, cursor {len(cursor or '')} B", flush=True)
                hw = json.loads(cursor or "{}").get("hw")
                if hw and datetime.fromisoformat(hw) >= now - timedelta(minutes=1) and not materialized:
                    break
        if profiler is not None:
            profiler.dump_stats(args.profile)
    expected = args.dags * args.runs * 2  # one mapped task and the DAG asset per run
    return {
        "task_instances": tis,
        "ticks": len(ticks),
        "productive_ticks": sum(1 for t in ticks if t["materializations"]),
        "max_tick_s": max(t["seconds"] for t in ticks),
        "max_tick_cpu_s": max(t["cpu_s"] for t in ticks),
        "load_average": [round(x, 1) for x in os.getloadavg()],
        "total_s": round(sum(t["seconds"] for t in ticks), 2),
        "peak_mb": max(t["peak_mb"] for t in ticks),
        "max_cursor_bytes": max(t["cursor_bytes"] for t in ticks),
        "materializations": sum(seen.values()),
        "expected": expected,
        "exactly_once": sum(seen.values()) == expected and set(seen.values()) == {1},
    }


def metadata_size(generation: int) -> dict[str, Any]:
    from dagster._core.definitions.metadata.metadata_value import (
        CodeLocationReconstructionMetadataValue,
    )

    from airlift_dagster import SensorSettings

    state = FakeAirflowState.generate(dags=1000, tasks_per_dag=10)
    with FakeAirflow(state, generation=generation) as fake:
        defs = _defs(fake.url, [d.dag_id for d in state.dags], SensorSettings())
        sizes = {k: len(v.value) for k, v in (defs.metadata or {}).items() if isinstance(v, CodeLocationReconstructionMetadataValue)}
        assets = sum(1 for s in defs.resolve_all_asset_specs() if s.metadata.get("airlift/task_id") is not None)
    return {"dags": 1000, "tasks": 10_000, "mapped_assets": assets, "bytes": sum(sizes.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dags", type=int, default=100)
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--budget", type=int, default=5000, help="max_rows_per_tick")
    parser.add_argument("--generation", type=int, default=2, choices=(2, 3))
    parser.add_argument("--no-tracemalloc", dest="tracemalloc", action="store_false", help="no peak-memory measurement")
    parser.add_argument("--profile", help="write cProfile statistics of the sensor evaluations to this file")
    parser.add_argument("--no-metadata", dest="metadata", action="store_false", help="skip the metadata-size part")
    args = parser.parse_args()
    print(f"backlog: {args.dags} DAGs x {args.tasks} tasks x {args.runs} runs behind the cursor, max_rows_per_tick={args.budget}")
    result = backlog(args)
    print(f"\n{result['task_instances']:,} task instances caught up in {result['ticks']} ticks ({result['productive_ticks']} with events): "
          f"longest tick {result['max_tick_s']} s ({result['max_tick_cpu_s']} s CPU), peak {result['peak_mb']} MB per tick, total {result['total_s']} s, "
          f"largest cursor {result['max_cursor_bytes']:,} B; {result['materializations']:,} materializations "
          f"(expected {result['expected']:,}, exactly once: {result['exactly_once']})")
    size = metadata_size(args.generation) if args.metadata else {}
    if size:
        print(f"reconstruction metadata at {size['dags']:,} DAGs x 10 tasks, {size['mapped_assets']:,} mapped assets: "
              f"{size['bytes'] / 1000:.0f} KB ({size['bytes'] / 200_000:.2f}x the 200 KB target)")
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "sensor.json").write_text(json.dumps({"backlog": result, "metadata": size, "when": datetime.now(timezone.utc).isoformat()}, indent=2))


if __name__ == "__main__":
    main()
