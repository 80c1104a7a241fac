"""Every answer is validated before use; one retry policy for requests and logins; clear errors that
name the request and never a secret. Driven by an in-process adapter that plays scripted answers."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import pytest
import requests
import requests.adapters

from airlift_client import (
    AirflowAuthError,
    AirflowBadResponseError,
    AirflowInstance,
    AirflowLoginPageError,
    AirflowResponseError,
    AirflowUnreachableError,
    AirliftClientError,
    BasicAuthBackend,
    RetryPolicy,
    TokenAuthBackend,
)
from airlift_protocol import ApiVersion

SECRET = "scripted-Sentinel-Secret"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZG1pbiJ9.c2lnbmF0dXJlLVNlbnRpbmVs"
URL = "http://airflow.test"

# An answer: (status, body, headers) or an exception instance to raise.
Answer = Any
Script = Callable[[requests.PreparedRequest, int], Answer]


def _dag(dag_id: str, **extra: Any) -> dict[str, Any]:
    return {"dag_id": dag_id, "file_token": f"tok-{dag_id}", "is_paused": False, "is_active": True, "is_stale": False,
            "fileloc": f"/dags/{dag_id}.py", "tags": [], "owners": ["airflow"], **extra}


def _dags(*dag_ids: str) -> dict[str, Any]:
    return {"dags": [_dag(d) for d in dag_ids], "total_entries": len(dag_ids)}


class _Headers:
    def __init__(self, headers: Mapping[str, str]) -> None:
        self.headers = headers

    def get_all(self, name: str, default: Any = None) -> Any:
        return [v for k, v in self.headers.items() if k.lower() == name.lower()] or default


class _Raw:
    """Enough of urllib3's response for requests to store the answer's cookies."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        self._original_response = type("Original", (), {"msg": _Headers(headers)})()


class ScriptAdapter(requests.adapters.BaseAdapter):
    """Answers from ``{(method, path): script}``; a script gets the request and how many times its
    route was called before (0-based) and returns an answer or an exception to raise."""

    def __init__(self, routes: Mapping[tuple[str, str], Script], *, generation: int = 3) -> None:
        super().__init__()
        version = "3.3.2" if generation == 3 else "2.11.2"
        base = "/api/v2" if generation == 3 else "/api/v1"
        self.routes: dict[tuple[str, str], Script] = {
            ("POST", "/auth/token"): lambda r, n: (201, {"access_token": JWT}),
            ("GET", f"{base}/version"): lambda r, n: (200, {"version": version, "git_version": None}),
            ("GET", "/login/"): lambda r, n: (404, {"detail": "no web login"}),
        }
        self.routes.update(routes)
        self.calls: dict[tuple[str, str], int] = {}
        self.lock = threading.Lock()

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        path = (request.path_url or "").split("?", 1)[0]
        key = (str(request.method), path)
        with self.lock:
            n = self.calls.get(key, 0)
            self.calls[key] = n + 1
        answer = self.routes.get(key, lambda r, n: (404, {"detail": "no route"}))(request, n)
        if isinstance(answer, BaseException):
            raise answer
        status, body, *rest = answer
        headers = rest[0] if rest else {}
        response = requests.Response()
        response.status_code = status
        if isinstance(body, (bytes, str)):
            response._content = body.encode() if isinstance(body, str) else body
            response.headers["Content-Type"] = headers.get("Content-Type", "application/json")
        else:
            response._content = json.dumps(body).encode()
            response.headers["Content-Type"] = "application/json"
        response.headers.update(headers)
        if "Set-Cookie" in headers:
            response.raw = _Raw(headers)
        response.url = str(request.url)
        response.request = request
        return response

    def close(self) -> None:
        pass


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def _instance(adapter: ScriptAdapter, *, api: str = "v2", attempts: int = 4, sleeps: Sleeps | None = None, **kwargs: Any) -> AirflowInstance:
    def factory() -> requests.Session:
        session = requests.Session()
        session.mount("http://", adapter)
        return session

    kwargs.setdefault("auth_backend", BasicAuthBackend(webserver_url=URL, username="admin", password=SECRET))
    return AirflowInstance(
        name="scripted",
        session_factory=factory,
        api_version=api,
        retry_policy=RetryPolicy(max_attempts=attempts, sleep=sleeps if sleeps is not None else Sleeps(), rand=lambda: 1.0),
        **kwargs,
    )


