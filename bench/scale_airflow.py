"""The sensor against a real Airflow on PostgreSQL at production size (part ``airflow`` of bench/scale.py).

For each Airflow version: a private PostgreSQL cluster with ``pg_stat_statements`` and ``auto_explain``
preloaded, Airflow's API server only (no scheduler: the database sees the API's work and nothing else),
``--airflow-dags`` DAGs x 10 tasks loaded from one DAG file, and ``--airflow-runs`` runs per DAG
(10 task instances each) seeded by SQL copies of one run the API created (so every column holds what
Airflow writes), with the audit-log rows their tries wrote (``log``: a start and an end per try). The
newest runs stay ``running``. A simulated clock moves 30 s per tick: a quiet tick, then
``--steady-minutes`` of busy ticks, before each of which ``--changed-per-minute / 2`` task instances
finish (SQL updates of their rows and runs, ``updated_at`` inside the 30 s, and their audit-log rows),
a quiet tick, then the sensor pauses for ``--pause-hours`` while Airflow keeps working at that rate,
and ``--drain-ticks`` ticks work off the backlog (new work still arriving). Per tick: wall and CPU
time, the process's peak RSS during the tick (sampled every 5 ms; tracemalloc would slow the tick it
measures), HTTP requests, and the database's time, calls, rows and 8 KB
blocks touched from ``pg_stat_statements``. The plans of the sensor's statements come from
``auto_explain`` in the first quiet tick, the last busy tick and the first drain tick.
"""

from __future__ import annotations

import cProfile
import io
import json
import os
import pstats
import re
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "testing" / "airlift-testing" / "src"))

INSTANCE = "bench"
TASKS = 10
TEMPLATE_DAG = "dag_0000"

DAG_FILE = '''
from datetime import datetime
try:
    from airflow.providers.standard.operators.empty import EmptyOperator
except ImportError:
    from airflow.operators.empty import EmptyOperator
from airflow import DAG

for d in range({dags}):
    with DAG(f"dag_{{d:04d}}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
        previous = None
        for t in range({tasks}):
            task = EmptyOperator(task_id=f"task_{{t:03d}}")
            if previous is not None:
                previous >> task
            previous = task
    globals()[dag.dag_id] = dag
'''


def _columns(db: Any, table: str) -> list[str]:
    out = db.psql("airflow", f"SELECT column_name FROM information_schema.columns WHERE table_name = '{table}' "
                             "AND table_schema = 'public' ORDER BY ordinal_position")
    return out.split()


def _copy_sql(columns: list[str], overrides: dict[str, str], source: str) -> str:
    """``SELECT`` list copying ``source``'s columns, with ``overrides`` (column -> SQL expression)."""
    return ", ".join(overrides.get(c, f"{source}.{c}") for c in columns)


