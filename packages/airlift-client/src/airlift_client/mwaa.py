"""AWS MWAA auth (extra ``[mwaa]``, boto3).

MWAA does not accept Airflow passwords. The backend asks the MWAA API for a short-lived web login
token (``CreateWebLoginToken``, valid ~60 s) and exchanges it at the environment's web server:

- Airflow 2 environments: ``POST https://{WebServerHostname}/aws_mwaa/login`` with form field
  ``token``; the answer sets the ``session`` cookie used for ``/api/v1``.
- Airflow 3 environments: ``POST https://{WebServerHostname}/pluginsv2/aws_mwaa/login``; the answer
  sets the ``_token`` cookie, a JWT sent as ``Authorization: Bearer`` to ``/api/v2``.

The session is renewed before ``session_max_age`` passes (the web server's sessions last ~12 h), when
a JWT says it expires, and whenever the server answers 401/403 or a login page.

>>> backend = MwaaSessionAuthBackend(environment_name="my-env", region_name="us-east-1")  # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import requests

from airlift_client.auth import EXPIRY_MARGIN, AuthBackend, jwt_expiry
from airlift_client.errors import AirflowAuthError, AirflowResponseError, AirflowUnreachableError
from airlift_protocol import ApiVersion
from airlift_protocol.retry import RETRY_STATUSES

__all__ = ["MwaaSessionAuthBackend"]


class MwaaSessionAuthBackend(AuthBackend):
    """Session auth for an Amazon MWAA environment.

    Give ``environment_name`` and either ``region_name`` (a boto3 client is made with the default
    credential chain), a ``boto3_session``, or an ``mwaa_client``. ``scheme`` is for tests only.
    """

    refresh_on_forbidden = True

    def __init__(
        self,
        *,
        environment_name: str,
        region_name: str | None = None,
        boto3_session: Any = None,
        mwaa_client: Any = None,
        session_max_age: float = 10 * 3600,
        scheme: str = "https",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.environment_name = environment_name
        self.region_name = region_name
        self._client = mwaa_client
        self._boto3_session = boto3_session
        self.session_max_age = session_max_age
        self.scheme = scheme
        self.clock = clock
        self._hostname: str | None = None
        self._expires_at: float | None = None
        self._airflow_version: str | None = None
        self._cookie: str | None = None
        super().__init__(webserver_url="")
        self.webserver_url = ""  # known after the first call to the MWAA API

    # The webserver URL comes from MWAA itself.
    @property  # type: ignore[override]
    def webserver_url(self) -> str:
        if self._hostname is None:
            self._environment()
        return f"{self.scheme}://{self._hostname}"

    @webserver_url.setter
    def webserver_url(self, value: str) -> None:
        pass

    def _mwaa(self) -> Any:
        if self._client is None:
            try:
                import boto3
            except ImportError:  # pragma: no cover - depends on the extra
                raise AirflowAuthError(
                    "MwaaSessionAuthBackend needs boto3: pip install 'airlift-client[mwaa]'"
                ) from None
            session = self._boto3_session or boto3.session.Session(region_name=self.region_name)
            self._client = session.client("mwaa", region_name=self.region_name)
        return self._client

    def _environment(self) -> dict[str, Any]:
        try:
            environment = self._mwaa().get_environment(Name=self.environment_name)["Environment"]
        except Exception as e:
            raise AirflowAuthError(
                f"{self.describe()}: the MWAA API could not describe the environment ({type(e).__name__}: {e})"
            ) from e
        self._airflow_version = str(environment.get("AirflowVersion") or "")
        if self._hostname is None and environment.get("WebserverUrl"):
            self._hostname = str(environment["WebserverUrl"])
        return dict(environment)

    @property
    def airflow_major(self) -> int:
        """2 or 3, from the environment's Airflow version."""
        if self._airflow_version is None:
            self._environment()
        version = self._airflow_version or "2"
        return int(version.split(".")[0]) if version[0].isdigit() else 2

    def detect_api_version(self, *, timeout: float) -> ApiVersion | None:
        return ApiVersion.V2 if self.airflow_major >= 3 else ApiVersion.V1

    def authenticate(self, session: requests.Session, *, api_version: ApiVersion, timeout: float) -> None:
        try:
            token_response = self._mwaa().create_web_login_token(Name=self.environment_name)
        except Exception as e:
            raise AirflowAuthError(
                f"{self.describe()}: CreateWebLoginToken failed ({type(e).__name__}); check the IAM "
                "permission airflow:CreateWebLoginToken for this environment"
            ) from e
        self._hostname = token_response["WebServerHostname"]
        v3 = api_version is ApiVersion.V2
        login_url = f"{self.webserver_url}/{'pluginsv2/' if v3 else ''}aws_mwaa/login"
        # Through the client's own session: its TLS, CA bundle and proxy settings apply to the login
        # too. The old credentials are left out of the login request.
        session.cookies.clear()
        no_bearer: dict[str, Any] = {"Authorization": None}
        try:
            response = session.post(
                login_url,
                data={"token": token_response["WebToken"]},
                headers=no_bearer,
                timeout=timeout,
                allow_redirects=False,
            )
        except requests.RequestException as e:
            raise AirflowUnreachableError(
                f"{self.describe()}: cannot reach {login_url} ({type(e).__name__})", method="POST", url=login_url
            ) from None
        cookie_name = "_token" if v3 else "session"
        cookie = response.cookies.get(cookie_name) or session.cookies.get(cookie_name)
        if response.status_code in RETRY_STATUSES:
            raise AirflowResponseError(
                f"{self.describe()}: the MWAA login at {login_url} answered HTTP {response.status_code}",
                method="POST", url=login_url, status=response.status_code,
            )
        if response.status_code >= 400 or not cookie:
            raise AirflowAuthError(
                f"{self.describe()}: the MWAA login at {login_url} answered HTTP {response.status_code} "
                f"without a {cookie_name!r} cookie",
                method="POST", url=login_url, status=response.status_code,
            )
        self._cookie = cookie
        session.auth = None
        session.cookies.clear()
        if v3:
            session.headers["Authorization"] = f"Bearer {cookie}"
            expiry = jwt_expiry(cookie)
        else:
            session.cookies.set("session", cookie)
            expiry = None
        self._expires_at = expiry if expiry is not None else self.clock() + self.session_max_age

    def needs_refresh(self) -> bool:
        return self._expires_at is not None and self.clock() >= self._expires_at - EXPIRY_MARGIN

    def secret_values(self) -> tuple[str, ...]:
        return (self._cookie,) if self._cookie else ()

    def describe(self) -> str:
        return f"MwaaSessionAuthBackend for MWAA environment {self.environment_name!r}"

    def __repr__(self) -> str:
        return f"MwaaSessionAuthBackend(environment_name={self.environment_name!r}, region_name={self.region_name!r})"
