"""Push mode: the bounded queue, drops, retries, the reporter's requests and the listener callbacks."""

from __future__ import annotations

import os
import threading
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fake_dagster import FakeDagster  # type: ignore[import-not-found]

from airlift_airflow import DagsterOperator, relay
from airlift_airflow.hook import DagsterHook
from airlift_airflow.listener import AirliftListener, PushSettings
from airlift_airflow.push import (
    AssetIndexCache,
    DagAssets,
    DagsterReporter,
    PushItem,
    PushSender,
    ReportFailedError,
    build_reporter,
)
from airlift_airflow.relay import StatusFile
from airlift_airflow.version_compat import (
    AIRFLOW_V_2_10_PLUS,
    AIRFLOW_V_3_0_PLUS,
    DAG,
    BaseOperator,
    task_instance_fields,
)
from airlift_protocol import ApiVersion, RetryPolicy
from airlift_protocol.push_status import load_push_status
from airlift_protocol.tags import (
    AIRFLOW_EVENT_TAG,
    PUSH_SETTLE_MARGIN,
    AirflowEventId,
    airflow_event_key_of,
)

DAG_ID, TASK_ID, RUN_ID = "rebuild.customers", "load_raw", "manual__2026-01-01T00:00:00+00:00"
START = datetime(2026, 1, 1, 0, 0, 1, 123456, tzinfo=timezone.utc)
END = datetime(2026, 1, 1, 0, 0, 5, 654321, tzinfo=timezone.utc)
NO_WAIT = RetryPolicy(max_attempts=5, sleep=lambda s: None, deadline=None)


def _item(**kwargs: Any) -> PushItem:
    fields: dict[str, Any] = {"dag_id": DAG_ID, "run_id": RUN_ID, "task_id": TASK_ID, "map_index": -1, "try_number": 1,
                              "start_date": START, "end_date": END}
    fields.update(kwargs)
    return PushItem.for_task(**fields)


def test_full_queue_drops_and_logs_without_waiting(caplog: pytest.LogCaptureFixture) -> None:
    gate = threading.Event()
    sender = PushSender(deliver=lambda item: gate.wait(5), max_queue=1, retry=NO_WAIT)
    results = [sender.submit(_item(try_number=n)) for n in range(1, 5)]
    gate.set()
    assert sender.flush(timeout=5)
    assert results[0] and not all(results)
    assert sender.stats.dropped_queue_full == results.count(False) >= 2
    assert "queue full" in caplog.text and "the Airlift sensor reports it" in caplog.text


def test_retryable_failure_is_retried_with_the_shared_policy() -> None:
    attempts: list[int] = []

    def deliver(item: PushItem) -> None:
        attempts.append(1)
        if len(attempts) < 3:
            raise ReportFailedError("refused", retry=True)

    waits: list[float] = []
    sender = PushSender(deliver=deliver, retry=RetryPolicy(max_attempts=5, sleep=waits.append, rand=lambda: 1.0, deadline=None))
    sender.submit(_item())
    assert sender.flush(timeout=5)
    assert len(attempts) == 3 and sender.stats.delivered == 1
    assert waits == [0.5, 1.0]  # the shared policy's backoff


def test_ambiguous_failure_is_left_to_the_sensor(caplog: pytest.LogCaptureFixture) -> None:
    attempts: list[int] = []

    def deliver(item: PushItem) -> None:
        attempts.append(1)
        raise ReportFailedError("no answer in time (may be stored)", retry=False)

    sender = PushSender(deliver=deliver, retry=NO_WAIT)
    sender.submit(_item())
    assert sender.flush(timeout=5)
    assert len(attempts) == 1 and sender.stats.failed == 1
    assert "the Airlift sensor reports it" in caplog.text


def test_item_older_than_max_age_is_dropped() -> None:
    now = [0.0]
    attempts: list[int] = []

    def deliver(item: PushItem) -> None:
        attempts.append(1)
        now[0] += 5.0  # every attempt takes 5 s (Dagster down, connect timeouts)
        raise ReportFailedError("ConnectTimeout", retry=True)

    sender = PushSender(deliver=deliver, max_age=8.0, retry=NO_WAIT, clock=lambda: now[0])
    sender.submit(PushItem.for_task(dag_id="d", run_id="r", task_id="t", map_index=-1, try_number=1,
                                    start_date=None, end_date=None).__class__(dag_id="d", run_id="r", task_id="t", created=0.0))
    assert sender.flush(timeout=5)
    assert len(attempts) == 2 and sender.stats.failed == 1


