"""One side of the benchmark, run in its own process (and venv): `python side.py airlift|competitor URL CONFIG_JSON`.

Prints one JSON line with the measurements. Requests are counted by the scale server
(GET /__bench/requests)."""

from __future__ import annotations

import json
import sys
import time
import tracemalloc
import warnings
from typing import Any

import requests

warnings.simplefilter("ignore")


def server_requests(url: str) -> int:
    return int(requests.get(f"{url}/__bench/requests", timeout=30).json()["total"])


def measure(phase: dict[str, Any], url: str, fn: Any) -> Any:
    before = server_requests(url)
    tracemalloc.start()
    started = time.perf_counter()
    result = fn()
    phase["seconds"] = round(time.perf_counter() - started, 3)
    phase["peak_mb"] = round(tracemalloc.get_traced_memory()[1] / 2**20, 1)
    tracemalloc.stop()
    phase["requests"] = server_requests(url) - before - 0
    return result


def reconstruct(build: Any, metadata: dict[str, str]) -> Any:
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


def main() -> None:
    side, url, config = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    from dagster import AssetSpec, DagsterInstance, Definitions, build_sensor_context

    mapped = config["mapped"]  # {dag_id: [task_id, ...]} one asset per mapped task
    if side == "airlift":
        from airlift_dagster import (
            AirflowInstance,
            BasicAuthBackend,
            build_defs_from_airflow_instance,
            dag_defs,
            task_defs,
        )

        def build() -> Definitions:
            instance = AirflowInstance(auth_backend=BasicAuthBackend(webserver_url=url, username="admin", password="admin"), name="bench")
            user = Definitions.merge(*(
                dag_defs(dag_id, *(task_defs(t, AssetSpec([dag_id, t])) for t in tasks)) for dag_id, tasks in mapped.items()
            ))
            return build_defs_from_airflow_instance(airflow_instance=instance, defs=user)
    else:
        from dagster_airlift.core import (
            AirflowBasicAuthBackend,
            AirflowInstance,
            assets_with_task_mappings,
            build_defs_from_airflow_instance,
        )

        def build() -> Definitions:
            instance = AirflowInstance(auth_backend=AirflowBasicAuthBackend(webserver_url=url, username="admin", password="admin"), name="bench")
            user = Definitions(assets=[
                spec for dag_id, tasks in mapped.items()
                for spec in assets_with_task_mappings(dag_id=dag_id, task_mappings={t: [AssetSpec([dag_id, t])] for t in tasks})
            ])
            return build_defs_from_airflow_instance(airflow_instance=instance, defs=user)

    out: dict[str, Any] = {"side": side}
    load: dict[str, Any] = {}
    defs = measure(load, url, lambda: _resolved(build()))
    out["load"] = load
    metadata = _reconstruction_metadata(defs)
    reload: dict[str, Any] = {}
    measure(reload, url, lambda: _resolved(reconstruct(build, metadata)))
    out["cached_reload"] = reload
    repo = defs.get_repository_def()
    sensor = next(s for s in repo.sensor_defs if "sensor" in s.name)
    tick: dict[str, Any] = {"sensor": sensor.name}
    with DagsterInstance.ephemeral() as instance:
        context = build_sensor_context(instance=instance, repository_def=repo, cursor=_start_cursor(side))
        result = measure(tick, url, lambda: sensor.evaluate_tick(context))
    tick["materializations"] = sum(1 for e in (result.asset_events or []) if type(e).__name__ == "AssetMaterialization")
    out["sensor_tick"] = tick
    print(json.dumps(out))


def _resolved(defs: Any) -> Any:
    defs.get_repository_def()
    return defs


def _reconstruction_metadata(defs: Any) -> dict[str, str]:
    from dagster._core.definitions.metadata.metadata_value import (
        CodeLocationReconstructionMetadataValue,
    )

    return {k: v.value for k, v in (defs.metadata or {}).items() if isinstance(v, CodeLocationReconstructionMetadataValue)}


def _start_cursor(side: str) -> str | None:
    """Both sensors start one hour back (dagster-airlift's own default looks back one minute)."""
    if side == "airlift":
        return None  # Airlift's first tick looks back a day
    from dagster._serdes import serialize_value
    from dagster_airlift.core.sensor.sensor_builder import AirflowPollingSensorCursor

    return serialize_value(AirflowPollingSensorCursor(end_date_gte=time.time() - 3600, end_date_lte=None, dag_query_offset=0))


if __name__ == "__main__":
    main()
