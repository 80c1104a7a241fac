"""``AirflowInstance.iter_event_logs``: Airflow's audit log (``GET /eventLogs``) on both generations, against
the fake (whose rows follow what the contract tests in ``integration/test_real_airflow.py`` found)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import requests

from airlift_client import (
    AirflowAuthError,
    AirflowBadResponseError,
    AirflowInstance,
    AirflowResponseError,
    TooManyRows,
)
from airlift_client.instance import READS_AT_ONCE
from airlift_protocol import ApiVersion, EventLog
from airlift_testing.fake_airflow import EPOCH, FakeAirflow, FakeAirflowState, FakeEventLog

SECRET = "pa55-Sentinel-Secret"  # the password conftest's fakes expect
WIDE = {"after": EPOCH - timedelta(days=1), "before": EPOCH + timedelta(days=30)}


def _queries(fake: FakeAirflow) -> list[dict[str, list[str]]]:
    return [parse_qs(urlparse(path).query) for method, path, _ in fake.request_log if urlparse(path).path.endswith("/eventLogs")]


def _session(fake: FakeAirflow) -> requests.Session:
    """A REST session of the fake's admin (basic auth on Airflow 2, a token on Airflow 3)."""
    session = requests.Session()
    if fake.generation == 2:
        session.auth = ("admin", SECRET)
    else:
        token = requests.post(f"{fake.url}/auth/token", json={"username": "admin", "password": SECRET}, timeout=10).json()["access_token"]
        session.headers["Authorization"] = f"Bearer {token}"
    return session


def _expected(state: FakeAirflowState, after: datetime, before: datetime) -> list[int]:
    return [i + 1 for i, row in enumerate(state.event_logs) if after < row.when < before]


