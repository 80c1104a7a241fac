"""One side of the benchmark, run in its own process (and venv): ``python side.py airlift|competitor URL CONFIG_JSON``.

CONFIG_JSON: ``{"mapped": {dag_id: [task_id, ...]}, "phases": ["load", "cached_reload", "sensor_tick"],
"cursor": <Airlift sensor cursor or null>}``. Prints one JSON line per phase as soon as it is measured
(``{"phase": ..., "seconds": ..., "requests": ..., "peak_mb": ...}``) and ``{"phase": "tick_start"}``
before the sensor tick, so the caller can stop a tick that runs past its budget and still keep the rest.
HTTP requests are counted on the client (every ``requests`` adapter send), so the count is the same
against the scale server and a real Airflow.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import tracemalloc
import warnings
from typing import Any

import requests.adapters

warnings.simplefilter("ignore")

_sent = 0
_lock = threading.Lock()
_original_send = requests.adapters.HTTPAdapter.send


def _counting_send(self: Any, *args: Any, **kwargs: Any) -> Any:
    global _sent
    with _lock:
        _sent += 1
    return _original_send(self, *args, **kwargs)


requests.adapters.HTTPAdapter.send = _counting_send  # type: ignore[method-assign]


def emit(data: dict[str, Any]) -> None:
    print(json.dumps(data), flush=True)


def measure(phase: str, fn: Any, *, trace_memory: bool = False) -> tuple[dict[str, Any], Any]:
    """Time ``fn`` and count its requests; with ``trace_memory``, also its peak Python memory
    (tracemalloc slows allocation-heavy code, so only the sensor ticks are traced, on both sides)."""
    before = _sent
    if trace_memory:
        tracemalloc.start()
    started, cpu = time.perf_counter(), time.process_time()
    result = fn()
    seconds = time.perf_counter() - started
    data = {"phase": phase, "seconds": round(seconds, 3), "cpu_s": round(time.process_time() - cpu, 3), "requests": _sent - before}
    if trace_memory:
        data["peak_mb"] = round(tracemalloc.get_traced_memory()[1] / 2**20, 1)
        tracemalloc.stop()
    return data, result


def reconstruct(build: Any, metadata: dict[str, str]) -> Any:
    """Build definitions the way a Dagster code server reloads them (reconstruction metadata given)."""
    from dagster._core.definitions.definitions_load_context import (
        DefinitionsLoadContext,
        DefinitionsLoadType,
    )
    from dagster._core.definitions.repository_definition.repository_definition import (
        RepositoryLoadData,
    )

    DefinitionsLoadContext.set(
        DefinitionsLoadContext(
            load_type=DefinitionsLoadType.RECONSTRUCTION,
            repository_load_data=RepositoryLoadData(cacheable_asset_data={}, reconstruction_metadata=metadata),
        )
    )
    try:
        return build()
    finally:
        DefinitionsLoadContext.set(DefinitionsLoadContext(load_type=DefinitionsLoadType.INITIALIZATION))


def builder(side: str, url: str, mapped: dict[str, list[str]], user: str, password: str) -> Any:
    from dagster import AssetSpec, Definitions

    if side == "airlift":
        from airlift_dagster import (
            AirflowInstance,
            BasicAuthBackend,
            build_defs_from_airflow_instance,
            dag_defs,
            task_defs,
        )

        def build() -> Definitions:
            instance = AirflowInstance(auth_backend=BasicAuthBackend(webserver_url=url, username=user, password=password), name="bench")
            defs = Definitions.merge(*(
                dag_defs(dag_id, *(task_defs(t, AssetSpec([dag_id, t])) for t in tasks)) for dag_id, tasks in mapped.items()
            ))
            return build_defs_from_airflow_instance(airflow_instance=instance, defs=defs)

        return build

    from dagster_airlift.core import (
        AirflowBasicAuthBackend,
        AirflowInstance,
        assets_with_task_mappings,
        build_defs_from_airflow_instance,
    )

    def build_competitor() -> Definitions:
        instance = AirflowInstance(auth_backend=AirflowBasicAuthBackend(webserver_url=url, username=user, password=password), name="bench")
        defs = Definitions(assets=[
            spec for dag_id, tasks in mapped.items()
            for spec in assets_with_task_mappings(dag_id=dag_id, task_mappings={t: [AssetSpec([dag_id, t])] for t in tasks})
        ])
        return build_defs_from_airflow_instance(airflow_instance=instance, defs=defs)

    return build_competitor


def main() -> None:
    import logging

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    side, url, config = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    phases = config.get("phases", ["load", "cached_reload", "sensor_tick"])
    build = builder(side, url, config["mapped"], config.get("user", "admin"), config.get("password", "admin"))
    result, defs = measure("load", lambda: _resolved(build()))
    if "load" in phases:
        emit(result)
    if "cached_reload" in phases:
        metadata = _reconstruction_metadata(defs)
        result, _ = measure("cached_reload", lambda: _resolved(reconstruct(build, metadata)))
        emit(result)
    if "sensor_tick" in phases:
        sensor_ticks(side, defs, config)


def sensor_ticks(side: str, defs: Any, config: dict[str, Any]) -> None:
    """The first tick (``sensor_tick``), then more ticks with the cursor each returns, back to back, until
    one reports nothing new (``catch_up``: ticks, seconds spent in ticks, materializations)."""
    from dagster import DagsterInstance, build_sensor_context

    repo = defs.get_repository_def()
    sensor = next(s for s in repo.sensor_defs if "sensor" in s.name)
    cursor = _start_cursor(side, config.get("cursor"))
    total = {"phase": "catch_up", "ticks": 0, "seconds": 0.0, "requests": 0, "peak_mb": 0.0, "materializations": 0,
             "productive_ticks": 0, "productive_seconds": 0.0, "tick_seconds": []}
    with DagsterInstance.ephemeral() as instance:
        emit({"phase": "tick_start"})
        for _ in range(int(config.get("max_ticks", 100))):
            context = build_sensor_context(instance=instance, repository_def=repo, cursor=cursor)
            result, tick = measure("sensor_tick", lambda context=context: sensor.evaluate_tick(context), trace_memory=True)
            events = [type(e).__name__ for e in (tick.asset_events or [])]
            result["materializations"] = events.count("AssetMaterialization")
            result["check_evaluations"] = events.count("AssetCheckEvaluation")
            result["failed_checks"] = sum(1 for e in (tick.asset_events or []) if getattr(e, "passed", True) is False)
            cursor = tick.cursor if tick.cursor is not None else context.cursor
            result["cursor_bytes"] = len(cursor or "")
            if total["ticks"] == 0:
                emit(result)
            total["ticks"] += 1
            total["seconds"] = round(total["seconds"] + result["seconds"], 3)
            total["requests"] += result["requests"]
            total["peak_mb"] = max(total["peak_mb"], result["peak_mb"])
            total["materializations"] += result["materializations"]
            if result["materializations"]:
                total["productive_ticks"] += 1
                total["productive_seconds"] = round(total["productive_seconds"] + result["seconds"], 3)
                total["tick_seconds"].append(result["seconds"])
            emit({**total, "phase": "catch_up_progress"})
            if not result["materializations"]:
                break
    emit(total)


def _resolved(defs: Any) -> Any:
    defs.get_repository_def()
    return defs


def _reconstruction_metadata(defs: Any) -> dict[str, str]:
    from dagster._core.definitions.metadata.metadata_value import (
        CodeLocationReconstructionMetadataValue,
    )

    return {k: v.value for k, v in (defs.metadata or {}).items() if isinstance(v, CodeLocationReconstructionMetadataValue)}


def _start_cursor(side: str, cursor: str | None) -> str | None:
    """Airlift: the given cursor (none: its first tick looks back a day). dagster-airlift: one hour back
    (its own default looks back one minute, which would miss the runs)."""
    if side == "airlift":
        return cursor
    from dagster._serdes import serialize_value
    from dagster_airlift.core.sensor.sensor_builder import AirflowPollingSensorCursor

    return serialize_value(AirflowPollingSensorCursor(end_date_gte=time.time() - 3600, end_date_lte=None, dag_query_offset=0))


if __name__ == "__main__":
    main()
