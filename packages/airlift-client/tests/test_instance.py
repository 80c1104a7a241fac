"""AirflowInstance against the fake Airflow 2 and Airflow 3 REST servers (no network beyond loopback)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest

from airlift_client import (
    AirflowAuthError,
    AirflowInstance,
    AirflowLoginPageError,
    AirflowNotFoundError,
    AirflowResponseError,
    AirflowRunTimeoutError,
    AirflowUnreachableError,
    BasicAuthBackend,
    RetryPolicy,
    TokenAuthBackend,
)
from airlift_client.instance import READS_AT_ONCE
from airlift_protocol import ApiVersion
from airlift_testing.fake_airflow import EPOCH, FakeAirflow, FakeAirflowState, FakeDag, FakeTask
from airlift_testing.procs import free_port

SECRET = "pa55-Sentinel-Secret"  # the password conftest's fakes expect

Factory = Callable[..., FakeAirflow]
Instance = Callable[..., AirflowInstance]


def test_detects_generation_once(fake_factory: Factory, instance_for: Instance, generation: int) -> None:
    fake = fake_factory()
    inst = instance_for(fake)
    assert inst.api_version is (ApiVersion.V1 if generation == 2 else ApiVersion.V2)
    before = fake.total_requests
    inst.list_dags()
    inst.list_dags()
    assert inst.api_version is (ApiVersion.V1 if generation == 2 else ApiVersion.V2)
    health = sum(n for k, n in fake.requests.items() if "health" in k)
    assert health <= 2
    assert fake.total_requests > before


@pytest.mark.parametrize("cap", [1, 3, 7, 100])
@pytest.mark.parametrize("total", [0, 1, 21, 40])
def test_paging_never_drops_or_repeats(fake_factory: Factory, instance_for: Instance, cap: int, total: int) -> None:
    fake = fake_factory(FakeAirflowState.generate(dags=total, tasks_per_dag=1, runs_per_dag=1), maximum_page_limit=cap)
    inst = instance_for(fake, page_size=20)  # asks for more than the server's cap
    dag_ids = [d.dag_id for d in inst.iter_dags()]
    assert dag_ids == sorted(d.dag_id for d in fake.state.dags)
    runs = list(inst.iter_dag_runs())
    assert len({(r.dag_id, r.run_id) for r in runs}) == len(runs) == total
    tis = list(inst.iter_task_instances())
    assert len({t.key for t in tis}) == len(tis) == total


def test_paging_survives_items_shifting_between_pages(fake_factory: Factory, instance_for: Instance) -> None:
    state = FakeAirflowState.generate(dags=10, tasks_per_dag=1)
    fake = fake_factory(state, maximum_page_limit=3)
    inst = instance_for(fake, page_size=3)
    seen = []
    for i, dag in enumerate(inst.iter_dags()):
        seen.append(dag.dag_id)
        if i == 4:
            # a DAG sorting first is added and one already seen is deleted while we page
            with state.lock:
                state.dags.insert(0, FakeDag(dag_id="aaa_new", tasks=[FakeTask("t")], fileloc="/dags/new.py"))
                state.dags = [d for d in state.dags if d.dag_id != "dag_00001"]
    assert len(seen) == len(set(seen)), "no repeats"
    present_throughout = {d.dag_id for d in state.dags} - {"aaa_new"}
    assert present_throughout <= set(seen), "nothing present during the whole scan was dropped"


def test_paging_rescans_when_an_item_disappears_behind_the_offset(fake_factory: Factory, instance_for: Instance) -> None:
    state = FakeAirflowState.generate(dags=10, tasks_per_dag=1)
    fake = fake_factory(state, maximum_page_limit=3)
    inst = instance_for(fake, page_size=3)
    seen = []
    for i, dag in enumerate(inst.iter_dags()):
        seen.append(dag.dag_id)
        if i == 2:  # end of the first page: delete an already-seen DAG, so page 2 shifts left by one
            with state.lock:
                state.dags = [d for d in state.dags if d.dag_id != "dag_00000"]
    assert sorted(seen) == [f"dag_{i:05d}" for i in range(10)]
    assert len(seen) == 10


def test_dag_filters(fake_factory: Factory, instance_for: Instance) -> None:
    state = FakeAirflowState.generate(dags=4, tasks_per_dag=1)
    state.dags[0].tags = ["finance"]
    state.dags[1].is_paused = False
    fake = fake_factory(state)
    inst = instance_for(fake)
    assert [d.dag_id for d in inst.list_dags(tags=["finance"])] == ["dag_00000"]
    assert [d.dag_id for d in inst.list_dags(paused=False)] == ["dag_00001"]
    assert [d.dag_id for d in inst.list_dags(dag_id_pattern="00003")] == ["dag_00003"]


def test_task_instances_of_runs_reads_only_the_named_runs_when_dags_share_run_ids(
    fake_factory: Factory, instance_for: Instance, generation: int
) -> None:
    state = FakeAirflowState.generate(dags=3, tasks_per_dag=2, runs_per_dag=0)
    starts = [EPOCH + timedelta(hours=h) for h in range(3)]
    runs = {(d, h): state.add_run(f"dag_{d:05d}", start=starts[h]) for d in range(3) for h in range(3)}
    assert runs[0, 0].run_id == runs[1, 0].run_id, "runs of one start share their id, as scheduled runs of one schedule do"
    fake = fake_factory(state)
    inst = instance_for(fake)
    wanted = [(runs[0, 0].dag_id, runs[0, 0].run_id), (runs[1, 1].dag_id, runs[1, 1].run_id),
              (runs[2, 1].dag_id, runs[2, 1].run_id), (runs[2, 2].dag_id, runs[2, 2].run_id)]
    got = sorted((t.dag_id, t.run_id, t.task_id) for t in inst.iter_task_instances_of_runs(wanted))
    assert got == sorted((d, r, t) for d, r in wanted for t in ("task_000", "task_001"))
    assert list(inst.iter_task_instances_of_runs([])) == []
    # Airflow 3 pages the batch list in the order asked: by map index (no index serves that order, so
    # PostgreSQL finds the runs' rows by (dag_id, run_id) rather than walking the primary key); Airflow 2
    # takes no order there
    bodies = [b for m, p, b in fake.request_log if m == "POST" and p.endswith("taskInstances/list")]
    assert bodies and all(b.get("order_by") == ("map_index" if generation == 3 else None) for b in bodies), bodies


def test_task_instances_of_runs_are_asked_about_a_page_per_request(
    fake_factory: Factory, instance_for: Instance, generation: int
) -> None:
    """Airflow counts, joins and sorts all of a batch request's rows for each page it serves: the
    runs are asked in requests of about one page (``page_size`` over the tasks per run), every row
    read once; with a state filter (few rows) they go in one request."""
    state = FakeAirflowState.generate(dags=6, tasks_per_dag=5, runs_per_dag=0)
    runs = [state.add_run(f"dag_{d:05d}", start=EPOCH + timedelta(hours=h)) for d in range(6) for h in range(4)]
    fake = fake_factory(state)
    inst = instance_for(fake, page_size=10)
    wanted = [(r.dag_id, r.run_id) for r in runs]
    got = [(t.dag_id, t.run_id, t.task_id) for t in inst.iter_task_instances_of_runs(wanted, task_ids=["task_000", "task_001", "task_002"])]
    assert sorted(got) == sorted((d, r, f"task_{t:03d}") for d, r in wanted for t in range(3)) and len(set(got)) == len(got)
    bodies = [b for m, p, b in fake.request_log if m == "POST" and p.endswith("taskInstances/list")]
    assert all(len(b["dag_ids"]) * len(b["dag_run_ids"]) <= 3 and b["page_offset"] == 0 for b in bodies), bodies
    assert len(bodies) == 6 * 2, "each DAG's 4 runs (one id set, shared) in requests of 3 and 1"
    assert fake.peak_in_flight <= READS_AT_ONCE
    fake.request_log.clear()
    assert list(inst.iter_task_instances_of_runs(wanted, states=["upstream_failed"])) == []
    assert len([p for m, p, _ in fake.request_log if m == "POST" and p.endswith("taskInstances/list")]) == 1


def test_tasks_sources_runs_and_links(fake_factory: Factory, instance_for: Instance, generation: int) -> None:
    state = FakeAirflowState.generate(dags=3, tasks_per_dag=3, runs_per_dag=2)
    state.dags[0].dag_id = "team.sales-daily_v2"
    for collection in (state.runs, state.task_instances):
        for item in collection:
            if item.dag_id == "dag_00000":
                item.dag_id = "team.sales-daily_v2"
    fake = fake_factory(state)
    inst = instance_for(fake, max_workers=2)
    tasks = inst.list_tasks_for_dags(["team.sales-daily_v2", "dag_00001", "dag_00001"])
    assert list(tasks) == ["team.sales-daily_v2", "dag_00001"]
    assert [t.upstream_task_ids for t in tasks["dag_00001"]] == [(), ("task_000",), ("task_001",)]
    dags = inst.list_dags()
    sources = inst.get_dag_sources(dags)
    assert sources["team.sales-daily_v2"] == state.dags[0].source
    assert inst.get_dag_source("dag_00001") == state.dags[1].source
    window_end = EPOCH + timedelta(minutes=3)
    runs = list(inst.iter_dag_runs(end_date_gte=EPOCH, end_date_lte=window_end, states=["success"]))
    assert all(EPOCH <= r.end_date <= window_end for r in runs if r.end_date)
    assert len(runs) == 3
    run = runs[0]
    assert inst.get_dag_run(run.dag_id, run.run_id) == run
    pairs = [(r.dag_id, r.run_id) for r in reversed(runs)]
    assert inst.get_dag_runs([*pairs, pairs[0]]) == {(r.dag_id, r.run_id): r for r in reversed(runs)}
    assert list(inst.get_dag_runs(pairs)) == pairs
    assert inst.get_dag_runs([]) == {}
    assert inst.get_dag_runs([pairs[0], (run.dag_id, "deleted__run"), ("no_such_dag", run.run_id)]) == {pairs[0]: runs[-1]}, \
        "a run Airflow does not know is left out"
    tis = list(inst.iter_task_instances(dag_ids=[run.dag_id], run_ids=[run.run_id]))
    assert {t.task_id for t in tis} == {"task_000", "task_001", "task_002"}
    assert list(inst.iter_task_instances(dag_ids=[])) == []
    run_url = inst.run_url("team.sales-daily_v2", "manual__2026-01-01T00:00:00+00:00")
    log_url = inst.log_url("team.sales-daily_v2", "manual__x", "t", try_number=2, map_index=3)
    if generation == 2:
        assert inst.dag_url("team.sales-daily_v2") == f"{fake.url}/dags/team.sales-daily_v2/grid"
        assert run_url == f"{fake.url}/dags/team.sales-daily_v2/grid?dag_run_id=manual__2026-01-01T00%3A00%3A00%2B00%3A00"
        assert log_url.endswith("task_id=t&map_index=3&tab=logs&try_number=2")
    else:
        assert inst.dag_url("team.sales-daily_v2") == f"{fake.url}/dags/team.sales-daily_v2"
        assert run_url == f"{fake.url}/dags/team.sales-daily_v2/runs/manual__2026-01-01T00%3A00%3A00%2B00%3A00"
        assert log_url == f"{fake.url}/dags/team.sales-daily_v2/runs/manual__x/tasks/t/mapped/3?try_number=2"


def test_trigger_unpause_and_wait(fake_factory: Factory, instance_for: Instance, sleeps: list[float]) -> None:
    fake = fake_factory()
    clock = iter(range(0, 1000, 1))
    inst = instance_for(fake, clock=lambda: float(next(clock)), sleep=sleeps)
    assert inst.unpause_dag("dag_00000").is_paused is False
    run = inst.trigger_dag("dag_00000", conf={"a": 1})
    assert run.state == "queued"
    assert fake.state.runs[-1].conf == {"a": 1}
    with pytest.raises(AirflowRunTimeoutError, match="still 'queued'"):
        inst.wait_for_run("dag_00000", run.run_id, timeout=3, poll_interval=1)
    fake.state.runs[-1].state = "failed"
    assert inst.wait_for_run("dag_00000", run.run_id).state == "failed"


def test_trigger_is_not_retried(fake_factory: Factory, instance_for: Instance, sleeps: list[float]) -> None:
    fake = fake_factory()
    inst = instance_for(fake)
    inst.list_dags()
    fake.fail_next(r"/dagRuns$", 503)
    with pytest.raises(AirflowResponseError, match="503"):
        inst.trigger_dag("dag_00000")
    assert fake.requests[f"POST /api/{fake.api}/dags/{{id}}/dagRuns"] == 1
    assert sleeps == []


def test_retries_5xx_and_429_with_retry_after(fake_factory: Factory, instance_for: Instance, sleeps: list[float]) -> None:
    fake = fake_factory()
    inst = instance_for(fake)
    inst.list_dags()
    fake.fail_next(r"/dags$", 502)
    fake.fail_next(r"/dags$", 429, headers={"Retry-After": "7"})
    fake.fail_next(r"/dags$", 500)
    assert len(inst.list_dags()) == 5
    assert sleeps == [0.5, 7.0, 2.0]


def test_gives_up_after_max_attempts(fake_factory: Factory, instance_for: Instance, sleeps: list[float]) -> None:
    fake = fake_factory()
    inst = instance_for(fake)
    inst.list_dags()
    fake.fail_next(r"/tasks$", 503, times=10)
    with pytest.raises(AirflowResponseError, match="503") as info:
        inst.list_tasks("dag_00000")
    assert info.value.status == 503
    assert len(sleeps) == 3


def test_unreachable_is_clear_and_retried(sleeps: list[float]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    inst = AirflowInstance(
        auth_backend=BasicAuthBackend(webserver_url=url, username="admin", password=SECRET),
        name="gone", retry_policy=RetryPolicy(max_attempts=3, sleep=sleeps, rand=lambda: 1.0), timeout=2,
    )
    with pytest.raises(AirflowUnreachableError, match="cannot reach Airflow") as info:
        inst.list_dags()
    assert url in str(info.value)
    assert len(sleeps) == 2


def test_wrong_password_is_a_clear_error_without_the_secret(fake_factory: Factory, instance_for: Instance, generation: int) -> None:
    fake = fake_factory()
    inst = instance_for(fake, password="wrong-" + SECRET)
    with pytest.raises(AirflowAuthError) as info:
        inst.list_dags()
    message = str(info.value)
    assert "BasicAuthBackend" in message
    assert fake.url in message
    assert ("403" if generation == 2 else "401") in message
    assert SECRET not in message
    assert SECRET not in repr(inst) and SECRET not in repr(inst.auth_backend)


def test_not_found_names_the_dag(fake_factory: Factory, instance_for: Instance) -> None:
    inst = instance_for(fake_factory())
    with pytest.raises(AirflowNotFoundError, match="DAG 'nope'"):
        inst.get_dag("nope")
    with pytest.raises(AirflowNotFoundError, match="run 'r' of DAG 'dag_00000'"):
        inst.get_dag_run("dag_00000", "r")


def test_login_page_instead_of_json(fake_factory: Factory, instance_for: Instance, generation: int) -> None:
    fake = fake_factory()
    inst = instance_for(fake)
    inst.list_dags()
    fake.login_page = True
    with pytest.raises(AirflowLoginPageError, match="login page") as info:
        inst.list_dags()
    hint = "AIRFLOW__API__AUTH_BACKENDS" if generation == 2 else "/auth/token"
    assert hint in str(info.value)


@pytest.fixture
def fake3() -> Iterator[FakeAirflow]:
    with FakeAirflow(FakeAirflowState.generate(dags=5, tasks_per_dag=1), generation=3, password=SECRET, token_lifetime=3600) as fake:
        yield fake


def test_airflow3_token_refresh_after_expiry(fake3: FakeAirflow, instance_for: Instance) -> None:
    fake = fake3
    inst = instance_for(fake)
    inst.list_dags()
    fake.expire_tokens()
    assert len(inst.list_dags()) == 5
    assert fake.requests["POST /auth/token"] == 2


def test_airflow3_token_refreshed_before_exp(fake3: FakeAirflow) -> None:
    fake = fake3
    now = [0.0]
    import time as _time
    backend = BasicAuthBackend(webserver_url=fake.url, username="admin", password=SECRET, clock=lambda: _time.time() + now[0])
    inst = AirflowInstance(auth_backend=backend, name="x")
    inst.list_dags()
    now[0] = 3590.0  # within the margin before exp
    inst.list_dags()
    assert fake.requests["POST /auth/token"] == 2


def test_token_backend_calls_provider_again_on_401(fake3: FakeAirflow) -> None:
    fake = fake3
    import requests

    calls: list[str] = []

    def provider() -> str:
        token = requests.post(f"{fake.url}/auth/token", json={"username": "admin", "password": SECRET}, timeout=5).json()["access_token"]
        calls.append(token)
        return str(token)

    inst = AirflowInstance(auth_backend=TokenAuthBackend(webserver_url=fake.url, token_provider=provider), name="tok")
    inst.list_dags()
    fake.expire_tokens()
    inst.list_dags()
    assert len(calls) == 2
    static = AirflowInstance(auth_backend=TokenAuthBackend(webserver_url=fake.url, token="not-a-token"), name="tok2")
    with pytest.raises(AirflowAuthError, match="401"):
        static.list_dags()


def test_bad_names_and_arguments() -> None:
    backend = BasicAuthBackend(webserver_url="http://x", username="a", password="b")
    with pytest.raises(ValueError, match="letters, digits and underscores"):
        AirflowInstance(auth_backend=backend, name="has-dash")
    with pytest.raises(ValueError, match="exactly one"):
        TokenAuthBackend(webserver_url="http://x")


def test_airflow2_basic_auth_logs_in_once_and_uses_the_session_cookie() -> None:
    """Basic auth makes Airflow 2 hash the password on every request; a web session does not."""
    with FakeAirflow(FakeAirflowState.generate(dags=3, tasks_per_dag=2), generation=2) as fake:
        backend = BasicAuthBackend(webserver_url=fake.url, username="admin", password="admin")
        inst = AirflowInstance(auth_backend=backend, name="af2")
        assert len(inst.list_tasks_for_dags([d.dag_id for d in inst.list_dags()])) == 3
        assert backend.v1_mode == "session"
        assert fake.requests["POST /login/"] == 1
        fake.password = "changed"  # basic auth would now fail: the API calls below ride on the cookie
        assert len(inst.list_dags()) == 3
        fake.password = "admin"
        fake.expire_sessions()  # the server forgets the session: one new login, then it goes on
        assert len(inst.list_dags()) == 3
        assert fake.requests["POST /login/"] == 2


def test_airflow2_without_session_backend_falls_back_to_basic_auth() -> None:
    with FakeAirflow(FakeAirflowState.generate(dags=2, tasks_per_dag=1), generation=2) as fake:
        fake.session_backend = False
        backend = BasicAuthBackend(webserver_url=fake.url, username="admin", password="admin")
        assert len(AirflowInstance(auth_backend=backend, name="af2").list_dags()) == 2
        assert backend.v1_mode == "basic"


def test_airflow2_wrong_password_with_web_login_is_a_clear_auth_error() -> None:
    with FakeAirflow(FakeAirflowState.generate(dags=1, tasks_per_dag=1), generation=2) as fake:
        backend = BasicAuthBackend(webserver_url=fake.url, username="admin", password="nope")
        with pytest.raises(AirflowAuthError) as err:
            AirflowInstance(auth_backend=backend, name="af2").list_dags()
        assert "nope" not in str(err.value)
        assert backend.v1_mode == "basic"


def test_airflow2_web_login_can_be_turned_off() -> None:
    with FakeAirflow(FakeAirflowState.generate(dags=1, tasks_per_dag=1), generation=2) as fake:
        backend = BasicAuthBackend(webserver_url=fake.url, username="admin", password="admin", web_login=False)
        assert len(AirflowInstance(auth_backend=backend, name="af2").list_dags()) == 1
        assert backend.v1_mode == "basic"
        assert fake.requests["GET /login/"] == 0


def test_airflow2_rate_limited_login_form_falls_back_to_basic_auth() -> None:
    # Flask-AppBuilder answers 429 after 5 logins in 40 s from one address (many run workers at once).
    with FakeAirflow(FakeAirflowState.generate(dags=1, tasks_per_dag=1), generation=2) as fake:
        fake.login_rate_limited = True
        backend = BasicAuthBackend(webserver_url=fake.url, username="admin", password="admin")
        instance = AirflowInstance(auth_backend=backend, name="af2")
        assert len(instance.list_dags()) == 1
        assert backend.v1_mode == "basic"
        assert fake.requests["POST /login/"] == 1, "a rate-limited login is not retried"


def test_task_instances_of_runs_are_asked_a_few_at_once_and_given_in_the_runs_order(
    fake_factory: Factory, instance_for: Instance,
) -> None:
    """The requests of one read are in flight together (at most :data:`READS_AT_ONCE`); the rows come
    in the order of the requests (the runs' groups), as a sequential read gives them."""
    state = FakeAirflowState.generate(dags=6, tasks_per_dag=5, runs_per_dag=0)
    runs = [state.add_run(f"dag_{d:05d}", start=EPOCH + timedelta(hours=h)) for d in range(6) for h in range(4)]
    fake = fake_factory(state, latency=0.05)  # each answer takes a while: requests asked together overlap
    inst = instance_for(fake, page_size=10)
    wanted = [(r.dag_id, r.run_id) for r in runs]
    got = [(t.dag_id, t.run_id, t.task_id) for t in inst.iter_task_instances_of_runs(wanted, task_ids=["task_000", "task_001"])]
    assert 2 <= fake.peak_in_flight <= READS_AT_ONCE, fake.peak_in_flight
    one_by_one = instance_for(fake_factory(state), page_size=10, max_workers=1)
    assert got == [(t.dag_id, t.run_id, t.task_id) for t in one_by_one.iter_task_instances_of_runs(wanted, task_ids=["task_000", "task_001"])]
    assert sorted(got) == sorted((d, r, f"task_{t:03d}") for d, r in wanted for t in range(2)) and len(set(got)) == len(got)
