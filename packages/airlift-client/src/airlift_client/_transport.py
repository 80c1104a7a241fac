"""The one request path of the client: timeouts, TLS, auth (and its refresh), retries, validation,
error mapping.

Every request, and every login, goes through :class:`airlift_protocol.retry.RetryPolicy`:

- retried (idempotent requests only): connection errors and resets, timeouts, connections closed
  mid-answer (``ChunkedEncodingError``), 429 (honouring ``Retry-After``) and 500/502/503/504, and a
  2xx answer whose body is not complete JSON (truncated, or a proxy's HTML page);
- never retried blindly: a non-idempotent request (a trigger) is sent once;
- a 401 (or a login page, or a 403 for backends whose expired sessions answer 403) logs in again
  once and repeats the request (within the same attempt: it does not use up a retry); when many threads see it at once, one of them logs in and the others
  reuse its credentials;
- the final error names the method, URL, status, what was asked for, and the attempt count.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any

import requests
from pydantic import BaseModel

from airlift_client._schemas import problems
from airlift_client.auth import AuthBackend
from airlift_client.errors import (
    AirflowAuthError,
    AirflowBadResponseError,
    AirflowLoginPageError,
    AirflowNotFoundError,
    AirflowResponseError,
    AirflowUnreachableError,
    AirliftClientError,
)
from airlift_client.retry import NO_RETRY, RETRY_STATUSES, RetryPolicy
from airlift_protocol import ApiVersion, Retryable

__all__ = ["Transport", "excerpt", "looks_like_html"]

log = logging.getLogger("airlift_client")

#: Characters of a body shown in an error.
EXCERPT_CHARS = 160

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

# Failures after which the same idempotent request may simply be sent again.
_TRANSIENT = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)
_SECRET_PATTERNS = (
    re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"),  # JWTs
    re.compile(r"(?i)(bearer\s+)[^\s\"',;]+"),
    re.compile(r"(?i)((?:access_token|token|password|passwd|secret|session|csrf_token|_token|cookie)\"?\s*[:=]\s*\"?)[^\s\"',;&]+"),
)


def looks_like_html(response: requests.Response) -> bool:
    """True when the answer is an HTML page (a login page, a proxy's error page)."""
    content_type = response.headers.get("Content-Type", "")
    if "html" in content_type:
        return True
    head = response.content[:200].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html"))


def excerpt(body: bytes | str, secrets: tuple[str, ...] = ()) -> str:
    """The first characters of a body for an error message, with secrets removed.

    >>> excerpt('{"access_token": "abc.def", "x": 1}')
    '{"access_token": "***", "x": 1}'
    """
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + "***", text)
    text = " ".join(text.split())
    return text[:EXCERPT_CHARS] + ("…" if len(text) > EXCERPT_CHARS else "")


def with_attempts(error: AirliftClientError, attempts: int) -> AirliftClientError:
    """``error`` with the attempt count in its message and ``attempts`` attribute."""
    if error.attempts is None:
        error.attempts = attempts
        error.args = (f"{error.args[0] if error.args else error} (gave up after {attempts} attempt(s))",)
    return error


