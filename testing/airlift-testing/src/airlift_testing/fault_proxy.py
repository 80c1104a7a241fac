"""A seeded, reproducible fault-injection HTTP proxy to put between a client and a real server.

``FaultProxy(upstream, seed=..., rate=0.3)`` listens on 127.0.0.1 and forwards every request to
``upstream``; a share ``rate`` of the requests gets a fault instead of (or on top of) the real answer:

============== ================================================================================
kind           what the client sees
============== ================================================================================
server_error   500, 502, 503 or 504 with a small JSON body (the request is not forwarded)
rate_limited   429 with ``Retry-After`` (``retry_after`` seconds; not forwarded)
reset          the connection is reset (TCP RST) before any answer (not forwarded)
mid_body_close the real answer's headers and half its body, then the connection closes
truncated_json the real answer with a 200 status and its body cut in half (Content-Length matches)
login_page     200 with an HTML login page (not forwarded)
unauthorized   401 (at most ``max_unauthorized`` times in total; not forwarded)
slow           nothing for ``slow_seconds`` (longer than the client's timeout), then a close
============== ================================================================================

Decisions are reproducible: whether (and how) the n-th occurrence of a request (method, path, query,
body) is faulted depends only on the seed and that key, not on thread timing. :attr:`counts` says
what was injected by kind, :attr:`requests` how many requests arrived. When the upstream is down the
proxy answers 502 like a load balancer would (counted as ``upstream_down``, not as an injected fault).

>>> proxy = FaultProxy("http://127.0.0.1:8080", seed=1, rate=0.3).start()  # doctest: +SKIP
>>> requests.get(proxy.url + "/api/v2/version")  # doctest: +SKIP
>>> proxy.counts  # doctest: +SKIP
Counter({'server_error': 1})
"""

from __future__ import annotations

import hashlib
import http.client
import json
import random
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from airlift_testing.loopback import LoopbackServer

__all__ = ["FAULT_KINDS", "FaultProxy"]

#: Every fault the proxy can inject, in the order of the table above.
FAULT_KINDS: tuple[str, ...] = (
    "server_error", "rate_limited", "reset", "mid_body_close", "truncated_json", "login_page", "unauthorized", "slow",
)
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
               "transfer-encoding", "upgrade", "content-length", "content-encoding"}
_LOGIN_PAGE = (b"<!DOCTYPE html><html><head><title>Sign in</title></head><body><form method='post' action='/login/'>"
               b"<input name='username'><input name='password' type='password'></form></body></html>")


class FaultProxy(LoopbackServer):
    """Reverse proxy that injects faults (see the module docstring). Use as a context manager or
    :meth:`start` / :meth:`stop`. ``kinds`` is a sequence of kinds (equal weights) or a mapping
    kind → weight; ``enabled`` can be switched off to pass everything through."""

    def __init__(
        self,
        upstream: str,
        *,
        seed: int,
        rate: float = 0.3,
        kinds: Sequence[str] | Mapping[str, float] = FAULT_KINDS,
        retry_after: float = 1.0,
        slow_seconds: float = 3.0,
        max_unauthorized: int = 1,
        upstream_timeout: float = 120.0,
    ) -> None:
        weights = dict(kinds) if isinstance(kinds, Mapping) else {k: 1.0 for k in kinds}
        unknown = sorted(set(weights) - set(FAULT_KINDS))
        if unknown:
            raise ValueError(f"unknown fault kind(s) {unknown}; use some of {list(FAULT_KINDS)}")
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate={rate!r} must be between 0 and 1")
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"upstream {upstream!r} must be an http:// URL")
        self.upstream = upstream.rstrip("/")
        self._upstream_host = parts.hostname
        self._upstream_port = parts.port or 80
        self.seed = seed
        self.rate = rate
        self.weights = {k: w for k, w in weights.items() if w > 0}
        self.retry_after = retry_after
        self.slow_seconds = slow_seconds
        self.max_unauthorized = max_unauthorized
        self.upstream_timeout = upstream_timeout
        self.enabled = True
        self.counts: Counter[str] = Counter()
        self.requests = 0
        self.log: list[tuple[str, str, str]] = []  # (method, path, fault kind or "")
        #: Every credential that passed through (bearer tokens, basic-auth blobs, cookie values,
        #: access tokens in answers), so a test can check that none of them leaks anywhere.
        self.credentials: set[str] = set()
        self._seen: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._server = None
        self._thread = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        """The proxy's base URL (give it to the client instead of the upstream's)."""
        assert self._server is not None, "start() the proxy first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FaultProxy:
        """Listen on a free port in a background thread."""
        proxy = self

        class Handler(_Handler):
            owner = proxy

        self._listen(Handler, name="fault-proxy")
        return self

    def summary(self) -> str:
        """One line: requests and faults injected by kind."""
        faults = ", ".join(f"{k}={self.counts[k]}" for k in (*FAULT_KINDS, "upstream_down") if self.counts[k])
        return f"{self.requests} requests, {sum(self.counts[k] for k in FAULT_KINDS)} faults injected ({faults or 'none'})"

    # ------------------------------------------------------------------ decisions
    def decide(self, method: str, target: str, body: bytes) -> str | None:
        """The fault for this request (None: forward it unchanged). Reproducible per seed and key."""
        key = f"{method} {target} {hashlib.sha256(body).hexdigest()}"
        with self._lock:
            self.requests += 1
            occurrence = self._seen[key]
            self._seen[key] += 1
            if not self.enabled or not self.weights:
                return None
            digest = hashlib.sha256(f"{self.seed}|{key}|{occurrence}".encode()).digest()
            rng = random.Random(int.from_bytes(digest[:8], "big"))
            if rng.random() >= self.rate:
                return None
            kinds = sorted(self.weights)
            kind = rng.choices(kinds, weights=[self.weights[k] for k in kinds])[0]
            if kind == "unauthorized" and self.counts["unauthorized"] >= self.max_unauthorized:
                return None
            self.counts[kind] += 1
            return kind

    def record(self, method: str, target: str, kind: str) -> None:
        with self._lock:
            self.log.append((method, target, kind))

    def remember_credentials(self, *values: str) -> None:
        with self._lock:
            self.credentials.update(v for v in values if len(v) >= 8)