def _assert_no_secret(*texts: str) -> None:
    for text in texts:
        assert SECRET not in text and JWT not in text and "Sentinel" not in text, text


def _first_then(first: list[Answer], then: Answer) -> Script:
    return lambda r, n: first[n] if n < len(first) else then


# ---------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("body", "headers", "what"),
    [
        ('{"dags": [{"dag_id": "a", "file_tok', {}, "not JSON"),  # truncated
        ("Service temporarily unavailable", {"Content-Type": "text/plain"}, "not JSON"),
        ("<html><body>Sign in</body></html>", {"Content-Type": "text/html"}, "HTML page"),
    ],
)
def test_a_body_that_is_not_json_is_retried_then_a_clear_error(body: str, headers: dict[str, str], what: str, caplog: pytest.LogCaptureFixture) -> None:
    adapter = ScriptAdapter({("GET", "/api/v2/dags"): lambda r, n: (200, body, headers)})
    sleeps = Sleeps()
    inst = _instance(adapter, sleeps=sleeps, attempts=3)
    with pytest.raises((AirflowBadResponseError, AirflowLoginPageError)) as info:
        inst.list_dags()
    error = info.value
    assert isinstance(error, AirliftClientError)
    message = str(error)
    assert f"GET {URL}/api/v2/dags" in message and what in message and "HTTP 200" in message
    assert "3 attempt(s)" in message and error.attempts == 3 and error.status == 200 and error.url == f"{URL}/api/v2/dags"
    # a login page first makes the client log in again and repeat the request within the same attempt
    assert adapter.calls[("GET", "/api/v2/dags")] == (4 if what == "HTML page" else 3)
    _assert_no_secret(message, repr(error), caplog.text)


def test_truncated_json_then_a_good_answer_succeeds() -> None:
    truncated = (200, json.dumps(_dags("a", "b"))[:25])
    adapter = ScriptAdapter({("GET", "/api/v2/dags"): _first_then([truncated, truncated], (200, _dags("a", "b")))})
    inst = _instance(adapter)
    assert [d.dag_id for d in inst.list_dags()] == ["a", "b"]
    assert adapter.calls[("GET", "/api/v2/dags")] == 3


@pytest.mark.parametrize(
    ("path", "body", "call", "names"),
    [
        ("/api/v2/dags", {"dags": [{"dag_id": 7}], "total_entries": 1}, lambda i: i.list_dags(), ["the DAG list", "dags.0.dag_id"]),
        ("/api/v2/dags", {"items": []}, lambda i: i.list_dags(), ["dags: Field required"]),
        ("/api/v2/dags/d1/tasks", {"tasks": [{"task_id": None}]}, lambda i: i.list_tasks("d1"), ["DAG 'd1'", "tasks.0.task_id"]),
        ("/api/v2/dags/d1/dagRuns/r1", {"dag_id": "d1"}, lambda i: i.get_dag_run("d1", "r1"), ["run 'r1' of DAG 'd1'", "dag_run_id"]),
        ("/api/v2/dags/~/dagRuns/list", {"dag_runs": "nope", "total_entries": 1}, lambda i: list(i.iter_dag_runs()), ["the DAG run list"]),
        ("/api/v2/dagSources/d1", {"source": "x"}, lambda i: i.get_dag_source(_dag_info("d1")), ["the source of DAG 'd1'", "content"]),
    ],
)
def test_json_of_the_wrong_shape_names_the_request_and_the_field(path: str, body: Any, call: Callable[[AirflowInstance], Any], names: list[str]) -> None:
    method = "POST" if path.endswith("/list") else "GET"
    adapter = ScriptAdapter({(method, path): lambda r, n: (200, body)})
    inst = _instance(adapter)
    with pytest.raises(AirflowBadResponseError) as info:
        call(inst)
    message = str(info.value)
    assert f"{method} {URL}{path}" in message, message
    for name in names:
        assert name in message, message
    assert adapter.calls[(method, path)] == 1, "a well-formed answer of the wrong shape is not retried"


def _dag_info(dag_id: str) -> Any:
    from airlift_protocol import DagInfo

    return DagInfo.from_rest(_dag(dag_id), api=ApiVersion.V2)


