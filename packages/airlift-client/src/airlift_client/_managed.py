"""Shared by the managed-Airflow backends whose front door wants credentials on every path."""

from __future__ import annotations

import requests

from airlift_client._sessions import CredentialsSession
from airlift_client.auth import AuthBackend
from airlift_client.errors import AirflowUnreachableError
from airlift_protocol import ApiVersion

__all__ = ["probe_with_credentials"]


def probe_with_credentials(backend: AuthBackend, *, timeout: float) -> ApiVersion | None:
    """The REST generation, from the health endpoints asked with the backend's credentials (Cloud
    Composer and Astro refuse anonymous requests, even to health). None if neither answers JSON:
    the client then probes anonymously and names what it saw."""
    with CredentialsSession() as probe:
        backend.authenticate(probe, api_version=ApiVersion.V2, timeout=timeout)
        for api, path in ((ApiVersion.V2, "/api/v2/monitor/health"), (ApiVersion.V1, "/api/v1/health")):
            url = backend.webserver_url + path
            try:
                response = probe.get(url, timeout=timeout)
            except requests.RequestException as e:
                raise AirflowUnreachableError(f"{backend.describe()}: cannot reach {url} ({type(e).__name__})") from None
            if response.status_code == 200 and "json" in response.headers.get("Content-Type", ""):
                return api
    return None
