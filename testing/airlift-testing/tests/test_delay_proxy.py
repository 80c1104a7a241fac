"""The delaying proxy of the chaos suite: it forwards every request unchanged, after its delay."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from airlift_testing.chaos import DelayProxy

EVENTS: list[str] = []


class Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        EVENTS.append(f"upstream {self.path}")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[str]:
    EVENTS.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_forwards_unchanged_after_the_delay(upstream: str) -> None:
    with DelayProxy(upstream, sleep=lambda seconds: EVENTS.append(f"sleep {seconds:g}")) as proxy:
        assert requests.post(proxy.url + "/graphql", json={"q": 1}, timeout=10).json() == {"q": 1}
        assert EVENTS == ["upstream /graphql"] and proxy.delayed == 0
        proxy.delay = 6.0
        assert requests.post(proxy.url + "/graphql", json={"q": 2}, timeout=10).json() == {"q": 2}
        assert EVENTS == ["upstream /graphql", "sleep 6", "upstream /graphql"] and proxy.delayed == 1
        assert proxy.requests == 2 and not proxy.counts, "no fault is ever injected"
