"""AirflowInstance over an in-process requests adapter (no sockets at all): generation detection
through the injected session factory, lists whose server order is unstable, tz-aware windows,
pickling without secrets."""

from __future__ import annotations

import json
import pickle
import random
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

import pytest
import requests
import requests.adapters

from airlift_client import AirflowInstance, BasicAuthBackend, RetryPolicy
from airlift_protocol import ApiVersion

SECRET = "adapter-Sentinel-Secret"

Handler = Callable[[requests.PreparedRequest], tuple[int, Any]]


class RouteAdapter(requests.adapters.BaseAdapter):
    """Answers requests from a route table ``{(method, path): handler}``; counts calls per route."""

    def __init__(self, routes: Mapping[tuple[str, str], Handler]) -> None:
        super().__init__()
        self.routes: dict[tuple[str, str], Handler] = {
            ("POST", "/auth/token"): lambda r: (201, {"access_token": "jwt"}),
            ("GET", "/api/v1/version"): lambda r: (200, {"version": "2.11.2", "git_version": None}),
            ("GET", "/api/v2/version"): lambda r: (200, {"version": "3.3.2", "git_version": None}),
        }
        self.routes.update(routes)
        self.calls: dict[tuple[str, str], int] = {}

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        assert kwargs.get("timeout") is not None, "every request carries a timeout"
        path = (request.path_url or "").split("?", 1)[0]
        key = (str(request.method), path)
        self.calls[key] = self.calls.get(key, 0) + 1
        status, body = self.routes.get(key, lambda r: (404, {"detail": "no route"}))(request)
        response = requests.Response()
        response.status_code = status
        response._content = json.dumps(body).encode()
        response.headers["Content-Type"] = "application/json"
        response.url = str(request.url)
        response.request = request
        return response

    def close(self) -> None:
        pass


def _factory(adapter: RouteAdapter) -> Callable[[], requests.Session]:
    def make() -> requests.Session:
        session = requests.Session()
        session.mount("http://", adapter)
        return session

    return make


def _no_sleep(seconds: float) -> None:
    pass


def _instance(adapter: RouteAdapter, **kwargs: Any) -> AirflowInstance:
    kwargs.setdefault("retry_policy", RetryPolicy(max_attempts=2, sleep=_no_sleep))
    return AirflowInstance(
        auth_backend=BasicAuthBackend(webserver_url="http://airflow.test", username="admin", password=SECRET),
        name="adapter",
        session_factory=_factory(adapter),
        **kwargs,
    )


def _ti(i: int) -> dict[str, Any]:
    return {
        "dag_id": "wide",
        "dag_run_id": "run_1",
        "task_id": "mapped",
        "map_index": i,
        "state": "success",
        "try_number": 1,
        "start_date": "2026-01-01T00:00:00+00:00",
        "end_date": "2026-01-01T00:01:00+00:00",
        "execution_date": "2026-01-01T00:00:00+00:00",
    }


@pytest.mark.parametrize(("health_path", "expected"), [("/api/v1/health", ApiVersion.V1), ("/api/v2/monitor/health", ApiVersion.V2)])
def test_detection_goes_through_the_injected_session(health_path: str, expected: ApiVersion) -> None:
    adapter = RouteAdapter({("GET", health_path): lambda r: (200, {"metadatabase": {"status": "healthy"}})})
    inst = _instance(adapter)
    assert inst.api_version is expected
    assert inst.api_version is expected
    # the health hint, one login and the authenticated, validated GET /version
    assert sum(adapter.calls.values()) == inst.request_count <= 4
    assert adapter.calls[("GET", f"{expected.base_path}/version")] == 1


