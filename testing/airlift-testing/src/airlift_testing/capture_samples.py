"""Capture raw REST responses of real Airflow servers as JSON samples for the protocol tests.

    python -m airlift_testing.capture_samples OUTDIR [2|3 ...]

Starts ``airflow standalone`` for each generation (default: every one in ``AIRFLOW_VERSIONS``) on the
DAGs in ``sample_dags/`` (a dotted/dashed DAG id with branches, tags, owner and description; a
dynamically mapped task with 3 map indexes; a failing task with one retry; a file that fails to
import), triggers one run of each DAG, waits for them to finish, then records each response as
``OUTDIR/airflow<generation>/<name>.json``::

    {"request": "GET /api/v2/dags?limit=100", "request_body": null, "request_headers": {...},
     "status": 200, "content_type": "application/json", "airflow_version": "3.3.2", "body": ...}

``body`` is the parsed JSON, or the text when the response is not JSON. Credentials are never
written (headers other than ``Accept`` are dropped).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

from airlift_testing.airflow import AirflowServer, AirflowUser
from airlift_testing.versions import AIRFLOW_VERSIONS

__all__ = ["SAMPLE_DAGS_FOLDER", "capture", "main"]

SAMPLE_DAGS_FOLDER = Path(__file__).parent / "sample_dags"
SALES = "team.sales-daily_v2"
MAPPED = "mapped_dag"
FAILING = "failing_dag"
VIEWER = AirflowUser("viewer", "viewer", "viewer")

#: name -> (request, what it shows), filled while capturing; written to the README.
Described = dict[str, tuple[str, str]]


def capture(generation: str, out: Path) -> Described:
    """Capture every sample of one Airflow generation into ``out/airflow<generation>/``."""
    folder = out / f"airflow{generation}"
    folder.mkdir(parents=True, exist_ok=True)
    described: Described = {}
    airflow = AirflowServer(version=generation, dags_folder=SAMPLE_DAGS_FOLDER, extra_users=[VIEWER])
    with airflow:
        airflow.wait_for_dags([SALES, MAPPED, FAILING])
        runs = {d: airflow.trigger(d) for d in (SALES, MAPPED, FAILING)}
        for dag_id, run_id in runs.items():
            airflow.wait_for_run(dag_id, run_id)
        admin = airflow.session()
        v1 = generation == "2"

        def save(name: str, what: str, method: str, path: str, *, json_body: Any = None,
                 accept: str | None = None, session: requests.Session | None = None,
                 absolute: bool = False) -> Any:
            target = (airflow.url if absolute else airflow.api_base) + path
            headers = {"Accept": accept} if accept else {}
            caller: Callable[..., requests.Response] = (session or admin).request
            response = caller(method, target, json=json_body, headers=headers, timeout=30)
            content_type = response.headers.get("Content-Type", "")
            try:
                body: Any = response.json()
            except ValueError:
                body = response.text
            request = f"{method} {target.replace(airflow.url, '')}"
            record = {"request": request, "request_body": json_body, "request_headers": headers,
                      "status": response.status_code, "content_type": content_type,
                      "airflow_version": airflow.version, "body": body}
            (folder / f"{name}.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
            described[name] = (request + (f" {json.dumps(json_body)}" if json_body is not None else "")
                               + (f" (Accept: {accept})" if accept else ""), f"{response.status_code}: {what}")
            return body

        # --- DAGs
        dags = save("dags_list", "one page of every DAG", "GET", "/dags?limit=100")
        save("dags_page", "paging: second DAG of three, ordered by dag_id", "GET", "/dags?limit=1&offset=1&order_by=dag_id")
        save("dag", "one DAG (tags, owners, description, file_token)", "GET", f"/dags/{SALES}")
        save("dag_details", "DAG details", "GET", f"/dags/{SALES}/details")
        save("tasks", "tasks with parallel branches", "GET", f"/dags/{SALES}/tasks")
        save("tasks_mapped", "a dynamically mapped task", "GET", f"/dags/{MAPPED}/tasks")
        save("tasks_failing", "a task with retries=1", "GET", f"/dags/{FAILING}/tasks")
        if v1:
            token = next(d["file_token"] for d in dags["dags"] if d["dag_id"] == SALES)
            save("dag_source", "DAG file source as JSON", "GET", f"/dagSources/{token}", accept="application/json")
            save("dag_source_text", "DAG file source as text", "GET", f"/dagSources/{token}", accept="text/plain")
        else:
            save("dag_source", "DAG file source as JSON", "GET", f"/dagSources/{SALES}", accept="application/json")
            save("dag_source_text", "DAG file source as text", "GET", f"/dagSources/{SALES}", accept="text/plain")

        # --- DAG runs
        order = "-execution_date" if v1 else "-run_after"
        save("dag_runs_batch", "finished runs of every DAG", "POST", "/dags/~/dagRuns/list",
             json_body={"page_limit": 100, "order_by": "end_date", "states": ["success", "failed"]}
             if v1 else {"page_limit": 100, "order_by": "run_after", "states": ["success", "failed"]})
        save("dag_runs_batch_page", "paging of the batch endpoint: second run, newest first", "POST",
             "/dags/~/dagRuns/list", json_body={"page_limit": 1, "page_offset": 1, "order_by": order,
                                                "dag_ids": sorted(runs)})
        save("dag_runs", "runs of one DAG", "GET", f"/dags/{FAILING}/dagRuns?limit=100")
        save("dag_run", "one failed run", "GET", f"/dags/{FAILING}/dagRuns/{quote(runs[FAILING], safe='')}")

        # --- task instances
        save("task_instances_batch", "task instances of every run (mapped ones per map index)", "POST",
             "/dags/~/dagRuns/~/taskInstances/list", json_body={"page_limit": 100, "dag_ids": sorted(runs)})
        save("task_instances_batch_filtered", "batch filtered by run ids, task ids and states", "POST",
             "/dags/~/dagRuns/~/taskInstances/list",
             json_body={"page_limit": 100, "dag_ids": [MAPPED, FAILING], "dag_run_ids": [runs[MAPPED], runs[FAILING]],
                        "task_ids": ["process", "broken"], "state": ["success", "failed"]})
        mapped_run = quote(runs[MAPPED], safe="")
        save("task_instances_run", "task instances of one run", "GET", f"/dags/{MAPPED}/dagRuns/{mapped_run}/taskInstances")
        save("task_instance_mapped", "one map index of a mapped task", "GET",
             f"/dags/{MAPPED}/dagRuns/{mapped_run}/taskInstances/process/1")
        save("task_instance_tries", "tries of a task that was retried", "GET",
             f"/dags/{FAILING}/dagRuns/{quote(runs[FAILING], safe='')}/taskInstances/broken/tries")
        log_path = f"/dags/{FAILING}/dagRuns/{quote(runs[FAILING], safe='')}/taskInstances/broken/logs/1?full_content=true"
        save("task_log", "log of try 1 of a failed task as JSON", "GET", log_path, accept="application/json")
        if v1:
            save("task_log_text", "log of try 1 of a failed task as text", "GET", log_path, accept="text/plain")
        else:
            save("task_log_ndjson", "log of try 1 of a failed task as NDJSON (one JSON event per line)", "GET",
                 log_path, accept="application/x-ndjson")
            save("error_406_task_log_text", "v2 logs refuse text/plain", "GET", log_path, accept="text/plain")

        # --- trigger and errors
        trigger_body: dict[str, Any] = {"conf": {"k": "v"}}
        if not v1:
            trigger_body["logical_date"] = None
        save("trigger", "a triggered run (queued)", "POST", f"/dags/{MAPPED}/dagRuns", json_body=trigger_body)
        save("import_errors", "one DAG file that fails to import", "GET", "/importErrors")
        save("error_404_dag", "unknown DAG id", "GET", "/dags/no_such_dag")
        save("error_unauthenticated", "no credentials", "GET", "/dags", session=requests.Session())
        save("error_403_forbidden", "a viewer may not pause a DAG", "PATCH", f"/dags/{SALES}",
             json_body={"is_paused": True}, session=airflow.login(VIEWER.username, VIEWER.password))
        if v1:
            wrong = requests.Session()
            wrong.auth = (airflow.username, "wrong-password")
            save("error_wrong_credentials", "wrong password (basic auth)", "GET", "/dags", session=wrong)
            save("error_400_order_by", "unknown order_by field in the batch body", "POST", "/dags/~/dagRuns/list",
                 json_body={"order_by": "run_after"})
            save("error_400_unknown_body_field", "unknown field in the batch body", "POST", "/dags/~/dagRuns/list",
                 json_body={"run_after_gte": "2024-01-01T00:00:00Z"})
        else:
            save("error_wrong_credentials", "wrong password (token endpoint)", "POST", "/auth/token",
                 json_body={"username": airflow.username, "password": "wrong-password"},
                 session=requests.Session(), absolute=True)
            save("error_400_order_by", "execution_date is not a sort field of v2 runs", "POST", "/dags/~/dagRuns/list",
                 json_body={"order_by": "execution_date"})
            save("error_422_unknown_body_field", "v1 filter names are rejected by v2 batch bodies", "POST",
                 "/dags/~/dagRuns/list", json_body={"execution_date_gte": "2024-01-01T00:00:00Z"})
            save("error_422_trigger_without_logical_date", "v2 trigger body without logical_date", "POST",
                 f"/dags/{MAPPED}/dagRuns", json_body={"conf": {}})
            save("error_404_api_v1", "Airflow 3 answers the removed /api/v1", "GET", "/api/v1/dags", absolute=True)
            save("auth_token", "a token response (the token itself is redacted)", "POST", "/auth/token",
                 json_body={"username": VIEWER.username, "password": VIEWER.password},
                 session=requests.Session(), absolute=True)
            token_file = folder / "auth_token.json"
            record = json.loads(token_file.read_text())
            record["request_body"] = {"username": "<username>", "password": "<password>"}
            record["body"] = {k: "<redacted>" for k in record["body"]} if isinstance(record["body"], dict) else "<redacted>"
            token_file.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
            described["auth_token"] = ("POST /auth/token {\"username\": ..., \"password\": ...}", "201: token response (keys only)")
        health = "/api/v1/health" if v1 else "/api/v2/monitor/health"
        save("health", "health of metadatabase and scheduler (no auth needed)", "GET", health, absolute=True)
        save("version", "server version", "GET", "/version")
    airflow.cleanup()  # the temporary AIRFLOW_HOME; kept when a capture fails, for its logs
    return described


def write_readme(out: Path, described: dict[str, Described]) -> None:
    """``out/README.md``: for each file, the request that produced it and the Airflow version."""
    lines = [
        "# Real Airflow REST responses",
        "",
        "Captured from real `airflow standalone` servers running the DAGs in",
        "`testing/airlift-testing/src/airlift_testing/sample_dags/` (a dotted/dashed DAG id with parallel",
        "branches, tags, owner and description; a dynamically mapped task with 3 map indexes; a failing",
        "task with `retries=1`; a file that fails to import), after one triggered run of each DAG.",
        "Regenerate with:",
        "",
        "    python -m airlift_testing.capture_samples packages/airlift-protocol/tests/samples",
        "",
        "Each file records `request`, `request_body`, `request_headers` (Accept only), `status`,",
        "`content_type`, `airflow_version` and the response `body` (parsed JSON, else text).",
        "Paths are relative to the server URL; `~` is Airflow's wildcard for \"every DAG / run\".",
        "",
    ]
    for generation, files in described.items():
        lines += [f"## airflow{generation}/ — Airflow {AIRFLOW_VERSIONS[generation]}", "",
                  "| file | request | status: shows |", "|---|---|---|"]
        for name, (request, what) in sorted(files.items()):
            lines.append(f"| `{name}.json` | `{request.replace('|', '%7C')}` | {what} |")
        lines.append("")
    (out / "README.md").write_text("\n".join(lines))


def main(argv: list[str]) -> None:
    """Entry point: ``capture_samples OUTDIR [generation ...]``."""
    if len(argv) < 2:
        raise SystemExit(__doc__)
    out = Path(argv[1])
    described: dict[str, Described] = {}
    for generation in argv[2:] or list(AIRFLOW_VERSIONS):
        if generation not in AIRFLOW_VERSIONS:
            raise SystemExit(f"unknown Airflow generation {generation!r}; use one of {sorted(AIRFLOW_VERSIONS)}")
        described[generation] = capture(generation, out)
        print(f"captured Airflow {AIRFLOW_VERSIONS[generation]} samples into {out}/airflow{generation}")
    if len(described) == len(AIRFLOW_VERSIONS):
        write_readme(out, described)


if __name__ == "__main__":
    main(sys.argv)
