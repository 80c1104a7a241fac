"""Push mode: report Airflow task and DAG-run successes to Dagster within seconds.

Runs inside Airflow (see :mod:`airlift_airflow.listener` for the Airflow side). Nothing here may
slow or fail an Airflow task:

- a listener callback only hands a small :class:`PushItem` over: in a task's process to the push
  relay (:mod:`airlift_airflow.relay`, one datagram), in the scheduler to a bounded in-memory queue
  (:class:`PushSender`); when a queue is full the item is dropped, counted and logged;
- background threads deliver items: it finds the assets of the task through the task -> asset
  index on the DAG asset (cached for ``index_ttl`` seconds), builds the events with
  :mod:`airlift_protocol.events` (the same fields as the polling sensor) and POSTs them to
  Dagster's report endpoints (``/report_asset_materialization/`` and ``/report_asset_check/``, one
  asset per request: Dagster takes no batch) with timeouts and the shared
  :class:`~airlift_protocol.RetryPolicy`. A task's assets are reported in parallel (per asset, the
  materialization, then its check), so a task with N assets takes as long as one;
- every POST is sent only while the item is younger than its max age (counted from the listener's
  call, right after Airflow stored the success), and its timeouts end by then: the polling sensor
  reads a row only once it is older than its ``settle`` (10 s by default), and skips events Dagster
  already holds, so a report must land before ``settle``. The Dagster side publishes the sensor's
  ``settle`` on each DAG asset (:data:`~airlift_protocol.tags.SENSOR_SETTLE_METADATA`, read with the
  task -> asset index); the max age is ``min(max_age, settle - PUSH_SETTLE_MARGIN)`` (2 s margin for
  clock skew and the request's own time). With ``settle`` at or below the margin push sends nothing
  for that Airflow instance (one ERROR log, counted as ``settle_too_short``: an actionable problem
  ``airlift doctor --push-status`` shows). A Dagster side that publishes no settle (an older
  airlift-dagster) leaves ``max_age`` as configured (one WARNING). An item too old to be sent is
  dropped, counted and left to the sensor.

Report requests are not idempotent, so only failures where Dagster surely stored nothing are
retried (connection refused, connect timeout, 429, 503); an ambiguous one (read timeout, other 5xx)
is left to the sensor. Every outcome is counted in :class:`PushStats` (and, given a status file, in
:mod:`airlift_protocol.push_status`'s file that ``airlift doctor --push-status`` reads).

Failed tries are not pushed: Dagster's report endpoints store a check evaluation without tags, so
the sensor could not tell a pushed failure from its own and would report it twice; the sensor
reports failures (failed ``airflow_task_succeeded`` / ``airflow_dag_run_succeeded`` checks).

>>> sent = []
>>> sender = PushSender(deliver=sent.append, max_queue=2)
>>> sender.submit(PushItem.for_dag_run(dag_id="d", run_id="r", run_type="manual", start_date=None, end_date=None))
True
>>> sender.flush(timeout=5.0), len(sent)
(True, 1)
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import NewConnectionError

from airlift_airflow.errors import DagsterApiError, DagsterUnreachableError
from airlift_protocol import ApiVersion, RetryPolicy
from airlift_protocol.events import (
    ReportedEvent,
    dag_run_success_event,
    metadata_json,
    task_success_event,
)
from airlift_protocol.links import ui_links_for
from airlift_protocol.push_status import (
    DELIVERED,
    DROPPED_QUEUE_FULL,
    DROPPED_TOO_OLD,
    FAILED,
    SETTLE_TOO_SHORT,
    UNRESOLVED_INSTANCE_NAME,
)
from airlift_protocol.tags import PUSH_SETTLE_MARGIN, dag_asset_path

__all__ = [
    "DEFAULT_MAX_AGE",
    "DEFAULT_MAX_QUEUE",
    "AssetIndexCache",
    "DagAssets",
    "DagsterReporter",
    "InstanceUnresolvedError",
    "PushItem",
    "PushSender",
    "PushStats",
    "ReportFailedError",
    "ReportTooOldError",
    "SettleTooShortError",
    "build_reporter",
    "effective_max_age",
]

log = logging.getLogger("airlift_airflow.push")

#: Items waiting to be delivered, at most (more are dropped and logged).
DEFAULT_MAX_QUEUE = 1000
#: Seconds after the Airflow event after which nothing of it is sent (left to the sensor).
DEFAULT_MAX_AGE = 8.0
#: Reports in flight at once per reporter (a task's assets go out in parallel).
REPORT_PARALLELISM = 16
#: Statuses meaning Dagster stored nothing (safe to send the report again).
_NOT_STORED = frozenset({429, 503})


@dataclass(frozen=True)
class PushItem:
    """One Airflow event to report: a successful task try (``task_id`` set) or DAG run.

    >>> PushItem.for_task(dag_id="d", run_id="r", task_id="t", map_index=-1, try_number=1,
    ...                   start_date=None, end_date=None).is_task
    True
    """

    dag_id: str
    run_id: str
    task_id: str | None = None
    map_index: int = -1
    try_number: int = 0
    run_type: str | None = None
    start_date: datetime | None = None
    end_date: datetime | None = None
    created: float = field(default_factory=time.monotonic, compare=False)
    #: Only fetch the DAG's task -> asset index (a task started): nothing is reported.
    prefetch: bool = False
    #: Reports already taken by Dagster (endpoint, asset path): a retry does not send them again.
    sent: set[tuple[str, tuple[str, ...]]] = field(default_factory=set, compare=False, repr=False)

    @property
    def is_task(self) -> bool:
        return self.task_id is not None

    @classmethod
    def for_task(cls, *, dag_id: str, run_id: str, task_id: str, map_index: int, try_number: int,
                 start_date: datetime | None, end_date: datetime | None) -> PushItem:
        """A successful task-instance try."""
        return cls(dag_id=dag_id, run_id=run_id, task_id=task_id, map_index=map_index, try_number=try_number,
                   start_date=start_date, end_date=end_date)

    @classmethod
    def for_dag_run(cls, *, dag_id: str, run_id: str, run_type: str | None, start_date: datetime | None,
                    end_date: datetime | None) -> PushItem:
        """A DAG run that became successful."""
        return cls(dag_id=dag_id, run_id=run_id, run_type=run_type, start_date=start_date, end_date=end_date)

    def describe(self) -> str:
        if self.prefetch:
            return f"asset index of DAG {self.dag_id}"
        if self.is_task:
            return f"task {self.dag_id}.{self.task_id} run {self.run_id} try {self.try_number}"
        return f"DAG run {self.dag_id} {self.run_id}"


@dataclass
class PushStats:
    """Counters of one sender (the items' outcomes, as in the push status file) or reporter."""

    queued: int = 0
    delivered: int = 0
    dropped_too_old: int = 0
    dropped_queue_full: int = 0
    failed: int = 0
    unresolved_instance_name: int = 0
    settle_too_short: int = 0
    events_sent: int = 0
    skipped_unmapped: int = 0


class ReportFailedError(Exception):
    """A report Dagster did not take. ``retry``: Dagster surely stored nothing, sending again is safe.
    ``counter``: the outcome it counts as; ``actionable``: the user must fix something (a setting, a
    token, the definitions) for push to deliver."""

    counter = FAILED
    #: Already logged where it was found (once): the sender does not log it again per item.
    logged = False

    def __init__(self, message: str, *, retry: bool, retry_after: str | None = None, actionable: bool = False) -> None:
        super().__init__(message)
        self.retry = retry
        self.retry_after = retry_after
        self.actionable = actionable


class ReportTooOldError(ReportFailedError):
    """The item is ``max_age`` old: a report sent now could land after the sensor read its row."""

    counter = DROPPED_TOO_OLD

    def __init__(self, message: str) -> None:
        super().__init__(message, retry=False)


class InstanceUnresolvedError(ReportFailedError):
    """Dagster does not say which Airflow instance name a DAG belongs to (none or several DAG assets)."""

    counter = UNRESOLVED_INSTANCE_NAME

    def __init__(self, message: str) -> None:
        super().__init__(message, retry=False, actionable=True)


class SettleTooShortError(ReportFailedError):
    """The Airlift sensor reads rows at most ``PUSH_SETTLE_MARGIN`` seconds old: any report could
    land after it and materialize the run twice, so push sends nothing for the instance (logged
    once by the reporter, not per item)."""

    counter = SETTLE_TOO_SHORT
    logged = True

    def __init__(self, message: str) -> None:
        super().__init__(message, retry=False, actionable=True)


def effective_max_age(max_age: float, settle: float | None, margin: float = PUSH_SETTLE_MARGIN) -> float | None:
    """Seconds after the Airflow event a report may still be sent: the configured ``max_age``, at most
    the sensor's ``settle`` minus ``margin``; ``None`` when that leaves no time (send nothing). An
    unknown ``settle`` (an older Dagster side) leaves ``max_age``.

    >>> effective_max_age(8.0, 10.0), effective_max_age(8.0, 5.0), effective_max_age(8.0, 2.0), effective_max_age(8.0, None)
    (8.0, 3.0, None, 8.0)
    """
    if settle is None:
        return max_age
    limit = settle - margin
    return None if limit <= 0 else min(max_age, limit)


class StatusSink(Protocol):
    """Where a sender records each outcome (see :class:`airlift_airflow.relay.StatusFile`)."""

    def record(self, counter: str, item: PushItem, reason: str | None = None, *, actionable: bool = False) -> None: ...

    def flush(self) -> None: ...


class PushSender:
    """A bounded queue and background threads (``workers``, default 1) calling ``deliver(item)`` for each item.

    ``deliver`` returns how many events it sent (``None``: unknown, counted as delivered; ``0``:
    nothing to report) or raises :class:`ReportFailedError` (``retry=True``: backoff with ``retry``,
    then again, while the item is younger than ``max_age``) or any other exception (failed). An item
    already ``max_age`` old when its turn comes is dropped as too old. The thread is a daemon started
    on first use (again in a forked child). ``flush(timeout)`` waits until the queue is empty, at most
    ``timeout`` seconds. Every outcome goes to ``stats`` and, if given, ``status``.

    >>> sender = PushSender(deliver=lambda item: None, max_queue=1)
    >>> sender.stats.dropped_queue_full
    0
    """

    def __init__(
        self,
        *,
        deliver: Callable[[PushItem], int | None],
        max_queue: int = DEFAULT_MAX_QUEUE,
        max_age: float = DEFAULT_MAX_AGE,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        workers: int = 1,
        status: StatusSink | None = None,
    ) -> None:
        self.deliver = deliver
        self.workers = max(1, workers)
        self.max_queue = max_queue
        self.max_age = max_age
        self.retry = retry or RetryPolicy(max_attempts=6, base_delay=0.25, max_delay=2.0, deadline=max_age)
        self.clock = clock
        self.status = status
        self.stats = PushStats()
        self._lock = threading.Lock()
        self._pid = -1
        self._queue: queue.Queue[PushItem] = queue.Queue(maxsize=max_queue)
        self._threads: list[threading.Thread] = []

    def __repr__(self) -> str:
        return f"PushSender(max_queue={self.max_queue}, max_age={self.max_age})"

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._pid != os.getpid():  # first use, or a forked child: the parent's threads are not here
                self._pid = os.getpid()
                self._queue = queue.Queue(maxsize=self.max_queue)
                self._threads = []
            self._threads = [t for t in self._threads if t.is_alive()]
            while len(self._threads) < self.workers:
                thread = threading.Thread(target=self._run, name="airlift-push", daemon=True)
                thread.start()
                self._threads.append(thread)

    def submit(self, item: PushItem) -> bool:
        """Queue ``item`` without waiting; ``False`` (counted, logged) when the queue is full."""
        self._ensure_thread()
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self._outcome(item, DROPPED_QUEUE_FULL, f"queue full ({self.max_queue} items)")
            return False
        self.stats.queued += 1
        return True

    def flush(self, timeout: float) -> bool:
        """Wait until every queued item was handled, at most ``timeout`` seconds; True if it was."""
        end = time.monotonic() + timeout
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._queue.all_tasks_done.wait(left)
        return True

    def deliver_now(self, item: PushItem) -> None:
        """Deliver ``item`` in this thread (retries and ``max_age`` as the background thread does)."""
        self._safe_handle(item)

    def _run(self) -> None:
        q = self._queue
        while True:
            item = q.get()
            try:
                self._safe_handle(item)
            finally:
                q.task_done()

    def _safe_handle(self, item: PushItem) -> None:
        try:
            self._handle(item)
        except Exception as e:  # never let the thread die
            log.exception("Airlift push: %s not reported; the Airlift sensor reports it", item.describe())
            self._outcome(item, FAILED, f"{type(e).__name__}: {e}", log_it=False)

    def _handle(self, item: PushItem) -> None:
        attempt = 0
        while True:
            age = self.clock() - item.created
            if age >= self.max_age:
                self._outcome(item, DROPPED_TOO_OLD, f"{age:.1f}s after the Airflow event (max_age {self.max_age:g}s)")
                return
            attempt += 1
            try:
                sent = self.deliver(item)
            except ReportFailedError as e:
                age = self.clock() - item.created
                delay = self.retry.delay_for(attempt, start=item.created, retry_after=e.retry_after) if e.retry else None
                if delay is None or age + delay >= self.max_age:
                    self._outcome(item, e.counter, f"{e} (after {attempt} attempt(s))", actionable=e.actionable,
                                  log_it=not e.logged)
                    return
                self.retry.sleep(delay)
                continue
            if not item.prefetch and (sent is None or sent > 0):
                self._outcome(item, DELIVERED)
            return

    def _outcome(self, item: PushItem, counter: str, reason: str | None = None, *, actionable: bool = False,
                 log_it: bool = True) -> None:
        if item.prefetch:  # reports nothing: nothing to count
            return
        setattr(self.stats, counter, getattr(self.stats, counter) + 1)
        if reason is not None and log_it:
            log.warning("Airlift push: %s not reported: %s; the Airlift sensor reports it", item.describe(), reason)
        if self.status is not None:
            try:
                self.status.record(counter, item, reason, actionable=actionable)
            except Exception:
                log.exception("Airlift push: cannot record the outcome in the status file")


@dataclass(frozen=True)
class DagAssets:
    """What Dagster says about one DAG: its Airflow instance name, task -> asset keys index
    (``None`` key: the DAG asset's own assets) and the Airlift sensor's settle in seconds (``None``:
    the Dagster side does not publish it)."""

    instance_name: str
    index: Mapping[str | None, Sequence[tuple[str, ...]]]
    settle: float | None = None


class AssetIndexCache:
    """Per DAG, the value of ``fetch(dag_id)`` (a :class:`DagAssets`, ``None``: no such DAG asset
    in Dagster, or the :class:`InstanceUnresolvedError` it raised), kept ``ttl`` seconds.

    >>> calls = []
    >>> cache = AssetIndexCache(lambda dag_id: calls.append(dag_id) or DagAssets("prod", {None: []}), ttl=60.0)
    >>> cache.get("d") == cache.get("d"), len(calls)
    (True, 1)
    """

    def __init__(
        self,
        fetch: Callable[[str], DagAssets | None],
        *,
        ttl: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fetch = fetch
        self.ttl = ttl
        self.clock = clock
        self._entries: dict[str, tuple[float, DagAssets | InstanceUnresolvedError | None]] = {}
        self._lock = threading.Lock()

    def get(self, dag_id: str) -> DagAssets | None:
        now = self.clock()
        with self._lock:
            cached = self._entries.get(dag_id)
        if cached is None or now - cached[0] >= self.ttl:
            try:
                found: DagAssets | InstanceUnresolvedError | None = self.fetch(dag_id)
            except InstanceUnresolvedError as e:  # kept too: the answer is Dagster's, not a failure to reach it
                found = e
            cached = (now, found)
            with self._lock:
                self._entries[dag_id] = cached
        if isinstance(cached[1], InstanceUnresolvedError):
            raise cached[1]
        return cached[1]


class DagsterReporter:
    """Builds the events of a :class:`PushItem` and POSTs them to Dagster's report endpoints.

    ``assets(dag_id)`` says the DAG's instance name and task -> asset index (``None``: Dagster has
    no DAG asset for it, nothing is reported; :class:`InstanceUnresolvedError`: the name is
    ambiguous or unknown). One ``requests.Session`` whose pool holds ``parallel`` connections; a
    task's assets are reported in parallel. A POST is sent only while the item is younger than
    :func:`effective_max_age` of ``max_age`` and the DAG's sensor settle (else
    :class:`ReportTooOldError`; no time at all: :class:`SettleTooShortError`), with (connect, read)
    timeouts that end by then.
    The Dagster+ token (if any) is sent as ``Dagster-Cloud-Api-Token`` and never logged.

    >>> DagsterReporter("http://dagster:3000/", api_token="secret", api=ApiVersion.V2,
    ...                 airflow_url="http://af:8080", assets=lambda dag_id: None)
    DagsterReporter(url='http://dagster:3000')
    """

    def __init__(
        self,
        url: str,
        *,
        api_token: str | None,
        api: ApiVersion,
        airflow_url: str,
        assets: Callable[[str], DagAssets | None],
        timeout: tuple[float, float] = (2.0, 5.0),
        max_age: float = DEFAULT_MAX_AGE,
        parallel: int = REPORT_PARALLELISM,
        clock: Callable[[], float] = time.monotonic,
        session: requests.Session | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._token = api_token
        self.api = api
        self.links = ui_links_for(api, airflow_url)
        self.assets = assets
        self.timeout = timeout
        self.max_age = max_age
        self.parallel = max(1, parallel)
        self.clock = clock
        if session is None:
            session = requests.Session()
            adapter = HTTPAdapter(pool_connections=2, pool_maxsize=self.parallel)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
        self.session = session
        self.stats = PushStats()
        self._pool: ThreadPoolExecutor | None = None
        self._pool_pid = -1
        self._pool_lock = threading.Lock()
        self._said: set[tuple[str, float | None]] = set()

    def __repr__(self) -> str:
        return f"DagsterReporter(url={self.url!r})"

    def max_age_for(self, found: DagAssets, dag_id: str) -> float:
        """Seconds after the Airflow event this DAG's reports may still be sent (:func:`effective_max_age`);
        :class:`SettleTooShortError` when the sensor's settle leaves none. Logged once per instance and settle."""
        limit = effective_max_age(self.max_age, found.settle)
        key = (found.instance_name, found.settle)
        with self._pool_lock:
            first = key not in self._said
            self._said.add(key)
        where = f"Dagster at {self.url}, Airflow instance {found.instance_name!r} (DAG asset {'/'.join(dag_asset_path(found.instance_name, dag_id))})"
        if limit is None:
            message = (f"{where} says the Airlift sensor's settle is {found.settle:g}s: push would have to stop "
                       f"{PUSH_SETTLE_MARGIN:g}s before it, so a report could land after the sensor read the row and "
                       "materialize the run twice; push sends nothing for this instance (the sensor reports it). Set "
                       f"the sensor's settle above {PUSH_SETTLE_MARGIN:g}s on the Dagster side (SensorSettings(settle=...) "
                       f"or the component's sensor.settle_seconds; {self.max_age + PUSH_SETTLE_MARGIN:g}s or more keeps "
                       f"push's max_age {self.max_age:g}s)")
            if first:
                log.error("Airlift push: %s", message)
            raise SettleTooShortError(message)
        if first and found.settle is None:
            log.warning("Airlift push: %s publishes no sensor settle (airlift-dagster older than this airlift-airflow): "
                        "push keeps max_age %gs, which delivers once only while the sensor's settle exceeds %gs; upgrade "
                        "airlift-dagster", where, self.max_age, self.max_age + PUSH_SETTLE_MARGIN)
        elif first and limit < self.max_age:
            log.info("Airlift push: %s says the Airlift sensor's settle is %gs: push sends reports at most %gs after "
                     "the Airflow event (max_age %gs lowered, %gs margin)", where, found.settle, limit, self.max_age,
                     PUSH_SETTLE_MARGIN)
        return limit

    def event_for(self, item: PushItem, found: DagAssets | None = None) -> tuple[ReportedEvent, list[tuple[str, ...]]] | None:
        """The event of ``item`` and the asset keys it goes to (``None``: nothing mapped); ``found``:
        what ``assets(item.dag_id)`` said, if already asked."""
        found = found or self.assets(item.dag_id)
        if found is None:
            return None
        name, index = found.instance_name, found.index
        if item.task_id is not None:
            paths = [tuple(p) for p in index.get(item.task_id) or ()]
            event = task_success_event(
                instance_name=name, links=self.links, dag_id=item.dag_id, run_id=item.run_id,
                task_id=item.task_id, map_index=item.map_index, try_number=item.try_number,
                start_date=item.start_date, end_date=item.end_date,
            )
            return (event, paths) if paths else None
        if item.end_date is None:
            return None
        event = dag_run_success_event(instance_name=name, links=self.links, dag_id=item.dag_id,
                                      run_id=item.run_id, run_type=item.run_type, start_date=item.start_date,
                                      end_date=item.end_date)
        return event, [dag_asset_path(name, item.dag_id)]

    def __call__(self, item: PushItem) -> int:
        """Report ``item``; returns how many requests Dagster took (0: nothing to report)."""
        if item.prefetch:
            try:
                self.assets(item.dag_id)
            except (DagsterApiError, ReportFailedError) as e:
                log.info("Airlift push: cannot read the asset index of DAG %s yet (%s)", item.dag_id, e)
            return 0
        try:
            dag = self.assets(item.dag_id)
            found = None if dag is None else self.event_for(item, dag)
        except DagsterApiError as e:
            unreachable = isinstance(e, DagsterUnreachableError)
            raise ReportFailedError(f"asset index of DAG {item.dag_id}: {e}", retry=unreachable, actionable=not unreachable) from e
        if dag is None or found is None:
            self.stats.skipped_unmapped += 1
            return 0
        max_age = self.max_age_for(dag, item.dag_id)
        event, paths = found
        if len(paths) == 1:
            self._report_asset(item, event, paths[0], max_age)
        else:  # one chain per asset, all at once; every failure is looked at before deciding
            futures = [self._executor().submit(self._report_asset, item, event, path, max_age) for path in paths]
            errors = [e for e in (f.exception() for f in futures) if e is not None]
            if errors:
                raise _worst(errors)
        return 2 * len(paths)

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None or self._pool_pid != os.getpid():  # a forked child has no threads of its parent
                self._pool = ThreadPoolExecutor(max_workers=self.parallel, thread_name_prefix="airlift-push-report")
                self._pool_pid = os.getpid()
            return self._pool

    def _report_asset(self, item: PushItem, event: ReportedEvent, path: tuple[str, ...], max_age: float) -> None:
        """One asset's reports, in order: the materialization, then the check on it."""
        self._post(item, "report_asset_materialization", path, {
            "description": event.description, "metadata": metadata_json(event.metadata),
        }, max_age)
        self._post(item, "report_asset_check", path, {
            "check_name": event.check_name, "passed": True, "severity": "ERROR",
            "metadata": metadata_json(event.check_metadata),
        }, max_age)

    def _post(self, item: PushItem, endpoint: str, path: tuple[str, ...], body: Mapping[str, Any], max_age: float) -> None:
        if (endpoint, path) in item.sent:
            return
        left = item.created + max_age - self.clock()
        if left <= 0:
            raise ReportTooOldError(f"{'/'.join(path)} not sent: {max_age - left:.1f}s after the Airflow event "
                                    f"(max age {max_age:g}s)")
        # the key goes in the body (a list of parts), so parts may hold any character, "/" included
        url = f"{self.url}/{endpoint}/"
        body = {"asset_key": list(path), **body}
        headers = {"Content-Type": "application/json"}
        if self._token:
            headers["Dagster-Cloud-Api-Token"] = self._token
        timeout = (min(self.timeout[0], left), min(self.timeout[1], left))  # no answer by max_age: left to the sensor
        try:
            response = self.session.post(url, json=body, headers=headers, timeout=timeout)
        except requests.ConnectTimeout as e:  # never connected: nothing stored
            raise ReportFailedError(f"{url}: {type(e).__name__}", retry=True) from e
        except requests.ConnectionError as e:
            reason = getattr(e.args[0], "reason", None) if e.args else None
            if isinstance(reason, NewConnectionError):  # refused, no route: nothing stored
                raise ReportFailedError(f"{url}: connection refused", retry=True) from e
            raise ReportFailedError(f"{url}: {type(e).__name__} for {'/'.join(path)} (may be stored)", retry=False) from e
        except requests.RequestException as e:  # a read timeout among them: Dagster may have stored it
            raise ReportFailedError(f"{url}: {type(e).__name__} for {'/'.join(path)} (may be stored)", retry=False) from e
        if response.status_code >= 400:
            hint = {401: "; check the Dagster+ API token (connection password or extra api_token)",
                    403: "; check the Dagster+ API token's permissions",
                    404: "; is the connection's URL Dagster's webserver?"}.get(response.status_code, "")
            raise ReportFailedError(
                f"{url} answered HTTP {response.status_code} for {'/'.join(path)}: {response.text[:200]}{hint}",
                retry=response.status_code in _NOT_STORED, retry_after=response.headers.get("Retry-After"),
                actionable=400 <= response.status_code < 500 and response.status_code != 429,
            )
        item.sent.add((endpoint, path))
        self.stats.events_sent += 1


def _worst(errors: Sequence[BaseException]) -> BaseException:
    """Of a task's per-asset failures, the one that decides: anything not safe to send again
    (ambiguous, too old, a bug) before a failure Dagster surely stored nothing for."""
    final = [e for e in errors if not (isinstance(e, ReportFailedError) and e.retry)]
    return (final or list(errors))[0]


def build_reporter(
    url: str,
    *,
    api_token: str | None,
    instance_name: str | None,
    api: ApiVersion,
    airflow_url: str,
    max_age: float,
    index_ttl: float = 60.0,
) -> DagsterReporter:
    """A reporter with its own HTTP sessions and a per-DAG cache (``index_ttl`` seconds) of the
    instance name and task -> asset index, as the listener and the push relay use it. The name is
    ``instance_name`` checked against Dagster, or learned from it (``None``), by the one resolver the
    operator uses; a DAG with no DAG asset in Dagster has nothing to report. The sensor's settle comes
    with the index (same request) and bounds the max age (:func:`effective_max_age`)."""
    from airlift_airflow.dagster_api import DagsterGraphQLClient, resolve_instance_name

    client = DagsterGraphQLClient(url, api_token=api_token, timeout=5.0,
                                  retry=RetryPolicy(max_attempts=2, base_delay=0.25, deadline=max_age))

    def fetch(dag_id: str) -> DagAssets | None:
        if not client.dag_asset_instances(dag_id):  # Dagster errors here are about Dagster, not the name
            return None
        try:
            name = resolve_instance_name(client, dag_id, instance_name, say=log.info)
        except DagsterUnreachableError:
            raise
        except DagsterApiError as e:
            raise InstanceUnresolvedError(str(e)) from e
        info = client.dag_asset_info(dag_asset_path(name, dag_id), without_partitioned=True)
        return None if info is None else DagAssets(name, info.index, info.settle)

    cache = AssetIndexCache(fetch, ttl=index_ttl)
    return DagsterReporter(url, api_token=api_token, api=api, airflow_url=airflow_url, assets=cache.get, max_age=max_age)
