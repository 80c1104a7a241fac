"""Real Airflow (the version under test) behind the fault-injection proxy: definitions, sensor ticks
with a cursor round trip, a sensor restarted mid-stream, and Airflow itself stopped and started
mid-tick, with a share of every request faulted.

Done when, for every seed: the materializations equal the fault-free ones (nothing lost, nothing
repeated), every raised error is an Airlift error naming the URL or a DAG, and no password, token or
cookie appears in any exception, log line, repr or event metadata.

    uvx nox -s faults-airflow2 faults-airflow3                     # seeds 1,2,3 at 30%
    AIRLIFT_FAULT_SEEDS=4,5 AIRLIFT_FAULT_RATE=0.5 uvx nox -s faults-airflow3
    AIRLIFT_FAULT_REPORT=/tmp/faults.jsonl uvx nox -s faults-airflow3   # one JSON line per seed
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from dagster import (
    AssetMaterialization,
    AssetSpec,
    DagsterInstance,
    Definitions,
    build_sensor_context,
)

from airlift_client import AirflowInstance, AirliftClientError, BasicAuthBackend
from airlift_dagster import (
    AirliftDagsterError,
    AirliftSensorCursor,
    SensorSettings,
    build_defs_from_airflow_instance,
    dag_defs,
    task_defs,
)
from airlift_testing import SAMPLE_DAGS, AirflowServer
from airlift_testing.airflow import AirflowUser
from airlift_testing.fault_proxy import FAULT_KINDS, FaultProxy

pytestmark = pytest.mark.integration

SEEDS = tuple(int(s) for s in os.environ.get("AIRLIFT_FAULT_SEEDS", "1,2,3").split(","))
RATE = float(os.environ.get("AIRLIFT_FAULT_RATE", "0.3"))
CLIENT_TIMEOUT = 8.0
MAX_TICKS = 120
USER = AirflowUser("faultuser", "Fault-Sentinel-Pa55word", "admin")
DAG_IDS = ["team.sales-daily_v2", "mapped_dag", "failing_dag"]
NAME = "airflow_one"
Key = tuple[str, str, Any]


def _defs(url: str) -> Definitions:
    instance = AirflowInstance(
        auth_backend=BasicAuthBackend(webserver_url=url, username=USER.username, password=USER.password),
        name=NAME,
        timeout=CLIENT_TIMEOUT,
    )
    return build_defs_from_airflow_instance(
        airflow_instance=instance,
        defs=Definitions.merge(
            dag_defs(
                "team.sales-daily_v2",
                task_defs("extract", AssetSpec(["sales", "raw_orders"])),
                task_defs("transform_left", AssetSpec(["sales", "left"], deps=[["sales", "raw_orders"]])),
                task_defs("transform_right", AssetSpec(["sales", "right"], deps=[["sales", "raw_orders"]])),
                task_defs("load", AssetSpec(["sales", "report"], deps=[["sales", "left"], ["sales", "right"]])),
            ),
            dag_defs("mapped_dag", task_defs("process", AssetSpec("processed_items"))),
            dag_defs("failing_dag", task_defs("fine", AssetSpec("fine_table")), task_defs("broken", AssetSpec("broken_table"))),
        ),
    )


def _tick(defs: Definitions, instance: DagsterInstance, cursor: str | None) -> Any:
    sensor = defs.resolve_sensor_def(f"{NAME}__airflow_sensor")
    return sensor(build_sensor_context(instance=instance, definitions=defs, cursor=cursor))


def _value(metadata: Any, key: str) -> Any:
    value = metadata.get(key)
    return getattr(value, "value", value)


def _materializations(result: Any) -> Counter[Key]:
    return Counter(
        (e.asset_key.to_user_string(), str(_value(e.metadata, "Airflow run id")), _value(e.metadata, "Map index"))
        for e in result.asset_events
        if isinstance(e, AssetMaterialization)
    )


@pytest.fixture(scope="module")
def airflow(airflow_server_factory: Callable[..., AirflowServer], tmp_path_factory: pytest.TempPathFactory) -> AirflowServer:
    dags = tmp_path_factory.mktemp("dags")
    shutil.copy(SAMPLE_DAGS, dags)
    server = airflow_server_factory(dags, extra_users=[USER])
    server.wait_for_dags(DAG_IDS)
    return server


@pytest.fixture(scope="module")
def history(airflow: AirflowServer) -> tuple[str, Counter[Key]]:
    """The sensor cursor from before the runs, and the materializations of a fault-free sensor."""
    defs = _defs(airflow.url)
    with DagsterInstance.ephemeral() as instance:
        start_cursor = _tick(defs, instance, None).cursor
        run_ids = {dag_id: airflow.trigger(dag_id) for dag_id in DAG_IDS}
        for dag_id, run_id in run_ids.items():
            airflow.wait_for_run(dag_id, run_id, timeout=600)
        # the sensor leaves rows changed in its last `settle` seconds to a later tick
        time.sleep(SensorSettings().settle.total_seconds() + 1)
        expected: Counter[Key] = Counter()
        cursor = start_cursor
        for _ in range(10):
            result = _tick(defs, instance, cursor)
            new = _materializations(result)
            expected.update(new)
            cursor = result.cursor
            if not new:
                break
    assert expected[("sales/report", run_ids["team.sales-daily_v2"], None)] == 1
    assert sum(n for (key, _, _), n in expected.items() if key == "processed_items") == 3
    return start_cursor, expected


class _Restarter(threading.Thread):
    """Stops and starts the real Airflow once the proxy has passed ``after`` requests."""

    def __init__(self, airflow: AirflowServer, proxy: FaultProxy, after: int) -> None:
        super().__init__(name="airflow-restart", daemon=True)
        self.airflow, self.proxy, self.after = airflow, proxy, after
        self.error: BaseException | None = None
        self.stopped_at_request: int | None = None

    def run(self) -> None:
        try:
            while self.proxy.requests < self.after:
                time.sleep(0.05)
            self.stopped_at_request = self.proxy.requests
            self.airflow.startup_timeout = max(self.airflow.startup_timeout, 600.0)  # a cold start on a busy CI machine
            self.airflow.stop()
            self.airflow.start()
        except BaseException as e:  # re-raised by the test
            self.error = e


def _build(url: str, errors: list[BaseException]) -> Definitions:
    """Definitions through the proxy; a failed load is retried as a code server would on reload
    (Airflow may be restarting)."""
    for _ in range(40):
        try:
            return _defs(url)
        except Exception as e:  # every one is checked by the test
            errors.append(e)
            time.sleep(3.0)
    raise AssertionError(f"definitions could not be built through the proxy: {errors[-3:]}")


@pytest.fixture
def captured_logs() -> Iterator[list[str]]:
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Keep(level=logging.DEBUG)
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield lines
    root.removeHandler(handler)
    root.setLevel(previous)


@pytest.mark.parametrize("seed", SEEDS)
def test_exact_materializations_and_clear_errors_under_faults(
    airflow: AirflowServer, history: tuple[str, Counter[Key]], seed: int, captured_logs: list[str]
) -> None:
    start_cursor, expected = history
    restart_airflow = seed == SEEDS[0]
    errors: list[BaseException] = []
    tick_errors: list[str] = []
    seen: Counter[Key] = Counter()
    events_text: list[str] = []
    started = time.monotonic()
    with FaultProxy(airflow.url, seed=seed, rate=RATE, slow_seconds=CLIENT_TIMEOUT + 1) as proxy:
        url = proxy.url
        defs = _build(url, errors)
        build_errors = len(errors)
        restarter: _Restarter | None = None
        rebuild_errors: list[str] = []
        cursor = start_cursor
        quiet = ticks = 0
        try:
            with DagsterInstance.ephemeral() as instance:
                while ticks < MAX_TICKS and (quiet < 2 or (restarter is not None and restarter.is_alive())):
                    ticks += 1
                    if ticks == 1 and restart_airflow:
                        # Airflow goes down a few requests into the first tick, the one with every run
                        restarter = _Restarter(airflow, proxy, after=proxy.requests + 3)
                        restarter.start()
                    if ticks == 3:
                        # the sensor's process restarts mid-stream: new definitions and client, the saved cursor
                        before = len(errors)
                        defs = _build(url, errors)
                        rebuild_errors = [f"{type(e).__name__}: {e}" for e in errors[before:]]
                    try:
                        result = _tick(defs, instance, cursor)
                    except Exception as e:  # checked below
                        errors.append(e)
                        tick_errors.append(f"{type(e).__name__}: {e}")
                        quiet = 0
                        time.sleep(2.0)
                        continue
                    new = _materializations(result)
                    seen.update(new)
                    events_text.extend(repr(e) for e in result.asset_events)
                    # the cursor goes through its string form, as Dagster stores it
                    cursor = AirliftSensorCursor.parse(result.cursor).serialize()
                    quiet = 0 if new else quiet + 1
        finally:
            if restarter is not None:
                restarter.join()
        assert restarter is None or restarter.error is None, f"Airflow did not restart: {restarter.error!r}"
        credentials = set(proxy.credentials)
        faults = {k: proxy.counts[k] for k in (*FAULT_KINDS, "upstream_down") if proxy.counts[k]}
        report = {
            "airflow": airflow.version, "seed": seed, "rate": RATE, "requests": proxy.requests, "faults": faults,
            "airflow_restarted_at_request": restarter.stopped_at_request if restarter else None,
            "ticks": ticks, "build_errors": build_errors, "ticks_raised": tick_errors,
            "rebuilds_raised": len(rebuild_errors), "rebuild_errors_distinct": sorted(set(rebuild_errors)),
            "materializations_expected": sum(expected.values()), "materializations_seen": sum(seen.values()),
            "seconds": round(time.monotonic() - started, 1),
        }
    print("\n" + json.dumps(report, indent=1))
    if os.environ.get("AIRLIFT_FAULT_REPORT"):
        with open(os.environ["AIRLIFT_FAULT_REPORT"], "a") as out:
            out.write(json.dumps(report) + "\n")

    assert ticks < MAX_TICKS, f"the sensor never settled: {report}"
    assert seen == expected, f"missing {expected - seen}, repeated or extra {seen - expected}"
    assert sum(faults.get(k, 0) for k in FAULT_KINDS) > 0
    for error in errors:
        assert isinstance(error, (AirliftClientError, AirliftDagsterError)), repr(error)
        text = str(error)
        assert url in text or any(dag_id in text for dag_id in DAG_IDS), text
    texts = [*captured_logs, *(str(e) for e in errors), *(repr(e) for e in errors), *events_text, repr(AirflowInstance(
        auth_backend=BasicAuthBackend(webserver_url=url, username=USER.username, password=USER.password), name=NAME,
    ))]
    for secret in {USER.password, *credentials}:
        assert not any(secret in text for text in texts), "a password, token or cookie leaked"
