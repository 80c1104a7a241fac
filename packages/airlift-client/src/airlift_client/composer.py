"""Google Cloud Composer auth (extra ``[composer]``, google-auth).

Composer 2 and 3 environments (Airflow 2 and 3) serve Airflow's REST API at the environment's
Airflow web UI URL (``config.airflowUri``, ``https://<id>-dot-<region>.composer.googleusercontent.com``).
It accepts ``Authorization: Bearer <Google OAuth 2.0 access token>`` of a principal that holds the
Composer User role and an Airflow role; ID tokens (Composer 1's IAP) are refused. The backend gets
access tokens from google-auth credentials (Application Default Credentials unless given), refreshes
them before they expire and after a 401, and asks the Composer API (through google-auth's
``AuthorizedSession``) for the web UI URL and the Airflow version when given the environment name.

>>> backend = ComposerAuthBackend(environment="projects/p/locations/us-central1/environments/prod")  # doctest: +SKIP
>>> backend = ComposerAuthBackend("https://abc-dot-us-central1.composer.googleusercontent.com")  # doctest: +SKIP
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import timezone
from typing import Any

import requests

from airlift_client._managed import probe_with_credentials
from airlift_client.auth import EXPIRY_MARGIN, AuthBackend, jwt_expiry
from airlift_client.errors import AirflowAuthError, AirflowUnreachableError
from airlift_protocol import ApiVersion

__all__ = ["COMPOSER_API", "SCOPE", "ComposerAuthBackend"]

#: OAuth scope the access tokens are requested with.
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
#: The Cloud Composer API (environments.get).
COMPOSER_API = "https://composer.googleapis.com/v1"
_ENVIRONMENT = re.compile(r"projects/[^/]+/locations/[^/]+/environments/[^/]+")
_IMAGE_AIRFLOW = re.compile(r"airflow-(\d+)\.(\d+)")


class ComposerAuthBackend(AuthBackend):
    """Google access tokens for a Cloud Composer 2/3 environment.

    Give the environment's Airflow web UI URL, or ``environment="projects/<p>/locations/<region>/environments/<name>"``
    (the URL and the Airflow version are then read from the Composer API). ``credentials`` are any
    google-auth credentials (default: ``google.auth.default()`` with the cloud-platform scope).
    ``composer_api`` is for tests only.
    """

    def __init__(
        self,
        webserver_url: str | None = None,
        *,
        environment: str | None = None,
        credentials: Any = None,
        composer_api: str = COMPOSER_API,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if (webserver_url is None) == (environment is None):
            raise ValueError(
                "ComposerAuthBackend needs exactly one of webserver_url= (the environment's Airflow web UI URL) "
                "or environment='projects/<project>/locations/<region>/environments/<name>'"
            )
        if environment is not None and not _ENVIRONMENT.fullmatch(environment):
            raise ValueError(
                f"ComposerAuthBackend: environment {environment!r} is not of the form "
                "'projects/<project>/locations/<region>/environments/<name>'"
            )
        self.environment = environment
        self.composer_api = composer_api.rstrip("/")
        self.clock = clock
        self._credentials = credentials
        self._url = webserver_url.rstrip("/") if webserver_url else None
        self._airflow_major: int | None = None
        self._expires_at: float | None = None
        super().__init__(webserver_url or "")

    # The web UI URL may come from the Composer API.
    @property  # type: ignore[override]
    def webserver_url(self) -> str:
        if self._url is None:
            self._describe_environment(timeout=30.0)
        assert self._url is not None
        return self._url

    @webserver_url.setter
    def webserver_url(self, value: str) -> None:
        pass

    def _google(self) -> Any:
        try:
            import google.auth
            import google.auth.exceptions
            import google.auth.transport.requests
        except ImportError:  # pragma: no cover - depends on the extra
            raise AirflowAuthError("ComposerAuthBackend needs google-auth: pip install 'airlift-client[composer]'") from None
        return google.auth

    def credentials(self) -> Any:
        """The google-auth credentials in use (Application Default Credentials unless given)."""
        if self._credentials is None:
            google_auth = self._google()
            try:
                self._credentials, _ = google_auth.default(scopes=[SCOPE])
            except google_auth.exceptions.DefaultCredentialsError as e:
                raise AirflowAuthError(
                    f"{self.describe()}: no Google credentials found ({type(e).__name__}). Run "
                    "`gcloud auth application-default login`, set GOOGLE_APPLICATION_CREDENTIALS, or pass credentials="
                ) from None
        return self._credentials

    def _describe_environment(self, *, timeout: float) -> None:
        google_auth = self._google()
        url = f"{self.composer_api}/{self.environment}"
        with google_auth.transport.requests.AuthorizedSession(self.credentials()) as api:
            try:
                response = api.get(url, timeout=timeout)
            except google_auth.exceptions.RefreshError as e:
                raise AirflowAuthError(f"{self.describe()}: refreshing the Google credentials failed ({type(e).__name__})") from None
            except requests.RequestException as e:
                raise AirflowUnreachableError(f"{self.describe()}: cannot reach the Composer API at {url} ({type(e).__name__})") from None
        if response.status_code in (401, 403):
            raise AirflowAuthError(
                f"{self.describe()}: the Composer API refused to describe the environment (HTTP {response.status_code}); "
                "the principal needs composer.environments.get (e.g. the Composer User role)",
                status=response.status_code,
            )
        if response.status_code == 404:
            raise AirflowAuthError(f"{self.describe()}: the Composer API does not know this environment (HTTP 404)", status=404)
        if response.status_code >= 400:
            raise AirflowAuthError(f"{self.describe()}: the Composer API answered HTTP {response.status_code}", status=response.status_code)
        config = response.json().get("config") or {}
        airflow_uri = config.get("airflowUri")
        if not airflow_uri:
            raise AirflowAuthError(f"{self.describe()}: the environment has no Airflow web UI yet (config.airflowUri is empty)")
        self._url = str(airflow_uri).rstrip("/")
        image = str((config.get("softwareConfig") or {}).get("imageVersion") or "")
        found = _IMAGE_AIRFLOW.search(image)
        self._airflow_major = int(found.group(1)) if found else None

    def detect_api_version(self, *, timeout: float) -> ApiVersion | None:
        if self.environment is None:
            return probe_with_credentials(self, timeout=timeout)
        if self._airflow_major is None:
            self._describe_environment(timeout=timeout)
        if self._airflow_major is None:
            return None
        return ApiVersion.V2 if self._airflow_major >= 3 else ApiVersion.V1

    def authenticate(self, session: requests.Session, *, api_version: ApiVersion, timeout: float) -> None:
        google_auth = self._google()
        credentials = self.credentials()
        token_session = requests.Session()  # the token endpoint never sees the Airflow session's headers
        try:
            credentials.refresh(google_auth.transport.requests.Request(session=token_session))
        except google_auth.exceptions.RefreshError as e:
            raise AirflowAuthError(
                f"{self.describe()}: refreshing the Google credentials failed ({type(e).__name__}); check them with "
                "`gcloud auth application-default print-access-token`"
            ) from None
        except requests.RequestException as e:
            raise AirflowUnreachableError(f"{self.describe()}: cannot reach Google's token endpoint ({type(e).__name__})") from None
        finally:
            token_session.close()
        token = str(credentials.token or "")
        if not token:
            raise AirflowAuthError(f"{self.describe()}: the Google credentials gave no access token")
        if jwt_expiry(token) is not None:
            raise AirflowAuthError(
                f"{self.describe()}: the credentials give an ID token (a JWT); Composer 2/3 accept OAuth access tokens. "
                "Use user or service-account credentials with the cloud-platform scope, not ID-token credentials."
            )
        session.auth = None
        session.headers["Authorization"] = f"Bearer {token}"
        expiry = getattr(credentials, "expiry", None)  # naive UTC datetime in google-auth
        self._expires_at = expiry.replace(tzinfo=timezone.utc).timestamp() if expiry is not None else None

    def needs_refresh(self) -> bool:
        return self._expires_at is not None and self.clock() >= self._expires_at - EXPIRY_MARGIN

    def describe(self) -> str:
        where = f"Composer environment {self.environment!r}" if self.environment else self._url
        return f"ComposerAuthBackend for {where}"

    def __repr__(self) -> str:
        if self.environment:
            return f"ComposerAuthBackend(environment={self.environment!r})"
        return f"ComposerAuthBackend(webserver_url={self._url!r})"
