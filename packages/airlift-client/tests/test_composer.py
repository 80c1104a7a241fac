"""ComposerAuthBackend against a local stand-in of Cloud Composer: Google's OAuth token endpoint, the
Composer API (environments.get) and the environment's Airflow web server, which accepts only a
current Google access token as ``Authorization: Bearer`` and answers 401 otherwise (ID tokens,
expired or unknown tokens, other schemes), in front of the fake Airflow REST API."""

from __future__ import annotations

import base64
import json
import pickle
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs

import pytest
from google.oauth2.credentials import Credentials

from airlift_client import AirflowAuthError, AirflowInstance, ComposerAuthBackend, TokenAuthBackend
from airlift_client.composer import SCOPE
from airlift_testing.fake_airflow import EPOCH, FakeAirflow, FakeAirflowState
from airlift_testing.managed_airflow import GatewayReply, GatewayRequest, GatewayServer

ENVIRONMENT = "projects/proj/locations/us-central1/environments/prod"
REFRESH_TOKEN = "refresh-SENTINEL-secret"


class FakeComposer:
    """Token endpoint, Composer API and Airflow web server of one environment, on one local port."""

    def __init__(self, fake: FakeAirflow, *, image: str, token_lifetime: int = 3600) -> None:
        self.token_lifetime = token_lifetime
        self.image = image
        self.tokens: dict[str, float] = {}  # access token -> expiry (server clock)
        self.issued = 0
        self.refused: list[str] = []
        self.gateway = GatewayServer(fake, authorize=self._authorize, routes={
            "POST /token": self._token,
            f"GET /v1/{ENVIRONMENT}": self._environment,
        }).start()

    def _token(self, request: GatewayRequest) -> GatewayReply:
        form = parse_qs(request.body.decode())
        if form.get("grant_type") != ["refresh_token"] or form.get("refresh_token") != [REFRESH_TOKEN]:
            return GatewayReply(400, {"error": "invalid_grant"})
        self.issued += 1
        token = f"ya29.access-{self.issued}"
        self.tokens[token] = time.time() + self.token_lifetime
        return GatewayReply(200, {"access_token": token, "expires_in": self.token_lifetime, "token_type": "Bearer", "scope": SCOPE})

    def _check(self, request: GatewayRequest) -> str | None:
        token = request.bearer()
        if token is None:
            return "missing Bearer credentials"
        if token.count(".") == 2 and token.startswith("eyJ"):
            return "ID tokens are not accepted; send an OAuth 2.0 access token"
        if self.tokens.get(token, 0) <= time.time():
            return "invalid or expired access token"
        return None

    def _authorize(self, request: GatewayRequest) -> GatewayReply | None:
        problem = self._check(request) if request.path.startswith("/api/") else "not found"
        if problem is None:
            return None
        self.refused.append(problem)
        return GatewayReply(401 if problem != "not found" else 404, {"error": problem})

    def _environment(self, request: GatewayRequest) -> GatewayReply:
        problem = self._check(request)
        if problem is not None:
            return GatewayReply(401, {"error": {"code": 401, "message": problem}})
        return GatewayReply(200, {"name": ENVIRONMENT, "state": "RUNNING", "config": {
            "airflowUri": self.gateway.url, "softwareConfig": {"imageVersion": self.image}}})

    def credentials(self) -> Credentials:
        return Credentials(token=None, refresh_token=REFRESH_TOKEN, token_uri=f"{self.gateway.url}/token",
                           client_id="client-id", client_secret="client-SENTINEL-secret", scopes=[SCOPE])

    def expire_all(self) -> None:
        self.tokens.clear()


@pytest.fixture(params=[(2, "composer-2.9.7-airflow-2.9.3"), (3, "composer-3-airflow-3.1.8-build.2")], ids=["composer-airflow2", "composer-airflow3"])
def composer(request: pytest.FixtureRequest) -> Iterator[FakeComposer]:
    generation, image = request.param
    fake = FakeAirflow(FakeAirflowState.generate(dags=3, tasks_per_dag=2, runs_per_dag=2), generation=generation).start()
    stand_in = FakeComposer(fake, image=image)
    yield stand_in
    stand_in.gateway.stop()
    fake.stop()


def _backend(composer: FakeComposer, **kwargs: object) -> ComposerAuthBackend:
    return ComposerAuthBackend(environment=ENVIRONMENT, credentials=composer.credentials(), composer_api=f"{composer.gateway.url}/v1", **kwargs)  # type: ignore[arg-type]


