"""A local stand-in for a managed Airflow's front door (Cloud Composer, Astronomer, MWAA).

:class:`GatewayServer` listens on 127.0.0.1 in front of a :class:`~airlift_testing.fake_airflow.FakeAirflow`.
Each request goes first to extra ``routes`` (a token endpoint, a cloud control-plane API), else to
``authorize``, which checks the caller's credentials the way the service does and may refuse; an
authorized ``/api/...`` request is forwarded to the fake Airflow with the fake's own admin
credentials (any method, body included), so the client's real REST calls are exercised.

>>> gateway = GatewayServer(fake, authorize=lambda request: None).start()  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

import requests
from requests.structures import CaseInsensitiveDict

from airlift_testing.fake_airflow import FakeAirflow
from airlift_testing.loopback import LoopbackServer

__all__ = ["GatewayReply", "GatewayRequest", "GatewayServer"]


@dataclass(frozen=True)
class GatewayRequest:
    """One request as the gateway saw it (header names are case-insensitive)."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes

    def bearer(self) -> str | None:
        """The token of an ``Authorization: Bearer`` header, None for any other header."""
        value = self.headers.get("Authorization") or ""
        scheme, _, token = value.partition(" ")
        return token if scheme == "Bearer" and token else None

    def json(self) -> Any:
        """The body decoded as JSON."""
        return json.loads(self.body or b"null")


@dataclass(frozen=True)
class GatewayReply:
    """An answer of the gateway itself (a refusal, or an extra route's answer)."""

    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)


def _direct(method: str, url: str, **kwargs: Any) -> requests.Response:
    """A request to the fake with the gateway's own credentials only: nothing from the environment
    (a test's ``$NETRC`` must not reach the fake behind the gateway)."""
    with requests.Session() as session:
        session.trust_env = False
        return session.request(method, url, **kwargs)


class GatewayServer(LoopbackServer):
    """``authorize(request)`` returns a :class:`GatewayReply` to refuse, None to forward; ``routes``
    maps ``"METHOD /path"`` (query string excluded) to a handler returning a reply. Every request is
    recorded in :attr:`seen` as ``(method, path, authorization scheme)``."""

    def __init__(
        self,
        fake: FakeAirflow,
        *,
        authorize: Callable[[GatewayRequest], GatewayReply | None],
        routes: Mapping[str, Callable[[GatewayRequest], GatewayReply]] | None = None,
        path_prefix: str = "",
    ) -> None:
        self.fake = fake
        self.authorize = authorize
        self.routes = dict(routes or {})
        self.path_prefix = path_prefix.rstrip("/")
        self.seen: list[tuple[str, str, str]] = []
        self._server = None
        self._fake_bearer: str | None = None

    @property
    def url(self) -> str:
        """Base URL of the gateway, with the path prefix (e.g. an Astronomer deployment id)."""
        assert self._server is not None, "start() the gateway first"
        return f"http://127.0.0.1:{self._server.server_address[1]}{self.path_prefix}"

    def _upstream_auth(self) -> str:
        if self.fake.generation == 2:
            return "Basic " + base64.b64encode(f"{self.fake.username}:{self.fake.password}".encode()).decode()
        if self._fake_bearer is None:
            response = _direct("POST", f"{self.fake.url}/auth/token", json={"username": self.fake.username, "password": self.fake.password}, timeout=10)
            self._fake_bearer = "Bearer " + response.json()["access_token"]
        return self._fake_bearer

    def start(self) -> GatewayServer:
        """Listen on a free 127.0.0.1 port (a daemon thread serves)."""
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: bytes, content_type: str, headers: Mapping[str, str] = {}) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = GatewayRequest(self.command, self.path, CaseInsensitiveDict(self.headers.items()), self.rfile.read(length))
                outer.seen.append((self.command, self.path, (request.headers.get("Authorization") or "").partition(" ")[0]))
                route = outer.routes.get(f"{self.command} {self.path.split('?', 1)[0]}")
                reply = route(request) if route else outer.authorize(request)
                if reply is not None:
                    body = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
                    self._reply(reply.status, body, reply.headers.get("Content-Type", "application/json"),
                                {k: v for k, v in reply.headers.items() if k != "Content-Type"})
                    return
                path = self.path[len(outer.path_prefix):] if self.path.startswith(outer.path_prefix) else self.path
                headers = {"Authorization": outer._upstream_auth()}
                if request.body:
                    headers["Content-Type"] = self.headers.get("Content-Type") or "application/json"
                upstream = _direct(self.command, outer.fake.url + path, data=request.body or None, headers=headers, timeout=30)
                self._reply(upstream.status_code, upstream.content, upstream.headers.get("Content-Type", "application/json"))

            do_GET = do_POST = do_PATCH = do_DELETE = _handle

        self._listen(Handler, name="managed-airflow-gateway")
        return self