def _cookie_values(header: str) -> list[str]:
    values = []
    for part in header.split(";"):
        name, _, value = part.strip().partition("=")
        if value and name.lower() not in ("path", "expires", "max-age", "domain", "samesite"):
            values.append(value)
    return values


class _Handler(BaseHTTPRequestHandler):
    owner: FaultProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _handle(self) -> None:
        proxy = self.owner
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        authorization = self.headers.get("Authorization", "")
        proxy.remember_credentials(authorization.partition(" ")[2], *_cookie_values(self.headers.get("Cookie", "")))
        fault = proxy.decide(self.command, self.path, body)
        proxy.record(self.command, self.path, fault or "")
        if fault == "reset":
            self._reset()
            return
        if fault == "slow":
            time.sleep(proxy.slow_seconds)
            self._close()
            return
        if fault == "server_error":
            status = random.Random(f"{proxy.seed}|{self.command}|{self.path}").choice([500, 502, 503, 504])
            self._send(status, json.dumps({"detail": "injected server error"}).encode(), "application/json")
            return
        if fault == "rate_limited":
            self._send(429, b'{"detail": "Too many requests"}', "application/json", {"Retry-After": f"{proxy.retry_after:g}"})
            return
        if fault == "login_page":
            self._send(200, _LOGIN_PAGE, "text/html; charset=utf-8")
            return
        if fault == "unauthorized":
            self._send(401, b'{"detail": "Not authenticated"}', "application/json")
            return
        upstream = self._forward(body)
        if upstream is None:
            with proxy._lock:
                proxy.counts["upstream_down"] += 1
            self._send(502, b'{"detail": "upstream unavailable"}', "application/json")
            return
        status, headers, content = upstream
        cookie = next((v for k, v in headers.items() if k.lower() == "set-cookie"), "")
        proxy.remember_credentials(*_cookie_values(cookie.split(";")[0]))
        if b"access_token" in content:
            try:
                proxy.remember_credentials(str(json.loads(content).get("access_token") or ""))
            except (ValueError, AttributeError):
                pass
        if fault == "truncated_json":
            self._send(200, content[: len(content) // 2], "application/json", headers)
            return
        if fault == "mid_body_close":
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content[: len(content) // 2])
            self.wfile.flush()
            self._close()
            return
        self._send(status, content, None, headers)

    def _forward(self, body: bytes) -> tuple[int, dict[str, str], bytes] | None:
        proxy = self.owner
        connection = http.client.HTTPConnection(proxy._upstream_host, proxy._upstream_port, timeout=proxy.upstream_timeout)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP and k.lower() != "host"}
        headers["Host"] = f"{proxy._upstream_host}:{proxy._upstream_port}"
        headers["Accept-Encoding"] = "identity"
        try:
            connection.request(self.command, self.path, body=body or None, headers=headers)
            response = connection.getresponse()
            content = response.read()
        except OSError:
            return None
        finally:
            connection.close()
        kept: dict[str, str] = {}
        for name, value in response.getheaders():
            if name.lower() in _HOP_BY_HOP:
                continue
            if name.lower() == "set-cookie" and name in kept:
                continue  # one cookie is enough for the clients under test
            if name.lower() == "location":
                value = value.replace(proxy.upstream, "")
            kept[name] = value
        return response.status, kept, content

    def _send(self, status: int, content: bytes, content_type: str | None, headers: Mapping[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            for name, value in (headers or {}).items():
                if content_type is None or name.lower() != "content-type":
                    self.send_header(name, value)
            if content_type is not None:
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    def _close(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _reset(self) -> None:
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass
