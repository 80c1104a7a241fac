"""Astronomer (Astro) auth: a deployment's Airflow REST API with an Astro API token.

An Astro Deployment serves Airflow at its deployment URL, ``https://<organization>.astronomer.run/<deployment>``
(Deployment → Details → URL in the Astro UI; the REST API is under it, ``/api/v1`` on Airflow 2 runtimes,
``/api/v2`` on Airflow 3). It accepts ``Authorization: Bearer <API token>`` where the token is a
Deployment, Workspace or Organization API token with access to the deployment. Tokens expire (their
JWT says when) and can be rotated: give ``token_provider`` to fetch the current one; it is called again
before the token expires and after a 401.

>>> AstronomerAuthBackend("https://myorg.astronomer.run/d8nu8sxx/", token="...")
AstronomerAuthBackend(deployment_url='https://myorg.astronomer.run/d8nu8sxx')
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from airlift_client._managed import probe_with_credentials
from airlift_client.auth import TokenAuthBackend
from airlift_protocol import ApiVersion

__all__ = ["TOKEN_ENV", "AstronomerAuthBackend", "normalize_deployment_url"]

#: Environment variable read when neither ``token`` nor ``token_provider`` is given.
TOKEN_ENV = "ASTRO_API_TOKEN"
_TRAILING = re.compile(r"(/api/v[12])?(/home)?/*$")


def normalize_deployment_url(url: str) -> str:
    """The deployment URL without a trailing ``/api/v1``, ``/api/v2``, ``/home`` or slash.

    Raises ``ValueError`` naming the URL for an Astro UI URL (``cloud.astronomer.io``), a URL without
    scheme, or an ``astronomer.run`` URL without the deployment path.

    >>> normalize_deployment_url("https://myorg.astronomer.run/d8nu8sxx/api/v1")
    'https://myorg.astronomer.run/d8nu8sxx'
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"Astronomer deployment URL {url!r} must start with https:// (e.g. https://<organization>.astronomer.run/<deployment>)")
    if parts.hostname == "cloud.astronomer.io" or parts.hostname.endswith(".cloud.astronomer.io"):
        raise ValueError(
            f"{url!r} is an Astro UI page, not a deployment URL; copy the URL from Deployment → Details "
            "(https://<organization>.astronomer.run/<deployment>)"
        )
    path = _TRAILING.sub("", parts.path)
    if parts.hostname.endswith(".astronomer.run") and not path.strip("/"):
        raise ValueError(f"Astronomer deployment URL {url!r} lacks the deployment id: https://<organization>.astronomer.run/<deployment>")
    return f"{parts.scheme}://{parts.netloc}{path}"


class AstronomerAuthBackend(TokenAuthBackend):
    """An Astro Deployment with an API token (``token``, ``token_provider``, or ``$ASTRO_API_TOKEN``)."""

    def __init__(
        self,
        deployment_url: str,
        *,
        token: str | None = None,
        token_provider: Callable[[], str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        url = normalize_deployment_url(deployment_url)
        if token is None and token_provider is None:
            token = os.environ.get(TOKEN_ENV) or None
            if token is None:
                raise ValueError(
                    f"AstronomerAuthBackend for {url}: give token= or token_provider=, or set {TOKEN_ENV} "
                    "(a Deployment, Workspace or Organization API token)"
                )
        super().__init__(url, token=token, token_provider=token_provider, clock=clock)

    def detect_api_version(self, *, timeout: float) -> ApiVersion | None:
        return probe_with_credentials(self, timeout=timeout)

    def describe(self) -> str:
        return f"AstronomerAuthBackend for deployment {self.webserver_url}"

    def __repr__(self) -> str:
        return f"AstronomerAuthBackend(deployment_url={self.webserver_url!r})"
