"""The fault-injection proxy: each fault as a client sees it, reproducibility per seed, counting."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from airlift_testing.fault_proxy import FAULT_KINDS, FaultProxy
from airlift_testing.procs import free_port

BODY = {"dags": [{"dag_id": f"dag_{i}"} for i in range(20)], "total_entries": 20}


class Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hits: list[str] = []

    def do_GET(self) -> None:
        Upstream.hits.append(self.path)
        content = json.dumps(BODY).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _get(proxy: FaultProxy, path: str = "/api/v2/dags", timeout: float = 2.0) -> requests.Response:
    with requests.Session() as session:
        return session.get(proxy.url + path, timeout=timeout)


def test_no_faults_passes_everything_through(upstream: str) -> None:
    with FaultProxy(upstream, seed=1, rate=0.0) as proxy:
        for _ in range(5):
            response = _get(proxy)
            assert response.status_code == 200 and response.json() == BODY
        assert proxy.requests == 5 and not proxy.counts


@pytest.mark.parametrize(
    ("kind", "check"),
    [
        ("server_error", lambda r: r.status_code in (500, 502, 503, 504)),
        ("rate_limited", lambda r: r.status_code == 429 and r.headers["Retry-After"] == "1"),
        ("login_page", lambda r: r.status_code == 200 and "html" in r.headers["Content-Type"] and b"Sign in" in r.content),
        ("unauthorized", lambda r: r.status_code == 401),
        ("truncated_json", lambda r: r.status_code == 200 and len(r.content) == len(json.dumps(BODY)) // 2),
    ],
)
def test_answer_faults(upstream: str, kind: str, check: Any) -> None:
    with FaultProxy(upstream, seed=3, rate=1.0, kinds=[kind]) as proxy:
        response = _get(proxy)
        assert check(response), (response.status_code, response.headers, response.content[:100])
        if kind == "truncated_json":
            with pytest.raises(ValueError):
                response.json()
        assert proxy.counts == {kind: 1}


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("reset", requests.ConnectionError),
        ("mid_body_close", requests.exceptions.ChunkedEncodingError),
        ("slow", requests.ReadTimeout),
    ],
)
def test_connection_faults(upstream: str, kind: str, error: type[Exception]) -> None:
    with FaultProxy(upstream, seed=3, rate=1.0, kinds=[kind], slow_seconds=1.5) as proxy:
        with pytest.raises(error):
            _get(proxy, timeout=0.5)
        assert proxy.counts[kind] == 1


def test_unauthorized_is_injected_at_most_max_times(upstream: str) -> None:
    with FaultProxy(upstream, seed=3, rate=1.0, kinds=["unauthorized"], max_unauthorized=1) as proxy:
        statuses = [_get(proxy, f"/p{i}").status_code for i in range(4)]
    assert statuses == [401, 200, 200, 200]


def test_same_seed_same_faults_and_rate_is_respected(upstream: str) -> None:
    kinds = ["server_error", "rate_limited", "login_page", "truncated_json"]
    logs = []
    for seed in (7, 7, 8):
        with FaultProxy(upstream, seed=seed, rate=0.3, kinds=kinds) as proxy:
            for i in range(200):
                _get(proxy, f"/api/v2/dags?offset={i % 50}")
            logs.append(list(proxy.log))
            faults = sum(proxy.counts.values())
            assert 40 <= faults <= 80, proxy.summary()  # 30% of 200, loosely
            assert set(proxy.counts) <= set(kinds)
    assert logs[0] == logs[1], "one seed, one fault sequence"
    assert logs[0] != logs[2]


def test_upstream_down_is_a_502(upstream: str) -> None:
    with FaultProxy(f"http://127.0.0.1:{free_port()}", seed=1, rate=0.0) as proxy:
        assert _get(proxy).status_code == 502
        assert proxy.counts["upstream_down"] == 1
        assert "1 requests, 0 faults injected" in proxy.summary()


def test_bad_configuration_is_named() -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        FaultProxy("http://127.0.0.1:1", seed=1, kinds=["meteor"])
    with pytest.raises(ValueError, match="rate=2"):
        FaultProxy("http://127.0.0.1:1", seed=1, rate=2)
    with pytest.raises(ValueError, match="http://"):
        FaultProxy("ftp://x", seed=1)
    assert len(FAULT_KINDS) == 8


def test_credentials_passing_through_are_remembered(upstream: str) -> None:
    with FaultProxy(upstream, seed=1, rate=0.0) as proxy, requests.Session() as session:
        session.get(proxy.url + "/x", headers={"Authorization": "Bearer token-Sentinel-1", "Cookie": "session=cookie-Sentinel-2"}, timeout=2)
    assert {"token-Sentinel-1", "cookie-Sentinel-2"} <= proxy.credentials