def test_a_crashing_deliver_does_not_stop_the_thread() -> None:
    calls: list[str] = []

    def deliver(item: PushItem) -> None:
        calls.append(item.run_id)
        if item.run_id == "boom":
            raise RuntimeError("bug")

    sender = PushSender(deliver=deliver)
    sender.submit(_item(run_id="boom"))
    sender.submit(_item(run_id="ok"))
    assert sender.flush(timeout=5) and calls == ["boom", "ok"]


def test_index_cache_keeps_entries_for_its_ttl() -> None:
    now = [0.0]
    calls: list[str] = []
    cache = AssetIndexCache(lambda dag_id: calls.append(dag_id) or DagAssets("prod", {"t": [("a",)]}), ttl=60.0, clock=lambda: now[0])
    cache.get("d")
    now[0] = 59.0
    cache.get("d")
    now[0] = 61.0
    cache.get("d")
    assert calls == ["d", "d"]


def _one_asset(dag_id: str) -> DagAssets:
    return DagAssets("prod", {TASK_ID: [("a",)]})


def _reporter(fake: FakeDagster) -> DagsterReporter:
    hook = DagsterHook(url=fake.url, timeout=2, retry=NO_WAIT)
    def assets(dag_id: str) -> DagAssets | None:
        index = hook.get_conn().task_asset_index(("prod", "dag", dag_id))
        return None if index is None else DagAssets("prod", index)

    return DagsterReporter(fake.url, api_token="dagster-token-SENTINEL", api=ApiVersion.V2, airflow_url="http://af:8080",
                           assets=assets)


def test_reporter_posts_materialization_and_passing_check_with_identity(fake_dagster: FakeDagster) -> None:
    fake_dagster.dag_indexes[("prod", "dag", DAG_ID)] = {"tasks": {TASK_ID: [["raw", "customers"], ["raw", "orders"]]}, "dag": []}
    _reporter(fake_dagster)(_item())
    paths = [p for p, _ in fake_dagster.reports]  # the assets in parallel, each one's check after its materialization
    for asset in ("raw/customers", "raw/orders"):
        assert [p for p in paths if p.endswith(asset)] == [f"/report_asset_materialization/{asset}", f"/report_asset_check/{asset}"]
    assert len(paths) == 4
    materialization = next(body for path, body in fake_dagster.reports if path == "/report_asset_materialization/raw/customers")
    event = AirflowEventId("prod", DAG_ID, RUN_ID, task_id=TASK_ID, map_index=-1, try_number=1)
    assert airflow_event_key_of(None, instance_name="prod", metadata=materialization["metadata"]) == event.key
    assert materialization["metadata"]["Airflow run"] == f"http://af:8080/dags/{DAG_ID}/runs/manual__2026-01-01T00%3A00%3A00%2B00%3A00"
    assert materialization["metadata"]["End date"] == END.timestamp()
    check = next(body for path, body in fake_dagster.reports if path == "/report_asset_check/raw/customers")
    assert check["check_name"] == "airflow_task_succeeded" and check["passed"] is True
    assert all(h.get("Dagster-Cloud-Api-Token") == "dagster-token-SENTINEL" for h in fake_dagster.headers if "Dagster-Cloud-Api-Token" in h)


def test_reporter_skips_unmapped_tasks_and_unknown_dags(fake_dagster: FakeDagster) -> None:
    fake_dagster.dag_indexes[("prod", "dag", DAG_ID)] = {"tasks": {"other": [["x"]]}, "dag": []}
    reporter = _reporter(fake_dagster)
    reporter(_item())
    reporter(_item(dag_id="not_in_dagster"))
    assert fake_dagster.reports == [] and reporter.stats.skipped_unmapped == 2