def test_airflow2_truncated_dag_source_is_never_taken_as_the_source() -> None:
    good = {"content": "from airflow import DAG\n"}
    adapter = ScriptAdapter(
        {("GET", "/api/v1/dagSources/tok-d1"): _first_then([(200, '{"content": "from airf')], (200, good))}, generation=2
    )
    inst = _instance(adapter, api="v1")
    from airlift_protocol import DagInfo

    assert inst.get_dag_source(DagInfo.from_rest(_dag("d1"), api=ApiVersion.V1)) == good["content"]
    adapter = ScriptAdapter({("GET", "/api/v1/dagSources/tok-d1"): lambda r, n: (200, '{"content": "from airf')}, generation=2)
    with pytest.raises(AirflowBadResponseError, match="the source of DAG 'd1'"):
        _instance(adapter, api="v1").get_dag_source(DagInfo.from_rest(_dag("d1"), api=ApiVersion.V1))


def test_the_excerpt_never_shows_a_secret() -> None:
    echo = {"detail": f"bad request from admin:{SECRET}", "access_token": JWT, "cookie": "session=abc123"}
    adapter = ScriptAdapter({("GET", "/api/v2/dags"): lambda r, n: (400, echo)})
    with pytest.raises(AirflowResponseError) as info:
        _instance(adapter).list_dags()
    assert "HTTP 400" in str(info.value)
    _assert_no_secret(str(info.value), repr(info.value))
    adapter = ScriptAdapter({("GET", "/api/v2/dags"): lambda r, n: (200, {"dags": SECRET + JWT, "token": "abc", "total_entries": 1})})
    with pytest.raises(AirflowBadResponseError) as bad:
        _instance(adapter).list_dags()
    _assert_no_secret(str(bad.value))


# ---------------------------------------------------------------- retries
@pytest.mark.parametrize(
    "failure",
    [
        requests.exceptions.ChunkedEncodingError("Connection broken: IncompleteRead(10 bytes read, 90 more expected)"),
        requests.ConnectionError("Connection reset by peer"),
        requests.ReadTimeout("read timed out"),
        (503, {"detail": "busy"}),
        (429, {"detail": "slow down"}, {"Retry-After": "7"}),
    ],
    ids=["mid-body-close", "reset", "timeout", "503", "429"],
)
def test_transient_failures_of_reads_are_retried(failure: Answer) -> None:
    adapter = ScriptAdapter({("GET", "/api/v2/dags"): _first_then([failure], (200, _dags("a")))})
    sleeps = Sleeps()
    assert [d.dag_id for d in _instance(adapter, sleeps=sleeps).list_dags()] == ["a"]
    assert adapter.calls[("GET", "/api/v2/dags")] == 2
    assert sleeps == ([7.0] if isinstance(failure, tuple) and failure[0] == 429 else [0.5])


def test_the_final_error_gives_the_attempt_count_and_url() -> None:
    adapter = ScriptAdapter({("GET", "/api/v2/dags"): lambda r, n: requests.exceptions.ChunkedEncodingError("IncompleteRead")})
    with pytest.raises(AirflowUnreachableError) as info:
        _instance(adapter, attempts=3).list_dags()
    assert "4 attempt" not in str(info.value) and "3 attempt(s)" in str(info.value)
    assert f"{URL}/api/v2/dags" in str(info.value) and "ChunkedEncodingError" in str(info.value)
    assert info.value.attempts == 3


def test_the_deadline_bounds_a_call() -> None:
    now = [0.0]
    adapter = ScriptAdapter({("GET", "/api/v2/dags"): lambda r, n: (503, {"detail": "busy"}, {"Retry-After": "40"})})

    def sleep(seconds: float) -> None:
        now[0] += seconds

    inst = _instance(adapter, api="v2")
    inst._transport.retry = RetryPolicy(max_attempts=50, deadline=100.0, sleep=sleep, clock=lambda: now[0])
    with pytest.raises(AirflowResponseError, match=r"HTTP 503.*3 attempt\(s\)"):
        inst.list_dags()
    assert now[0] == 80.0


