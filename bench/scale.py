"""Costs at production size (``uvx nox -s bench_scale``; see bench/README.md).

    python bench/scale.py [--quick] [--parts airflow,ledger,loads] [--unrelated 1000000] [--keys 100]
                          [--ledger-storage sqlite,postgres] [--load-dags 1000,10000] [--latency 0.02] [--airflow-versions 2,3]
                          [--airflow-dags 500] [--airflow-runs 1000] [--changed-per-minute 2000] [--busy-ticks 6]

0. ``airflow``: sensor ticks against a real Airflow 2.11 and 3.3 on PostgreSQL seeded by SQL with
   ``--airflow-dags`` x ``--airflow-runs`` DAG runs of 10 task instances each (5,000,000 by default),
   ``--changed-per-minute`` task instances finishing per simulated minute: wall, CPU, peak memory,
   requests, and the database's time and blocks per tick (``pg_stat_statements``), and the plans of
   the sensor's statements (``auto_explain``); see :mod:`scale_airflow`.

1. ``ledger``: the sensor's "already stored?" read (:func:`airlift_dagster.sensor.ledger.settle_deliveries`)
   on a Dagster instance before and after seeding ``--unrelated`` materializations of 1,000 other
   assets (bulk SQL inserts), for a steady tick (one candidate per key, half of them pushed already)
   and for a tick of a 1-day backlog (12 candidates per key spread over the day, the key pushed every
   5 minutes all day). ``--ledger-storage``: the instance's storage, one run each: ``sqlite`` (in
   memory, as the unit tests use) and ``postgres`` (dagster-postgres on a private PostgreSQL cluster
   with ``pg_stat_statements`` and ``auto_explain``, as production deployments run). Prints the median
   time of 3 evaluations, the records read, the SQL statements issued and the database connections
   opened, of the ledger's batched reads and of its per-key reads (the baseline), and their ratio; on PostgreSQL also the database's own time for the statements (median per evaluation) and,
   in the results, the plans of the statements of a 4th evaluation.
2. ``loads``: definitions built from the fake Airflow (``airlift_testing.fake_airflow``, ``--latency``
   seconds per request) at ``--load-dags`` DAGs x 10 tasks, two tasks per DAG mapped, with every
   option combination of a server-side DAG filter and the source switch: wall time, requests, peak
   RSS of a fresh process and the reconstruction metadata size.

Results go to ``bench/results/scale.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
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


def _seed_unrelated_postgres(dagster: Any, pg: Any, database: str, count: int, now: datetime) -> float:
    """What :func:`_seed_unrelated` does, in PostgreSQL's SQL: 1,000 materializations reported through
    the instance (their ``event_logs`` and ``asset_keys`` rows written by Dagster), then ``count - 1,000``
    copies of their ``event_logs`` rows (every column as Dagster wrote it, ``timestamp`` spread over the
    last day), then ``VACUUM ANALYZE``."""
    from dagster import AssetMaterialization

    started = time.perf_counter()
    for i in range(1000):
        dagster.report_runless_asset_event(AssetMaterialization(["unrelated", f"asset_{i:04d}"]))
    copies = max(0, count - 1000)
    day_ago = (now - timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S")
    pg.psql(database, f"""
        WITH t AS (SELECT e.*, row_number() OVER (ORDER BY e.id) - 1 AS i FROM event_logs e WHERE e.asset_key LIKE '%unrelated%')
        INSERT INTO event_logs (run_id, event, dagster_event_type, timestamp, step_key, asset_key, partition)
        SELECT t.run_id, t.event, t.dagster_event_type, timestamp '{day_ago}' + ((g * 7919) % 86400) * interval '1 second',
               t.step_key, t.asset_key, t.partition
        FROM generate_series(0::bigint, {copies - 1}) AS g JOIN t ON t.i = g % 1000""")
    pg.psql(database, "VACUUM ANALYZE")
    return time.perf_counter() - started


def _check_unrelated(dagster: Any) -> dict[str, Any]:
    """Dagster's own reads see the seeded rows as materializations: the newest materialization of one
    unrelated key (by storage id) is a seeded copy (stored after the 1,000 reported ones), and how
    many the key has."""
    from dagster import AssetKey, AssetRecordsFilter
    from sqlalchemy import text

    with dagster.event_log_storage.index_connection() as conn:
        last_reported = conn.execute(text("SELECT id FROM event_logs WHERE asset_key LIKE :like ORDER BY id LIMIT 1 OFFSET 999"),
                                     {"like": "%unrelated%"}).scalar()
    key = AssetKey(["unrelated", "asset_0500"])
    latest = dagster.fetch_materializations(key, limit=1).records
    assert latest and latest[0].event_log_entry.asset_materialization is not None, "no materialization of an unrelated key"
    total, cursor = 0, None
    while True:
        page = dagster.fetch_materializations(AssetRecordsFilter(asset_key=key), limit=1000, cursor=cursor)
        total += len(page.records)
        if not page.has_more:
            break
        cursor = page.cursor
    return {"key": key.to_user_string(), "latest_storage_id": latest[0].storage_id,
            "latest_is_seeded_copy": latest[0].storage_id > last_reported, "materializations": total}


def _pg_stats(pg: Any, database: str) -> dict[str, Any]:
    """The database's time, calls, rows and 8 KB blocks of the statements since the last reset, in
    all and per statement (``pg_stat_statements`` folds the literals: one row for the 100 keys' reads)."""
    where = "FROM pg_stat_statements WHERE query NOT ILIKE '%pg_stat_statements%'"
    row = pg.psql(database, "SELECT coalesce(sum(total_exec_time), 0), coalesce(sum(calls), 0), coalesce(sum(rows), 0), "
                            f"coalesce(sum(shared_blks_hit + shared_blks_read), 0) {where}").strip().split("|")
    top = pg.psql(database, "SELECT round(total_exec_time::numeric, 1), calls, rows, shared_blks_hit + shared_blks_read, "
                            f"left(regexp_replace(query, '\\s+', ' ', 'g'), 200) {where} ORDER BY total_exec_time DESC LIMIT 5")
    return {"db_ms": float(row[0]), "db_calls": int(row[1]), "db_rows": int(row[2]), "db_blocks": int(row[3]),
            "top": [line.split("|", 4) for line in top.strip().splitlines()]}


def _ledger_case(dagster: Any, emissions: list[Any], floor: datetime, pg: Any = None, database: str = "") -> dict[str, Any]:
    """Median of 3 evaluations of the ledger's batched reads, then of 3 of its per-key reads (the
    baseline: Dagster's public per-key API, as storages without SQL are read and as releases before
    the batched reads did); with ``pg`` (PostgreSQL) also the database's own figures per evaluation
    (``pg_stat_statements`` reset before each) and the plans of a 4th batched evaluation
    (``auto_explain``, untimed). Both ways must keep and drop the same candidates."""
    from unittest import mock

    from airlift_dagster.sensor import stored
    from airlift_dagster.sensor.ledger import BuiltTries, settle_deliveries

    def evaluate() -> Any:
        return settle_deliveries(emissions, instance=dagster, instance_name=INSTANCE, built=BuiltTries(), floor=floor)

    result, out = _measure(dagster, evaluate, pg, database)
    with mock.patch.object(stored._SqlReader, "of", return_value=None):
        baseline, per_key_out = _measure(dagster, evaluate, pg, database)
    if [id(e) for e in per_key_out.kept] != [id(e) for e in out.kept] or per_key_out.held != out.held:
        raise SystemExit("the batched and the per-key reads decided differently: a bug in the batched read")
    result.update(kept=len(out.kept), held=out.held, per_key=baseline,
                  per_key_ratio=round(baseline["seconds_median"] / max(result["seconds_median"], 1e-9), 1))
    if pg is not None:
        result["plans"] = _pg_plans(pg, database, evaluate)
    return result


def _measure(dagster: Any, evaluate: Callable[[], Any], pg: Any, database: str) -> tuple[dict[str, Any], Any]:
    from sqlalchemy import event

    counts = {"statements": 0, "connections": 0}
    engine = dagster.event_log_storage._engine

    def count(*_: Any) -> None:
        counts["statements"] += 1

    def connected(*_: Any) -> None:
        counts["connections"] += 1

    times, cpu, db = [], [], []
    event.listen(engine, "before_cursor_execute", count)
    event.listen(engine, "connect", connected)
    try:
        for _ in range(3):
            counts.update(statements=0, connections=0)
            if pg is not None:
                pg.psql(database, "SELECT pg_stat_statements_reset()")
            started, cpu_started = time.perf_counter(), time.process_time()
            out = evaluate()
            times.append(time.perf_counter() - started)
            cpu.append(time.process_time() - cpu_started)
            if pg is not None:
                db.append(_pg_stats(pg, database))
    finally:
        event.remove(engine, "before_cursor_execute", count)
        event.remove(engine, "connect", connected)
    result: dict[str, Any] = {"seconds_median": round(statistics.median(times), 4), "seconds": [round(t, 4) for t in times],
                              "cpu_seconds_median": round(statistics.median(cpu), 4), "cpu_seconds": [round(t, 4) for t in cpu],
                              "records_read": out.records_read, "sql_statements": counts["statements"],
                              "connections": counts["connections"]}
    if pg is not None:
        result.update({name: statistics.median(d[name] for d in db) for name in ("db_ms", "db_calls", "db_rows", "db_blocks")})
        result["db_ms"] = round(result["db_ms"], 1)
        result["db"] = db
    return result, out


def _pg_index_levels(pg: Any, database: str) -> dict[str, int]:
    """B-tree levels (``pgstattuple``) of the indexes the ledger's statements use."""
    names = ("idx_events_by_asset", "asset_keys_asset_key_key")
    out = pg.psql(database, " UNION ALL ".join(f"SELECT '{n}', tree_level FROM pgstatindex('{n}')" for n in names))
    return {name: int(level) for name, level in (line.split("|") for line in out.strip().splitlines())}


def _connect_ms(dagster: Any, count: int = 100) -> float:
    """Median wall ms of opening a connection of the event log's engine and running ``SELECT 1`` on
    it (dagster-postgres opens one per statement: ``NullPool``)."""
    engine = dagster.event_log_storage._engine
    times = []
    for _ in range(count):
        started = time.perf_counter()
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1000, 2)