def test_every_row_of_a_window_once_in_id_order_across_pages(fake_factory: Callable[..., FakeAirflow],
                                                            instance_for: Callable[..., AirflowInstance]) -> None:
    state = FakeAirflowState.generate(dags=4, tasks_per_dag=3, runs_per_dag=10)
    fake = fake_factory(state, maximum_page_limit=7)
    instance = instance_for(fake, page_size=50)  # the server caps pages at 7: the offset follows what came
    after, before = EPOCH + timedelta(minutes=5), EPOCH + timedelta(minutes=31)
    rows = list(instance.iter_event_logs(after=after, before=before))
    assert [r.event_log_id for r in rows] == _expected(state, after, before) and len(rows) > 50
    for row in rows:
        stored = state.event_logs[row.event_log_id - 1]
        assert (row.event, row.when, row.dag_id, row.run_id, row.task_id, row.map_index, row.try_number) == (
            stored.event, stored.when, stored.dag_id, stored.run_id, stored.task_id, stored.map_index, stored.try_number)
        assert row.when.tzinfo is not None and row.api is instance.api_version
    queries = _queries(fake)
    assert len(queries) == -(-len(rows) // 7)
    order = "event_log_id" if fake.generation == 2 else "id"  # Airflow 2 refuses order_by=id on this list
    assert all(q["order_by"] == [order] and "dag_id" not in q for q in queries)


def test_airflow_2_refuses_to_order_the_list_by_id(fake_factory: Callable[..., FakeAirflow]) -> None:
    fake = fake_factory()
    answer = _session(fake).get(f"{fake.url}/api/{fake.api}/eventLogs", params={"order_by": "id"}, timeout=10)
    assert answer.status_code == (400 if fake.generation == 2 else 200)


def test_the_window_bounds_are_strict_as_airflow_applies_them(fake_factory: Callable[..., FakeAirflow],
                                                             instance_for: Callable[..., AirflowInstance]) -> None:
    state = FakeAirflowState.generate(dags=1, tasks_per_dag=1)
    t0 = EPOCH + timedelta(hours=1)
    for offset in (0, 1, 2):  # three rows one microsecond apart
        state.log_event(FakeEventLog(t0 + timedelta(microseconds=offset), f"e{offset}", dag_id="dag_00000"))
    instance = instance_for(fake_factory(state))
    us = timedelta(microseconds=1)

    def events(after: datetime, before: datetime) -> list[str]:
        return [r.event for r in instance.iter_event_logs(after=after, before=before)]

    assert events(t0 - us, t0 + 3 * us) == ["e0", "e1", "e2"]
    assert events(t0, t0 + 2 * us) == ["e1"], "after < when < before: rows at either bound are left out"
    assert events(t0, t0) == []
    # windows sharing a bound lose the row at it; starting each 1 microsecond before the last one's end (Airflow keeps
    # microseconds) reads every row once
    assert events(t0 - us, t0 + us) + events(t0 + us, t0 + 3 * us) == ["e0", "e2"]
    assert events(t0 - us, t0 + us) + events(t0, t0 + 3 * us) == ["e0", "e1", "e2"]
    with pytest.raises(ValueError, match="timezone-aware"):
        list(instance.iter_event_logs(after=datetime(2026, 1, 1), before=datetime.now(timezone.utc)))


def test_rows_written_while_the_window_is_paged_are_read_once(fake_factory: Callable[..., FakeAirflow],
                                                             instance_for: Callable[..., AirflowInstance],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    state = FakeAirflowState.generate(dags=2, tasks_per_dag=3, runs_per_dag=4)
    fake = fake_factory(state, maximum_page_limit=5)
    original = state.event_logs_between
    written: list[FakeEventLog] = []

    def writing(after: datetime | None, before: datetime | None) -> list[int]:
        if len(written) < 2:  # a late commit lands inside the window during the first pages
            written.append(state.log_event(FakeEventLog(EPOCH + timedelta(minutes=1), "success", dag_id="dag_00001",
                                                        task_id="task_000", run_id="late", map_index=-1, try_number=1)))
        return original(after, before)

    monkeypatch.setattr(state, "event_logs_between", writing)
    rows = list(instance_for(fake).iter_event_logs(**WIDE))
    assert sorted(r.event_log_id for r in rows) == list(range(1, len(state.event_logs) + 1))
    assert [r.run_id for r in rows].count("late") == 2


def test_dag_and_event_filters(fake_factory: Callable[..., FakeAirflow], instance_for: Callable[..., AirflowInstance]) -> None:
    state = FakeAirflowState.generate(dags=3, tasks_per_dag=2, runs_per_dag=3)
    fake = fake_factory(state, maximum_page_limit=4)
    instance = instance_for(fake)
    picked = list(instance.iter_event_logs(**WIDE, dag_ids=["dag_00002", "dag_00000", "dag_00002"], events=["success"]))
    expected = [i + 1 for i, r in enumerate(state.event_logs) if r.dag_id in ("dag_00000", "dag_00002") and r.event == "success"]
    assert [r.event_log_id for r in picked] == expected, "one listing per DAG, merged in id order"
    queries = _queries(fake)
    assert {q["dag_id"][0] for q in queries} == {"dag_00000", "dag_00002"}
    assert all(q["included_events"] == ["success"] for q in queries)
    fake.request_log.clear()
    list(instance.iter_event_logs(**WIDE, events=["success", "failed"]))
    sent = _queries(fake)[0]["included_events"]
    assert sent == (["success,failed"] if fake.generation == 2 else ["success", "failed"]), "v1: one comma list; v2: repeated"
    fake.request_log.clear()
    assert list(instance.iter_event_logs(**WIDE, dag_ids=[])) == [] and list(instance.iter_event_logs(**WIDE, events=[])) == []
    assert _queries(fake) == []


@pytest.mark.parametrize("release", ["2.7.3", "2.8.4"])
def test_airflow_before_2_9_is_a_clear_error(instance_for: Callable[..., AirflowInstance], release: str) -> None:
    """Before 2.9 the list's rows name no run (and 2.7 has no time filter, 2.8 counts rows unfiltered)."""
    with FakeAirflow(FakeAirflowState.generate(dags=1, tasks_per_dag=1, runs_per_dag=1), generation=2, password=SECRET) as fake:
        fake.airflow_version = release
        with pytest.raises(AirflowResponseError, match=rf"runs Airflow {release}.*needs Airflow 2\.9 or later"):
            list(instance_for(fake).iter_event_logs(**WIDE))
        assert _queries(fake) == []


def test_rows_of_tries_marks_and_clears_as_each_generation_writes_them(
        fake_factory: Callable[..., FakeAirflow], instance_for: Callable[..., AirflowInstance]) -> None:
    state = FakeAirflowState.generate(dags=1, tasks_per_dag=2)
    run = state.add_run("dag_00000", start=EPOCH)
    first, second = state.tis_of_run(run)
    fake = fake_factory(state)
    g = fake.generation
    # task_001 fails its first try and is retried: the retry's end is "failed" on Airflow 2, "up_for_retry" on 3
    retry_at = EPOCH + timedelta(minutes=1)
    state.touch(second, retry_at, state="up_for_retry", try_number=2, start_date=retry_at - timedelta(seconds=5), end_date=retry_at)
    state.touch(second, retry_at + timedelta(minutes=1), state="success", try_number=3,
                start_date=retry_at + timedelta(seconds=55), end_date=retry_at + timedelta(minutes=1))
    instance = instance_for(fake)
    tries = [(r.event, r.try_number) for r in instance.iter_event_logs(**WIDE) if r.task_id == "task_001"]
    assert tries == [("running", 1), ("success", 1), ("running", 2), ("failed" if g == 2 else "up_for_retry", 2),
                     ("running", 3), ("success", 3)]
    # a REST mark and a REST clear: one action row each, no state-named row
    session = _session(fake)
    base = f"{fake.url}/api/{fake.api}/dags/dag_00000"
    start = datetime.now(timezone.utc) - timedelta(seconds=1)
    marked = session.patch(f"{base}/dagRuns/{run.run_id}/taskInstances/task_000", json={"new_state": "failed", "dry_run": False}, timeout=10)
    assert marked.status_code == 200 and first.state == "failed"
    cleared = session.post(f"{base}/clearTaskInstances", json={"dry_run": False, "task_ids": ["task_000"], "dag_run_id": run.run_id}, timeout=10)
    assert cleared.status_code == 200 and first.state is None
    actions = [(r.event, r.dag_id, r.run_id, r.task_id, r.map_index, r.try_number)
               for r in instance.iter_event_logs(after=start, before=datetime.now(timezone.utc) + timedelta(seconds=1))]
    prefix = "api." if g == 2 else ""
    assert actions == [
        (f"{prefix}patch_task_instance", "dag_00000", run.run_id, "task_000", None, None),
        (f"{prefix}post_clear_task_instances", "dag_00000", None if g == 2 else run.run_id, None, None, None),
    ]
    # the client's own reads leave nothing in the listing (Airflow 3's row of a batch read names DAG "~", never listed)
    start = datetime.now(timezone.utc)
    list(instance.iter_task_instances(dag_ids=["dag_00000"]))
    assert list(instance.iter_event_logs(after=start, before=datetime.now(timezone.utc) + timedelta(seconds=1))) == []
    assert [r.dag_id for r in state.event_logs if r.event == "get_task_instances_batch"] == ([] if g == 2 else ["~"])


def test_touching_task_instances_writes_marks_clears_and_new_tries() -> None:
    state = FakeAirflowState.generate(dags=1, tasks_per_dag=1)
    run = state.add_run("dag_00000", start=EPOCH)
    (ti,) = state.tis_of_run(run)
    assert [(r.event, r.try_number) for r in state.event_logs] == [("running", 1), ("success", 1)]
    state.touch(ti, EPOCH + timedelta(hours=1), state="failed")
    state.touch(ti, EPOCH + timedelta(hours=2), state=None, end_date=None)
    state.touch(ti, EPOCH + timedelta(hours=3), state="success", try_number=2, start_date=EPOCH + timedelta(hours=2, minutes=59))
    state.touch(ti, EPOCH + timedelta(hours=4))  # a write that changes nothing logged
    assert [(r.event, r.when - EPOCH, r.task_id, r.try_number) for r in state.event_logs[2:]] == [
        ("patch_task_instance", timedelta(hours=1), "task_000", None),
        ("post_clear_task_instances", timedelta(hours=2), None, None),
        ("running", timedelta(hours=2, minutes=59), "task_000", 2),
        ("success", timedelta(hours=3), "task_000", 2),
    ]


def test_airflow_before_2_10_returns_no_map_index_or_try_number(instance_for: Callable[..., AirflowInstance]) -> None:
    with FakeAirflow(FakeAirflowState.generate(dags=1, tasks_per_dag=2, runs_per_dag=1), generation=2, password=SECRET) as fake:
        fake.airflow_version = "2.9.3"
        rows = list(instance_for(fake).iter_event_logs(**WIDE))
    assert rows and all(r.map_index is None and r.try_number is None and r.run_id for r in rows)
    assert {r.task_key[3] for r in rows} == {-1}


def test_a_user_without_the_audit_log_permission_gets_a_clear_error(fake_factory: Callable[..., FakeAirflow],
                                                                   instance_for: Callable[..., AirflowInstance]) -> None:
    fake = fake_factory()
    fake.audit_log_readable = False
    instance = instance_for(fake)
    assert instance.list_dags(), "other reads work"
    with pytest.raises(AirflowAuthError) as info:
        list(instance.iter_event_logs(**WIDE))
    message = str(info.value)
    assert info.value.status == 403 and f"GET /api/{fake.api}/eventLogs" in message
    assert "can read on Audit Logs" in message and "Admin" in message
    assert SECRET not in message


def test_a_row_that_is_not_an_event_log_is_a_bad_response(fake_factory: Callable[..., FakeAirflow],
                                                          instance_for: Callable[..., AirflowInstance],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_factory()
    original = fake.event_log_json

    def garbled(position: int, row: FakeEventLog) -> dict[str, Any]:
        body = original(position, row)
        del body["event"]
        return body

    monkeypatch.setattr(fake, "event_log_json", garbled)
    with pytest.raises(AirflowBadResponseError, match="event"):
        list(instance_for(fake).iter_event_logs(**WIDE))


def test_event_log_model_reads_both_generations() -> None:
    v1 = EventLog.from_rest({"event_log_id": 3, "when": "2026-01-01T00:00:01.123+00:00", "event": "api.patch_task_instance",
                             "dag_id": "d", "task_id": "t", "run_id": "r", "map_index": None, "try_number": None,
                             "execution_date": None, "owner": "admin", "extra": "{}"}, api=ApiVersion.V1)
    v2 = EventLog.from_rest({"event_log_id": 4, "when": "2026-01-01T00:00:01.123Z", "event": "running", "dag_id": "d",
                             "task_id": "t", "run_id": "r", "map_index": 2, "try_number": 1,
                             "logical_date": "2026-01-01T00:00:00Z", "owner": None, "extra": None}, api=ApiVersion.V2)
    assert v1.when == v2.when and v1.when.tzinfo is not None
    assert (v1.map_index, v1.try_number, v1.task_key) == (None, None, ("d", "r", "t", -1))
    assert (v2.map_index, v2.try_number, v2.logical_date) == (2, 1, datetime(2026, 1, 1, tzinfo=timezone.utc))
    assert v1.extra == "{}" and v1.owner == "admin"


def test_the_sized_read_pages_by_time_without_offsets(fake_factory: Callable[..., FakeAirflow],
                                                     instance_for: Callable[..., AirflowInstance]) -> None:
    """``read_event_logs``: every row once, in id order; pages asked in time order, each from the
    previous page's last instant (no offset: the database would walk the skipped rows again); the
    first page's count sizes the window (over ``max_rows``: ``None`` after that one request)."""
    state = FakeAirflowState.generate(dags=4, tasks_per_dag=3, runs_per_dag=10)
    fake = fake_factory(state, maximum_page_limit=7)
    instance = instance_for(fake, page_size=7)
    after, before = EPOCH + timedelta(minutes=5), EPOCH + timedelta(minutes=31)
    rows = instance.read_event_logs(after=after, before=before)
    assert rows is not None and [r.event_log_id for r in rows] == _expected(state, after, before) and len(rows) > 50
    queries = _queries(fake)
    time_order = "when" if fake.generation == 2 else "dttm"
    assert all(q["order_by"] == [time_order] and q.get("offset", ["0"]) == ["0"] for q in queries), queries
    assert len({q["after"][0] for q in queries}) == len(queries) >= len(rows) // 7, "each page from a later instant"
    from airlift_testing.fake_airflow import _parse as parse_time

    in_range = [len(state.event_logs_between(parse_time(q["after"][0]), parse_time(q["before"][0]))) for q in queries]
    assert max(in_range[1:]) <= 4 * 7, f"after the first page each asks a range of a few pages, not the rest: {in_range}"
    assert instance.count_event_logs(after=after, before=before) == len(rows)
    fake.request_log.clear()
    assert instance.read_event_logs(after=after, before=before, max_rows=len(rows) - 1) == TooManyRows(len(rows))
    assert len(_queries(fake)) == 1


def test_the_rest_of_a_window_is_read_in_time_slices_at_once(fake_factory: Callable[..., FakeAirflow],
                                                            instance_for: Callable[..., AirflowInstance]) -> None:
    """After the first page (which counts the window), the rest is cut at the window's density into
    slices of about a page, asked concurrently (at most :data:`READS_AT_ONCE` at once); every row once,
    in id order, as a read one page at a time gives them."""
    state = FakeAirflowState.generate(dags=4, tasks_per_dag=3, runs_per_dag=10)
    fake = fake_factory(state, maximum_page_limit=7, latency=0.05)
    instance = instance_for(fake, page_size=7)
    after, before = EPOCH + timedelta(minutes=5), EPOCH + timedelta(minutes=31)
    instance.list_dags()  # the generation is known before counting requests
    fake.request_log.clear()
    rows = instance.read_event_logs(after=after, before=before)
    assert rows is not None and [r.event_log_id for r in rows] == _expected(state, after, before) and len(rows) > 50
    assert 2 <= fake.peak_in_flight <= READS_AT_ONCE, fake.peak_in_flight
    queries = _queries(fake)
    assert len(queries) <= 2 * -(-len(rows) // 7) + 1, f"about a request per page: {len(queries)} for {len(rows)} rows"
    one_at_a_time = instance_for(fake_factory(state, maximum_page_limit=7), page_size=7, max_workers=1)
    assert one_at_a_time.read_event_logs(after=after, before=before) == rows


def test_a_window_of_runs_and_audit_log_rows_is_sized_and_read_together(fake_factory: Callable[..., FakeAirflow],
                                                                       instance_for: Callable[..., AirflowInstance]) -> None:
    """``read_changes``: the audit log's and the changed runs' first pages are asked together, their
    counts size the window (over ``max_rows``: nothing more is asked), and the rest of both lists is
    read together: the same rows as :meth:`read_event_logs` and :meth:`read_updated` give apart."""
    state = FakeAirflowState.generate(dags=4, tasks_per_dag=3, runs_per_dag=10)
    fake = fake_factory(state, maximum_page_limit=7, latency=0.05)
    instance = instance_for(fake, page_size=7)
    after, before = EPOCH + timedelta(minutes=5), EPOCH + timedelta(minutes=31)
    apart_rows = instance.read_event_logs(after=after, before=before)
    apart_runs = instance.read_updated(updated_at_gte=after, updated_at_lte=before, task_instances=False)
    assert not isinstance(apart_rows, TooManyRows) and not isinstance(apart_runs, TooManyRows)
    total = len(apart_rows) + len(apart_runs[0])
    assert len(apart_runs[0]) > 7, "more than a page of runs"
    fake.request_log.clear()
    fake.peak_in_flight = 0
    read = instance.read_changes(after=after, before=before, updated_at_gte=after, updated_at_lte=before, max_rows=total)
    assert not isinstance(read, TooManyRows)
    assert read[0] == apart_rows and [(r.dag_id, r.run_id) for r in read[1]] == [(r.dag_id, r.run_id) for r in apart_runs[0]]
    assert fake.peak_in_flight >= 2
    fake.request_log.clear()
    over = instance.read_changes(after=after, before=before, updated_at_gte=after, updated_at_lte=before, max_rows=total - 1)
    assert over == TooManyRows(total)
    assert len(fake.request_log) == 2, f"the two first pages, nothing more: {[p for _, p, _ in fake.request_log]}"
    one_at_a_time = instance_for(fake, page_size=7, max_workers=1)
    one_at_a_time.list_dags()
    fake.peak_in_flight = 0
    assert one_at_a_time.read_changes(after=after, before=before, updated_at_gte=after, updated_at_lte=before) == read
    assert fake.peak_in_flight == 1, "max_workers=1: one request at a time"


def test_the_sized_read_of_many_rows_in_one_instant_falls_back_to_offsets(fake_factory: Callable[..., FakeAirflow],
                                                                         instance_for: Callable[..., AirflowInstance]) -> None:
    state = FakeAirflowState.generate(dags=1, tasks_per_dag=1)
    t0 = EPOCH + timedelta(hours=1)
    for i in range(20):  # a bulk action logged in one microsecond, then later rows
        state.log_event(FakeEventLog(t0, f"bulk{i}", dag_id="dag_00000"))
    for i in range(6):
        state.log_event(FakeEventLog(t0 + timedelta(seconds=i + 1), f"later{i}", dag_id="dag_00000"))
    instance = instance_for(fake_factory(state, maximum_page_limit=5), page_size=5)
    rows = instance.read_event_logs(after=t0 - timedelta(seconds=1), before=t0 + timedelta(minutes=1))
    assert rows is not None and [r.event for r in rows] == [f"bulk{i}" for i in range(20)] + [f"later{i}" for i in range(6)]
