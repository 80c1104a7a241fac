"""The fake Airflow's responses follow the OpenAPI spec shipped inside apache-airflow (the version
under test): v1.yaml in Airflow 2, v2-rest-api-generated.yaml in Airflow 3."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import jsonschema
import pytest
import requests
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from airlift_testing.airflow import airflow_venv
from airlift_testing.fake_airflow import (
    FakeAirflow,
    FakeAirflowState,
    FakeDataset,
    FakeDatasetEvent,
)

pytestmark = pytest.mark.integration


def _spec(version: str) -> dict[str, Any]:
    site = next((airflow_venv(version) / "lib").glob("python3*/site-packages"))
    path = site / ("airflow/api_connexion/openapi/v1.yaml" if version.startswith("2.") else
                   "airflow/api_fastapi/core_api/openapi/v2-rest-api-generated.yaml")
    return dict(yaml.safe_load(path.read_text()))


def _nullable_to_31(node: Any) -> Any:
    """OpenAPI 3.0 ``nullable: true`` → JSON Schema ``anyOf [..., null]`` (3.1 specs pass through)."""
    if isinstance(node, dict):
        node = {k: _nullable_to_31(v) for k, v in node.items()}
        if node.pop("nullable", False):
            return {"anyOf": [node, {"type": "null"}]}
        return node
    if isinstance(node, list):
        return [_nullable_to_31(v) for v in node]
    return node


@pytest.fixture(scope="module")
def fake_and_validator(airflow_version: str) -> Any:
    spec = _nullable_to_31(_spec(airflow_version))
    registry = Registry().with_resource("urn:spec", Resource.from_contents(spec, default_specification=DRAFT202012))
    generation = 2 if airflow_version.startswith("2.") else 3
    prefix = "" if generation == 2 else "/api/v2"
    state = FakeAirflowState.generate(dags=3, tasks_per_dag=2)
    state.dags[0].tasks[0].is_mapped = True
    state.dags[1].timetable = ({"schedule_interval": {"__type": "CronExpression", "value": "@daily"}, "catchup": True,
                                "next_dagrun_data_interval_start": "2024-01-01T00:00:00+00:00",
                                "next_dagrun_data_interval_end": "2024-01-02T00:00:00+00:00"} if generation == 2 else
                               {"timetable_summary": "0 0 * * *", "catchup": True, "next_dagrun_data_interval_start": "2024-01-02T00:00:00Z",
                                "next_dagrun_data_interval_end": "2024-01-02T00:00:00Z"})
    now = datetime.now(timezone.utc)
    mapped = state.add_run("dag_00000", start=now - timedelta(minutes=5), map_count=3)
    state.tis_of_run(mapped)[0].max_tries = 2  # a task with retries: REST max_tries is an int
    state.add_run("dag_00001", start=now - timedelta(minutes=4), state="failed", task_state="failed")
    state.datasets.append(FakeDataset("s3://bucket/orders", producing_tasks=[("dag_00000", "task_000")], consuming_dags=["dag_00001"],
                                      consuming_tasks=[("dag_00002", "task_000")]))
    state.dataset_events += [
        FakeDatasetEvent("s3://bucket/orders", now - timedelta(minutes=3), source_dag_id="dag_00000", source_task_id="task_000",
                         source_run_id=state.runs[0].run_id, extra={"rows": 3}),
        FakeDatasetEvent("s3://bucket/orders", now - timedelta(minutes=2)),
    ]
    with FakeAirflow(state, generation=generation) as fake:
        fake.break_dag("dag_00002", "Traceback (most recent call last):\nSyntaxError: invalid syntax\n")

        def check(method: str, path: str, spec_path: str, **kwargs: Any) -> None:
            session = requests.Session()
            if generation == 2:
                session.auth = ("admin", "admin")
            else:
                token = requests.post(f"{fake.url}/auth/token", json={"username": "admin", "password": "admin"}, timeout=10).json()["access_token"]
                session.headers["Authorization"] = f"Bearer {token}"
            base = f"{fake.url}/api/v{1 if generation == 2 else 2}"
            response = session.request(method, base + path, timeout=10, **kwargs)
            assert response.status_code == 200, response.text
            # Airflow 3 documents the batch endpoints with path parameters (``~`` is the wildcard value)
            v2_path = spec_path.replace("/dags/~/dagRuns/~/", "/dags/{dag_id}/dagRuns/{dag_run_id}/").replace("/dags/~/", "/dags/{dag_id}/")
            operation = spec["paths"][prefix + (spec_path if generation == 2 else v2_path)][method.lower()]
            schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
            validator = jsonschema.Draft202012Validator({"$ref": "urn:spec#" + schema["$ref"][1:]} if "$ref" in schema else schema, registry=registry)
            errors = sorted(validator.iter_errors(response.json()), key=lambda e: list(e.path))
            assert not errors, f"{method} {path}: " + "; ".join(f"{list(e.path)}: {e.message}" for e in errors[:5])

        check.state = state  # type: ignore[attr-defined]
        yield check


@pytest.mark.parametrize(
    ("method", "path", "spec_path", "body"),
    [
        ("GET", "/dags", "/dags", None),
        ("GET", "/dags/dag_00000", "/dags/{dag_id}", None),
        ("GET", "/dags/dag_00000/tasks", "/dags/{dag_id}/tasks", None),
        ("GET", "/dags/dag_00002", "/dags/{dag_id}", None),
        ("GET", "/dags/dag_00001/details", "/dags/{dag_id}/details", None),
        ("PATCH", "/dags/dag_00001", "/dags/{dag_id}", {"is_paused": True}),
        ("GET", "/importErrors", "/importErrors", None),
        ("POST", "/dags/~/dagRuns/list", "/dags/~/dagRuns/list", {"page_limit": 100}),
        ("POST", "/dags/~/dagRuns/~/taskInstances/list", "/dags/~/dagRuns/~/taskInstances/list", {"page_limit": 100}),
        ("GET", "/dags/~/dagRuns?updated_at_gte=2020-01-01T00:00:00%2B00:00", "/dags/{dag_id}/dagRuns", None),
        ("GET", "/dags/~/dagRuns/~/taskInstances?updated_at_gte=2020-01-01T00:00:00%2B00:00",
         "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances", None),
    ],
)
def test_fake_responses_match_the_spec(fake_and_validator: Any, method: str, path: str, spec_path: str, body: Any) -> None:
    fake_and_validator(method, path, spec_path, json=body)


@pytest.mark.parametrize("kind", ["list", "events"])
def test_fake_dataset_responses_match_the_spec(fake_and_validator: Any, airflow_version: str, kind: str) -> None:
    base = "/datasets" if airflow_version.startswith("2.") else "/assets"
    path = base if kind == "list" else base + "/events"
    fake_and_validator("GET", path + "?order_by=id" if kind == "list" else path, path)


def test_fake_audit_log_responses_match_the_spec(fake_and_validator: Any) -> None:
    """A REST mark and clear (which the fake writes to the audit log), then ``GET /eventLogs`` with try rows
    and action rows."""
    state = fake_and_validator.state
    run_id = quote(state.runs[1].run_id, safe="")
    fake_and_validator("PATCH", f"/dags/dag_00001/dagRuns/{run_id}/taskInstances/task_001",
                       "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}", json={"new_state": "success", "dry_run": False})
    fake_and_validator("POST", "/dags/dag_00001/clearTaskInstances", "/dags/{dag_id}/clearTaskInstances",
                       json={"dry_run": False, "task_ids": ["task_001"], "dag_run_id": state.runs[1].run_id})
    fake_and_validator("POST", "/dags/~/dagRuns/~/taskInstances/list", "/dags/~/dagRuns/~/taskInstances/list", json={"page_limit": 1})
    assert {row.event for row in state.event_logs} >= {"running", "success", "failed", "patch_task_instance", "post_clear_task_instances"}
    fake_and_validator("GET", "/eventLogs?order_by=when&after=2020-01-01T00:00:00%2B00:00", "/eventLogs")
