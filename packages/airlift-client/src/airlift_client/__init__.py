"""airlift-client: one REST client for Airflow 2 (``/api/v1``) and Airflow 3 (``/api/v2``).

>>> from airlift_client import AirflowInstance, BasicAuthBackend
>>> airflow_instance = AirflowInstance(
...     auth_backend=BasicAuthBackend(webserver_url="http://localhost:8080", username="admin", password="admin"),
...     name="airflow_instance_one",
... )

``MwaaSessionAuthBackend`` (AWS MWAA) needs the ``[mwaa]`` extra (boto3) and is imported lazily;
``ComposerAuthBackend`` (Cloud Composer 2/3) needs the ``[composer]`` extra (google-auth), imported
when it first authenticates; ``AstronomerAuthBackend`` (Astro) needs nothing more.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airlift_client.astronomer import AstronomerAuthBackend
from airlift_client.auth import AuthBackend, BasicAuthBackend, TokenAuthBackend
from airlift_client.composer import ComposerAuthBackend
from airlift_client.errors import (
    AirflowAuthError,
    AirflowBadResponseError,
    AirflowLoginPageError,
    AirflowNotFoundError,
    AirflowResponseError,
    AirflowRunTimeoutError,
    AirflowUnreachableError,
    AirliftClientError,
    AuditLogForbiddenError,
    AuditLogUnavailableError,
)
from airlift_client.instance import AirflowInstance, TooManyRows, release_tuple
from airlift_client.links import AirflowUiLinks, ui_links_for
from airlift_client.retry import RetryPolicy
from airlift_client.version import __version__

if TYPE_CHECKING:
    from airlift_client.mwaa import MwaaSessionAuthBackend

__all__ = [
    "AirflowAuthError",
    "AirflowBadResponseError",
    "AirflowInstance",
    "AirflowLoginPageError",
    "AirflowNotFoundError",
    "AirflowResponseError",
    "AirflowRunTimeoutError",
    "AirflowUiLinks",
    "AirflowUnreachableError",
    "AirliftClientError",
    "AstronomerAuthBackend",
    "AuditLogForbiddenError",
    "AuditLogUnavailableError",
    "AuthBackend",
    "BasicAuthBackend",
    "ComposerAuthBackend",
    "MwaaSessionAuthBackend",
    "RetryPolicy",
    "TokenAuthBackend",
    "TooManyRows",
    "__version__",
    "release_tuple",
    "ui_links_for",
]


def __getattr__(name: str) -> Any:
    if name == "MwaaSessionAuthBackend":
        from airlift_client.mwaa import MwaaSessionAuthBackend

        return MwaaSessionAuthBackend
    raise AttributeError(f"module 'airlift_client' has no attribute {name!r}")
