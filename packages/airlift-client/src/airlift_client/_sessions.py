"""The ``requests`` session every Airlift request to Airflow goes through: credentials come from the
auth backend only.

requests applies a ~/.netrc (or ``$NETRC``) entry for the host to every request that has no ``auth``
of its own, and to redirects: a curl user's netrc entry would replace a bearer token in the session's
headers with the file's Basic credentials, and send that password to the server. Here it never does.
"""

from __future__ import annotations

import requests
import requests.auth

__all__ = ["CredentialsSession"]


class _KeepHeaders(requests.auth.AuthBase):
    """The ``auth`` of a request whose credentials are the session's headers or cookies: requests
    leaves the request as it is instead of looking in ~/.netrc."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        return request


_KEEP_HEADERS = _KeepHeaders()


class CredentialsSession(requests.Session):
    """A session whose only credentials are those an auth backend puts on it."""

    def prepare_request(self, request: requests.Request) -> requests.PreparedRequest:
        if request.auth is None and self.auth is None:
            request.auth = _KEEP_HEADERS
        return super().prepare_request(request)

    def rebuild_auth(self, prepared_request: requests.PreparedRequest, response: requests.Response) -> None:
        """On a redirect, drop the Authorization header when the host changes (as requests does), and
        never take credentials from ~/.netrc."""
        strip = self.should_strip_auth(str(response.request.url), str(prepared_request.url))  # type: ignore[no-untyped-call]
        if "Authorization" in prepared_request.headers and strip:
            del prepared_request.headers["Authorization"]
