"""A local fake of Dagster's GraphQL API (http.server on 127.0.0.1) for DagsterOperator's unit tests."""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FakeDagster"]


class FakeDagster:
    """Plays Dagster's GraphQL API for the operations DagsterOperator sends."""

    def __init__(self) -> None:
        self.assets: list[dict[str, Any]] = []
        self.runs: dict[str, dict[str, Any]] = {}
        self.status_script: list[str] = ["STARTED", "SUCCESS"]
        self.launched: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.fail_http: int = 0
        # launches that Dagster performs but answers too late (after the client's timeout) or with a 503
        self.slow_launches: int = 0
        self.slow_seconds: float = 0.0
        self.failed_launches_after_create: int = 0
        # launches held this long BEFORE Dagster creates the run (a code server building the plan, a gateway)
        self.hold_before_create: list[float] = []
        self.dropped: int = 0  # requests whose connection is closed without an answer (webserver restarting)
        self.outage_after_launch: tuple[int, int] | None = None  # (dropped, fail_http) once a run is launched
        self.dagster_retries: int = 0  # failures Dagster retries (run retries on), each retry runs retry_script
        self.retry_script: list[str] = ["STARTED", "SUCCESS"]
        self.terminated: list[str] = []
        self.operations: list[str] = []
        self.response_bytes: int = 0
        # push mode: report requests taken (path, body) and statuses to answer first (then 200)
        self.reports: list[tuple[str, dict[str, Any]]] = []
        self.report_times: list[float] = []
        self.report_statuses: list[int] = []
        self.report_delay: float = 0.0  # seconds before answering a report (after storing it)
        self.report_gate = threading.Event()  # reports wait for it before being taken
        self.report_gate.set()
        self.dag_indexes: dict[tuple[str, ...], dict[str, Any]] = {}
        self.dag_assets: set[tuple[str, ...]] = set()  # DAG assets without a task index
        # the sensor settle (seconds) every DAG asset with an index publishes, as Dagster's GraphQL answers
        # it (a FloatMetadataEntry; an int: IntMetadataEntry; None: not published, an older Dagster side)
        self.sensor_settle: float | int | None = 10.0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.headers.append(dict(self.headers))
                if self.path.startswith("/report_asset_"):
                    outer.report_gate.wait(30)
                    status = outer.report_statuses.pop(0) if outer.report_statuses else 200
                    if status == 200:  # recorded as <endpoint>/<key parts>, with when (time.monotonic())
                        outer.reports.append((self.path + "/".join(body.get("asset_key") or []), body))
                        outer.report_times.append(time.monotonic())
                    time.sleep(outer.report_delay)
                    try:
                        self.send_response(status)
                        self.send_header("Content-Length", "2")
                        self.end_headers()
                        self.wfile.write(b"{}")
                    except OSError:
                        pass  # the client stopped waiting
                    return
                if outer.dropped:
                    outer.dropped -= 1
                    self.close_connection = True
                    return
                if outer.hold_before_create and b"AirliftLaunch" in json.dumps(body).encode():
                    time.sleep(outer.hold_before_create.pop(0))
                if outer.fail_http:
                    outer.fail_http -= 1
                    self.send_response(503)
                    self.send_header("Retry-After", "0")
                    self.end_headers()
                    return
                data = outer.answer(body["query"], body.get("variables") or {})
                name = outer.operations[-1]
                if name == "AirliftLaunch" and outer.failed_launches_after_create:
                    outer.failed_launches_after_create -= 1
                    self.send_response(502)
                    self.end_headers()
                    return
                if name == "AirliftLaunch" and outer.slow_launches:
                    outer.slow_launches -= 1
                    time.sleep(outer.slow_seconds)
                raw = json.dumps({"data": data}).encode()
                outer.response_bytes += len(raw)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def add_asset(self, path: list[str], *, dag_id: str, task_id: str | None, location: str = "loc",
                  executable: bool = True, partitions: dict[str, str] | None = None,
                  checks: list[str] | None = None, op_name: str | None = None,
                  config_fields: list[str] | None = None) -> None:
        tags = [{"key": "airlift/dag_id", "value": dag_id}]
        if task_id is not None:
            tags.append({"key": "airlift/task_id", "value": task_id})
        self.assets.append({
            "assetKey": {"path": path}, "isExecutable": executable, "tags": tags,
            "partitionDefinition": partitions,
            "repository": {"name": "__repository__", "location": {"name": location}},
            **({} if checks is None else
               {"assetChecksOrError": {"__typename": "AssetChecks", "checks": [{"name": n} for n in checks]}}),
            "opNames": [op_name or path[-1]],
            "configField": None if config_fields is None else
            {"configType": {"__typename": "CompositeConfigType", "fields": [{"name": n} for n in config_fields]}},
        })

    def add_run(self, run_id: str, *, status: str, tags: dict[str, str]) -> None:
        """A run that an earlier try launched (its worker died before it saw the end)."""
        self.runs[run_id] = {"tags": dict(tags), "script": [status]}

    def answer(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        name = re.search(r"(query|mutation) (\w+)", query).group(2)  # type: ignore[union-attr]
        self.operations.append(name)
        if name == "AirliftDagIndex":
            path = tuple(variables["keys"][0]["path"])
            if path not in self.dag_indexes:
                return {"assetNodes": []}
            entries: list[dict[str, Any]] = [
                {"label": "Airflow DAG"},  # other metadata types answer their label only
                {"label": "airlift/task_asset_keys", "jsonString": json.dumps(self.dag_indexes[path])},
            ]
            if self.sensor_settle is not None:
                value = "intValue" if isinstance(self.sensor_settle, int) else "floatValue"
                entries.append({"label": "airlift/sensor_settle_seconds", value: self.sensor_settle})
            return {"assetNodes": [{"assetKey": {"path": list(path)}, "metadataEntries": entries}]}
        if name == "AirliftDagAssets":
            keys = [a["assetKey"]["path"] for a in self.assets] + [list(k) for k in {*self.dag_assets, *self.dag_indexes}]
            return {"assetNodes": [{"assetKey": {"path": k}} for k in keys]}
        if name == "AirliftAssetsByTag":
            return {"assetNodes": [{"assetKey": a["assetKey"], "tags": a["tags"]} for a in self.assets]}
        if name == "AirliftAssetsByKey":
            wanted = [k["path"] for k in variables["keys"]]
            return {"assetNodes": [a for a in self.assets if a["assetKey"]["path"] in wanted]}
        if name == "AirliftTerminate":
            run = self.runs.get(variables["runId"])
            if run is None:
                return {"terminateRun": {"__typename": "RunNotFoundError", "message": "no such run"}}
            if run["script"][0] == "STARTING" and variables.get("policy") != "MARK_AS_CANCELED_IMMEDIATELY":
                return {"terminateRun": {"__typename": "TerminateRunFailure",
                                         "message": "could not be terminated due to having status STARTING."}}
            self.terminated.append(variables["runId"])
            run["script"] = ["CANCELED"]
            return {"terminateRun": {"__typename": "TerminateRunSuccess"}}
        if name == "AirliftLaunch":
            params = variables["executionParams"]
            run_id = f"run-{len(self.launched) + 1}"
            assert run_id not in self.runs
            self.launched.append(params)
            tags = {t["key"]: t["value"] for t in params["executionMetadata"]["tags"]}
            self.runs[run_id] = {"tags": tags, "script": list(self.status_script)}
            if self.outage_after_launch:
                (self.dropped, self.fail_http), self.outage_after_launch = self.outage_after_launch, None
            return {"launchRun": {"__typename": "LaunchRunSuccess", "run": {"runId": run_id}}}
        if name == "AirliftRuns":
            wanted = {t["key"]: t["value"] for t in variables["filter"]["tags"]}
            results = [
                {"runId": rid, "status": run["script"][0], "tags": [{"key": k, "value": v} for k, v in run["tags"].items()]}
                for rid, run in reversed(list(self.runs.items())) if all(run["tags"].get(k) == v for k, v in wanted.items())
            ]
            return {"runsOrError": {"__typename": "Runs", "results": results}}
        if name == "AirliftRun":
            run = self.runs[variables["runId"]]
            status = run["script"].pop(0) if len(run["script"]) > 1 else run["script"][0]
            tags = run["tags"]
            if status == "FAILURE" and self.dagster_retries and "dagster/will_retry" not in tags:
                tags["dagster/will_retry"] = "true"  # Dagster says so at the failure; the retry comes a poll later
            elif tags.get("dagster/will_retry") == "true" and "dagster/auto_retry_run_id" not in tags:
                self.dagster_retries -= 1
                child = f"{variables['runId']}-retry"
                root = tags.get("dagster/root_run_id", variables["runId"])
                child_tags = {k: v for k, v in tags.items() if not k.startswith("dagster/")}
                self.runs[child] = {"tags": {**child_tags, "dagster/parent_run_id": variables["runId"],
                                             "dagster/root_run_id": root}, "script": list(self.retry_script)}
                tags["dagster/auto_retry_run_id"] = child
            return {"runOrError": {"__typename": "Run", "runId": variables["runId"], "status": status,
                                   "tags": [{"key": k, "value": v} for k, v in tags.items()]}}
        if name == "AirliftRunFailure":
            return {"logsForRun": {"__typename": "EventConnection", "cursor": "c1", "hasMore": False, "events": [
                {"__typename": "ExecutionStepFailureEvent", "stepKey": "customers", "error": {"message": "Error occurred while executing op", "causes": [{"message": "duckdb.CatalogException: table missing"}]}},
            ]}}
        raise AssertionError(name)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
