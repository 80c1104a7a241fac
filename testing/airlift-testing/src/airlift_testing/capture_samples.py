"""Capture raw REST responses of real Airflow servers as JSON samples for the protocol tests.

    python -m airlift_testing.capture_samples OUTDIR [2|3 ...]

Writes ``OUTDIR/airflow<generation>/<name>.json``; each file holds ``{"request": ..., "status": ...,
"airflow_version": ..., "body": ...}``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import requests

from airlift_testing.airflow import AirflowServer
from airlift_testing.versions import AIRFLOW_VERSIONS

DAGS = Path(__file__).parent / "sample_dags"


def capture(generation: str, out: Path) -> None:
    folder = out / f"airflow{generation}"
    folder.mkdir(parents=True, exist_ok=True)
    with AirflowServer(version=generation, dags_folder=DAGS) as airflow:
        airflow.wait_for_dags(["team.sales-daily_v2", "mapped_dag", "failing_dag"])
        runs = {d: airflow.trigger(d) for d in ("team.sales-daily_v2", "mapped_dag", "failing_dag")}
        for dag_id, run_id in runs.items():
            airflow.wait_for_run(dag_id, run_id)
        session = airflow.session()
        base = airflow.api_base

        def save(name: str, method: str, path: str, *, json_body: Any = None, headers: dict[str, str] | None = None,
                 auth: bool = True, url: str | None = None) -> Any:
            target = url or base + path
            caller = session if auth else requests
            response = caller.request(method, target, json=json_body, headers=headers, timeout=30)
            try:
                body: Any = response.json()
            except ValueError:
                body = response.text
            record = {"request": f"{method} {target.replace(airflow.url, '')}", "request_body": json_body,
                      "status": response.status_code, "airflow_version": airflow.version, "body": body}
            (folder / f"{name}.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
            return body

        dags = save("dags_list", "GET", "/dags?limit=100")
        save("dag", "GET", "/dags/team.sales-daily_v2")
        save("dag_details", "GET", "/dags/team.sales-daily_v2/details")
        save("tasks", "GET", "/dags/team.sales-daily_v2/tasks")
        save("tasks_mapped", "GET", "/dags/mapped_dag/tasks")
        save("tasks_failing", "GET", "/dags/failing_dag/tasks")
        if generation == "2":
            token = next(d["file_token"] for d in dags["dags"] if d["dag_id"] == "team.sales-daily_v2")
            save("dag_source", "GET", f"/dagSources/{token}", headers={"Accept": "application/json"})
        else:
            save("dag_source", "GET", "/dagSources/team.sales-daily_v2")
        order = "end_date" if generation == "2" else "run_after"
        save("dag_runs_batch", "POST", "/dags/~/dagRuns/list",
             json_body={"page_limit": 100, "order_by": order, "states": ["success", "failed"]})
        save("task_instances_batch", "POST", "/dags/~/dagRuns/~/taskInstances/list",
             json_body={"page_limit": 100, "dag_ids": sorted(runs)})
        run_id = runs["failing_dag"]
        save("dag_run", "GET", f"/dags/failing_dag/dagRuns/{run_id}")
        trigger_body: dict[str, Any] = {"conf": {"k": "v"}}
        if generation == "3":
            trigger_body["logical_date"] = None
        save("trigger", "POST", "/dags/mapped_dag/dagRuns", json_body=trigger_body)
        save("import_errors", "GET", "/importErrors")
        save("error_404_dag", "GET", "/dags/no_such_dag")
        save("error_unauthenticated", "GET", "/dags", auth=False)
        wrong = requests.Session()
        if generation == "2":
            wrong.auth = ("admin", "wrong-password")
            response = wrong.get(base + "/dags", timeout=30)
        else:
            response = wrong.post(airflow.url + "/auth/token", json={"username": "admin", "password": "wrong-password"}, timeout=30)
        (folder / "error_wrong_credentials.json").write_text(json.dumps(
            {"request": response.request.method + " " + response.request.url.replace(airflow.url, ""),  # type: ignore[union-attr]
             "status": response.status_code, "airflow_version": airflow.version,
             "body": response.text[:2000]}, indent=2) + "\n")
        health = "/api/v1/health" if generation == "2" else "/api/v2/monitor/health"
        save("health", "GET", health, url=airflow.url + health)
        save("version", "GET", "/version")


def main(argv: list[str]) -> None:
    out = Path(argv[1])
    for generation in argv[2:] or list(AIRFLOW_VERSIONS):
        capture(generation, out)
        print(f"captured Airflow {AIRFLOW_VERSIONS[generation]} samples into {out}/airflow{generation}")


if __name__ == "__main__":
    main(sys.argv)
