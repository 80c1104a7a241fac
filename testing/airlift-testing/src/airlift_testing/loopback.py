"""The one way test servers of airlift-testing listen: a ``ThreadingHTTPServer`` on a free
127.0.0.1 port, served from a daemon thread, stopped by :meth:`LoopbackServer.stop` or ``with``.

>>> from http.server import BaseHTTPRequestHandler
>>> class Hello(LoopbackServer):
...     def start(self):
...         self._listen(BaseHTTPRequestHandler, name="hello")
...         return self
>>> with Hello() as server:
...     server.port > 0
True
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TypeVar

__all__ = ["LoopbackServer"]

_S = TypeVar("_S", bound="LoopbackServer")


class LoopbackServer:
    """Base of the fake servers: subclasses build their handler class and call :meth:`_listen` in
    ``start()``."""

    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    def start(self: _S) -> _S:
        raise NotImplementedError

    def _listen(self, handler: type[BaseHTTPRequestHandler], *, name: str) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        """The port listened on (after ``start()``)."""
        assert self._server is not None, f"start() the {type(self).__name__} first"
        return int(self._server.server_address[1])

    def stop(self) -> None:
        """Stop listening (idempotent)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self: _S) -> _S:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