def test_environment_gives_url_and_generation_and_the_batch_endpoints_work(composer: FakeComposer) -> None:
    inst = AirflowInstance(auth_backend=_backend(composer), name="composer_prod")
    assert inst.webserver_url == composer.gateway.url
    assert inst.api_version.airflow_major == composer.gateway.fake.generation
    assert [d.dag_id for d in inst.list_dags()] == ["dag_00000", "dag_00001", "dag_00002"]
    runs = list(inst.iter_dag_runs(dag_ids=["dag_00000", "dag_00001"], end_date_gte=EPOCH - timedelta(days=1)))
    assert len(runs) == 4
    tis = list(inst.iter_task_instances(dag_ids=["dag_00000"], run_ids=[r.run_id for r in runs if r.dag_id == "dag_00000"]))
    assert len(tis) == 4
    schemes = {scheme for method, path, scheme in composer.gateway.seen if "/api/" in path}
    assert schemes == {"Bearer"}
    assert any(method == "POST" and "taskInstances/list" in path for method, path, _ in composer.gateway.seen)
    assert composer.refused == []


def test_token_is_refreshed_after_the_server_expires_it(composer: FakeComposer) -> None:
    inst = AirflowInstance(auth_backend=_backend(composer), name="composer_prod")
    inst.list_dags()
    issued = composer.issued
    composer.expire_all()
    assert len(inst.list_dags()) == 3
    assert composer.issued == issued + 1
    assert composer.refused == ["invalid or expired access token"]


def test_token_is_refreshed_before_it_expires(composer: FakeComposer) -> None:
    now = [time.time()]
    backend = _backend(composer, clock=lambda: now[0])
    inst = AirflowInstance(auth_backend=backend, name="composer_prod")
    inst.list_dags()
    issued = composer.issued
    now[0] += 3600  # past the token's expiry: a new token before the request, no 401
    assert len(inst.list_dags()) == 3
    assert composer.issued == issued + 1
    assert composer.refused == []


def test_web_ui_url_without_environment_probes_the_generation(composer: FakeComposer) -> None:
    backend = ComposerAuthBackend(composer.gateway.url + "/", credentials=composer.credentials())
    inst = AirflowInstance(auth_backend=backend, name="composer_prod")
    assert len(inst.list_dags()) == 3
    assert inst.api_version.airflow_major == composer.gateway.fake.generation
    assert repr(backend) == f"ComposerAuthBackend(webserver_url={composer.gateway.url!r})"


def test_the_web_server_refuses_id_tokens_and_other_schemes(composer: FakeComposer) -> None:
    claims = base64.urlsafe_b64encode(json.dumps({"aud": "x", "exp": int(time.time()) + 3600}).encode()).decode().rstrip("=")
    id_token = f"eyJhbGciOiJSUzI1NiJ9.{claims}.sig"
    inst = AirflowInstance(auth_backend=TokenAuthBackend(webserver_url=composer.gateway.url, token=id_token), name="composer_prod",
                           api_version="v1" if composer.gateway.fake.generation == 2 else "v2")
    with pytest.raises(AirflowAuthError, match="401"):
        inst.list_dags()
    assert "ID tokens are not accepted; send an OAuth 2.0 access token" in composer.refused


def test_id_token_credentials_are_a_clear_error(composer: FakeComposer) -> None:
    class IdTokenCredentials:
        token: str | None = None
        expiry: datetime | None = None

        def refresh(self, request: object) -> None:
            claims = base64.urlsafe_b64encode(json.dumps({"aud": "x", "exp": int(time.time()) + 3600}).encode()).decode().rstrip("=")
            self.token, self.expiry = f"eyJh.{claims}.sig", datetime.now(timezone.utc).replace(tzinfo=None) + timedelta(hours=1)

    backend = ComposerAuthBackend(composer.gateway.url, credentials=IdTokenCredentials())
    with pytest.raises(AirflowAuthError, match="ID token"):
        AirflowInstance(auth_backend=backend, name="composer_prod").list_dags()


def test_refused_refresh_and_unknown_environment_are_clear_without_secrets(composer: FakeComposer) -> None:
    bad = Credentials(token=None, refresh_token="wrong", token_uri=f"{composer.gateway.url}/token", client_id="c", client_secret="client-SENTINEL-secret")
    backend = ComposerAuthBackend(composer.gateway.url, credentials=bad)
    with pytest.raises(AirflowAuthError, match="refreshing the Google credentials failed") as caught:
        AirflowInstance(auth_backend=backend, name="composer_prod").list_dags()
    assert "SENTINEL" not in str(caught.value) and "SENTINEL" not in repr(backend)
    other = ComposerAuthBackend(environment="projects/p/locations/l/environments/missing", credentials=composer.credentials(),
                                composer_api=f"{composer.gateway.url}/v1")
    with pytest.raises(AirflowAuthError, match="HTTP 404"):
        AirflowInstance(auth_backend=other, name="composer_prod").list_dags()


def test_arguments_are_checked_and_the_backend_pickles(composer: FakeComposer) -> None:
    with pytest.raises(ValueError, match="exactly one of webserver_url"):
        ComposerAuthBackend()
    with pytest.raises(ValueError, match="projects/<project>/locations/<region>/environments/<name>"):
        ComposerAuthBackend(environment="prod")
    backend = ComposerAuthBackend(environment=ENVIRONMENT, credentials=composer.credentials())
    assert repr(pickle.loads(pickle.dumps(backend))) == f"ComposerAuthBackend(environment={ENVIRONMENT!r})"