def test_dag_run_success_reports_the_dag_asset(fake_dagster: FakeDagster) -> None:
    fake_dagster.dag_indexes[("prod", "dag", DAG_ID)] = {"tasks": {}, "dag": []}
    _reporter(fake_dagster)(PushItem.for_dag_run(dag_id=DAG_ID, run_id=RUN_ID, run_type="manual", start_date=START, end_date=END))
    assert [p for p, _ in fake_dagster.reports] == [f"/report_asset_materialization/prod/dag/{DAG_ID}",
                                                     f"/report_asset_check/prod/dag/{DAG_ID}"]
    event = AirflowEventId("prod", DAG_ID, RUN_ID, run_end_date=END.isoformat())
    assert fake_dagster.reports[0][1]["metadata"][AIRFLOW_EVENT_TAG] == event.key


def test_503_is_retried_without_sending_what_dagster_took_again(fake_dagster: FakeDagster) -> None:
    fake_dagster.dag_indexes[("prod", "dag", DAG_ID)] = {"tasks": {TASK_ID: [["a"]]}, "dag": []}
    fake_dagster.report_statuses = [200, 503]  # the materialization is taken, the check refused once
    sender = PushSender(deliver=_reporter(fake_dagster), retry=NO_WAIT)
    sender.submit(_item())
    assert sender.flush(timeout=10)
    assert [p for p, _ in fake_dagster.reports] == ["/report_asset_materialization/a", "/report_asset_check/a"]


def test_dagster_down_drops_within_max_age(caplog: pytest.LogCaptureFixture) -> None:
    from airlift_testing.procs import free_port

    url = f"http://127.0.0.1:{free_port()}"
    reporter = DagsterReporter(url, api_token=None, api=ApiVersion.V1, airflow_url="http://af", assets=_one_asset)
    sender = PushSender(deliver=reporter, max_age=1.0, retry=RetryPolicy(max_attempts=50, base_delay=0.05, deadline=None))
    sender.submit(_item())
    assert sender.flush(timeout=10)
    assert sender.stats.failed == 1 and "the Airlift sensor reports it" in caplog.text


def _task_instance(task: Any = None, try_number: int = 1) -> SimpleNamespace:
    """A finished try as the listener receives it: before Airflow 2.10 ``try_number`` is then already the next try."""
    return SimpleNamespace(dag_id=DAG_ID, run_id=RUN_ID, task_id=TASK_ID, map_index=-1, prev_attempted_tries=try_number,
                           try_number=try_number if AIRFLOW_V_2_10_PLUS else try_number + 1,
                           start_date=START, end_date=END, task=task)


def test_try_number_is_the_one_airflows_rest_api_shows() -> None:
    """A task instance of the installed Airflow, after its first try succeeded: the identity's try
    number (and the log link's) is the ``try_number`` column REST returns, not the next try that
    ``TaskInstance.try_number`` means outside RUNNING before Airflow 2.10."""
    import uuid

    import sqlalchemy
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.state import TaskInstanceState

    with DAG("try_probe", schedule=None, start_date=START):
        task = BaseOperator(task_id="t")
    extra: dict[str, Any] = {"dag_version_id": uuid.uuid4()} if AIRFLOW_V_3_0_PLUS else {}
    ti = TaskInstance(task, run_id="r", state=TaskInstanceState.RUNNING, **extra)
    ti.try_number = 1  # the scheduler's increment when the try started
    ti.state = TaskInstanceState.SUCCESS
    column = sqlalchemy.inspect(TaskInstance).get_property_by_column(TaskInstance.__table__.c.try_number).key
    assert task_instance_fields(ti)["try_number"] == getattr(ti, column) == 1
    if not AIRFLOW_V_3_0_PLUS:  # Airflow 2's REST schema, as the webserver serializes the row
        import warnings

        with warnings.catch_warnings():  # marshmallow-sqlalchemy reads marshmallow.__version__ (deprecated) on import
            warnings.simplefilter("ignore", DeprecationWarning)
            from airflow.api_connexion.schemas.task_instance_schema import task_instance_schema

        assert task_instance_schema.dump((ti, None))["try_number"] == 1
    reporter = DagsterReporter("http://dagster", api_token=None, api=ApiVersion.V1, airflow_url="http://af", assets=_one_asset)
    found = reporter.event_for(PushItem.for_task(**task_instance_fields(_task_instance(try_number=1))))
    assert found is not None
    assert found[0].metadata["Try number"].value == 1 and "try_number=1" in str(found[0].metadata["Airflow task log"].value)


