"""AstronomerAuthBackend against a local stand-in of an Astro Deployment: the Airflow REST API under
the deployment path, accepting only ``Authorization: Bearer <API token>`` with a token the stand-in
issued (a JWT whose ``exp`` has not passed) and answering 401 otherwise, in front of the fake Airflow."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import requests

from airlift_client import AirflowAuthError, AirflowInstance, AstronomerAuthBackend
from airlift_client._sessions import CredentialsSession
from airlift_client.astronomer import TOKEN_ENV, normalize_deployment_url
from airlift_testing.fake_airflow import EPOCH, FakeAirflow, FakeAirflowState
from airlift_testing.managed_airflow import GatewayReply, GatewayRequest, GatewayServer

DEPLOYMENT = "/d8nu8sxx"


class FakeAstroDeployment:
    def __init__(self, fake: FakeAirflow) -> None:
        self.valid: set[str] = set()
        self.refused: list[str] = []
        self.issued = 0
        self.gateway = GatewayServer(fake, authorize=self._authorize, path_prefix=DEPLOYMENT).start()

    def issue(self, lifetime: float = 3600) -> str:
        """A new API token (a JWT with ``exp``, as Astro's are)."""
        self.issued += 1
        claims = {"sub": f"deployment-token-{self.issued}", "exp": int(time.time() + lifetime), "aud": "astronomer-ee"}
        token = "eyJhbGciOiJSUzI1NiJ9." + base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=") + ".SENTINELsig"
        self.valid.add(token)
        return token

    def _authorize(self, request: GatewayRequest) -> GatewayReply | None:
        if not request.path.startswith(DEPLOYMENT + "/api/"):
            problem = "no such deployment path"
        elif request.bearer() is None:
            problem = "Bearer API token required"
        elif request.bearer() not in self.valid:
            problem = "invalid token"
        else:
            claims = json.loads(base64.urlsafe_b64decode(str(request.bearer()).split(".")[1] + "=="))
            problem = "token expired" if claims["exp"] <= time.time() else None
        if problem is None:
            return None
        self.refused.append(problem)
        return GatewayReply(404 if problem.startswith("no such") else 401, {"detail": problem})


@pytest.fixture(params=[2, 3], ids=["astro-airflow2", "astro-airflow3"])
def astro(request: pytest.FixtureRequest) -> Iterator[FakeAstroDeployment]:
    fake = FakeAirflow(FakeAirflowState.generate(dags=3, tasks_per_dag=2, runs_per_dag=2), generation=request.param).start()
    stand_in = FakeAstroDeployment(fake)
    yield stand_in
    stand_in.gateway.stop()
    fake.stop()


def test_deployment_token_reads_dags_runs_and_task_instances(astro: FakeAstroDeployment) -> None:
    backend = AstronomerAuthBackend(astro.gateway.url + "/api/v1/", token=astro.issue())
    inst = AirflowInstance(auth_backend=backend, name="astro", api_version="v1" if astro.gateway.fake.generation == 2 else "v2")
    assert inst.webserver_url == astro.gateway.url
    assert len(inst.list_dags()) == 3
    runs = list(inst.iter_dag_runs(dag_ids=["dag_00000"], end_date_gte=EPOCH - timedelta(days=1)))
    assert len(list(inst.iter_task_instances(dag_ids=["dag_00000"], run_ids=[r.run_id for r in runs]))) == 4
    assert {scheme for _, path, scheme in astro.gateway.seen} == {"Bearer"}
    assert astro.refused == []


def test_generation_is_probed_through_the_deployment_path(astro: FakeAstroDeployment) -> None:
    inst = AirflowInstance(auth_backend=AstronomerAuthBackend(astro.gateway.url, token=astro.issue()), name="astro")
    assert inst.api_version.airflow_major == astro.gateway.fake.generation


def test_rotated_token_is_fetched_again_after_a_401(astro: FakeAstroDeployment) -> None:
    current = [astro.issue()]
    calls: list[str] = []

    def provider() -> str:
        calls.append(current[0])
        return current[0]

    inst = AirflowInstance(auth_backend=AstronomerAuthBackend(astro.gateway.url, token_provider=provider), name="astro",
                           api_version="v1" if astro.gateway.fake.generation == 2 else "v2")
    inst.list_dags()
    astro.valid.clear()  # the token was revoked and a new one issued
    current[0] = astro.issue()
    assert len(inst.list_dags()) == 3
    assert len(calls) == 2 and astro.refused == ["invalid token"]


def test_token_near_its_exp_is_fetched_again_before_the_request(astro: FakeAstroDeployment) -> None:
    tokens = [astro.issue(lifetime=20), astro.issue()]
    backend = AstronomerAuthBackend(astro.gateway.url, token_provider=lambda: tokens.pop(0))
    inst = AirflowInstance(auth_backend=backend, name="astro", api_version="v1" if astro.gateway.fake.generation == 2 else "v2")
    inst.list_dags()  # the first token expires within the refresh margin: the next call fetches one first
    inst.list_dags()
    assert tokens == [] and astro.refused == []


def test_expired_fixed_token_is_a_clear_error_without_the_token(astro: FakeAstroDeployment) -> None:
    token = astro.issue(lifetime=-1)
    backend = AstronomerAuthBackend(astro.gateway.url, token=token)
    with pytest.raises(AirflowAuthError, match="401") as caught:
        AirflowInstance(auth_backend=backend, name="astro", api_version="v2").list_dags()
    assert "SENTINEL" not in str(caught.value) and "SENTINEL" not in repr(backend)
    assert astro.refused[-1] == "token expired"


def test_token_from_the_environment(astro: FakeAstroDeployment, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, astro.issue())
    inst = AirflowInstance(auth_backend=AstronomerAuthBackend(astro.gateway.url), name="astro")
    assert len(inst.list_dags()) == 3
    monkeypatch.delenv(TOKEN_ENV)
    with pytest.raises(ValueError, match=TOKEN_ENV):
        AstronomerAuthBackend(astro.gateway.url)


def test_deployment_url_shape() -> None:
    assert normalize_deployment_url("https://myorg.astronomer.run/d8nu8sxx/home") == "https://myorg.astronomer.run/d8nu8sxx"
    assert normalize_deployment_url("https://myorg.astronomer.run/d8nu8sxx/api/v2/") == "https://myorg.astronomer.run/d8nu8sxx"
    with pytest.raises(ValueError, match="Astro UI page"):
        normalize_deployment_url("https://cloud.astronomer.io/cl1/deployments/cl2/overview")
    with pytest.raises(ValueError, match="lacks the deployment id"):
        normalize_deployment_url("https://myorg.astronomer.run/")
    with pytest.raises(ValueError, match="must start with https://"):
        normalize_deployment_url("myorg.astronomer.run/d8nu8sxx")
    assert repr(AstronomerAuthBackend("https://myorg.astronomer.run/d8nu8sxx/", token="t")) == (
        "AstronomerAuthBackend(deployment_url='https://myorg.astronomer.run/d8nu8sxx')"
    )


def test_a_netrc_entry_for_the_host_does_not_replace_the_token(astro: FakeAstroDeployment, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """requests applies ~/.netrc to a request with no ``auth`` of its own, which replaces the session's
    ``Authorization: Bearer`` header with the file's Basic credentials; Airlift's credentials come from
    its auth backend only."""
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login curl-user password netrc-secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    inst = AirflowInstance(auth_backend=AstronomerAuthBackend(astro.gateway.url, token=astro.issue()), name="astro")
    assert len(inst.list_dags()) == 3
    assert {scheme for _, path, scheme in astro.gateway.seen} == {"Bearer"}
    assert astro.refused == []


def test_redirects_keep_the_token_on_the_host_and_never_take_netrc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine other.example login curl-user password netrc-secret\nmachine airflow.example login u password p\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    session = CredentialsSession()
    session.headers["Authorization"] = "Bearer t"

    def redirected(to: str) -> requests.PreparedRequest:
        first = session.prepare_request(requests.Request("GET", "https://airflow.example/api/v2/dags"))
        response = requests.Response()
        response.request = first
        again = first.copy()
        again.prepare_url(to, None)
        session.rebuild_auth(again, response)
        return again

    assert session.prepare_request(requests.Request("GET", "https://airflow.example/x")).headers["Authorization"] == "Bearer t"
    assert redirected("https://airflow.example/api/v2/dags/").headers["Authorization"] == "Bearer t"
    assert "Authorization" not in redirected("https://other.example/login").headers
