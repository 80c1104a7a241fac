"""GraphQL requests and bytes per DagsterOperator task run, as the deployment grows.

Runs one migrated task (``DagsterOperator.execute``) against a Dagster holding N assets, of which the
task owns 2, finding its assets three ways: by the task -> asset index on its DAG asset ("DAG index",
the default since airlift-dagster writes it), by the tag scan of every node (the slow path, taken when
Dagster has no DAG asset for the operator's instance name: what every lookup cost before the index),
and by ``asset_keys``. Prints per task run: the requests by operation, the bytes Dagster answered, and
the ratio to the smallest deployment; then the own-asset lookup alone (what the push listener and the
operator pay per task before anything else).

    # quick, against the fake Dagster of the unit tests (no server):
    .nox/unit-airlift-airflow-airflow3/bin/python packages/airlift-airflow/bench/graphql_requests.py
    # against a real dagster-webserver + daemon holding the assets (started by airlift_testing):
    .nox/unit-airlift-airflow-airflow3/bin/python packages/airlift-airflow/bench/graphql_requests.py --real

Run it from the repository root, with a venv where Airflow and airlift-airflow are installed (the unit
session's venv is one). Counts are exact; wall times are not printed (see the repo's bench for timing).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="airlift-bench-airflow-"))

from airlift_airflow import DagsterHook, DagsterOperator  # noqa: E402

DAG_ID, TASK_ID = "bench_dag", "bench_task"


class Counted(DagsterOperator):
    """Counts every GraphQL request the task run sends, by operation name, and the bytes answered."""

    calls: collections.Counter[str] = collections.Counter()
    answered = 0
    lookup_bytes = 0

    def get_hook(self) -> DagsterHook:
        hook = super().get_hook()
        client = hook.get_conn()
        send = client.session.post

        def post(url: str, **kwargs: Any) -> requests.Response:
            query = kwargs["json"]["query"]
            name = query.split("(")[0].split("{")[0].split()[-1]
            Counted.calls[name] += 1
            response = send(url, **kwargs)
            Counted.answered += len(response.content)
            if name in LOOKUP_OPERATIONS:
                Counted.lookup_bytes += len(response.content)
            return response

        client.session.post = post  # type: ignore[method-assign]
        return hook


INSTANCE = "airflow"
#: (label, operator's instance name, asset_keys): an instance name with no DAG asset takes the tag scan.
MODES = (
    ("tag scan", "no_dag_asset_here", None),
    ("DAG index", INSTANCE, None),
    ("asset_keys", INSTANCE, [["bench", "own_a"], ["bench", "own_b"]]),
)
LOOKUP_OPERATIONS = ("AirliftDagIndex", "AirliftAssetsByTag", "AirliftAssetsByKey")


def task_run(url: str, run: int, *, instance: str, asset_keys: list[list[str]] | None) -> tuple[dict[str, int], int, int]:
    """GraphQL calls by operation, bytes answered in all, and bytes answered to the own-asset lookup."""
    Counted.calls = collections.Counter()
    Counted.answered = 0
    Counted.lookup_bytes = 0
    os.environ["AIRFLOW_CONN_DAGSTER_DEFAULT"] = url
    ti = SimpleNamespace(dag_id=DAG_ID, task_id=TASK_ID, try_number=1, map_index=-1, max_tries=0)
    Counted(task_id=TASK_ID, poll_interval=0.2, asset_keys=asset_keys, airflow_instance_name=instance).execute(
        {"ti": ti, "run_id": f"bench__{run}"})
    return dict(Counted.calls), Counted.answered, Counted.lookup_bytes


def fake_dagster(assets: int) -> Any:
    from fake_dagster import FakeDagster  # type: ignore[import-not-found]

    fake = FakeDagster()
    fake.status_script = ["STARTED", "STARTED", "SUCCESS"]
    for name in ("own_a", "own_b"):
        fake.add_asset(["bench", name], dag_id=DAG_ID, task_id=TASK_ID)
    for i in range(assets - 2):
        fake.add_asset(["other", f"asset_{i}"], dag_id=f"dag_{i // 10}", task_id=f"task_{i % 10}")
    fake.dag_indexes[(INSTANCE, "dag", DAG_ID)] = {"tasks": {TASK_ID: [["bench", "own_a"], ["bench", "own_b"]]}, "dag": []}
    return fake


DEFS = '''
import dagster as dg

N = {n}

def _build(key, dag_id, task_id):
    @dg.asset(key=key, tags={{"airlift/dag_id": dag_id, "airlift/task_id": task_id}})
    def _a() -> None:
        pass
    return _a

assets = [_build(["bench", name], "{dag}", "{task}") for name in ("own_a", "own_b")]
assets += [_build(["other", f"asset_{{i}}"], f"dag_{{i // 10}}", f"task_{{i % 10}}") for i in range(N - 2)]
# the DAG asset airlift-dagster builds, with its task -> asset index (definition metadata)
index = {{"tasks": {{"{task}": [["bench", "own_a"], ["bench", "own_b"]]}}, "dag": []}}
dag_asset = dg.AssetSpec(["{instance}", "dag", "{dag}"], metadata={{"airlift/task_asset_keys": dg.MetadataValue.json(index)}})
defs = dg.Definitions(assets=[*assets, dag_asset])
'''


def real_dagster(assets: int, folder: Path) -> Any:
    from airlift_testing import DagsterServer

    defs = folder / f"defs_{assets}.py"
    defs.write_text(textwrap.dedent(DEFS.format(n=assets, dag=DAG_ID, task=TASK_ID, instance=INSTANCE)))
    return DagsterServer(defs_file=defs, extra_packages=[], startup_timeout=900).start()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", action="store_true", help="a real dagster-webserver + daemon instead of the fake")
    parser.add_argument("--sizes", default="50,5000", help="assets in the deployment (comma-separated)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            server = real_dagster(size, Path(tmp)) if args.real else fake_dagster(size)
            try:
                for mode, instance, keys in MODES:
                    calls, answered, lookup = task_run(server.url, len(rows), instance=instance, asset_keys=keys)
                    rows.append({"assets": size, "mode": mode, "requests": sum(calls.values()), "calls": calls,
                                 "bytes": answered, "lookup_requests": sum(calls.get(op, 0) for op in LOOKUP_OPERATIONS),
                                 "lookup_bytes": lookup})
            finally:
                server.stop()
    base = {r["mode"]: r for r in rows if r["assets"] == sizes[0]}
    print(f"GraphQL per DagsterOperator task run ({'real Dagster' if args.real else 'fake Dagster'}; the task owns 2 assets)")
    print(f"{'assets':>7} {'lookup':<14} {'requests':>8} {'bytes':>10} {'bytes x':>8}  by operation")
    for r in rows:
        ratio = r["bytes"] / base[r["mode"]]["bytes"]
        ops = ", ".join(f"{k} {v}" for k, v in sorted(r["calls"].items()))
        print(f"{r['assets']:>7} {r['mode']:<14} {r['requests']:>8} {r['bytes']:>10} {ratio:>8.1f}  {ops}")
    print("\nOwn-asset lookup per task (before the DAG index every lookup was the tag scan)")
    print(f"{'assets':>7} {'lookup':<14} {'requests':>8} {'bytes':>10}")
    for r in rows:
        print(f"{r['assets']:>7} {r['mode']:<14} {r['lookup_requests']:>8} {r['lookup_bytes']:>10}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