class _Retry(Retryable):
    """One attempt failed in a way worth retrying; ``final`` is the error if no retry is left."""

    def __init__(self, reason: str, final: AirliftClientError, retry_after: str | None = None) -> None:
        super().__init__(reason, retry_after=retry_after)
        self.reason = reason
        self.final = final


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
        # bumped by every login: a thread that saw a 401 logs in again only if nobody did since
        self._auth_epoch = 0
        self._lock = threading.Lock()
        self._count_lock = threading.Lock()
        self.request_count = 0
        self.login_count = 0

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
        """Use ``api`` for authentication from now on; a change drops the current login."""
        with self._lock:
            if self._api is not api and self._session is not None:
                self._session.close()
                self._session = None
            self._api = api

    def new_session(self) -> requests.Session:
        """A session from the instance's factory (TLS and proxy settings applied)."""
        return self._session_factory()

    def _count(self) -> None:
        with self._count_lock:
            self.request_count += 1

    # ------------------------------------------------------------------ auth
    def _login(self, session: requests.Session) -> None:
        """Log in through the backend, retried like any request (caller holds ``_lock``)."""
        assert self._api is not None, "bind() the API version first"
        api = self._api

        def attempt() -> None:
            self._count()
            try:
                self.backend.authenticate(session, api_version=api, timeout=self.timeout)
            except AirliftClientError as e:
                if isinstance(e, (AirflowUnreachableError, AirflowBadResponseError)) or e.status in RETRY_STATUSES:
                    raise _Retry(type(e).__name__, e) from None
                raise

        def say(error: Retryable, delay: float) -> None:
            log.warning("%s: login failed (%s); retry %d in %.1fs", self.backend.describe(), error.problem, error.attempts, delay)

        try:
            self.retry.call(attempt, on_retry=say)
        except _Retry as e:
            raise with_attempts(e.final, e.attempts) from None
        self._auth_epoch += 1
        with self._count_lock:
            self.login_count += 1

    def _authenticated(self) -> tuple[requests.Session, int]:
        with self._lock:
            if self._session is None:
                session = self._session_factory()
                self._login(session)
                self._session = session
            elif self.backend.needs_refresh():
                self._login(self._session)
            return self._session, self._auth_epoch

    def _relogin(self, seen_epoch: int) -> None:
        """Log in again after a 401 seen with credentials of ``seen_epoch``, unless another thread
        already did."""
        with self._lock:
            if self._session is not None and self._auth_epoch == seen_epoch:
                self._login(self._session)

    # ------------------------------------------------------------------ requests
    def raw(self, method: str, url: str, **kwargs: Any) -> requests.Response | None:
        """One unauthenticated request without retries (a hint for generation detection); None when
        nothing answered."""
        with self._lock:
            if self._anonymous is None:
                self._anonymous = self._session_factory()
            session = self._anonymous
        self._count()
        try:
            return session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.RequestException:
            return None

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
        model: type[BaseModel] | None = None,
    ) -> Any:
        """Send an authenticated request and return its JSON body, validated against ``model``.

        ``what`` names the object for error messages (e.g. "DAG 'x'").
        """
        attempts = 0
        relogged = False
        login_page_at: list[int] = []  # the credentials epoch a login page answered; log in again first

        def attempt() -> Any:
            nonlocal attempts, relogged
            if login_page_at:
                self._relogin(login_page_at.pop())
            while True:  # logging in again after a 401 is part of the attempt, not a retry
                session, epoch = self._authenticated()
                attempts += 1
                self._count()
                try:
                    response = session.request(
                        method, url, params=params, json=json, headers=dict(headers or {}), timeout=self.timeout
                    )
                except requests.exceptions.SSLError as e:
                    raise AirflowUnreachableError(
                        f"{method} {url} for {what}: TLS failed ({_reason(e)}). If the server uses a private CA, "
                        "pass ca_bundle='/path/to/ca.pem' to AirflowInstance (or set REQUESTS_CA_BUNDLE)",
                        method=method, url=url, attempts=attempts,
                    ) from None
                except _TRANSIENT as e:
                    raise _Retry(
                        type(e).__name__,
                        AirflowUnreachableError(
                            f"cannot get an answer from Airflow for {what}: {method} {url} failed ({type(e).__name__}); "
                            f"check that the webserver_url {self.backend.webserver_url!r} is right and the server is up",
                            method=method, url=url,
                        ),
                    ) from None
                status = response.status_code
                refused = status == 401 or (status == 403 and self.backend.refresh_on_forbidden)
                login_page = status < 300 and looks_like_html(response)
                if (refused or login_page) and not relogged:
                    relogged = True
                    self._relogin(epoch)
                    continue
                try:
                    return self._answer(response, method, url, what, idempotent=idempotent, model=model)
                except _Retry as retry:
                    if retry.reason == "login page":
                        login_page_at.append(epoch)
                    raise

        def say(error: Retryable, delay: float) -> None:
            log.warning("%s %s: %s; retry %d in %.1fs", method, url, error.problem, error.attempts, delay)

        try:
            return (self.retry if idempotent else NO_RETRY).call(attempt, on_retry=say)
        except _Retry as retry:
            raise with_attempts(retry.final, retry.attempts) from None

    def _answer(
        self,
        response: requests.Response,
        method: str,
        url: str,
        what: str,
        *,
        idempotent: bool,
        model: type[BaseModel] | None,
    ) -> Any:
        status = response.status_code
        api = self._api or ApiVersion.V1
        where: dict[str, Any] = {"method": method, "url": url, "status": status}
        if status in RETRY_STATUSES and idempotent:
            raise _Retry(
                f"HTTP {status}",
                AirflowResponseError(f"{method} {url} for {what} failed with HTTP {status}: {self._excerpt(response)}", **where),
                retry_after=response.headers.get("Retry-After"),
            )
        if status in (401, 403):
            raise AirflowAuthError(
                f"{self.backend.describe()}: {method} {url} was refused with HTTP {status} "
                f"({'not authenticated' if status == 401 else 'wrong credentials or missing permission'}). "
                f"{_AUTH_HINT[api]}.",
                **where,
            )
        if status == 404:
            raise AirflowNotFoundError(f"{what} was not found in Airflow ({method} {url} answered 404)", **where)
        html = looks_like_html(response)
        if html and status < 300:
            error: AirliftClientError = AirflowLoginPageError(
                f"{self.backend.describe()}: {method} {url} answered with an HTML page (HTTP {status}), "
                f"most likely a login page, instead of JSON: the REST API does not accept these credentials. "
                f"{_AUTH_HINT[api]}.",
                **where,
            )
            if idempotent:
                raise _Retry("login page", error)
            raise error
        if status >= 400:
            raise AirflowResponseError(f"{method} {url} for {what} failed with HTTP {status}: {_detail(response, self.backend.secret_values())}", **where)
        if not response.content and model is None:
            return None
        content_type = response.headers.get("Content-Type", "")
        try:
            if "json" not in content_type:
                raise ValueError(f"Content-Type {content_type or 'missing'!r}, not JSON")
            body = response.json()
        except ValueError as e:
            error = AirflowBadResponseError(
                f"{method} {url} for {what} answered HTTP {status} with a body that is not JSON "
                f"({_reason(e)}): {self._excerpt(response)!r}",
                **where,
            )
            if idempotent:
                raise _Retry("incomplete or non-JSON body", error) from None
            raise error from None
        if model is not None:
            problem = problems(model, body)
            if problem is not None:
                raise AirflowBadResponseError(
                    f"{method} {url} for {what} answered HTTP {status} with JSON that is not an Airflow "
                    f"{api.value} {model.__name__.strip('_')} ({problem}): {self._excerpt(response)!r}. "
                    "Check that webserver_url points at Airflow itself and that api_version (if given) is right",
                    **where,
                )
        return body

    def _excerpt(self, response: requests.Response) -> str:
        return excerpt(response.content, self.backend.secret_values())


def _reason(error: Exception) -> str:
    text = str(error).split("\n")[0]
    return text[:120]


def _detail(response: requests.Response, secrets: tuple[str, ...]) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and (body.get("detail") or body.get("title")):
        return excerpt(str(body.get("detail") or body.get("title")), secrets)
    return excerpt(response.content, secrets)
