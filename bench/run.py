"""Airlift vs dagster-airlift, side by side against the same Airflow server, in one run.

    python bench/run.py [--quick] [--dags N] [--tasks M] [--latency SECONDS] [--budget SECONDS] [--real 2,3]

1. Scale: the scale Airflow server (airlift_testing.fake_airflow, Airflow 2 API since dagster-airlift only
   speaks /api/v1) with N DAGs x M tasks, one finished run per DAG, two mapped tasks per DAG. Each side
   runs bench/side.py in its own virtual environment (Airlift: this one; dagster-airlift 0.29: a cached
   venv built with uv): definitions load, cached reload, one sensor tick. A sensor tick that runs past
   ``--budget`` seconds is stopped; its progress (runs whose task instances it has read) gives a
   projected time.
2. History: Airlift's sensor tick over the same new runs with 0, 5 and 20 older runs per DAG already
   behind the cursor: time, requests and peak memory must not grow with history.
3. Real: the same measures at a moderate scale against real Airflow servers (``--real 2,3``; 100 DAGs by
   default) next to the scale server with the same shape, to show the scale server is faithful.

Prints tables with ratios (ours / theirs) and writes bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "testing" / "airlift-testing" / "src"))

from airlift_testing.fake_airflow import FakeAirflow, FakeAirflowState  # noqa: E402
from airlift_testing.venvs import ensure_venv  # noqa: E402

COMPETITOR = ["dagster-airlift[core]==0.29.*", "requests"]
DEFAULT_INTERVAL_S = 30.0  # both sensors' default minimum interval
SIDES = ("airlift", "competitor")
NAMES = {"airlift": "Airlift", "competitor": "dagster-airlift 0.29"}


# ---------------------------------------------------------------------------------------------- sides
def run_side(python: str, side: str, url: str, config: dict[str, Any], *, budget: float) -> dict[str, Any]:
    """Run side.py; collect its phase lines. Sensor ticks still running ``budget`` seconds after the first
    one started are stopped; what they reached so far is kept (``stopped_after_s``)."""
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen([python, str(HERE / "side.py"), side, url, json.dumps(config)], stdout=subprocess.PIPE,
                                stderr=stderr, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        results: dict[str, Any] = {}
        tick_started: float | None = None
        hard_limit = time.monotonic() + 3600
        while True:
            timeout = None if tick_started is None else max(0.1, tick_started + budget - time.monotonic())
            try:
                line = lines.get(timeout=min(timeout or 60.0, 60.0))
            except queue.Empty:
                if tick_started is not None and time.monotonic() >= tick_started + budget:
                    proc.kill()
                    results.setdefault("sensor_tick", {"stopped_after_s": budget})
                    results["catch_up"] = {**results.pop("catch_up_progress", {}), "stopped_after_s": budget}
                    break
                if time.monotonic() > hard_limit:
                    proc.kill()
                    results["error"] = "no result within an hour"
                    break
                continue
            if line is None:
                break
            try:
                data = json.loads(line)
            except ValueError:
                continue
            if data.get("phase") == "tick_start":
                tick_started = time.monotonic()
                continue
            results[data.pop("phase")] = data
        results.pop("catch_up_progress", None)
        proc.wait()
        stderr.seek(0)
        log_lines = stderr.read().decode(errors="replace").strip().splitlines()
        retries = [line for line in log_lines if "; retry " in line]  # the Airlift client's retry warnings
        if retries:
            results["retries"] = {"count": len(retries), "first": retries[:3]}
        if proc.returncode not in (0, -9) and "error" not in results:
            results["error"] = (log_lines[-1] if log_lines else f"exit code {proc.returncode}")[:300]
        return results


def competitor_python() -> str:
    return str(ensure_venv("dagster-airlift-bench", COMPETITOR) / "bin" / "python")


def pythons() -> dict[str, str]:
    return {"airlift": sys.executable, "competitor": competitor_python()}


# ---------------------------------------------------------------------------------------------- shapes
def mapped_tasks(dag_ids: list[str], tasks: dict[str, list[str]]) -> dict[str, list[str]]:
    """Two mapped tasks per DAG (first and last): 2 x DAGs assets."""
    return {dag_id: [tasks[dag_id][0], tasks[dag_id][-1]] for dag_id in dag_ids}


def scale_state(dags: int, tasks: int, *, history: int = 0, prefix: str = "dag") -> tuple[FakeAirflowState, dict[str, list[str]]]:
    """``dags`` DAGs x ``tasks`` tasks, one run per DAG finished in the last 50 minutes, and ``history``
    older runs per DAG that finished 2 hours or more ago."""
    state = FakeAirflowState.generate(dags=dags, tasks_per_dag=tasks, prefix=prefix)
    now = datetime.now(timezone.utc)
    for i, dag in enumerate(state.dags):
        for h in range(history):
            state.add_run(dag.dag_id, start=now - timedelta(hours=2, minutes=h, seconds=i % 60), duration=timedelta(seconds=30))
        state.add_run(dag.dag_id, start=now - timedelta(minutes=50) + timedelta(seconds=i % 2400), duration=timedelta(seconds=30))
    names = [d.dag_id for d in state.dags]
    return state, mapped_tasks(names, {d.dag_id: [t.task_id for t in d.tasks] for d in state.dags})


# ---------------------------------------------------------------------------------------------- 1. scale
def bench_scale(args: argparse.Namespace, py: dict[str, str]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for side in SIDES:
        state, mapped = scale_state(args.dags, args.tasks)  # a fresh server for each side
        with FakeAirflow(state, generation=2, latency=args.latency) as fake:
            results[side] = run_side(py[side], side, fake.url, {"mapped": mapped}, budget=args.budget)
        print(f"  {side}: {json.dumps(results[side])}", flush=True)
    for data in results.values():
        tick, catch_up = data.get("sensor_tick", {}), data.get("catch_up", {})
        if "seconds" in tick:  # steady state: a success waits half an interval, then one tick
            data["latency_s"] = round(DEFAULT_INTERVAL_S / 2 + tick["seconds"], 2)
        if catch_up.get("productive_ticks") and "stopped_after_s" not in catch_up:
            # a backlog: the first tick starts at once, later ones an interval after the previous one started
            data["catch_up_wall_s"] = round(sum_wall(catch_up), 1)
    return results


def sum_wall(catch_up: dict[str, Any]) -> float:
    """Wall time until the last materialization when ticks are at least one interval apart."""
    durations = catch_up["tick_seconds"]
    return sum(max(DEFAULT_INTERVAL_S, d) for d in durations[:-1]) + durations[-1]


def _stopped(data: dict[str, Any]) -> str | None:
    return f"stopped at {data['stopped_after_s']:.0f} s" if "stopped_after_s" in data else None


def print_scale(results: dict[str, Any], args: argparse.Namespace) -> dict[str, float | None]:
    ours, theirs = results["airlift"], results["competitor"]
    expected = 3 * args.dags  # two mapped tasks + the DAG asset per run

    def get(data: dict[str, Any], phase: str, key: str) -> tuple[str, float | None]:
        part = data.get(phase, {})
        value = part.get(key)
        if value is None:
            return (_stopped(part) or "n/a"), None
        text = str(value)
        if "stopped_after_s" in part:
            text += f" ({_stopped(part)})"
        return text, (None if "stopped_after_s" in part else float(value))

    rows = [
        ("definitions load (s)", get(ours, "load", "seconds"), get(theirs, "load", "seconds")),
        ("definitions load (requests)", get(ours, "load", "requests"), get(theirs, "load", "requests")),
        ("cached reload (s)", get(ours, "cached_reload", "seconds"), get(theirs, "cached_reload", "seconds")),
        ("cached reload (requests)", get(ours, "cached_reload", "requests"), get(theirs, "cached_reload", "requests")),
        ("sensor tick (s)", get(ours, "sensor_tick", "seconds"), get(theirs, "sensor_tick", "seconds")),
        ("sensor tick (requests)", get(ours, "sensor_tick", "requests"), get(theirs, "sensor_tick", "requests")),
        ("sensor tick peak memory (MB)", get(ours, "sensor_tick", "peak_mb"), get(theirs, "sensor_tick", "peak_mb")),
        (f"sensor tick materializations (of {expected})", get(ours, "sensor_tick", "materializations"),
         get(theirs, "sensor_tick", "materializations")),
        ("ticks until every run is materialized", get(ours, "catch_up", "productive_ticks"), get(theirs, "catch_up", "productive_ticks")),
        ("time in those ticks (s)", get(ours, "catch_up", "productive_seconds"), get(theirs, "catch_up", "productive_seconds")),
        ("backlog materialized after (s, 30 s interval)", _plain(ours.get("catch_up_wall_s")), _plain(theirs.get("catch_up_wall_s"))),
        ("success -> materialization (s, modelled)", _plain(ours.get("latency_s")), _plain(theirs.get("latency_s"))),
    ]
    print(f"\n1. Scale: {args.dags} DAGs x {args.tasks} tasks, {args.dags} runs, {args.dags * args.tasks} task instances, "
          f"{2 * args.dags} mapped assets, {args.latency * 1000:.0f} ms per request, Airflow 2 API")
    print(f"{'measure':48s} {'Airlift':>12s} {'dagster-airlift 0.29':>28s} {'ours/theirs':>12s}")
    ratios: dict[str, float | None] = {}
    for name, (a_text, a), (b_text, b) in rows:
        r = a / b if a is not None and b else None
        ratio_text = f"{r:.2f}x" if r is not None else "n/a"
        if r is None and a is not None and b_text.startswith("stopped") and name.endswith("(s)"):
            r = a / args.budget  # theirs took longer than the budget: ours / theirs is below this
            ratio_text = f"<{r:.2f}x"
        ratios[name] = r
        print(f"{name:48s} {a_text:>12s} {b_text:>28s} {ratio_text:>12s}")
    for side, data in results.items():
        if "error" in data:
            print(f"  {NAMES[side]} failed: {data['error']}")
    return ratios


def _plain(value: Any) -> tuple[str, float | None]:
    return ("n/a", None) if value is None else (str(value), float(value))


# ---------------------------------------------------------------------------------------------- 2. history
def bench_history(args: argparse.Namespace, py: dict[str, str]) -> list[dict[str, Any]]:
    from airlift_dagster.sensor import AirliftSensorCursor

    cursor = AirliftSensorCursor(high_water=datetime.now(timezone.utc) - timedelta(hours=1), dags=None).serialize()
    rows = []
    for history in args.history:
        state, mapped = scale_state(args.dags, args.tasks, history=history)
        with FakeAirflow(state, generation=2, latency=args.latency) as fake:
            data = run_side(py["airlift"], "airlift", fake.url, {"mapped": mapped, "phases": ["sensor_tick"], "cursor": cursor},
                            budget=args.budget)
        rows.append({"older_runs_per_dag": history, "older_task_instances": history * args.dags * args.tasks, **data.get("sensor_tick", data)})
        print(f"  history {history}: {json.dumps(rows[-1])}", flush=True)
    return rows


def print_history(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(f"\n2. Airlift sensor tick vs history behind the cursor ({args.dags} new runs, {args.dags * args.tasks} new task instances)")
    print(f"{'older runs per DAG':>20s} {'older task instances':>22s} {'tick (s)':>10s} {'tick CPU (s)':>13s} {'requests':>10s} "
          f"{'peak MB':>10s} {'materializations':>18s}")
    for row in rows:
        print(f"{row['older_runs_per_dag']:>20d} {row['older_task_instances']:>22d} {row.get('seconds', 'n/a')!s:>10s} "
              f"{row.get('cpu_s', 'n/a')!s:>13s} "
              f"{row.get('requests', 'n/a')!s:>10s} {row.get('peak_mb', 'n/a')!s:>10s} {row.get('materializations', 'n/a')!s:>18s}")


# ---------------------------------------------------------------------------------------------- 4. shapes
def shape_cases(tasks: int) -> list[tuple[str, int, Any]]:
    """Deployment shapes, each on 10 DAGs with one recent run: (name, API generation, state mutator)."""

    def dynamic(state: FakeAirflowState) -> None:  # the first task is dynamically mapped over 5 inputs
        now = datetime.now(timezone.utc)
        state.runs.clear()
        state.task_instances.clear()
        for i, dag in enumerate(state.dags):
            dag.tasks[0].is_mapped = True
            state.add_run(dag.dag_id, start=now - timedelta(minutes=30, seconds=i), map_count=5)

    def failed(state: FakeAirflowState) -> None:  # every run failed in its last task
        for run in state.runs:
            run.state = "failed"
        last = {d.dag_id: d.tasks[-1].task_id for d in state.dags}
        for ti in state.task_instances:
            if ti.task_id == last[ti.dag_id]:
                ti.state = "failed"

    def dotted(state: FakeAirflowState) -> None:  # DAG ids with dots and dashes
        renames = {d.dag_id: f"team-a.{d.dag_id}.v2" for d in state.dags}
        for dag in state.dags:
            dag.dag_id = renames[dag.dag_id]
        for item in (*state.runs, *state.task_instances):
            item.dag_id = renames[item.dag_id]

    return [
        ("Airflow 2 API, plain", 2, None),
        ("Airflow 3 API (/api/v2)", 3, None),
        ("dynamically mapped task (5 map indexes)", 2, dynamic),
        ("failed runs (last task failed)", 2, failed),
        ("DAG ids with dots and dashes", 2, dotted),
    ]


def bench_shapes(args: argparse.Namespace, py: dict[str, str]) -> list[dict[str, Any]]:
    rows = []
    for name, generation, mutate in shape_cases(args.tasks):
        row: dict[str, Any] = {"shape": name, "generation": generation}
        for side in SIDES:
            state, _ = scale_state(10, args.tasks)
            if mutate:
                mutate(state)
            mapped = mapped_tasks([d.dag_id for d in state.dags], {d.dag_id: [t.task_id for t in d.tasks] for d in state.dags})
            with FakeAirflow(state, generation=generation, latency=0.0) as fake:
                row[side] = run_side(py[side], side, fake.url, {"mapped": mapped, "phases": ["load", "sensor_tick"], "max_ticks": 1},
                                     budget=args.budget)
        rows.append(row)
        print(f"  {name}: {json.dumps(row)}", flush=True)
    return rows


def print_shapes(rows: list[dict[str, Any]]) -> None:
    def cell(data: dict[str, Any]) -> str:
        tick = data.get("sensor_tick")
        if tick is None:
            kind, _, message = str(data.get("error", "?")).partition(": ")
            return f"fails: {kind.split('.')[-1]}: {message}"[:56]
        text = f"{tick['materializations']} materializations"
        if tick.get("failed_checks"):
            text += f", {tick['failed_checks']} failed checks"
        return text

    print("\n4. Deployment shapes (10 DAGs, one run each, scale server): what one sensor tick reports")
    print(f"{'shape':42s} {'Airlift':38s} {'dagster-airlift 0.29'}")
    for row in rows:
        print(f"{row['shape']:42s} {cell(row['airlift']):38s} {cell(row['competitor'])}")


# ---------------------------------------------------------------------------------------------- 3. real Airflow
DAG_FILE = '''"""Benchmark DAG {dag_id}: {tasks} chained no-op tasks."""
from datetime import datetime

from airflow import DAG

try:
    from airflow.providers.standard.operators.empty import EmptyOperator
except ImportError:  # Airflow 2
    from airflow.operators.empty import EmptyOperator

with DAG("{dag_id}", schedule=None, start_date=datetime(2024, 1, 1), catchup=False, tags=["bench"]):
    tasks = [EmptyOperator(task_id=f"task_{{i:03d}}") for i in range({tasks})]
    for upstream, downstream in zip(tasks, tasks[1:]):
        upstream >> downstream
'''


def bench_real(generation: int, args: argparse.Namespace, py: dict[str, str]) -> dict[str, Any]:
    """Same shape on a real Airflow and on the scale server (no added latency on either: both local)."""
    from airlift_testing.airflow import AirflowServer

    dag_ids = [f"bench_{i:05d}" for i in range(args.real_dags)]  # the scale server's ids with prefix "bench"
    task_ids = [f"task_{i:03d}" for i in range(args.tasks)]
    mapped = mapped_tasks(dag_ids, {d: task_ids for d in dag_ids})
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="airlift-bench-dags-") as folder:
        for dag_id in dag_ids:
            (Path(folder) / f"{dag_id}.py").write_text(DAG_FILE.format(dag_id=dag_id, tasks=args.tasks))
        started = time.monotonic()
        with AirflowServer(version=str(generation), dags_folder=Path(folder), startup_timeout=600) as airflow:
            airflow.wait_for_dags(dag_ids, timeout=900)
            # One finished run per DAG, run by Airflow's own scheduler (EmptyOperator tasks finish
            # without an executor, so a hundred runs finish in about a minute).
            run_ids = {dag_id: airflow.trigger(dag_id) for dag_id in dag_ids}
            states = [airflow.wait_for_run(dag_id, run_id, timeout=900)["state"] for dag_id, run_id in run_ids.items()]
            if set(states) != {"success"}:
                raise SystemExit(f"Airflow {generation}: benchmark runs did not all succeed: {sorted(set(states))}")
            print(f"  Airflow {airflow.version}: {len(dag_ids)} DAGs parsed, {len(dag_ids)} runs finished in "
                  f"{time.monotonic() - started:.0f} s", flush=True)
            out["airflow_version"] = airflow.version
            for side in SIDES:
                out[f"real_{side}"] = run_side(py[side], side, airflow.url, {"mapped": mapped, "phases": ["load", "sensor_tick"]},
                                               budget=args.budget)
                print(f"  real Airflow {generation}, {side}: {json.dumps(out[f'real_{side}'])}", flush=True)
    _, fake_mapped = scale_state(args.real_dags, args.tasks, prefix="bench")
    assert fake_mapped == mapped, "the scale server must serve the same DAGs and tasks"
    for side in SIDES:
        state, _ = scale_state(args.real_dags, args.tasks, prefix="bench")
        with FakeAirflow(state, generation=generation, latency=0.0) as fake:
            out[f"fake_{side}"] = run_side(py[side], side, fake.url, {"mapped": fake_mapped, "phases": ["load", "sensor_tick"]},
                                           budget=args.budget)
        print(f"  scale server as Airflow {generation}, {side}: {json.dumps(out[f'fake_{side}'])}", flush=True)
    return out


def print_real(generation: int, out: dict[str, Any], args: argparse.Namespace) -> None:
    def cell(side: str, phase: str, key: str) -> str:
        data = out.get(side, {})
        if "error" in data and phase not in data:
            return "fails"
        return str(data.get(phase, {}).get(key, "n/a"))

    print(f"\n3. Real Airflow {out.get('airflow_version', generation)} vs the scale server: {args.real_dags} DAGs x {args.tasks} tasks, "
          f"{args.real_dags} runs, {2 * args.real_dags} mapped assets, no added latency")
    print(f"{'measure':34s} {'Airlift: real':>14s} {'scale server':>13s}   {'dagster-airlift: real':>22s} {'scale server':>13s}")
    for name, phase, key in (
        ("definitions load (s)", "load", "seconds"), ("definitions load (requests)", "load", "requests"),
        ("sensor tick (s)", "sensor_tick", "seconds"), ("sensor tick (requests)", "sensor_tick", "requests"),
        ("sensor tick materializations", "sensor_tick", "materializations"),
    ):
        print(f"{name:34s} {cell('real_airlift', phase, key):>14s} {cell('fake_airlift', phase, key):>13s}   "
              f"{cell('real_competitor', phase, key):>22s} {cell('fake_competitor', phase, key):>13s}")
    if "error" in out.get("real_competitor", {}):
        print(f"  dagster-airlift on Airflow {generation}: {out['real_competitor']['error']}")


# ---------------------------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100 DAGs, short history sweep, no real Airflow (smoke run)")
    parser.add_argument("--dags", type=int, default=1000)
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--latency", type=float, default=0.02, help="seconds added to every request of the scale server")
    parser.add_argument("--budget", type=float, default=600.0, help="seconds a sensor tick may run before it is stopped")
    parser.add_argument("--history", type=lambda s: [int(x) for x in s.split(",")], default=[0, 5, 20],
                        help="older runs per DAG behind the cursor, comma separated (history sweep)")
    parser.add_argument("--real", default="2,3", help="real Airflow generations to compare against ('' for none)")
    parser.add_argument("--real-dags", type=int, default=100)
    parser.add_argument("--parts", default="scale,history,shapes,real", help="which parts to run, comma separated")
    args = parser.parse_args()
    if args.quick:
        args.dags, args.history, args.real = 100, [0, 5], ""
    started = time.monotonic()
    py = pythons()
    report: dict[str, Any] = {
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
                    "load_average": os.getloadavg()},
        "scale": {"dags": args.dags, "tasks": args.tasks, "latency_s": args.latency, "budget_s": args.budget},
    }
    parts = set(args.parts.split(","))
    report["results"], report["history"], report["shapes"], report["real"] = {}, [], [], {}
    if "scale" in parts:
        print(f"1. scale: {args.dags} DAGs x {args.tasks} tasks", flush=True)
        report["results"] = bench_scale(args, py)
    if "history" in parts:
        print(f"2. history sweep: {args.history} older runs per DAG", flush=True)
        report["history"] = bench_history(args, py)
    if "shapes" in parts:
        print("4. deployment shapes", flush=True)
        report["shapes"] = bench_shapes(args, py)
    for generation in [int(g) for g in args.real.split(",") if g.strip() and "real" in parts]:
        print(f"3. real Airflow {generation}: {args.real_dags} DAGs", flush=True)
        report["real"][str(generation)] = bench_real(generation, args, py)
    print("\n" + "=" * 100)
    if report["results"]:
        report["ratios"] = print_scale(report["results"], args)
    if report["history"]:
        print_history(report["history"], args)
    for generation, out in report["real"].items():
        print_real(int(generation), out, args)
    if report["shapes"]:
        print_shapes(report["shapes"])
    out_dir = HERE / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "latest.json").write_text(json.dumps(report, indent=2))
    print(f"\nfinished in {time.monotonic() - started:.0f} s; written to {out_dir / 'latest.json'}")


if __name__ == "__main__":
    main()