def seed(db: Any, *, dags: int, runs: int, running: int, t0: datetime) -> dict[str, Any]:
    """Copies of the template run (one per DAG and run number) and of its task instances, by SQL.
    Finished runs end 5 s apart from ``t0 - 1 h`` back (about 29 days at 500,000 runs); the
    ``running`` newest runs are ``queued`` (the runs to come) with their task instances not started."""
    started = time.perf_counter()
    total = dags * runs
    run_cols = _columns(db, "dag_run")
    ti_cols = [c for c in _columns(db, "task_instance")]
    date_col = "logical_date" if "logical_date" in run_cols else "execution_date"
    t0s = t0.strftime("%Y-%m-%d %H:%M:%S+00")
    # g: global run number (oldest 0); the run of DAG d with number n has g = n * dags + d
    end = f"(timestamptz '{t0s}' - interval '1 hour' - ({total - 1} - g) * interval '5 seconds')"
    version = "NULL"
    if "dag_version_id" in ti_cols:  # Airflow 3: each row names its DAG's version
        db.psql("airflow", "CREATE TABLE airlift_seed_version AS SELECT DISTINCT ON (dag_id) substr(dag_id, 5)::int AS d, id "
                           "FROM dag_version ORDER BY dag_id, version_number DESC; ALTER TABLE airlift_seed_version ADD PRIMARY KEY (d)")
        version = "(SELECT id FROM airlift_seed_version sv WHERE sv.d = s.d)"
    template_tis = int(db.psql("airflow", f"SELECT count(*) FROM task_instance WHERE dag_id = '{TEMPLATE_DAG}'").strip())
    if template_tis != TASKS:
        raise RuntimeError(f"the template run of {TEMPLATE_DAG} has {template_tis} task instances, expected {TASKS}")
    state = f"CASE WHEN g >= {total - running} THEN 'queued' ELSE 'success' END"
    run_over = {
        "id": None, "dag_id": "'dag_' || lpad(d::text, 4, '0')", "run_id": "'seed__' || lpad(n::text, 7, '0')",
        date_col: "timestamptz '2020-01-01' + g * interval '1 minute'", "run_after": end, "queued_at": f"{end} - interval '1 minute'",
        "start_date": f"{end} - interval '1 minute'", "end_date": f"CASE WHEN g >= {total - running} THEN NULL ELSE {end} END",
        "state": state, "data_interval_start": end, "data_interval_end": end, "updated_at": end, "created_at": end,
        "last_scheduling_decision": end, "created_dag_version_id": version, "conf": "NULL",
    }
    cols = [c for c in run_cols if c != "id"]
    gen = f"(SELECT g, g % {dags} AS d, g / {dags} AS n FROM generate_series(0, {total - 1}) AS g) s"
    db.psql("airflow", f"INSERT INTO dag_run ({', '.join(cols)}) SELECT {_copy_sql(cols, run_over, 't')} "
                       f"FROM {gen}, (SELECT * FROM dag_run WHERE dag_id = '{TEMPLATE_DAG}' LIMIT 1) t")
    runs_seconds = time.perf_counter() - started
    ti_state = f"CASE WHEN g >= {total - running} THEN NULL ELSE 'success' END"
    ti_end = f"CASE WHEN g >= {total - running} THEN NULL ELSE {end} END"
    ti_over = {
        "id": "gen_random_uuid()", "dag_id": "'dag_' || lpad(d::text, 4, '0')", "run_id": "'seed__' || lpad(n::text, 7, '0')",
        "state": ti_state, "start_date": f"CASE WHEN g >= {total - running} THEN NULL ELSE {end} - interval '30 seconds' END",
        "end_date": ti_end, "duration": f"CASE WHEN g >= {total - running} THEN NULL ELSE 30 END", "updated_at": end,
        "queued_dttm": f"{end} - interval '40 seconds'", "try_number": f"CASE WHEN g >= {total - running} THEN 0 ELSE 1 END",
        "dag_version_id": version, "hostname": "'worker'", "unixname": "'airflow'", "last_heartbeat_at": "NULL",
    }
    chunk = max(1, 1_000_000 // (dags * TASKS)) * dags  # about 1,000,000 task instances per statement
    for lo in range(0, total, chunk):
        hi = min(total, lo + chunk) - 1
        gen = f"(SELECT g, g % {dags} AS d, g / {dags} AS n FROM generate_series({lo}, {hi}) AS g) s"
        db.psql("airflow", f"INSERT INTO task_instance ({', '.join(ti_cols)}) SELECT {_copy_sql(ti_cols, ti_over, 't')} "
                           f"FROM {gen}, (SELECT ti.* FROM task_instance ti JOIN dag_run r ON r.dag_id = ti.dag_id AND r.run_id = ti.run_id "
                           f"WHERE r.dag_id = '{TEMPLATE_DAG}' AND r.run_id NOT LIKE 'seed__%') t")
        print(f"    seeded task instances of runs {lo:,}..{hi:,} ({time.perf_counter() - started:.0f} s)", flush=True)
    db.psql("airflow", f"DELETE FROM task_instance WHERE dag_id = '{TEMPLATE_DAG}' AND run_id NOT LIKE 'seed__%'; "
                       f"DELETE FROM dag_run WHERE dag_id = '{TEMPLATE_DAG}' AND run_id NOT LIKE 'seed__%'")
    db.psql("airflow", "DROP TABLE IF EXISTS airlift_seed_version")
    for table in ("dag_run", "task_instance"):
        db.psql("airflow", f"VACUUM ANALYZE {table}")
    counts = db.psql("airflow", "SELECT (SELECT count(*) FROM dag_run), (SELECT count(*) FROM task_instance), "
                                "pg_total_relation_size('task_instance'), pg_total_relation_size('dag_run')").strip().split("|")
    return {"dag_runs": int(counts[0]), "task_instances": int(counts[1]), "task_instance_mb": round(int(counts[2]) / 2**20),
            "dag_run_mb": round(int(counts[3]) / 2**20), "runs_seconds": round(runs_seconds, 1),
            "seconds": round(time.perf_counter() - started, 1)}


def finish_runs(db: Any, *, count: int, clock: datetime, window: timedelta, running: int, run_events: bool = False,
                date_col: str = "logical_date") -> int:
    """The oldest ``count`` runs to come (running first, then queued) succeed with their tasks,
    ``updated_at`` spread evenly over the ``window`` before ``clock - 11 s`` (the sensor leaves the last
    10 s to the next tick), and each try writes its audit-log rows as Airflow's task runner does
    (``running`` at its start, ``success`` at its end, in the ``log`` table). Then the next queued
    runs start, so that ``running`` runs are running (as a scheduler keeps a steady number).
    ``run_events``: airlift-airflow's listener runs in the scheduler: each run's end and start also
    write their run-event row (``airlift.run.success`` / ``airlift.run.running``; ``date_col``: the
    runs' logical date column, ``execution_date`` on Airflow 2)."""
    hi = clock - timedelta(seconds=11)
    his = hi.strftime("%Y-%m-%d %H:%M:%S.%f+00")
    span = window.total_seconds()
    out = db.psql("airflow", f"""
        CREATE TEMP TABLE done AS SELECT dag_id, run_id, row_number() OVER (ORDER BY id) AS i FROM dag_run
            WHERE state IN ('running', 'queued') ORDER BY id LIMIT {count};
        WITH u AS (UPDATE task_instance ti SET state = 'success', try_number = 1,
                start_date = timestamptz '{his}' - ((d.i - 1) * {span - 1:.0f} / {count}) * interval '1 second' - interval '30 seconds',
                end_date = timestamptz '{his}' - ((d.i - 1) * {span - 1:.0f} / {count}) * interval '1 second',
                updated_at = timestamptz '{his}' - ((d.i - 1) * {span - 1:.0f} / {count}) * interval '1 second', duration = 30
            FROM done d WHERE ti.dag_id = d.dag_id AND ti.run_id = d.run_id RETURNING 1) SELECT count(*) FROM u;
        UPDATE dag_run r SET state = 'success', end_date = timestamptz '{his}' - ((d.i - 1) * {span - 1:.0f} / {count}) * interval '1 second',
            updated_at = timestamptz '{his}' - ((d.i - 1) * {span - 1:.0f} / {count}) * interval '1 second'
            FROM done d WHERE r.dag_id = d.dag_id AND r.run_id = d.run_id;
        INSERT INTO log (dttm, dag_id, task_id, map_index, event, run_id, owner, try_number)
            SELECT e.dttm, ti.dag_id, ti.task_id, ti.map_index, e.event, ti.run_id, 'airflow', 1
            FROM task_instance ti JOIN done d ON ti.dag_id = d.dag_id AND ti.run_id = d.run_id,
            LATERAL (VALUES (ti.start_date, 'running'), (ti.end_date, 'success')) AS e (dttm, event);
        {run_ended_sql(date_col) if run_events else ""}
        WITH started AS (UPDATE dag_run SET state = 'running', start_date = timestamptz '{his}', updated_at = timestamptz '{his}'
            WHERE id IN (SELECT id FROM dag_run WHERE state = 'queued' ORDER BY id LIMIT
                         greatest(0, {running} - (SELECT count(*) FROM dag_run WHERE state = 'running'))) RETURNING *)
        {run_started_sql(date_col, his) if run_events else "SELECT count(*) FROM started"};
    """)
    return int(out.split()[0]) if out.split() else 0


def run_event_extra_sql(row: str, state: str, date_col: str) -> str:
    """SQL of the ``extra`` airlift-airflow's listener writes for the run in ``row`` (a ``dag_run`` row
    alias) reaching ``state`` (``airlift_protocol.run_event_extra``: the run as the REST API shows it)."""
    dates = ", ".join(f"'{c}', {row}.{c}" for c in ("start_date", "data_interval_start", "data_interval_end", "queued_at"))
    end = "NULL" if state == "running" else f"{row}.end_date"
    extra_date = f", 'execution_date', {row}.{date_col}" if date_col == "execution_date" else f", 'run_after', {row}.run_after"
    return (f"json_build_object('v', 1, 'state', '{state}', 'msg', '', 'run', json_build_object('dag_id', {row}.dag_id, "
            f"'dag_run_id', {row}.run_id, 'state', '{state}', 'run_type', {row}.run_type, 'end_date', {end}, "
            f"'logical_date', {row}.{date_col}{extra_date}, {dates}))::text")


def run_ended_sql(date_col: str) -> str:
    """The run-event rows of the runs ``finish_runs`` ends (its temp table ``done``), at their end."""
    return (f"INSERT INTO log (dttm, dag_id, event, run_id, owner, extra) SELECT r.end_date, r.dag_id, 'airlift.run.success', "
            f"r.run_id, 'airlift', {run_event_extra_sql('r', 'success', date_col)} "
            f"FROM dag_run r JOIN done d ON r.dag_id = d.dag_id AND r.run_id = d.run_id;")


def run_started_sql(date_col: str, his: str) -> str:
    """The run-event rows of the runs ``finish_runs`` starts (its CTE ``started``), at their start."""
    return (f"INSERT INTO log (dttm, dag_id, event, run_id, owner, extra) SELECT timestamptz '{his}', s.dag_id, "
            f"'airlift.run.running', s.run_id, 'airlift', {run_event_extra_sql('s', 'running', date_col)} FROM started s")


def seed_run_events(db: Any, date_col: str) -> float:
    """The run-event rows airlift-airflow's listener would have written for the seeded history (a start
    and an end per finished run); seconds taken."""
    started = time.perf_counter()
    db.psql("airflow", "INSERT INTO log (dttm, dag_id, event, run_id, owner, extra) "
                       "SELECT e.dttm, r.dag_id, e.event, r.run_id, 'airlift', e.extra FROM dag_run r, "
                       f"LATERAL (VALUES (r.start_date, 'airlift.run.running', {run_event_extra_sql('r', 'running', date_col)}), "
                       f"(r.end_date, 'airlift.run.success', {run_event_extra_sql('r', 'success', date_col)})) AS e (dttm, event, extra) "
                       "WHERE r.state = 'success' ORDER BY e.dttm")
    db.psql("airflow", "VACUUM ANALYZE log")
    return round(time.perf_counter() - started, 1)


def _behind(high_water: str | None, now: datetime) -> float:
    """Seconds from the sensor's high-water mark to the simulated clock (how far the sensor is behind)."""
    return (now - datetime.fromisoformat(high_water)).total_seconds() if high_water else 0.0


def drain_rate(drain: list[dict[str, Any]], tick_seconds: float = 30.0) -> str:
    """How fast the drain ticks caught up: the sensor's lag (simulated clock minus high-water mark) after the first
    and the last, and what the second half of them gained per tick (new work arrives for ``tick_seconds`` each)."""
    half = drain[len(drain) // 2:]
    first, last = drain[0]["behind_s"] / 60, drain[-1]["behind_s"] / 60
    if len(half) < 2:
        return f"behind {first:,.1f} min after the first drain tick, {last:,.1f} min after the last"
    gained = (half[0]["behind_s"] - half[-1]["behind_s"]) / (len(half) - 1) / 60
    moved = gained + tick_seconds / 60
    rest = (f"worked off in about {last / gained:,.0f} more ticks ({last / gained * tick_seconds / 3600:,.1f} h at one tick per "
            f"{tick_seconds:.0f} s)" if gained > 0 else "not catching up")
    return (f"behind {first:,.1f} min after the first drain tick, {last:,.1f} min after the last; the last {len(half)} ticks "
            f"moved the high-water mark {moved:.2f} simulated min per tick ({tick_seconds / 60:.1f} min of new work each): "
            f"{gained:.2f} min caught up per tick, {rest}")


def _db_stats(db: Any) -> dict[str, Any]:
    row = db.psql("airflow", "SELECT coalesce(sum(total_exec_time), 0), coalesce(sum(calls), 0), coalesce(sum(rows), 0), "
                             "coalesce(sum(shared_blks_hit + shared_blks_read), 0) FROM pg_stat_statements "
                             "WHERE query NOT ILIKE '%pg_stat_statements%'").strip().split("|")
    top = db.psql("airflow", "SELECT round(total_exec_time::numeric, 1), calls, rows, shared_blks_hit + shared_blks_read, "
                             "left(regexp_replace(query, '\\s+', ' ', 'g'), 160) FROM pg_stat_statements "
                             "WHERE query NOT ILIKE '%pg_stat_statements%' ORDER BY total_exec_time DESC LIMIT 3")
    return {"db_ms": round(float(row[0]), 1), "db_calls": int(row[1]), "db_rows": int(row[2]), "db_blocks": int(row[3]),
            "top": [line.split("|", 4) for line in top.strip().splitlines()]}


def plan_lines(node: dict[str, Any], depth: int = 0) -> list[str]:
    """One line per node of a PostgreSQL JSON plan: type, relation, index, estimated rows (and, from an
    analysed plan, actual rows and 8 KB blocks), its conditions."""
    what = node.get("Node Type", "?")
    if node.get("Relation Name"):
        what += f" on {node['Relation Name']}"
    if node.get("Index Name"):
        what += f" using {node['Index Name']}"
    rows = f"rows={node.get('Plan Rows')}"
    if "Actual Rows" in node:
        rows += f" actual={node['Actual Rows']} blocks={node.get('Shared Hit Blocks', 0) + node.get('Shared Read Blocks', 0)}"
    detail = "; ".join(f"{k}: {node[k][:140]}" for k in ("Index Cond", "Recheck Cond", "Filter", "Hash Cond") if node.get(k))
    if node.get("Rows Removed by Filter"):
        detail += f" (removed by filter: {node['Rows Removed by Filter']})"
    lines = [f"{'  ' * depth}{what} ({rows}){' ' + detail if detail else ''}"]
    for child in node.get("Plans", []):
        lines += plan_lines(child, depth + 1)
    return lines


def explained_statements(log: str, *, skip: tuple[str, ...] = ("pg_stat_statements", "pg_reload_conf")) -> Iterator[tuple[float, str, dict[str, Any]]]:
    """The statements ``auto_explain`` logged as JSON in a PostgreSQL log: (ms, query text on one line,
    the plan document), leaving out the bench's own statements (any naming one of ``skip``)."""
    for m in re.finditer(r"LOG:\s+duration: ([0-9.]+) ms\s+plan:\n((?:\t.*\n?)+)", log):
        try:
            doc = json.loads("\n".join(line[1:] for line in m.group(2).splitlines()))
        except ValueError:
            continue
        flat = " ".join(str(doc.get("Query Text", "")).split())
        if not any(word in flat for word in skip):
            yield float(m.group(1)), flat, doc


def statement_shape(text: str) -> str:
    """A statement with its literals folded (statements differing only in values share it)."""
    return re.sub(r"'[^']*'|\b\d+\b", "?", text)


def _plans(log: str) -> list[dict[str, Any]]:
    """The distinct plans auto_explain logged as JSON (one per query text, literals folded)."""
    out: dict[str, dict[str, Any]] = {}
    for ms, flat, doc in explained_statements(log):
        shape = statement_shape(flat)  # the whole text: statements differing in their WHERE stay apart
        lines = plan_lines(doc.get("Plan", {}))
        where = flat.rfind(" WHERE ")
        query = flat[:300] if where < 0 else f"{flat[:100]} ...{flat[where:where + 200]}"
        entry = out.setdefault(shape, {"query": query, "plan": lines, "calls": 0, "ms": 0.0})
        entry["calls"] += 1
        entry["ms"] = round(entry["ms"] + ms, 1)
    return sorted(out.values(), key=lambda e: -e["ms"])


FINISHED_TI_STATES = ["success", "failed", "up_for_retry", "up_for_reschedule", "upstream_failed", "skipped"]


#: The one index the guide suggests adding to a self-hosted Airflow's PostgreSQL database (``--airflow-run-index``).
RUN_INDEX = "CREATE INDEX CONCURRENTLY IF NOT EXISTS airlift_dag_run_updated_at ON dag_run (updated_at)"


def seed_log(db: Any, *, rows: int, dags: int, t0: datetime) -> float:
    """``rows`` audit-log rows (Airflow's ``log`` table, indexed on ``dttm``), 0.5 s apart back from
    ``t0`` (ids in time order, as Airflow writes them), as the tries of the seeded runs wrote them
    (a try's start and end); seconds taken."""
    started = time.perf_counter()
    t0s = t0.strftime("%Y-%m-%d %H:%M:%S+00")
    step = 1_000_000
    for lo in range(1, rows + 1, step):
        hi = min(rows, lo + step - 1)
        db.psql("airflow", f"INSERT INTO log (dttm, dag_id, task_id, map_index, event, run_id, owner, try_number) "
                           f"SELECT timestamptz '{t0s}' - ({rows} - g) * interval '0.5 second', 'dag_' || lpad((g / 2 % {dags})::text, 4, '0'), "
                           f"'task_' || lpad((g / 2 % {TASKS})::text, 3, '0'), -1, CASE WHEN g % 2 = 0 THEN 'running' ELSE 'success' END, "
                           f"'seed__' || lpad((g / {2 * dags * TASKS})::text, 7, '0'), 'airflow', 1 FROM generate_series({lo}, {hi}) AS g")
    db.psql("airflow", "VACUUM ANALYZE log")
    return round(time.perf_counter() - started, 1)


class RssPeak:
    """The process's resident set size at its highest while the block runs (``peak``, bytes), read
    from ``/proc/self/statm`` every 5 ms by a thread."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @staticmethod
    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, self.rss())
            if self._stop.wait(0.005):
                return

    def __enter__(self) -> RssPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())


def _explained(db: Any, work: Any, *, explain: bool = True) -> tuple[Any, dict[str, Any], list[dict[str, Any]]]:
    """Run ``work()`` with ``pg_stat_statements`` reset first (and ``auto_explain`` logging every
    statement if ``explain``): its result, the statements' totals and their plans."""
    if not explain:
        db.psql("airflow", "SELECT pg_stat_statements_reset()")
        result = work()
        return result, _db_stats(db), []
    for sql in ("ALTER SYSTEM SET auto_explain.log_min_duration = 0", "ALTER SYSTEM SET auto_explain.log_format = json",
                "SELECT pg_reload_conf()"):  # ALTER SYSTEM runs outside a transaction: one statement per call
        db.psql("airflow", sql)
    log_start = db.log_path.stat().st_size
    db.psql("airflow", "SELECT pg_stat_statements_reset()")
    result = work()
    stats = _db_stats(db)
    db.psql("airflow", "ALTER SYSTEM RESET auto_explain.log_min_duration")
    db.psql("airflow", "SELECT pg_reload_conf()")
    with db.log_path.open(errors="replace") as f:
        f.seek(log_start)
        plans = _plans(f.read())
    return result, stats, plans


def run_version(version: str, args: Any) -> dict[str, Any]:
    from dagster import (
        AssetMaterialization,
        AssetSpec,
        DagsterInstance,
        Definitions,
        build_sensor_context,
    )

    from airlift_dagster import (
        AirflowInstance,
        BasicAuthBackend,
        SensorSettings,
        build_defs_from_airflow_instance,
        dag_defs,
        task_defs,
    )
    from airlift_testing.airflow import AirflowServer
    from airlift_testing.postgres import PostgresServer

    dags, runs = args.airflow_dags, args.airflow_runs
    per_tick = args.changed_per_minute // 2  # task instances finishing per 30 s tick
    steady, pause_hours = 2 * args.steady_minutes, args.pause_hours
    per_hour = (per_tick // TASKS) * 120  # runs finishing per simulated hour
    index_mode = args.airflow_run_index  # off | on (from the start) | both (the steady state without, then again with it)
    events_mode = args.airflow_run_events  # the same for airlift-airflow's run-event rows
    if index_mode == "both" and events_mode == "both":
        raise SystemExit("--airflow-run-index both and --airflow-run-events both: measure one of them at a time")
    workers = [int(w) for w in str(args.airflow_max_workers).split(",")]  # one steady state per value, in that order
    if len(workers) > 1 and "both" in (index_mode, events_mode):
        raise SystemExit("--airflow-run-index/--airflow-run-events both and several --airflow-max-workers values: measure one of "
                         "them at a time")
    if min(workers) < 1:
        raise SystemExit(f"--airflow-max-workers {args.airflow_max_workers}: every value must be at least 1")
    indexed_steady = steady if "both" in (index_mode, events_mode) else 0
    running = (per_tick // TASKS) * (steady * len(workers) + indexed_steady + args.drain_ticks) + per_hour * int(pause_hours + 0.999)
    if running > dags * runs:
        raise SystemExit(f"--airflow-runs {runs} x --airflow-dags {dags} runs cannot hold the {running:,} runs the steady state, "
                         f"the pause and the drain finish: seed more runs or simulate less")
    folder = Path(tempfile.mkdtemp(prefix="airlift-scale-dags-"))
    (folder / "scale_dags.py").write_text(DAG_FILE.format(dags=dags, tasks=TASKS))
    db = PostgresServer(settings={"shared_preload_libraries": "pg_stat_statements,auto_explain",
                                  "shared_buffers": "256MB", "work_mem": "16MB"}).start()
    server = AirflowServer(version=version, dags_folder=folder, shape="production", api_only=True, postgres=db,
                           startup_timeout=600)
    out: dict[str, Any] = {"version": server.version, "dags": dags, "tasks_per_dag": TASKS}
    try:
        started = time.perf_counter()
        server.start()
        db.psql("airflow", "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        out["startup_seconds"] = round(time.perf_counter() - started, 1)
        session = server.session()
        api = "/api/v1" if server.generation == 2 else "/api/v2"
        body: dict[str, Any] = {} if server.generation == 2 else {"logical_date": None}
        response = session.post(f"{server.url}{api}/dags/{TEMPLATE_DAG}/dagRuns", json=body, timeout=60)
        response.raise_for_status()
        t0 = datetime.now(timezone.utc).replace(microsecond=0)
        print(f"  Airflow {server.version}: API up in {out['startup_seconds']} s; seeding {dags * runs:,} runs, "
              f"{dags * runs * TASKS:,} task instances", flush=True)
        out["seed"] = seed(db, dags=dags, runs=runs, running=running, t0=t0)
        finished_tis = (dags * runs - running) * TASKS
        out["seed"]["log_rows"] = 2 * finished_tis
        out["seed"]["log_seconds"] = seed_log(db, rows=2 * finished_tis, dags=dags, t0=t0 - timedelta(hours=1))
        out["seed"]["log_mb"] = round(int(db.psql("airflow", "SELECT pg_total_relation_size('log')").strip()) / 2**20)
        def add_run_index() -> None:
            """The index a self-hosted deployment may add (Airflow has none on dag_run.updated_at): docs/guide.md."""
            started = time.perf_counter()
            db.psql("airflow", RUN_INDEX)  # (CONCURRENTLY: not inside a transaction, so a statement of its own)
            db.psql("airflow", "ANALYZE dag_run")
            out["run_index_seconds"] = round(time.perf_counter() - started, 1)
            print(f"    index on dag_run.updated_at added in {out['run_index_seconds']} s", flush=True)

        if index_mode == "on":
            add_run_index()
        out["run_index"] = index_mode
        out["run_events"] = events_mode
        events = [events_mode == "on"]  # whether the simulated scheduler writes run-event rows now
        date_col = "execution_date" if server.generation == 2 else "logical_date"
        if events[0]:
            out["seed"]["run_events_seconds"] = seed_run_events(db, date_col)
        pool = 2 * (per_tick // TASKS)  # runs running at any time
        finish_runs(db, count=0, clock=t0, window=timedelta(seconds=30), running=pool, run_events=events[0], date_col=date_col)
        print(f"    seeded {out['seed']}", flush=True)
        sent = [0]
        by_path: dict[str, list[float]] = {}  # this tick's requests: path -> seconds of each
        original = requests.Session.send

        def counting(self: Any, request: Any, *a: Any, **k: Any) -> Any:
            sent[0] += 1
            started = time.perf_counter()
            try:
                return original(self, request, *a, **k)
            finally:
                path = urlsplit(request.url).path.split("/api/v", 1)[-1][1:]
                by_path.setdefault(f"{request.method} {path}", []).append(time.perf_counter() - started)

        requests.Session.send = counting  # type: ignore[method-assign]
        clock = [t0]
        settings = SensorSettings(history_window=timedelta(minutes=5), clock=lambda: clock[0], change_source=args.change_source,
                                  max_rows_per_tick=args.max_rows_per_tick)
        instance = AirflowInstance(auth_backend=BasicAuthBackend(webserver_url=server.url, username="admin", password="admin"),
                                   name=INSTANCE, max_workers=workers[0])
        out["max_workers"] = workers
        dag_ids = [f"dag_{d:04d}" for d in range(dags)]
        mapped = Definitions.merge(*(dag_defs(d, *[task_defs(f"task_{t:03d}", AssetSpec([d, f"t{t}"])) for t in range(2)])
                                     for d in dag_ids))
        started = time.perf_counter()
        defs = build_defs_from_airflow_instance(airflow_instance=instance, defs=mapped, sensor_settings=settings,
                                                include_sources=False)
        sensor = defs.resolve_sensor_def(f"{INSTANCE}__airflow_sensor")
        out["load_seconds"] = round(time.perf_counter() - started, 1)
        # steady state: every 30 s tick finds per_tick task instances finished; then a pause of
        # pause_hours (the sensor stopped while Airflow kept working), then ticks draining the backlog
        # (with --airflow-run-index both: then the steady state again with the index, ticks named "...+index";
        # with several --airflow-max-workers: the steady state again with each further value, ticks named "...@N")
        plan = ["first", "quiet"] + ["busy"] * steady + ["quiet"]
        explained = {1, 1 + steady}
        second = "+index" if index_mode == "both" else "+events" if events_mode == "both" else ""
        if second:
            plan += [f"busy{second}"] * indexed_steady + [f"quiet{second}"]
            explained.add(len(plan) - 2)
        for n in workers[1:]:
            plan += [f"busy@{n}"] * steady + [f"quiet@{n}"]
            explained.add(len(plan) - 2)
        drain_suffix = second or (f"@{workers[-1]}" if len(workers) > 1 else "")
        plan += ["drain" + drain_suffix] * args.drain_ticks
        if args.drain_ticks:
            explained.add(len(plan) - args.drain_ticks)
        ticks: list[dict[str, Any]] = []
        cursor: str | None = None
        profiler = cProfile.Profile() if args.profile else None
        with DagsterInstance.ephemeral() as dagster:
            for i, kind in enumerate(plan):
                base = kind.split("+")[0].split("@")[0]
                instance.max_workers = int(kind.split("@")[1]) if "@" in kind else workers[0]
                if kind.endswith("+index") and not plan[i - 1].endswith("+index"):
                    add_run_index()
                if kind.endswith("+events"):
                    events[0] = True
                clock[0] = t0 + timedelta(seconds=30 * i) + (timedelta(hours=pause_hours) if base == "drain" else timedelta(0))
                if base == "drain" and plan[i - 1] != kind:
                    paused = time.perf_counter()
                    backlog = 0
                    for h in range(int(pause_hours + 0.999)):
                        at = min(clock[0], clock[0] - timedelta(hours=pause_hours) + timedelta(hours=h + 1))
                        backlog += finish_runs(db, count=per_hour, clock=at, window=timedelta(hours=1), running=pool,
                                               run_events=events[0], date_col=date_col)
                    out["backlog"] = {"task_instances": backlog, "hours": pause_hours, "seconds": round(time.perf_counter() - paused, 1)}
                    print(f"    paused {pause_hours} h: {backlog:,} task instances finished meanwhile ({out['backlog']['seconds']} s of SQL)",
                          flush=True)
                busy = base in ("busy", "drain")
                changed = (finish_runs(db, count=per_tick // TASKS, clock=clock[0], window=timedelta(seconds=30), running=pool,
                                       run_events=events[0], date_col=date_col) if busy else 0)
                explain = i in explained
                context = build_sensor_context(instance=dagster, definitions=defs, cursor=cursor)
                before = sent[0]
                by_path.clear()

                def timed(context: Any = context, profiled: bool = profiler is not None and base == "busy") -> tuple[Any, float, float, int]:
                    with RssPeak() as rss:
                        if profiled:
                            profiler.enable()
                        t_wall, t_cpu = time.perf_counter(), time.process_time()
                        result = sensor(context)
                        wall, cpu = time.perf_counter() - t_wall, time.process_time() - t_cpu
                        if profiled:
                            profiler.disable()
                    return result, wall, cpu, rss.peak

                (result, wall, cpu, peak), stats, plans = _explained(db, timed, explain=explain)
                for event in result.asset_events:
                    if isinstance(event, AssetMaterialization):
                        dagster.report_runless_asset_event(event)
                cursor = result.cursor
                materialized = sum(isinstance(e, AssetMaterialization) for e in result.asset_events)
                parsed = json.loads(cursor or "{}")
                tick = {"kind": kind, "changed_tis": changed, "seconds": round(wall, 2), "cpu_s": round(cpu, 2),
                        "rss_mb": round(peak / 2**20), "requests": sent[0] - before, "materializations": materialized,
                        "high_water": parsed.get("hw"), "pending": len(parsed.get("sw") or []),
                        "behind_s": _behind(parsed.get("hw"), clock[0]), "source": parsed.get("src", "scan"), "run_events": "ls" in parsed,
                        **stats, "plans": plans}
                ticks.append(tick)
                print(f"    tick {i:2d} {kind:<6}{changed:>6} changed: {wall:6.2f} s ({cpu:5.2f} s CPU), {peak / 2**20:5.0f} MB RSS, "
                      f"{tick['requests']:3d} requests, {materialized:5d} materializations; DB {stats['db_ms']:9.1f} ms, "
                      f"{stats['db_calls']} calls, {stats['db_rows']:,} rows, {stats['db_blocks']:,} blocks; "
                      f"{tick['behind_s'] / 60:,.1f} min behind, {tick['pending']} windows to re-read", flush=True)
                tick["requests_by_path"] = {p: [len(t), round(sum(t), 3)] for p, t in sorted(by_path.items())}
                print("        requests: " + "; ".join(f"{p} {n} in {s:.2f} s" for p, (n, s) in tick["requests_by_path"].items()),
                      flush=True)
                for top in stats["top"]:
                    print(f"        {top[0]:>9} ms {top[1]:>4} calls {top[2]:>7} rows {top[3]:>8} blocks  {top[4]}", flush=True)
        requests.Session.send = original  # type: ignore[method-assign]
        if profiler is not None:
            print("\n  Profile of the busy ticks (cProfile, by cumulative then by own time; their wall times above include the profiler):")
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(args.profile)
            pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(args.profile)
            print(text.getvalue(), flush=True)
        out["ticks"] = ticks
        out["load_average"] = [round(x, 1) for x in os.getloadavg()]
        for i in sorted(explained):
            print(f"\n  Plans of the sensor's statements in tick {i} ({plan[i]}, auto_explain), Airflow {server.version}:")
            for p in ticks[i]["plans"]:
                print(f"    {p['calls']} x, {p['ms']} ms: {p['query']}")
                for line in p["plan"]:
                    print(f"      {line}")
    finally:
        server.cleanup()
    return out


def airflow_part(args: Any) -> dict[str, Any]:
    from push import percentiles  # one percentile rule for the benches

    results = {}
    for version in args.airflow_versions.split(","):
        results[version] = run_version(version, args)
    print(f"\nSensor ticks on real Airflow over PostgreSQL (change source {args.change_source!r}; "
          f"index on dag_run.updated_at: {args.airflow_run_index}; requests at once (max_workers): {args.airflow_max_workers}; DB: pg_stat_statements, "
          "API statements only; drain: after the pause, new work still arriving)")
    print(f"{'Airflow':<9}{'tick':<12}{'ticks':>6}{'wall p95':>9}{'wall max':>9}{'CPU max':>8}{'RSS MB':>7}{'req max':>8}"
          f"{'DB ms p95':>10}{'DB ms max':>10}{'DB blocks max':>14}")
    for r in results.values():
        for kind in dict.fromkeys(t["kind"] for t in r["ticks"] if t["kind"] != "first"):
            ts = [t for t in r["ticks"] if t["kind"] == kind]
            if ts:
                print(f"{r['version']:<9}{kind:<12}{len(ts):>6}{percentiles([t['seconds'] for t in ts])['p95']:>9.2f}{max(t['seconds'] for t in ts):>9.2f}"
                      f"{max(t['cpu_s'] for t in ts):>8.2f}{max(t['rss_mb'] for t in ts):>7}{max(t['requests'] for t in ts):>8}"
                      f"{percentiles([t['db_ms'] for t in ts])['p95']:>10,.1f}{max(t['db_ms'] for t in ts):>10,.1f}{max(t['db_blocks'] for t in ts):>14,}")
        for t in r["ticks"]:
            if t["plans"]:
                scans = sorted({line.strip().split(" (")[0] for q in t["plans"] for line in q["plan"]
                                if re.search(r"Seq Scan on (task_instance|dag_run) ", line)})  # not their notes' tables
                print(f"{'':<9}sequential scans of task_instance / dag_run in the explained {t['kind']} tick: {'; '.join(scans) or 'none'}")
        drain = [t for t in r["ticks"] if t["kind"].startswith("drain")]
        if drain and r.get("backlog"):
            read = sum(t["db_rows"] for t in drain)
            print(f"{'':<9}backlog {r['backlog']['task_instances']:,} task instances over {r['backlog']['hours']} h; "
                  f"{len(drain)} drain ticks moved the high-water mark {drain[0]['high_water']} -> {drain[-1]['high_water']} "
                  f"({read:,} DB rows returned)")
            print(f"{'':<9}{drain_rate(drain)}")
    return results
