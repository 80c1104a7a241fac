"""MwaaSessionAuthBackend with botocore's Stubber (moto has no MWAA) and a local web server that plays
the MWAA login endpoint in front of the fake Airflow REST API."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import boto3
import pytest
import requests
from botocore.stub import Stubber

from airlift_client import AirflowAuthError, AirflowInstance
from airlift_client.mwaa import MwaaSessionAuthBackend
from airlift_testing.fake_airflow import EPOCH, FakeAirflow, FakeAirflowState

WEB_TOKEN = "web-login-token-SENTINEL"


class MwaaWebServer:
    """Plays the MWAA web server: /aws_mwaa/login (Airflow 2) or /pluginsv2/aws_mwaa/login (Airflow 3)
    exchanges a web token for a cookie; API calls with a valid cookie/JWT are proxied to the fake."""

    def __init__(self, fake: FakeAirflow) -> None:
        self.fake = fake
        self.logins = 0
        self.valid: set[str] = set()
        self.api_calls: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if self.path.startswith("/api/"):  # the batch endpoints (POST .../list)
                    self._api("POST", raw)
                    return
                form = parse_qs(raw.decode())
                v3 = outer.fake.generation == 3
                expected = "/pluginsv2/aws_mwaa/login" if v3 else "/aws_mwaa/login"
                if self.path != expected or form.get("token") != [WEB_TOKEN]:
                    self._reply(403, b"denied", {"Content-Type": "text/plain"})
                    return
                outer.logins += 1
                if v3:
                    token = outer.fake_token()
                    cookie = f"_token={token}; Path=/"
                else:
                    token = f"sess{outer.logins}"
                    cookie = f"session={token}; Path=/; HttpOnly"
                outer.valid.add(token)
                self._reply(302, b"", {"Set-Cookie": cookie, "Location": "/"})

            def do_GET(self) -> None:
                self._api("GET", b"")

            def _api(self, method: str, body: bytes) -> None:
                v3 = outer.fake.generation == 3
                if v3:
                    token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
                else:
                    token = next((c.split("=", 1)[1] for c in (self.headers.get("Cookie") or "").split("; ") if c.startswith("session=")), "")
                if self.path.startswith("/api/") and "health" not in self.path and token not in outer.valid:
                    self._reply(403 if not v3 else 401, b'{"detail": "expired"}', {"Content-Type": "application/json"})
                    return
                headers = dict(self.headers)
                if v3:
                    headers["Authorization"] = outer.fake_bearer
                else:
                    headers["Authorization"] = "Basic " + base64.b64encode(b"admin:admin").decode()
                headers.pop("Cookie", None)
                upstream = requests.request(method, outer.fake.url + self.path, headers=headers, data=body or None, timeout=5)
                outer.api_calls.append(f"{method} {self.path.split('?')[0]}")
                self._reply(upstream.status_code, upstream.content, {"Content-Type": upstream.headers.get("Content-Type", "application/json")})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.fake_bearer = ""
        if fake.generation == 3:
            token = requests.post(f"{fake.url}/auth/token", json={"username": "admin", "password": "admin"}, timeout=5).json()["access_token"]
            self.fake_bearer = f"Bearer {token}"

    def fake_token(self) -> str:
        payload = base64.urlsafe_b64encode(json.dumps({"exp": int(time.time()) + 3600, "n": self.logins}).encode()).decode().rstrip("=")
        return f"h.{payload}.s"

    @property
    def hostname(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(params=[("2.10.3", 2), ("3.0.6", 3)], ids=["mwaa-airflow2", "mwaa-airflow3"])
def mwaa(request: pytest.FixtureRequest) -> Iterator[tuple[MwaaSessionAuthBackend, Stubber, MwaaWebServer]]:
    airflow_version, generation = request.param
    fake = FakeAirflow(FakeAirflowState.generate(dags=3, tasks_per_dag=1, runs_per_dag=2), generation=generation).start()
    web = MwaaWebServer(fake)
    client = boto3.client("mwaa", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    stubber = Stubber(client)
    stubber.add_response("get_environment", {"Environment": {"Name": "env", "AirflowVersion": airflow_version, "WebserverUrl": web.hostname}}, {"Name": "env"})
    for _ in range(3):
        stubber.add_response("create_web_login_token", {"WebToken": WEB_TOKEN, "WebServerHostname": web.hostname}, {"Name": "env"})
    stubber.activate()
    backend = MwaaSessionAuthBackend(environment_name="env", mwaa_client=client, scheme="http")
    yield backend, stubber, web
    web.stop()
    fake.stop()


def test_mwaa_login_and_api_generation(mwaa: tuple[MwaaSessionAuthBackend, Stubber, MwaaWebServer]) -> None:
    backend, _, web = mwaa
    inst = AirflowInstance(auth_backend=backend, name="mwaa_env")
    assert [d.dag_id for d in inst.list_dags()] == ["dag_00000", "dag_00001", "dag_00002"]
    assert inst.api_version.airflow_major == web.fake.generation
    assert web.logins == 1
    assert inst.webserver_url == f"http://{web.hostname}"


def test_mwaa_session_is_renewed_when_it_expires(mwaa: tuple[MwaaSessionAuthBackend, Stubber, MwaaWebServer]) -> None:
    backend, _, web = mwaa
    inst = AirflowInstance(auth_backend=backend, name="mwaa_env")
    inst.list_dags()
    web.valid.clear()  # the web server forgets the session (expired)
    assert len(inst.list_dags()) == 3
    assert web.logins == 2


def test_mwaa_session_renewed_before_max_age(mwaa: tuple[MwaaSessionAuthBackend, Stubber, MwaaWebServer]) -> None:
    backend, _, web = mwaa
    now = [time.time()]
    backend.clock = lambda: now[0]
    inst = AirflowInstance(auth_backend=backend, name="mwaa_env")
    inst.list_dags()
    now[0] += 11 * 3600
    inst.list_dags()
    assert web.logins == 2


def test_mwaa_errors_name_the_environment_and_hide_the_token() -> None:
    client = boto3.client("mwaa", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    stubber = Stubber(client)
    stubber.add_response("get_environment", {"Environment": {"Name": "env", "AirflowVersion": "2.10.3", "WebserverUrl": "127.0.0.1:9"}}, {"Name": "env"})
    stubber.add_client_error("create_web_login_token", service_error_code="AccessDeniedException", http_status_code=403)
    stubber.activate()
    backend = MwaaSessionAuthBackend(environment_name="env", mwaa_client=client, scheme="http")
    inst = AirflowInstance(auth_backend=backend, name="mwaa_env")
    with pytest.raises(AirflowAuthError, match="MWAA environment 'env'.*CreateWebLoginToken") as info:
        inst.list_dags()
    assert WEB_TOKEN not in str(info.value)
    assert "env" in repr(backend)


def test_mwaa_login_goes_through_the_session_factory(mwaa: tuple[MwaaSessionAuthBackend, Stubber, MwaaWebServer]) -> None:
    backend, _, web = mwaa
    sent: list[str] = []

    def factory() -> requests.Session:
        session = requests.Session()
        session.hooks["response"].append(lambda r, *a, **k: sent.append(f"{r.request.method} {r.request.path_url}"))
        return session

    inst = AirflowInstance(auth_backend=backend, name="mwaa_env", session_factory=factory)
    assert len(inst.list_dags()) == 3
    login = f"POST /{'pluginsv2/' if web.fake.generation == 3 else ''}aws_mwaa/login"
    assert login in sent, "the MWAA login uses the instance's sessions (CA bundle, proxies)"
    assert web.logins == 1


def test_mwaa_batch_endpoints_the_sensor_uses(mwaa: tuple[MwaaSessionAuthBackend, Stubber, MwaaWebServer]) -> None:
    backend, _, web = mwaa
    inst = AirflowInstance(auth_backend=backend, name="mwaa_env")
    runs = list(inst.iter_dag_runs(dag_ids=["dag_00000", "dag_00001"], end_date_gte=EPOCH - timedelta(days=1)))
    assert len(runs) == 4
    tis = list(inst.iter_task_instances(dag_ids=["dag_00000"], run_ids=[r.run_id for r in runs if r.dag_id == "dag_00000"]))
    assert len(tis) == 2
    prefix = "/api/v2" if web.fake.generation == 3 else "/api/v1"
    assert {f"POST {prefix}/dags/~/dagRuns/list", f"POST {prefix}/dags/~/dagRuns/~/taskInstances/list"} <= set(web.api_calls)
    web.valid.clear()  # the session expires between two sensor ticks: one new login, same answers
    assert len(list(inst.iter_task_instances(dag_ids=["dag_00000"], run_ids=[r.run_id for r in runs if r.dag_id == "dag_00000"]))) == 2
    assert web.logins == 2