def _plan_lines(node: dict[str, Any]) -> list[str]:
    from scale_airflow import plan_lines  # one reader of PostgreSQL plans for both parts

    return plan_lines(node)


def _pg_plans(pg: Any, database: str, work: Callable[[], Any]) -> list[dict[str, Any]]:
    """The plans of the statements ``work()`` issues, with actual rows and 8 KB blocks (``auto_explain``
    with ``log_analyze`` and ``log_buffers``): one entry per statement shape (literals folded), with
    its calls, time and blocks in all and the plan of its first call."""
    settings = {"log_min_duration": "0", "log_format": "json", "log_analyze": "on", "log_buffers": "on"}
    for name, value in settings.items():  # ALTER SYSTEM runs outside a transaction: one statement per call
        pg.psql(database, f"ALTER SYSTEM SET auto_explain.{name} = {value}")
    pg.psql(database, "SELECT pg_reload_conf()")
    log_start = pg.log_path.stat().st_size
    try:
        work()
    finally:
        for name in settings:
            pg.psql(database, f"ALTER SYSTEM RESET auto_explain.{name}")
        pg.psql(database, "SELECT pg_reload_conf()")
    with pg.log_path.open(errors="replace") as f:
        f.seek(log_start)
        log = f.read()
    from scale_airflow import (  # one reader of auto_explain's log for both parts
        explained_statements,
        statement_shape,
    )

    out: dict[str, dict[str, Any]] = {}
    for ms, text, doc in explained_statements(log, skip=("pg_stat_statements", "pg_reload_conf", "auto_explain")):
        top = doc.get("Plan", {})
        entry = out.setdefault(statement_shape(text), {"query": text[:400], "plan": _plan_lines(top), "calls": 0, "ms": 0.0, "blocks": 0})
        entry["calls"] += 1
        entry["ms"] = round(entry["ms"] + ms, 1)
        entry["blocks"] += top.get("Shared Hit Blocks", 0) + top.get("Shared Read Blocks", 0)
    return sorted(out.values(), key=lambda e: -e["ms"])


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
    """The ledger's read on each storage of ``--ledger-storage`` (results by storage)."""
    out: dict[str, Any] = {}
    for storage in args.ledger_storage.split(","):
        if storage not in ("sqlite", "postgres"):
            raise SystemExit(f"--ledger-storage: unknown storage {storage!r} (sqlite, postgres)")
        out[storage] = _ledger_on(storage, args)
    return out


