"""Auth backends: each gives the client an authenticated ``requests.Session`` for one webserver and
refreshes it when the server says the credentials expired. None of them shows a secret in its
``repr``, in logs or in errors.

>>> BasicAuthBackend(webserver_url="http://localhost:8080/", username="admin", password="s3cret")
BasicAuthBackend(webserver_url='http://localhost:8080', username='admin')
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import requests

from airlift_client._schemas import Token, problems
from airlift_client.errors import (
    AirflowAuthError,
    AirflowBadResponseError,
    AirflowResponseError,
    AirflowUnreachableError,
)
from airlift_protocol import ApiVersion
from airlift_protocol.retry import RETRY_STATUSES

__all__ = ["AuthBackend", "BasicAuthBackend", "TokenAuthBackend", "jwt_expiry"]

#: Refresh a bearer token this many seconds before the expiry written in it.
EXPIRY_MARGIN = 30.0

log = logging.getLogger(__name__)
_CSRF_INPUT = re.compile(r"<input[^>]*name=\"csrf_token\"[^>]*>")
_VALUE = re.compile(r"value=\"([^\"]+)\"")


def jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT (epoch seconds) without verifying it; None if not a JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, json.JSONDecodeError):
        return None
    exp = payload.get("exp") if isinstance(payload, dict) else None
    return float(exp) if isinstance(exp, (int, float)) else None


class AuthBackend(ABC):
    """Gives the client an authenticated session for ``webserver_url``.

    Subclasses implement :meth:`authenticate`; the client calls it before the first request, again
    when :meth:`needs_refresh` says the credentials are about to expire, and with ``force=True``
    once after a 401 (or a login page) before giving up.
    """

    webserver_url: str
    #: Also re-authenticate once after a 403 (servers whose expired sessions answer 403).
    refresh_on_forbidden: bool = False

    def __init__(self, webserver_url: str) -> None:
        self.webserver_url = webserver_url.rstrip("/")
        self._lock = threading.Lock()

    @abstractmethod
    def authenticate(self, session: requests.Session, *, api_version: ApiVersion, timeout: float) -> None:
        """Put fresh credentials on ``session`` (headers, auth or cookies) for ``api_version``."""

    def needs_refresh(self) -> bool:
        """True when the credentials on the session are known to expire soon."""
        return False

    def detect_api_version(self, *, timeout: float) -> ApiVersion | None:
        """The API generation if the backend knows it (e.g. from a cloud API); None to probe."""
        return None

    def describe(self) -> str:
        """Short text naming the backend and URL, safe for error messages."""
        return f"{type(self).__name__} for {self.webserver_url}"

    def secret_values(self) -> tuple[str, ...]:
        """The secrets this backend holds (passwords, tokens, cookies), so the client can remove
        them from any text it shows. Override it in backends that hold secrets."""
        return ()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(webserver_url={self.webserver_url!r})"

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


class _BearerTokenMixin:
    _token: str | None
    _expires_at: float | None
    clock: Callable[[], float]

    def _set_bearer(self, session: requests.Session, token: str) -> None:
        self._token = token
        self._expires_at = jwt_expiry(token)
        session.auth = None
        session.headers["Authorization"] = f"Bearer {token}"

    def needs_refresh(self) -> bool:
        return self._expires_at is not None and self.clock() >= self._expires_at - EXPIRY_MARGIN


class BasicAuthBackend(_BearerTokenMixin, AuthBackend):
    """Username and password. On Airflow 2 this is HTTP basic auth (enable it with
    ``AIRFLOW__API__AUTH_BACKENDS=airflow.api.auth.backend.basic_auth,airflow.api.auth.backend.session``);
    on Airflow 3 the same object exchanges the credentials for a JWT at ``POST /auth/token`` and
    gets a new one before it expires or after a 401, so the same code works on both.

    >>> backend = BasicAuthBackend(webserver_url="http://localhost:8080", username="admin", password="admin")
    """

    def __init__(
        self,
        webserver_url: str,
        username: str,
        password: str,
        *,
        web_login: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(webserver_url)
        self.username = username
        self._password = password
        self.web_login = web_login
        self._token = None
        self._expires_at = None
        self.clock = clock
        #: Airflow 2: "session" (a webserver session cookie) or "basic" (HTTP basic auth on every request).
        self.v1_mode: str | None = None

    def authenticate(self, session: requests.Session, *, api_version: ApiVersion, timeout: float) -> None:
        if api_version is ApiVersion.V1:
            if self.web_login and self._web_session(session, timeout=timeout):
                # an expired web session may answer 403 on Airflow 2: log in again once
                self.v1_mode, self.refresh_on_forbidden = "session", True
                return
            session.cookies.clear()
            session.auth = (self.username, self._password)
            self.v1_mode, self.refresh_on_forbidden = "basic", False
            return
        url = f"{self.webserver_url}/auth/token"
        where: dict[str, Any] = {"method": "POST", "url": url}
        try:
            # Through the client's own session (its adapters, pool, TLS and proxy settings), without
            # the expired bearer.
            response = session.post(
                url,
                json={"username": self.username, "password": self._password},
                headers={"Authorization": None},  # type: ignore[dict-item]
                timeout=timeout,
            )
        except requests.RequestException as e:
            raise AirflowUnreachableError(f"{self.describe()}: cannot reach Airflow at {url} ({type(e).__name__}).", **where) from None
        status = response.status_code
        if status in (401, 403):
            raise AirflowAuthError(
                f"{self.describe()}: {url} refused the credentials of user {self.username!r} "
                f"(HTTP {status}). Check the username and password.",
                status=status, **where,
            )
        if status in RETRY_STATUSES:
            raise AirflowResponseError(f"{self.describe()}: getting a token from {url} failed with HTTP {status}.", status=status, **where)
        if status >= 400:
            raise AirflowAuthError(
                f"{self.describe()}: getting a token from {url} failed with HTTP {status}.", status=status, **where
            )
        try:
            body = response.json()
        except ValueError:
            body = None
        problem = "not JSON" if body is None else problems(Token, body)
        if problem is not None:
            raise AirflowBadResponseError(
                f"{self.describe()}: POST {url} answered HTTP {status} without an access_token ({problem}).",
                status=status, **where,
            )
        token = body["access_token"]
        self._set_bearer(session, str(token))

    def _web_session(self, session: requests.Session, *, timeout: float) -> bool:
        """Airflow 2: log in once through the webserver's login form and use its session cookie.

        With basic auth Airflow 2 checks the password hash on every request (about 150 ms of server CPU
        each on Airflow 2.11), which dominates reading a large instance; a session cookie costs the
        server a few ms. The REST API accepts the cookie when its session backend is enabled (the
        recommended ``AIRFLOW__API__AUTH_BACKENDS`` includes it). Anything else (another login page,
        no session backend, a proxy) returns False and basic auth is used. Pass ``web_login=False``
        to always use basic auth.
        """
        login_url = f"{self.webserver_url}/login/"
        no_auth = {"Authorization": None}
        session.auth = None
        session.cookies.clear()
        try:
            page = session.get(login_url, headers=no_auth, timeout=timeout)  # type: ignore[arg-type]
            _raise_if_transient(page, "GET", login_url, self.describe())
            field = _CSRF_INPUT.search(page.text) if page.status_code == 200 else None
            value = _VALUE.search(field.group(0)) if field else None
            if value is None:
                return False
            done = session.post(
                login_url,
                data={"username": self.username, "password": self._password, "csrf_token": value.group(1)},
                headers=no_auth,  # type: ignore[arg-type]
                timeout=timeout,
                allow_redirects=False,
            )
            if done.status_code == 429:
                # The webserver's login rate limit (Flask-AppBuilder: 5 per 40 s per address by
                # default), hit when many processes start at once (run and step workers): the REST
                # API still takes basic auth, so use it rather than wait or fail.
                log.info("%s: the login form is rate limited (HTTP 429); using basic auth", self.describe())
                return False
            _raise_if_transient(done, "POST", login_url, self.describe())
            if done.status_code not in (301, 302, 303) or not session.cookies:
                return False
            probe_url = f"{self.webserver_url}/api/v1/dags"
            probe = session.get(probe_url, params={"limit": 1}, headers=no_auth, timeout=timeout)  # type: ignore[arg-type]
            _raise_if_transient(probe, "GET", probe_url, self.describe())
        except requests.RequestException as e:
            # the client retries the login like any request
            raise AirflowUnreachableError(
                f"{self.describe()}: cannot reach Airflow at {login_url} ({type(e).__name__}).", method="POST", url=login_url
            ) from None
        if probe.status_code == 200 and "json" in probe.headers.get("Content-Type", ""):
            return True
        log.debug("%s: the REST API did not accept the web session (HTTP %s); using basic auth", self.describe(), probe.status_code)
        return False

    def describe(self) -> str:
        return f"BasicAuthBackend (user {self.username!r}) for {self.webserver_url}"

    def secret_values(self) -> tuple[str, ...]:
        return tuple(v for v in (self._password, self._token) if v)

    def __repr__(self) -> str:
        return f"BasicAuthBackend(webserver_url={self.webserver_url!r}, username={self.username!r})"


class TokenAuthBackend(_BearerTokenMixin, AuthBackend):
    """Bearer tokens: Astronomer deployment API tokens, Google access tokens for Cloud Composer,
    Airflow 3 JWTs. Give a fixed ``token`` or a ``token_provider`` callable, which is called again
    whenever the token expires or the server answers 401.

    >>> backend = TokenAuthBackend(webserver_url="https://example.astronomer.run/d1", token_provider=lambda: "t")
    """

    def __init__(
        self,
        webserver_url: str,
        *,
        token: str | None = None,
        token_provider: Callable[[], str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(webserver_url)
        if (token is None) == (token_provider is None):
            raise ValueError("TokenAuthBackend needs exactly one of token= or token_provider=")
        self._static = token
        self._provider = token_provider
        self._token = None
        self._expires_at = None
        self.clock = clock

    def authenticate(self, session: requests.Session, *, api_version: ApiVersion, timeout: float) -> None:
        if self._provider is not None:
            try:
                token = self._provider()
            except Exception as e:
                name = getattr(self._provider, "__qualname__", repr(self._provider))
                raise AirflowAuthError(
                    f"{self.describe()}: the token_provider {name} raised {type(e).__name__}: {e}"
                ) from e
        else:
            assert self._static is not None
            token = self._static
        self._set_bearer(session, str(token))

    def secret_values(self) -> tuple[str, ...]:
        return tuple(v for v in (self._static, self._token) if v)


def _raise_if_transient(response: requests.Response, method: str, url: str, backend: str) -> None:
    """Raise for a 429/5xx answer during a login, so the client retries the login."""
    if response.status_code in RETRY_STATUSES:
        raise AirflowResponseError(
            f"{backend}: {method} {url} answered HTTP {response.status_code} during login",
            method=method, url=url, status=response.status_code,
        )