@pytest.mark.parametrize("seed", range(5))
def test_unstable_server_order_still_yields_every_item_once(seed: int) -> None:
    """Airflow 2's task instance batch endpoint has no ORDER BY: each page may come from a different
    order. Overlapping pages are detected (fewer distinct items than total_entries) and rescanned."""
    rng = random.Random(seed)
    items = [_ti(i) for i in range(50)]

    def listing(request: requests.PreparedRequest) -> tuple[int, Any]:
        body = json.loads(request.body or b"{}")
        shuffled = items[:]
        rng.shuffle(shuffled)
        offset, limit = body["page_offset"], min(body["page_limit"], 7)  # server caps pages at 7
        return 200, {"task_instances": shuffled[offset: offset + limit], "total_entries": len(items)}

    adapter = RouteAdapter({("POST", "/api/v1/dags/~/dagRuns/~/taskInstances/list"): listing})
    inst = _instance(adapter, api_version="v1", page_size=20)
    got = [ti.map_index for ti in inst.iter_task_instances(dag_ids=["wide"])]
    assert sorted(got) == list(range(50))


def test_page_cap_exact_multiple_and_empty_list() -> None:
    pages: list[tuple[int, int]] = []
    items = [_ti(i) for i in range(20)]

    def listing(request: requests.PreparedRequest) -> tuple[int, Any]:
        body = json.loads(request.body or b"{}")
        pages.append((body["page_offset"], body["page_limit"]))
        return 200, {"task_instances": items[body["page_offset"]: body["page_offset"] + 10], "total_entries": len(items)}

    adapter = RouteAdapter({("POST", "/api/v2/dags/~/dagRuns/~/taskInstances/list"): listing})
    inst = _instance(adapter, api_version="v2", page_size=10)
    assert [t.map_index for t in inst.iter_task_instances()] == list(range(20))
    assert pages == [(0, 10), (10, 10)], "stops on total_entries without asking for an empty page"
    items.clear()
    pages.clear()
    assert list(inst.iter_task_instances()) == []
    assert pages == [(0, 10)]


def test_runs_are_paged_by_a_unique_key_and_windows_must_be_tz_aware() -> None:
    bodies: list[dict[str, Any]] = []

    def listing(request: requests.PreparedRequest) -> tuple[int, Any]:
        bodies.append(json.loads(request.body or b"{}"))
        return 200, {"dag_runs": [], "total_entries": 0}

    for api in ("v1", "v2"):
        adapter = RouteAdapter({("POST", f"/api/{api}/dags/~/dagRuns/list"): listing})
        inst = _instance(adapter, api_version=api)
        end = datetime(2026, 1, 1, tzinfo=timezone.utc)
        assert list(inst.iter_dag_runs(end_date_lte=end, states=["success"])) == []
        with pytest.raises(ValueError, match="timezone-aware"):
            list(inst.iter_dag_runs(end_date_lte=datetime(2026, 1, 1)))
        with pytest.raises(ValueError, match="timezone-aware"):
            list(inst.iter_task_instances(end_date_gte=datetime(2026, 1, 1)))
    assert [b["order_by"] for b in bodies] == ["id", "id"]
    assert bodies[0]["end_date_lte"] == "2026-01-01T00:00:00+00:00"


def test_pickled_instance_works_and_shows_no_secret() -> None:
    adapter = RouteAdapter({("GET", "/api/v1/dags/d"): lambda r: (200, {"dag_id": "d", "is_paused": True, "is_active": True, "fileloc": "/dags/d.py", "file_token": "tok", "tags": []})})
    inst = AirflowInstance(
        auth_backend=BasicAuthBackend(webserver_url="http://airflow.test", username="admin", password=SECRET),
        name="pickled",
        api_version="v1",
    )
    copy = pickle.loads(pickle.dumps(inst))
    assert repr(copy) == repr(inst)
    assert SECRET not in repr(copy) and SECRET not in repr(copy.auth_backend)
    copy._transport._session_factory = _factory(adapter)  # route the copy's requests to the adapter
    assert copy.get_dag("d").dag_id == "d"
    assert copy.api_version is ApiVersion.V1
    assert adapter.calls[("GET", "/api/v1/dags/d")] == 1
