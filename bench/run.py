"""Airlift vs dagster-airlift, side by side against the same scale Airflow server, in one run.

    python bench/run.py [--quick] [--dags N] [--tasks M] [--latency SECONDS]

Each side runs bench/side.py in its own virtual environment (Airlift: the current one; dagster-airlift
0.29: a cached venv built with uv). Prints a table with ratios (ours / theirs) and writes
bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "testing" / "airlift-testing" / "src"))

from airlift_testing.fake_airflow import FakeAirflow, FakeAirflowState  # noqa: E402
from airlift_testing.venvs import ensure_venv  # noqa: E402

COMPETITOR = ["dagster-airlift[core]==0.29.*", "requests"]
DEFAULT_INTERVAL = {"airlift": 30.0, "competitor": 30.0}


def build_state(dags: int, tasks: int) -> tuple[FakeAirflowState, dict[str, list[str]]]:
    state = FakeAirflowState.generate(dags=dags, tasks_per_dag=tasks)
    now = datetime.now(timezone.utc)
    for i, dag in enumerate(state.dags):
        state.add_run(dag.dag_id, start=now - timedelta(minutes=50) + timedelta(seconds=i % 2400), duration=timedelta(seconds=30))
    # two mapped tasks per DAG: 2 x dags assets
    mapped = {dag.dag_id: [dag.tasks[0].task_id, dag.tasks[-1].task_id] for dag in state.dags}
    return state, mapped


def run_side(python: str, side: str, url: str, mapped: dict[str, list[str]]) -> dict:
    done = subprocess.run([python, str(HERE / "side.py"), side, url, json.dumps({"mapped": mapped})],
                          capture_output=True, text=True, timeout=3600, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if done.returncode != 0:
        raise SystemExit(f"{side} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}x" if theirs else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="100 DAGs x 10 tasks (smoke run)")
    parser.add_argument("--dags", type=int, default=1000)
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--latency", type=float, default=0.02, help="seconds added to every request")
    args = parser.parse_args()
    dags = 100 if args.quick else args.dags
    competitor_python = str(ensure_venv("dagster-airlift-bench", COMPETITOR) / "bin" / "python")
    results = {}
    for side, python in (("airlift", sys.executable), ("competitor", competitor_python)):
        state, mapped = build_state(dags, args.tasks)  # same fresh server for each side
        with FakeAirflow(state, generation=2, latency=args.latency) as fake:
            results[side] = run_side(python, side, fake.url, mapped)
        print(f"{side}: {json.dumps(results[side])}", flush=True)
    for side, data in results.items():
        data["latency_s"] = round(DEFAULT_INTERVAL[side] / 2 + data["sensor_tick"]["seconds"], 2)
    ours, theirs = results["airlift"], results["competitor"]
    rows = [
        ("definitions load (s)", ours["load"]["seconds"], theirs["load"]["seconds"]),
        ("definitions load (requests)", ours["load"]["requests"], theirs["load"]["requests"]),
        ("cached reload (s)", ours["cached_reload"]["seconds"], theirs["cached_reload"]["seconds"]),
        ("cached reload (requests)", ours["cached_reload"]["requests"], theirs["cached_reload"]["requests"]),
        ("sensor tick (s)", ours["sensor_tick"]["seconds"], theirs["sensor_tick"]["seconds"]),
        ("sensor tick (requests)", ours["sensor_tick"]["requests"], theirs["sensor_tick"]["requests"]),
        ("sensor tick peak memory (MB)", ours["sensor_tick"]["peak_mb"], theirs["sensor_tick"]["peak_mb"]),
        ("sensor tick materializations", ours["sensor_tick"]["materializations"], theirs["sensor_tick"]["materializations"]),
        ("success -> materialization latency (s, modelled)", ours["latency_s"], theirs["latency_s"]),
    ]
    print(f"\nAirlift vs dagster-airlift 0.29 — {dags} DAGs x {args.tasks} tasks, {dags} runs, {dags * args.tasks} task instances, "
          f"{2 * dags} mapped assets, {args.latency * 1000:.0f} ms per request, Airflow 2 API")
    print(f"{'measure':52s} {'airlift':>12s} {'dagster-airlift':>16s} {'ours/theirs':>12s}")
    for name, a, b in rows:
        print(f"{name:52s} {a!s:>12s} {b!s:>16s} {ratio(float(a), float(b)):>12s}")
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps({
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
        "scale": {"dags": dags, "tasks": args.tasks, "latency_s": args.latency},
        "results": results,
        "ratios": {name: (float(a) / float(b) if float(b) else None) for name, a, b in rows},
    }, indent=2))
    print(f"\nwritten to {out / 'latest.json'}")


if __name__ == "__main__":
    main()