def _ledger_on(storage: str, args: argparse.Namespace) -> dict[str, Any]:
    from importlib.metadata import version

    from dagster import AssetMaterialization, DagsterInstance

    from airlift_dagster.sensor.emissions import Emission
    from airlift_protocol.tags import AirflowEventId

    now = datetime.now(timezone.utc).replace(microsecond=0)
    keys = [["mapped", f"asset_{k:04d}"] for k in range(args.keys)]

    def steady() -> list[Any]:
        out = []
        for k, key in enumerate(keys):
            eid = AirflowEventId(INSTANCE, "dag", f"steady_{k}", task_id="t", try_number=1)
            out.append(Emission(AssetMaterialization(key, tags=eid.tags()), eid, now - timedelta(minutes=1)))
        return out

    def backlog() -> list[Any]:
        out = []
        for k, key in enumerate(keys):
            for j in range(12):
                eid = AirflowEventId(INSTANCE, "dag", f"backlog_{k}_{j}", task_id="t", try_number=1)
                out.append(Emission(AssetMaterialization(key, tags=eid.tags()), eid, now - timedelta(days=1) + timedelta(hours=2 * j)))
        return out

    results: dict[str, Any] = {"storage": storage, "dagster": version("dagster"), "started_utc": now.isoformat(),
                               "load_average_start": [round(x, 2) for x in os.getloadavg()]}
    pg: Any = None
    database = "dagster"

    def run(dagster: Any) -> None:
        for k, key in enumerate(keys):  # half the steady candidates pushed already
            if k % 2 == 0:
                _pushed(dagster, key, AirflowEventId(INSTANCE, "dag", f"steady_{k}", task_id="t", try_number=1), now)
        for k, key in enumerate(keys):  # the key pushed every 5 minutes for the whole day
            for j in range(288):
                _pushed(dagster, key, AirflowEventId(INSTANCE, "dag", f"other_{k}_{j}", task_id="t", try_number=1),
                        now - timedelta(days=1) + timedelta(minutes=5 * j))
        if pg is not None:  # statistics as autovacuum keeps them (the seeded log gets its VACUUM ANALYZE too)
            pg.psql(database, "VACUUM ANALYZE")
            results["index_levels_0"] = _pg_index_levels(pg, database)
        cases = {"steady": steady(), "backlog": backlog()}
        for name, emissions in cases.items():
            results[f"{name}_0"] = {"storage": storage, **_ledger_case(dagster, emissions, now - timedelta(days=1), pg, database)}
        print(f"  {storage}: 0 unrelated measured; seeding {args.unrelated:,}", flush=True)
        if pg is None:
            seeded = _seed_unrelated(dagster, args.unrelated, now)
        else:
            seeded = _seed_unrelated_postgres(dagster, pg, database, args.unrelated, now)
        results["seed_seconds"] = round(seeded, 1)
        with dagster.event_log_storage.index_connection() as conn:
            results["event_log_rows"] = conn.exec_driver_sql("SELECT count(*) FROM event_logs").scalar()
        results["unrelated_check"] = _check_unrelated(dagster)
        if pg is not None:
            results["event_logs_mb"] = round(int(pg.psql(database, "SELECT pg_total_relation_size('event_logs')").strip()) / 2**20)
            results[f"index_levels_{args.unrelated}"] = _pg_index_levels(pg, database)
        for name, emissions in cases.items():
            results[f"{name}_{args.unrelated}"] = {"storage": storage,
                                                   **_ledger_case(dagster, emissions, now - timedelta(days=1), pg, database)}
        results["connect_select1_ms_median"] = _connect_ms(dagster)

    if storage == "sqlite":
        with DagsterInstance.ephemeral() as dagster:
            run(dagster)
        where = "in-memory SQLite"
    else:
        from airlift_testing.postgres import PostgresServer

        results["dagster_postgres"] = version("dagster-postgres")
        pg = PostgresServer(settings={"shared_preload_libraries": "pg_stat_statements,auto_explain",
                                      "shared_buffers": "256MB", "work_mem": "16MB"}).start()
        home = Path(tempfile.mkdtemp(prefix="airlift-scale-dagster-"))
        try:
            url = pg.create_database(database)
            pg.psql(database, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            pg.psql(database, "CREATE EXTENSION IF NOT EXISTS pgstattuple")
            results["postgres"] = pg.psql(database, "SHOW server_version").strip()
            (home / "dagster.yaml").write_text(f"telemetry:\n  enabled: false\nstorage:\n  postgres:\n    postgres_url: {url}\n")
            with DagsterInstance.from_config(str(home)) as dagster:
                run(dagster)
        finally:
            pg.stop()
            shutil.rmtree(home, ignore_errors=True)
        where = f"PostgreSQL {results['postgres']} (dagster-postgres {results['dagster_postgres']})"
    results["finished_utc"] = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    results["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    check = results["unrelated_check"]
    print(f"\nLedger read, {args.keys} keys at stake, Dagster {results['dagster']} on {where} ({results['event_log_rows']:,} "
          f"event rows after seeding {args.unrelated:,} unrelated in {results['seed_seconds']} s; {check['key']}: "
          f"{check['materializations']:,} materializations, newest a seeded copy: {check['latest_is_seeded_copy']}); "
          f"{results['started_utc']} to {results['finished_utc']}, load average {results['load_average_start']} to "
          f"{results['load_average_end']}")
    db_head = f"{'DB ms':>9}{'DB calls':>9}{'DB blocks':>10}" if pg is not None else ""
    print(f"{'tick':<10}{'reads':>9}{'unrelated':>12}{'median s':>10}{'CPU s':>8}{'records':>10}{'SQL':>6}{'conns':>6}{'held':>6}"
          f"{db_head}{'per-key / batched':>19}")
    for name in ("steady", "backlog"):
        for n in (0, args.unrelated):
            row = results[f"{name}_{n}"]
            for reads, r in (("batched", row), ("per-key", row["per_key"])):
                db_cols = f"{r['db_ms']:>9}{r['db_calls']:>9}{r['db_blocks']:>10}" if pg is not None else ""
                ratio = f"{row['per_key_ratio']:>18}x" if reads == "batched" else ""
                print(f"{name:<10}{reads:>9}{n:>12,}{r['seconds_median']:>10}{r['cpu_seconds_median']:>8}{r['records_read']:>10}"
                      f"{r['sql_statements']:>6}{r['connections']:>6}{row['held']:>6}{db_cols}{ratio}")
    print(f"  connection + SELECT 1 on the event log's engine: {results['connect_select1_ms_median']} ms (median of 100)")
    if pg is not None:
        print(f"  B-tree levels at 0 / {args.unrelated:,} unrelated: {results['index_levels_0']} / "
              f"{results[f'index_levels_{args.unrelated}']}; event_logs {results['event_logs_mb']} MB")
        for name in ("steady", "backlog"):
            for n in (0, args.unrelated):
                print(f"  {name} tick, {n:,} unrelated: statements by database time (pg_stat_statements, one evaluation)")
                for ms, calls, rows, blocks, query in results[f"{name}_{n}"]["db"][0]["top"][:3]:
                    print(f"    {ms:>7} ms {calls:>4} calls {rows:>6} rows {blocks:>6} blocks  {query[:120]}")
        for n in (0, args.unrelated):
            print(f"  plans of the backlog tick's statements at {n:,} unrelated (auto_explain, analyzed; by time):")
            for plan in [p for p in results[f"backlog_{n}"]["plans"] if "pg_catalog" not in p["query"]][:2]:
                print(f"    {plan['calls']} calls, {plan['ms']} ms, {plan['blocks']} blocks: {plan['query'][:300]}")
                for line in plan["plan"]:
                    print(f"      {line}")
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
    rss = _peak_rss_kb()
    return {"dags": dags, "case": case, "seconds": round(wall, 1), "cpu_seconds": round(cpu, 1), "requests": total,
            "mapping_seconds": round(mapping_seconds, 1),
            "assets": len(specs), "peak_rss_mb": round(rss / 1024), "reconstruction_metadata_bytes": metadata}


def _peak_rss_kb() -> int:
    """This process's peak resident set (kB): ``VmHWM`` belongs to the address space, which ``exec`` starts anew;
    ``getrusage``'s ``ru_maxrss`` is kept across ``exec`` and so starts at the forking parent's size."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # no /proc (not Linux): the best there is


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
    parser.add_argument("--steady-minutes", type=int, default=30, help="simulated minutes of steady state (a busy tick per 30 s)")
    parser.add_argument("--pause-hours", type=float, default=24.0, help="how long the sensor is stopped before the drain ticks")
    parser.add_argument("--drain-ticks", type=int, default=30, help="ticks measured after the pause (0: no pause)")
    parser.add_argument("--max-rows-per-tick", type=int, default=10000, help="the sensor's row budget per tick (its default)")
    parser.add_argument("--change-source", default="auto", choices=["auto", "audit_log", "scan"])
    parser.add_argument("--airflow-run-index", default="off", choices=["off", "on", "both"],
                        help="the index docs/guide.md suggests (dag_run.updated_at): on: added after seeding; both: the "
                             "steady state without it, then the index added and the steady state again")
    parser.add_argument("--airflow-run-events", default="on", choices=["off", "on", "both"],
                        help="airlift-airflow's run-event rows (a row per run start and end in Airflow's audit log; the "
                             "listener writes them by default): on: written for the seeded history and from the start; off: "
                             "never (the sensor scans for changed runs); both: the steady state without them, then "
                             "written from then on and the steady state again (ticks named busy+events)")
    parser.add_argument("--airflow-max-workers", default="16",
                        help="the sensor's AirflowInstance(max_workers=...): requests at once (1: one after the other); "
                             "several, comma-separated: the steady state once per value on the same data (ticks named busy@N)")
    parser.add_argument("--profile", type=int, default=0, help="print the N costliest functions of the busy ticks (cProfile)")
    parser.add_argument("--unrelated", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--ledger-storage", default="sqlite,postgres",
                        help="the ledger part's Dagster storages, one run each: sqlite (in memory), postgres (dagster-postgres)")
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
        args.changed_per_minute, args.steady_minutes, args.pause_hours, args.drain_ticks = 200, 5, 1.0, 3
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