def test_listener_through_airflows_own_hook_spec(fake_dagster: FakeDagster) -> None:
    """The hookimpl signatures are accepted by the installed Airflow's listener specs (pluggy checks
    them) and Airflow's call shape (Airflow 2 passes a session, Airflow 3 does not) reaches them."""
    from airflow.listeners.listener import get_listener_manager

    fake_dagster.dag_indexes[("prod", "dag", DAG_ID)] = {"tasks": {TASK_ID: [["a"]]}, "dag": []}
    listener = AirliftListener(PushSettings(enabled=True, instance_name="prod", flush_timeout=5.0, detach=False))
    manager = get_listener_manager()
    manager.add_listener(listener)
    try:
        ti = _task_instance()
        extra: dict[str, Any] = {} if AIRFLOW_V_3_0_PLUS else {"session": None}
        manager.hook.on_task_instance_running(previous_state=None, task_instance=ti, **extra)
        manager.hook.on_task_instance_success(previous_state=None, task_instance=ti, **extra)
        manager.hook.on_dag_run_success(dag_run=SimpleNamespace(dag_id=DAG_ID, run_id=RUN_ID, run_type="manual",
                                                                start_date=START, end_date=END), msg="success")
        sender = listener.sender()
        assert sender is not None and sender.flush(timeout=5)
    finally:
        manager.clear()
    assert [p for p, _ in fake_dagster.reports] == ["/report_asset_materialization/a", "/report_asset_check/a",
                                                     f"/report_asset_materialization/prod/dag/{DAG_ID}",
                                                     f"/report_asset_check/prod/dag/{DAG_ID}"]
    assert fake_dagster.operations.count("AirliftDagIndex") == 1  # prefetched at start, cached
    assert len(listener.overhead) == 2


def test_migrated_tasks_and_disabled_push_report_nothing(fake_dagster: FakeDagster) -> None:
    fake_dagster.dag_indexes[("prod", "dag", DAG_ID)] = {"tasks": {TASK_ID: [["a"]]}, "dag": []}
    listener = AirliftListener(PushSettings(enabled=True, instance_name="prod"))
    listener.on_task_instance_success(previous_state=None, task_instance=_task_instance(DagsterOperator(task_id=TASK_ID)))
    off = AirliftListener(PushSettings(enabled=False))
    off.on_task_instance_success(previous_state=None, task_instance=_task_instance())
    assert off.sender() is None
    sender = listener.sender()
    assert sender is not None and sender.flush(timeout=5)
    assert fake_dagster.reports == []


def test_settings_from_airflow_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__AIRLIFT__PUSH_ENABLED", "True")
    monkeypatch.setenv("AIRFLOW__AIRLIFT__INSTANCE_NAME", "prod")
    monkeypatch.setenv("AIRFLOW__AIRLIFT__MAX_AGE", "5")
    settings = PushSettings.from_airflow_conf()
    assert (settings.enabled, settings.instance_name, settings.max_age, settings.dagster_conn_id) == (True, "prod", 5.0, "dagster_default")