def test_a_trigger_is_never_retried_blindly() -> None:
    adapter = ScriptAdapter({("POST", "/api/v2/dags/d1/dagRuns"): lambda r, n: requests.exceptions.ChunkedEncodingError("cut")})
    with pytest.raises(AirflowUnreachableError, match="1 attempt"):
        _instance(adapter).trigger_dag("d1")
    assert adapter.calls[("POST", "/api/v2/dags/d1/dagRuns")] == 1


@pytest.mark.parametrize("failure", [(429, {"detail": "x"}, {"Retry-After": "1"}), (502, "Bad gateway", {"Content-Type": "text/html"}), (503, {"detail": "x"}), requests.ConnectionError("reset"), (200, '{"access_tok')])
def test_airflow3_token_login_is_retried(failure: Answer) -> None:
    adapter = ScriptAdapter({
        ("POST", "/auth/token"): _first_then([failure, failure], (201, {"access_token": JWT})),
        ("GET", "/api/v2/dags"): lambda r, n: (200, _dags("a")),
    })
    assert [d.dag_id for d in _instance(adapter).list_dags()] == ["a"]
    assert adapter.calls[("POST", "/auth/token")] == 3


def test_airflow3_token_login_gives_up_with_attempts_and_no_secret() -> None:
    adapter = ScriptAdapter({("POST", "/auth/token"): lambda r, n: (503, {"detail": f"echo {SECRET}"})})
    with pytest.raises(AirflowResponseError) as info:
        _instance(adapter, attempts=2).list_dags()
    assert "/auth/token" in str(info.value) and "2 attempt(s)" in str(info.value)
    _assert_no_secret(str(info.value))


def test_wrong_credentials_are_not_retried() -> None:
    adapter = ScriptAdapter({("POST", "/auth/token"): lambda r, n: (401, {"detail": "Invalid credentials"})})
    with pytest.raises(AirflowAuthError, match="refused the credentials"):
        _instance(adapter).list_dags()
    assert adapter.calls[("POST", "/auth/token")] == 1


def test_airflow2_web_login_is_retried_on_5xx() -> None:
    form = '<form><input name="csrf_token" type="hidden" value="csrf1"></form>'

    def login_post(r: requests.PreparedRequest, n: int) -> Answer:
        return (302, "", {"Set-Cookie": "session=s1; Path=/", "Location": "/home", "Content-Type": "text/html"})

    adapter = ScriptAdapter({
        ("GET", "/login/"): _first_then([(502, "bad gateway", {"Content-Type": "text/html"})], (200, form, {"Content-Type": "text/html"})),
        ("POST", "/login/"): login_post,
        ("GET", "/api/v1/dags"): lambda r, n: (200, _dags("a")) if "session=s1" in str(r.headers.get("Cookie")) else (401, {"detail": "no"}),
    }, generation=2)
    inst = _instance(adapter, api="v1")
    assert [d.dag_id for d in inst.list_dags()] == ["a"]
    assert adapter.calls[("GET", "/login/")] == 2
    backend = inst.auth_backend
    assert isinstance(backend, BasicAuthBackend) and backend.v1_mode == "session"


def test_concurrent_401s_log_in_once() -> None:
    tokens = iter(f"token-{i}" for i in range(100))
    current = {"token": ""}
    barrier = threading.Barrier(8)
    lock = threading.Lock()

    def token(r: requests.PreparedRequest, n: int) -> Answer:
        with lock:
            current["token"] = next(tokens)
            return (201, {"access_token": current["token"]})

    def tasks(r: requests.PreparedRequest, n: int) -> Answer:
        if n < 8:  # the first request of each thread: all with the first token, which expires
            barrier.wait(timeout=10)
            return (401, {"detail": "expired"})
        assert r.headers["Authorization"] == f"Bearer {current['token']}"
        return (200, {"tasks": [{"task_id": "t", "downstream_task_ids": []}], "total_entries": 1})

    adapter = ScriptAdapter({("POST", "/auth/token"): token})
    for i in range(8):
        adapter.routes[("GET", f"/api/v2/dags/d{i}/tasks")] = lambda r, n, i=i: tasks(r, adapter.calls_total(i))
    counter = {"n": 0}

    def calls_total(i: int) -> int:
        with lock:
            counter["n"] += 1
            return counter["n"] - 1

    adapter.calls_total = calls_total  # type: ignore[attr-defined]
    inst = _instance(adapter, max_workers=8)
    result = inst.list_tasks_for_dags([f"d{i}" for i in range(8)])
    assert sorted(result) == [f"d{i}" for i in range(8)]
    assert adapter.calls[("POST", "/auth/token")] == 2, "one login, then ONE re-login for eight 401s"


