"""The one request path of the client: timeouts, auth (and its refresh), retries, error mapping."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

import requests

from airlift_client.auth import AuthBackend
from airlift_client.errors import (
    AirflowAuthError,
    AirflowLoginPageError,
    AirflowNotFoundError,
    AirflowResponseError,
    AirflowUnreachableError,
)
from airlift_client.retry import RetryPolicy
from airlift_protocol import ApiVersion

__all__ = ["Transport"]

log = logging.getLogger("airlift_client")

_AUTH_HINT = {
    ApiVersion.V1: (
        "On Airflow 2, enable basic auth for the REST API: "
        "AIRFLOW__API__AUTH_BACKENDS=airflow.api.auth.backend.basic_auth,airflow.api.auth.backend.session"
    ),
    ApiVersion.V2: (
        "On Airflow 3 the REST API takes bearer tokens: BasicAuthBackend gets one from /auth/token "
        "with the username and password; TokenAuthBackend sends one you provide"
    ),
}


def _looks_like_html(response: requests.Response) -> bool:
    content_type = response.headers.get("Content-Type", "")
    if "html" in content_type:
        return True
    head = response.content[:200].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html"))


class Transport:
    """Sends every REST request of one AirflowInstance."""

    def __init__(
        self,
        backend: AuthBackend,
        *,
        timeout: float,
        retry_policy: RetryPolicy,
        session_factory: Callable[[], requests.Session] = requests.Session,
    ) -> None:
        self.backend = backend
        self.timeout = timeout
        self.retry = retry_policy
        self._session_factory = session_factory
        self._session: requests.Session | None = None
        self._anonymous: requests.Session | None = None
        self._api: ApiVersion | None = None
        self._lock = threading.Lock()
        self._count_lock = threading.Lock()
        self.request_count = 0

    def __getstate__(self) -> dict[str, Any]:
        # Sessions and locks are rebuilt after unpickling; credentials stay in the auth backend.
        state = dict(self.__dict__)
        for key in ("_lock", "_count_lock", "_session", "_anonymous"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._session = None
        self._anonymous = None

    def bind(self, api: ApiVersion) -> None:
        """Use ``api`` for authentication from now on (called once after detection)."""
        self._api = api

    def _authenticated(self, *, force: bool = False) -> requests.Session:
        with self._lock:
            if self._session is None:
                self._session = self._session_factory()
                force = True
            if force or self.backend.needs_refresh():
                assert self._api is not None, "bind() the API version first"
                self.backend.authenticate(self._session, api_version=self._api, timeout=self.timeout)
            return self._session

    def raw(self, method: str, url: str, *, idempotent: bool = True, **kwargs: Any) -> requests.Response:
        """Unauthenticated request with retries (used to probe the API generation)."""
        with self._lock:
            if self._anonymous is None:
                self._anonymous = self._session_factory()
            session = self._anonymous
        return self._send(lambda: session.request(method, url, timeout=self.timeout, **kwargs), method, url, idempotent)

    def _send(self, do: Callable[[], requests.Response], method: str, url: str, idempotent: bool) -> requests.Response:
        attempts = self.retry.max_attempts if idempotent else 1
        attempt = 0
        while True:
            attempt += 1
            try:
                with self._count_lock:
                    self.request_count += 1
                response = do()
            except (requests.ConnectionError, requests.Timeout) as e:
                if attempt >= attempts:
                    raise AirflowUnreachableError(
                        f"cannot reach Airflow at {url} ({type(e).__name__}) after {attempt} attempt(s); "
                        f"check that the webserver_url {self.backend.webserver_url!r} is right and the server is up"
                    ) from None
                delay = self.retry.backoff(attempt)
                log.warning("%s %s failed (%s); retry %d in %.1fs", method, url, type(e).__name__, attempt, delay)
                self.retry.sleep(delay)
                continue
            if idempotent and self.retry.should_retry_status(response.status_code) and attempt < attempts:
                retry_after = self.retry.retry_after(response.headers.get("Retry-After"))
                delay = self.retry.backoff(attempt) if retry_after is None else retry_after
                log.warning("%s %s answered %d; retry %d in %.1fs", method, url, response.status_code, attempt, delay)
                self.retry.sleep(delay)
                continue
            return response

    def request(
        self,
        method: str,
        url: str,
        *,
        what: str,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool = True,
    ) -> Any:
        """Send an authenticated request and return its JSON body.

        ``what`` names the object for error messages (e.g. "DAG 'x'"). A 401 (or a login page)
        re-authenticates once and repeats the request, even a non-idempotent one: the server refused
        it before doing anything.
        """
        api = self._api or ApiVersion.V1
        refreshed = False
        while True:
            session = self._authenticated(force=False)
            response = self._send(
                lambda s=session: s.request(  # type: ignore[misc]
                    method, url, params=params, json=json, headers=dict(headers or {}), timeout=self.timeout
                ),
                method,
                url,
                idempotent,
            )
            status = response.status_code
            unauthorized = (
                status == 401
                or (status == 403 and self.backend.refresh_on_forbidden)
                or (status == 200 and _looks_like_html(response))
            )
            if unauthorized and not refreshed:
                refreshed = True
                self._authenticated(force=True)
                continue
            break
        if status in (401, 403):
            raise AirflowAuthError(
                f"{self.backend.describe()}: {method} {url} was refused with HTTP {status} "
                f"({'not authenticated' if status == 401 else 'wrong credentials or missing permission'}). "
                f"{_AUTH_HINT[api]}.",
                status=status,
            )
        if status == 404:
            raise AirflowNotFoundError(f"{what} was not found in Airflow ({method} {url} answered 404)", status=404)
        if _looks_like_html(response):
            raise AirflowLoginPageError(
                f"{self.backend.describe()}: {method} {url} answered with an HTML page (HTTP {status}), "
                f"most likely a login page, instead of JSON: the REST API does not accept these credentials. "
                f"{_AUTH_HINT[api]}.",
                status=status,
            )
        if status >= 400:
            raise AirflowResponseError(
                f"{method} {url} for {what} failed with HTTP {status}: {_detail(response)}", status=status
            )
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            return response.text


def _detail(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(body, dict):
        return str(body.get("detail") or body.get("title") or body)[:500]
    return str(body)[:500]