def test_no_dagster_url_disables_push_with_one_warning(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_DAGSTER_DEFAULT", raising=False)
    monkeypatch.delenv("AIRLIFT_DAGSTER_URL", raising=False)
    listener = AirliftListener(PushSettings(enabled=True))
    listener.on_task_instance_success(previous_state=None, task_instance=_task_instance())
    assert listener.sender() is None
    assert "no Dagster URL" in caplog.text


def test_hook_reads_the_dag_index_not_every_node(fake_dagster: FakeDagster, caplog: pytest.LogCaptureFixture) -> None:
    fake_dagster.add_asset(["a"], dag_id=DAG_ID, task_id=TASK_ID)
    for i in range(50):
        fake_dagster.add_asset([f"x{i}"], dag_id="other", task_id="t")
    fake_dagster.dag_indexes[("prod", "dag", DAG_ID)] = {"tasks": {TASK_ID: [["a"]]}, "dag": []}
    hook = DagsterHook(url=fake_dagster.url, retry=NO_WAIT)
    assert [a.path for a in hook.task_assets(dag_id=DAG_ID, task_id=TASK_ID, instance_name="prod")] == [("a",)]
    assert fake_dagster.operations == ["AirliftDagIndex", "AirliftAssetsByKey"]
    fake_dagster.operations.clear()
    assert [a.path for a in hook.task_assets(dag_id=DAG_ID, task_id=TASK_ID, instance_name="staging")] == [("a",)]
    assert fake_dagster.operations == ["AirliftDagIndex", "AirliftAssetsByTag", "AirliftAssetsByKey"]
    assert "slow path" in caplog.text


def test_report_answered_too_late_is_not_sent_again(fake_dagster: FakeDagster) -> None:
    """Dagster stored the event but answered after the read timeout: sending again could store it
    twice, so the item is left to the sensor (which finds the stored copy by its identity)."""
    fake_dagster.report_delay = 1.0
    reporter = DagsterReporter(fake_dagster.url, api_token=None, api=ApiVersion.V2, airflow_url="http://af", assets=_one_asset,
                               timeout=(2.0, 0.2))
    sender = PushSender(deliver=reporter, retry=NO_WAIT)
    sender.submit(_item())
    assert sender.flush(timeout=10)
    assert sender.stats.failed == 1
    assert [p for p, _ in fake_dagster.reports] == ["/report_asset_materialization/a"]


def test_instance_name_is_shared_with_the_operator(monkeypatch: pytest.MonkeyPatch) -> None:
    """One setting names the instance for push and for DagsterOperator's run tags (the sensor matches
    both against its AirflowInstance name)."""
    monkeypatch.delenv("AIRLIFT_AIRFLOW_INSTANCE_NAME", raising=False)
    monkeypatch.setenv("AIRFLOW__AIRLIFT__INSTANCE_NAME", "prod")
    assert PushSettings.from_airflow_conf().instance_name == "prod"
    assert DagsterOperator(task_id="t").instance_name == "prod"
    monkeypatch.setenv("AIRLIFT_AIRFLOW_INSTANCE_NAME", "other")
    assert PushSettings.from_airflow_conf().instance_name == DagsterOperator(task_id="t").instance_name == "other"


#: The sensor's default settle: it reads a row only once it is older than this.
SETTLE = 10.0


@pytest.mark.parametrize("assets", [1, 4])
def test_a_slow_dagster_stores_nothing_after_the_settle(fake_dagster: FakeDagster, assets: int) -> None:
    """Dagster answers each report in 2.5 s. A task's assets go out in parallel (per asset, the
    materialization, then its check), and a POST is sent only while the item is younger than
    max_age: every report is stored before the sensor reads the row (one after another they were
    stored up to 17.5 s after the event with 4 assets)."""
    fake_dagster.report_delay = 2.5
    paths = [("a", str(i)) for i in range(assets)]
    reporter = DagsterReporter(fake_dagster.url, api_token=None, api=ApiVersion.V2, airflow_url="http://af",
                               assets=lambda dag_id: DagAssets("prod", {TASK_ID: paths}))
    sender = PushSender(deliver=reporter, retry=NO_WAIT)
    item = _item()
    sender.submit(item)
    assert sender.flush(timeout=60)
    assert len(fake_dagster.report_times) == 2 * assets and sender.stats.delivered == 1
    assert max(fake_dagster.report_times) - item.created < SETTLE
    for i in range(assets):  # each asset's check after its materialization
        order = [p for p, _ in fake_dagster.reports if p.endswith(f"/a/{i}")]
        assert order == [f"/report_asset_materialization/a/{i}", f"/report_asset_check/a/{i}"]


def test_a_report_that_could_land_after_the_settle_is_not_sent(fake_dagster: FakeDagster) -> None:
    """Age is checked before every POST: the materialization goes out at 1 s, the check would go at
    8.5 s (past max_age): it is not sent, and the item counts as dropped too old."""
    times = iter([1.0, 8.5])
    reporter = DagsterReporter(fake_dagster.url, api_token=None, api=ApiVersion.V2, airflow_url="http://af",
                               assets=_one_asset, max_age=8.0, clock=lambda: next(times))
    sender = PushSender(deliver=reporter, max_age=8.0, retry=NO_WAIT, clock=lambda: 0.0)
    sender.submit(PushItem(dag_id=DAG_ID, run_id=RUN_ID, task_id=TASK_ID, try_number=1, created=0.0))
    assert sender.flush(timeout=10)
    assert [p for p, _ in fake_dagster.reports] == ["/report_asset_materialization/a"]
    assert (sender.stats.dropped_too_old, sender.stats.delivered, sender.stats.failed) == (1, 0, 0)


def test_an_item_too_old_when_its_turn_comes_sends_nothing(fake_dagster: FakeDagster) -> None:
    reporter = DagsterReporter(fake_dagster.url, api_token=None, api=ApiVersion.V2, airflow_url="http://af", assets=_one_asset)
    sender = PushSender(deliver=reporter, max_age=8.0, clock=lambda: 100.0)
    sender.submit(PushItem(dag_id=DAG_ID, run_id=RUN_ID, task_id=TASK_ID, try_number=1, created=0.0))
    assert sender.flush(timeout=10)
    assert sender.stats.dropped_too_old == 1 and fake_dagster.reports == [] and fake_dagster.operations == []
    sender.submit(PushItem(dag_id=DAG_ID, run_id="", prefetch=True, created=0.0))  # a late prefetch is no report
    assert sender.flush(timeout=10) and sender.stats.dropped_too_old == 1


def test_push_learns_the_instance_name_from_dagster(fake_dagster: FakeDagster) -> None:
    """Nothing configured on the Airflow side: the name comes from the DAG asset, as for the operator."""
    fake_dagster.dag_indexes[("airflow_instance_one", "dag", DAG_ID)] = {"tasks": {TASK_ID: [["a"]]}, "dag": []}
    listener = AirliftListener(PushSettings(enabled=True, instance_name=None, flush_timeout=5.0, detach=False))
    listener.on_task_instance_success(previous_state=None, task_instance=_task_instance())
    listener.on_dag_run_success(dag_run=SimpleNamespace(dag_id=DAG_ID, run_id=RUN_ID, run_type="manual", start_date=START,
                                                        end_date=END), msg="success")
    sender = listener.sender()
    assert sender is not None and sender.flush(timeout=5)
    assert [p for p, _ in fake_dagster.reports] == ["/report_asset_materialization/a", "/report_asset_check/a",
                                                     f"/report_asset_materialization/airflow_instance_one/dag/{DAG_ID}",
                                                     f"/report_asset_check/airflow_instance_one/dag/{DAG_ID}"]
    event = AirflowEventId("airflow_instance_one", DAG_ID, RUN_ID, task_id=TASK_ID, map_index=-1, try_number=1)
    assert fake_dagster.reports[0][1]["metadata"][AIRFLOW_EVENT_TAG] == event.key


@pytest.mark.parametrize("configured", [None, "staging"], ids=["two-instances", "configured-name-missing"])
def test_an_unresolved_instance_name_is_a_counted_actionable_failure_never_a_guess(
    fake_dagster: FakeDagster, tmp_path: Path, configured: str | None
) -> None:
    for name in ("prod", "prod_copy"):
        fake_dagster.dag_indexes[(name, "dag", DAG_ID)] = {"tasks": {TASK_ID: [["a"]]}, "dag": []}
    status = StatusFile(tmp_path / "push-status.json", interval=60)
    reporter = build_reporter(fake_dagster.url, api_token=None, instance_name=configured, api=ApiVersion.V2,
                              airflow_url="http://af", max_age=8.0)
    sender = PushSender(deliver=reporter, retry=NO_WAIT, status=status)
    sender.deliver_now(_item())
    sender.deliver_now(_item(dag_id="not_in_dagster"))  # no DAG asset at all: nothing to report, not a failure
    status.flush()
    assert fake_dagster.reports == []
    assert (sender.stats.unresolved_instance_name, sender.stats.failed, reporter.stats.skipped_unmapped) == (1, 0, 1)
    problem = load_push_status(tmp_path / "push-status.json").problem_of(DAG_ID)
    assert problem is not None and problem.counter == "unresolved_instance_name" and "prod_copy" in problem.reason


def test_status_file_adds_up_every_process(tmp_path: Path) -> None:
    """The relay, one-shot senders and the scheduler each merge their counts into one file."""
    path = tmp_path / "push-status.json"
    relay_side, one_shot = StatusFile(path, interval=60), StatusFile(path, interval=60)
    relay_side.record("delivered", _item())
    one_shot.record("dropped_too_old", _item(try_number=2), "9.1s after the Airflow event (max_age 8s)")
    one_shot.record("dropped_queue_full", _item(try_number=3), "queue full (1000 items)")
    relay_side.flush()
    one_shot.flush()
    relay_side.record("delivered", _item(try_number=4))
    relay_side.flush()
    status = load_push_status(path)
    assert dict(status.counters) == {"delivered": 2, "dropped_too_old": 1, "dropped_queue_full": 1, "failed": 0,
                                     "unresolved_instance_name": 0, "settle_too_short": 0}
    assert [p.counter for p in status.problems] == ["dropped_too_old", "dropped_queue_full"]
    assert status.problem_of(DAG_ID) is None, "neither needs the user to act"


def test_an_actionable_drop_warns_in_the_task_log_until_push_delivers_again(
    fake_dagster: FakeDagster, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(relay.tempfile, "gettempdir", lambda: str(tmp_path))
    fake_dagster.dag_indexes[("prod", "dag", DAG_ID)] = {"tasks": {TASK_ID: [["a"]]}, "dag": []}
    fake_dagster.report_statuses = [401]
    listener = AirliftListener(PushSettings(enabled=True, instance_name="prod", flush_timeout=5.0, detach=False))
    listener.on_task_instance_success(previous_state=None, task_instance=_task_instance(try_number=1))
    status_path = tmp_path / f"airlift-push-{os.getuid()}" / "push-status.json"
    status = load_push_status(status_path)
    assert status.counters["failed"] == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "do not reach Dagster" in r.getMessage()]
    assert len(warnings) == 1 and "HTTP 401" in warnings[0] and "\n" not in warnings[0]
    caplog.clear()
    listener.on_task_instance_success(previous_state=None, task_instance=_task_instance(try_number=2))
    assert "do not reach Dagster" not in caplog.text
    status = load_push_status(status_path)
    assert status.counters["delivered"] == 1 and status.problem_of(DAG_ID) is None


def _settle_reporter(fake: FakeDagster, settle: float | int | None, now: list[float],
                     status: StatusFile | None = None) -> tuple[DagsterReporter, PushSender]:
    """build_reporter against a fake Dagster whose DAG asset publishes ``settle``; both clocks read ``now[0]``."""
    fake.sensor_settle = settle
    fake.dag_indexes[("prod", "dag", DAG_ID)] = {"tasks": {TASK_ID: [["a"]]}, "dag": []}
    reporter = build_reporter(fake.url, api_token=None, instance_name=None, api=ApiVersion.V2, airflow_url="http://af",
                              max_age=8.0)
    reporter.clock = lambda: now[0]
    return reporter, PushSender(deliver=reporter, max_age=8.0, retry=NO_WAIT, clock=lambda: now[0], status=status)


@pytest.mark.parametrize("settle", [2.5, 3, 5.0, 9.0, 10.0, 30.0, None])
@pytest.mark.parametrize("age", [0.0, 0.4, 1.0, 2.9, 3.0, 4.5, 6.9, 7.0, 7.9, 8.0, 9.5])
def test_no_report_is_sent_at_or_after_the_sensor_settle_minus_the_margin(
    fake_dagster: FakeDagster, settle: float | None, age: float
) -> None:
    """The sensor's settle, read from the DAG asset, bounds push's max age: a report goes out only while
    the event is younger than min(max_age, settle - 2 s). Using max_age 8 s with a settle of 3, 5 or 9 s
    sends reports the sensor may have read already (a second materialization)."""
    now = [age]
    reporter, sender = _settle_reporter(fake_dagster, settle, now)
    sender.deliver_now(PushItem(dag_id=DAG_ID, run_id=RUN_ID, task_id=TASK_ID, try_number=1, created=0.0))
    limit = 8.0 if settle is None else min(8.0, settle - PUSH_SETTLE_MARGIN)
    sent = [p for p, _ in fake_dagster.reports]
    if age < limit:
        assert sent == ["/report_asset_materialization/a", "/report_asset_check/a"] and sender.stats.delivered == 1
    else:
        assert sent == [] and sender.stats.dropped_too_old == 1
    if settle is not None:
        assert reporter.max_age_for(reporter.assets(DAG_ID), DAG_ID) < settle  # type: ignore[arg-type]


def test_the_settle_comes_with_the_index_in_one_request(fake_dagster: FakeDagster) -> None:
    now = [1.0]
    _, sender = _settle_reporter(fake_dagster, 5, now)  # an IntMetadataEntry reads the same
    sender.deliver_now(PushItem(dag_id=DAG_ID, run_id=RUN_ID, task_id=TASK_ID, try_number=1, created=0.0))
    assert fake_dagster.operations.count("AirliftDagIndex") == 1 and set(fake_dagster.operations) == {"AirliftDagAssets", "AirliftDagIndex"}
    now[0] = 3.0  # 5 s settle: 3 s max age
    sender.deliver_now(PushItem(dag_id=DAG_ID, run_id=RUN_ID, task_id=TASK_ID, try_number=2, created=0.0))
    assert (sender.stats.delivered, sender.stats.dropped_too_old) == (1, 1)


def test_a_lowered_max_age_is_logged_once_per_instance(fake_dagster: FakeDagster, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="airlift_airflow.push")
    _, sender = _settle_reporter(fake_dagster, 5.0, [0.5])
    for try_number in (1, 2, 3):
        sender.deliver_now(PushItem(dag_id=DAG_ID, run_id=RUN_ID, task_id=TASK_ID, try_number=try_number, created=0.0))
    lowered = [r.getMessage() for r in caplog.records if "lowered" in r.getMessage()]
    assert sender.stats.delivered == 3 and len(lowered) == 1
    assert "settle is 5s" in lowered[0] and "at most 3s" in lowered[0] and "'prod'" in lowered[0]


@pytest.mark.parametrize("settle", [0, 1.5, 2.0])
def test_a_settle_that_leaves_push_no_time_sends_nothing_and_says_what_to_set(
    fake_dagster: FakeDagster, tmp_path: Path, caplog: pytest.LogCaptureFixture, settle: float
) -> None:
    """The sensor takes rows at most 2 s old: any push could be its second materialization. Nothing is
    sent for the instance, one ERROR names Dagster, the instance, the settle and the setting, and the
    status file holds an actionable problem for ``airlift doctor --push-status``."""
    status = StatusFile(tmp_path / "push-status.json", interval=60)
    _, sender = _settle_reporter(fake_dagster, settle, [0.0], status)
    for try_number in (1, 2):
        sender.deliver_now(PushItem(dag_id=DAG_ID, run_id=RUN_ID, task_id=TASK_ID, try_number=try_number, created=0.0))
    sender.deliver_now(PushItem.for_dag_run(dag_id=DAG_ID, run_id=RUN_ID, run_type="manual", start_date=START, end_date=END))
    status.flush()
    assert fake_dagster.reports == []
    assert (sender.stats.settle_too_short, sender.stats.delivered, sender.stats.failed, sender.stats.dropped_too_old) == (3, 0, 0, 0)
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1, errors
    for part in (fake_dagster.url, "'prod'", f"settle is {settle:g}s", "SensorSettings(settle=", "settle_seconds", "10s or more"):
        assert part in errors[0]
    assert not [r for r in caplog.records if r.levelname == "WARNING"], "one ERROR, not one warning per item"
    problem = load_push_status(tmp_path / "push-status.json").problem_of(DAG_ID)
    assert problem is not None and problem.counter == "settle_too_short" and fake_dagster.url in problem.reason


def test_a_dagster_side_without_a_published_settle_keeps_max_age_and_warns_once(
    fake_dagster: FakeDagster, caplog: pytest.LogCaptureFixture
) -> None:
    _, sender = _settle_reporter(fake_dagster, None, [7.5])
    for try_number in (1, 2):
        sender.deliver_now(PushItem(dag_id=DAG_ID, run_id=RUN_ID, task_id=TASK_ID, try_number=try_number, created=0.0))
    assert sender.stats.delivered == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "publishes no sensor settle" in warnings[0] and "max_age 8s" in warnings[0]