def test_token_provider_is_called_again_once_for_concurrent_401s() -> None:
    calls = []
    adapter = ScriptAdapter({("GET", "/api/v2/dags"): _first_then([(401, {"detail": "expired"})], (200, _dags("a")))})
    backend = TokenAuthBackend(URL, token_provider=lambda: calls.append(1) or f"tok{len(calls)}")
    assert [d.dag_id for d in _instance(adapter, auth_backend=backend).list_dags()] == ["a"]
    assert len(calls) == 2


# ---------------------------------------------------------------- generation detection
def test_detection_is_authenticated_and_not_fooled_by_a_garbled_health_answer() -> None:
    adapter = ScriptAdapter({
        ("GET", "/api/v2/monitor/health"): lambda r, n: (200, "<html>proxy</html>", {"Content-Type": "text/html"}),
        ("GET", "/api/v1/health"): lambda r, n: (200, {"metadatabase": {"status": "healthy"}}),
        ("GET", "/api/v1/version"): lambda r, n: (404, {"detail": "gone"}),
    }, generation=3)
    inst = _instance(adapter, api=None)  # type: ignore[arg-type]
    assert inst.api_version is ApiVersion.V2
    assert adapter.calls[("GET", "/api/v2/version")] == 1


def test_detection_behind_an_auth_proxy() -> None:
    adapter = ScriptAdapter({
        ("GET", "/api/v2/monitor/health"): lambda r, n: (403, "<html>sign in</html>", {"Content-Type": "text/html"}),
        ("GET", "/api/v1/health"): lambda r, n: (403, "<html>sign in</html>", {"Content-Type": "text/html"}),
        ("GET", "/api/v2/version"): lambda r, n: (200, {"version": "3.3.2"}) if "Bearer" in str(r.headers.get("Authorization")) else (401, {}),
    }, generation=3)
    assert _instance(adapter, api=None).api_version is ApiVersion.V2  # type: ignore[arg-type]


def test_a_wrong_api_version_is_a_clear_error() -> None:
    adapter = ScriptAdapter({}, generation=3)
    with pytest.raises(AirflowResponseError, match=r"api_version='v1' was given.*pass api_version='v2'"):
        _instance(adapter, api="v1").list_dags()
    adapter = ScriptAdapter({("GET", "/api/v1/version"): lambda r, n: (200, {"version": "3.3.2"})}, generation=3)
    with pytest.raises(AirflowResponseError, match=r"reports Airflow 3.3.2"):
        _instance(adapter, api="v1").list_dags()
    with pytest.raises(ValueError, match="api_version='v9'"):
        _instance(adapter, api="v9")


def test_nothing_like_airflow_is_a_clear_error() -> None:
    adapter = ScriptAdapter({("GET", "/api/v2/version"): lambda r, n: (200, {"hello": "world"})}, generation=3)
    with pytest.raises(AirflowResponseError, match="does not look like an Airflow 2 or 3 webserver.*api_version="):
        _instance(adapter, api=None).list_dags()  # type: ignore[arg-type]


# ---------------------------------------------------------------- TLS and proxies
def test_tls_options(caplog: pytest.LogCaptureFixture, tmp_path: Any) -> None:
    import airlift_client.instance as instance_module

    made: list[requests.Session] = []
    adapter = ScriptAdapter({("GET", "/api/v2/dags"): lambda r, n: (200, _dags())})

    def factory() -> requests.Session:
        session = requests.Session()
        session.mount("http://", adapter)
        made.append(session)
        return session

    backend = BasicAuthBackend(webserver_url=URL, username="admin", password=SECRET)
    AirflowInstance(auth_backend=backend, name="a", session_factory=factory, api_version="v2").list_dags()
    assert made[-1].verify is True and made[-1].trust_env, "verification on and proxy variables honoured by default"
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    AirflowInstance(auth_backend=backend, name="a", session_factory=factory, api_version="v2", ca_bundle=str(bundle)).list_dags()
    assert made[-1].verify == str(bundle)
    instance_module._insecure_warned.clear()
    with caplog.at_level(logging.WARNING, logger="airlift_client"):
        for _ in range(3):
            AirflowInstance(auth_backend=backend, name="a", session_factory=factory, api_version="v2", verify=False).list_dags()
    assert made[-1].verify is False
    assert caplog.text.count("verify=False") == 1, "the warning is logged once"
    with pytest.raises(ValueError, match="not both"):
        AirflowInstance(auth_backend=backend, name="a", verify=False, ca_bundle=str(bundle))


def test_proxy_variables_are_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    import http.server

    class Proxy(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            body = json.dumps({"version": "3.3.2"} if self.path.endswith("/version") else _dags("via_proxy")).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            seen.append(self.path)
            body = json.dumps({"access_token": JWT}).encode()
            self.send_response(201)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{server.server_port}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        inst = AirflowInstance(
            auth_backend=BasicAuthBackend(webserver_url="http://airflow.invalid", username="admin", password=SECRET),
            name="proxied", api_version="v2", timeout=5,
        )
        assert [d.dag_id for d in inst.list_dags()] == ["via_proxy"]
    finally:
        server.shutdown()
        server.server_close()
    assert "http://airflow.invalid/auth/token" in seen, "the token login goes through the proxy"
    assert any(p.startswith("http://airflow.invalid/api/v2/dags") for p in seen)


def test_default_session_reads_the_proxy_variables_again_after_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    from airlift_client.instance import _pooled_session

    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    session = _pooled_session(2)
    url = "http://airflow.invalid/api/v2/dags"
    assert "http" not in session.merge_environment_settings(url, {}, None, None, None)["proxies"]
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    assert "http" not in session.merge_environment_settings(url, {}, None, None, None)["proxies"], "one reading per second"
    assert session.merge_environment_settings("http://other.invalid/x", {}, None, None, None)["proxies"]["http"] == "http://proxy.invalid:3128"
    session.ENV_TTL = 0.0
    time.sleep(0.01)
    assert session.merge_environment_settings(url, {}, None, None, None)["proxies"]["http"] == "http://proxy.invalid:3128"
    session.trust_env = False
    assert session.merge_environment_settings(url, {}, None, None, None)["proxies"] == {}


def test_login_page_after_a_relogin_is_retried_then_named() -> None:
    page = (200, "<!DOCTYPE html><html>Sign in</html>", {"Content-Type": "text/html"})
    adapter = ScriptAdapter({("GET", "/api/v2/dags"): _first_then([page, page], (200, _dags("a")))})
    assert [d.dag_id for d in _instance(adapter).list_dags()] == ["a"]
    adapter = ScriptAdapter({("GET", "/api/v2/dags"): lambda r, n: page})
    with pytest.raises(AirflowLoginPageError, match="login page"):
        _instance(adapter, attempts=2).list_dags()


def test_public_surface_is_documented_and_has_no_private_aliases() -> None:
    import ast
    from pathlib import Path

    import airlift_client

    for name in airlift_client.__all__:
        value = getattr(airlift_client, name)
        if isinstance(value, type) or callable(value):
            assert not value.__module__.split(".")[-1].startswith("_"), f"{name} is a private object"
            assert (value.__doc__ or "").strip(), f"{name} has no docstring"
    links = airlift_client.ui_links_for(ApiVersion.V2, URL + "/")
    assert isinstance(links, airlift_client.AirflowUiLinks)
    assert links.log_url("d", "r", "t", try_number=2) == f"{URL}/dags/d/runs/r/tasks/t?try_number=2"
    for path in Path(airlift_client.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id != "print", f"{path.name}:{node.lineno} prints; log through logging"


def test_detection_on_a_busy_server_says_so_instead_of_guessing() -> None:
    adapter = ScriptAdapter({
        ("GET", "/api/v2/monitor/health"): lambda r, n: (503, {"detail": "busy"}),
        ("GET", "/api/v1/health"): lambda r, n: (503, {"detail": "busy"}),
        ("POST", "/auth/token"): lambda r, n: (503, {"detail": "busy"}),
    }, generation=3)
    with pytest.raises(AirflowResponseError, match=r"/auth/token failed with HTTP 503.*2 attempt\(s\)") as info:
        _instance(adapter, api=None, attempts=2).list_dags()  # type: ignore[arg-type]
    assert "does not look like" not in str(info.value)
