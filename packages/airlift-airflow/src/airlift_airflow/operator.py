"""``DagsterOperator``: runs an Airflow task's assets in Dagster and mirrors the outcome."""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from airlift_airflow.dagster_api import (
    FINISHED_STATUSES,
    INSTANCE_ENV,
    DagsterAsset,
    DagsterGraphQLClient,
    DagsterRunResult,
    resolve_instance_name,
)
from airlift_airflow.errors import DagsterApiError, DagsterRunFailedError, DagsterUnreachableError
from airlift_airflow.hook import (
    DEFAULT_CONN_ID,
    DEFAULT_LAUNCH_LOOKUP,
    TOKEN_ENV,
    URL_ENV,
    DagsterHook,
)
from airlift_airflow.version_compat import BaseOperator, airflow_conf
from airlift_airflow.waiting import DEFAULT_UNREACHABLE_GRACE, RunWaiter
from airlift_protocol import (
    AIRFLOW_MAP_INDEX_RUN_TAG,
    DAGSTER_PARTITION_TAG,
    PartitionKeyError,
    TimeWindowPartitioning,
    airflow_param_run_tags,
    dagster_run_tags,
    operator_run_tags,
    partition_key_for_airflow_run,
)

__all__ = ["DEFAULT_CONN_ID", "INSTANCE_ENV", "TOKEN_ENV", "URL_ENV", "DagsterOperator", "airflow_run_params",
           "configured_instance_name", "default_partition_key"]

#: Seconds ``on_kill`` looks for the run of a launch whose answer had not come yet.
ON_KILL_LOOKUP = 10.0
#: The instance name push mode falls back to (the operator learns the name from Dagster instead).
DEFAULT_INSTANCE_NAME = "airflow"


def _int(value: Any, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except (TypeError, ValueError):
        return default


def configured_instance_name() -> str | None:
    """The Airflow instance's name on the Dagster side when it is set explicitly:
    ``AIRLIFT_AIRFLOW_INSTANCE_NAME``, else ``[airlift] instance_name`` (``AIRFLOW__AIRLIFT__INSTANCE_NAME``,
    shared with push mode); ``None`` when neither is set (the name is then learned from Dagster, see
    :func:`airlift_airflow.dagster_api.resolve_instance_name`).

    >>> import os; os.environ.pop("AIRLIFT_AIRFLOW_INSTANCE_NAME", None) and None
    >>> configured_instance_name() == (os.environ.get("AIRFLOW__AIRLIFT__INSTANCE_NAME") or None)
    True
    """
    return os.environ.get(INSTANCE_ENV) or str(airflow_conf.get("airlift", "instance_name", fallback="") or "") or None


class DagsterOperator(BaseOperator):
    """Materializes, in Dagster, the assets mapped to this task (or, with ``whole_dag=True``, to its DAG).

    ``mark_as_dagster_migrating`` puts it in place of every ``migrated: true`` task; you rarely
    create one yourself. At execute it:

    1. asks Dagster's GraphQL API for this task's own asset nodes: those named by ``asset_keys``, or
       those tagged ``airlift/dag_id`` + ``airlift/task_id`` (none is an error naming the task and URL);
    2. launches one run of exactly those assets per code location on the implicit ``__ASSET_JOB``,
       tagged with the Airflow instance, DAG, run id, task, try number, map index and code location
       (and ``dagster/partition`` for time-partitioned assets), and logs its link;
    3. waits for the runs (on the worker, or with ``deferrable=True`` in the triggerer) and fails the
       Airflow task, with the run link and Dagster's error, when one fails or is canceled. It returns
       (and pushes as XCom) the Dagster run ids (the last run of each Dagster retry chain).

    Dagster faults: finding the assets, launching and waiting go on through connection errors, timeouts and
    5xx for up to ``unreachable_grace`` seconds (default 300) and log the outage and the recovery (a Dagster
    deploy or webserver restart does not fail the task); a failed run that
    Dagster retries (run retries, e.g. the ``dagster/max_retries`` tag, which ``run_tags`` can set) is
    followed to its retry. The wait ends only on a final run status, the grace, or ``run_timeout``; a task
    that stops waiting without success logs each run's fate (ended FAILURE/CANCELED, or left running with
    its link).

    One Dagster run per task try and code location: a launch whose answer was lost or late (timeout,
    dropped connection, 5xx) is looked up by its tags for up to ``launch_lookup_timeout`` seconds
    (default 60) before it is sent again; should a second run for the try appear anyway, it is
    terminated and logged. Per code location, a try uses the run of its own try if there is one; else
    it re-attaches to a run of an earlier try of the same attempt still in flight, or reuses one that
    succeeded; a failed or canceled run (or none) gets a new run, so a retry completes only the
    locations that are missing or failed. A user clear starts a new attempt: its tries launch new runs
    and terminate the earlier attempt's runs still in flight.

    Parameters: the Airflow run's ``params``, overridden by its ``dag_run.conf``, reach the run twice: as
    run config of each asset that declares a ``Config`` (the fields it declares, ``{"ops": {op: {"config":
    ...}}}``), and as run tags ``airlift/airflow_param.<name>`` (see
    :func:`airlift_protocol.airflow_param_run_tags`). ``pass_params=False`` passes neither (keep values
    that must not show in Dagster's UI out of it).

    Partitions: when the assets are time-window partitioned, the run materializes the partition
    holding the Airflow run's data interval start (else logical date); see
    :func:`airlift_protocol.partition_key_for_airflow_run`. Mixed or non-time partitioning is an error.

    ``on_kill`` (execution timeout, "mark failed", a killed worker) terminates the Dagster runs the
    try was waiting for (and a run whose launch answer had not come yet) and says so in the task log.
    Deferred, Airflow 3 calls the trigger's ``on_kill`` on mark failed, mark success and clear, which
    does the same; Airflow 2 calls nothing, and the runs go on until the task's next try or clear.

    The Dagster URL and optional Dagster+ API token come from :class:`~airlift_airflow.DagsterHook`
    (connection ``dagster_conn_id``, else ``AIRLIFT_DAGSTER_URL`` / ``AIRLIFT_DAGSTER_API_TOKEN``).
    The Airflow instance's name (part of every run's identity) is learned from Dagster: the DAG asset
    ``[name, "dag", dag_id]`` names it. ``airflow_instance_name`` (else ``AIRLIFT_AIRFLOW_INSTANCE_NAME``,
    else ``[airlift] instance_name``) sets it explicitly; Dagster must then have that DAG asset. No such
    DAG asset, or several instances with one and no name set, fails the task with an error naming them.

    >>> op = DagsterOperator(task_id="load_raw", poll_interval=5.0, deferrable=True)  # doctest: +SKIP
    >>> # AIRFLOW_CONN_DAGSTER_DEFAULT='http://dagster-webserver:3000' in the Airflow environment
    """

    ui_color = "#4F43DD"
    ui_fgcolor = "#FFFFFF"

    def __init__(
        self,
        *,
        dagster_conn_id: str = DEFAULT_CONN_ID,
        poll_interval: float = 2.0,
        run_timeout: float | None = None,
        request_timeout: float = 30.0,
        request_attempts: int = 5,
        request_backoff: float = 1.0,
        unreachable_grace: float = DEFAULT_UNREACHABLE_GRACE,
        launch_lookup_timeout: float = DEFAULT_LAUNCH_LOOKUP,
        run_tags: Mapping[str, str] | None = None,
        airflow_instance_name: str | None = None,
        asset_keys: Sequence[Sequence[str]] | None = None,
        whole_dag: bool = False,
        deferrable: bool = False,
        pass_params: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.dagster_conn_id = dagster_conn_id
        self.poll_interval = poll_interval
        self.run_timeout = run_timeout
        self.request_timeout = request_timeout
        self.request_attempts = request_attempts
        self.request_backoff = request_backoff
        self.unreachable_grace = unreachable_grace
        self.launch_lookup_timeout = launch_lookup_timeout
        self.run_tags = dict(run_tags or {})
        self.airflow_instance_name = airflow_instance_name
        self.asset_keys = [list(k) for k in asset_keys] if asset_keys is not None else None
        self.whole_dag = whole_dag
        self.deferrable = deferrable
        self.pass_params = pass_params
        self._run_ids: list[str] = []
        self._launching: Mapping[str, str] | None = None
        self._waiter: RunWaiter | None = None

    def get_hook(self) -> DagsterHook:
        """The hook to Dagster (override to customise the connection or retry policy)."""
        return DagsterHook.with_request_settings(self.dagster_conn_id, timeout=self.request_timeout,
                                                 attempts=self.request_attempts, backoff=self.request_backoff)

    @property
    def instance_name(self) -> str | None:
        """The explicitly configured instance name (argument, else environment or ``[airlift]``); ``None``:
        learned from Dagster when the task runs."""
        return self.airflow_instance_name or configured_instance_name()

    def execute(self, context: Any) -> list[str]:
        ti = context["ti"]
        dag_id, task_id = ti.dag_id, ti.task_id
        try_number = _int(getattr(ti, "try_number", None), 1)
        map_index = _int(getattr(ti, "map_index", None), -1)
        # Airflow changes max_tries only when a task is cleared: it names the attempt (see run_counts_for_try)
        max_tries = None if getattr(ti, "max_tries", None) is None else _int(ti.max_tries, 0)
        hook = self.get_hook()
        client = hook.get_conn()
        what = f"Airflow DAG {dag_id}" if self.whole_dag else f"Airflow task {dag_id}.{task_id}"
        run_ids = self._run_ids = []  # on_kill sees each run as soon as it is known
        outage: float | None = None
        while True:  # a Dagster deploy or restart before the runs are launched is ridden out like one while waiting
            try:
                self._launch(context, hook, client, run_ids, what=what, try_number=try_number, map_index=map_index,
                             max_tries=max_tries)
                break
            except DagsterUnreachableError as e:
                now = time.monotonic()
                outage = now if outage is None else outage
                if now - outage >= self.unreachable_grace:
                    raise DagsterUnreachableError(
                        f"{e}; Dagster stayed unreachable for {now - outage:.0f}s before the run of {what} could be "
                        f"launched (unreachable_grace {self.unreachable_grace:g}s)") from e
                self.log.warning("%s; trying again for up to %gs (unreachable_grace) before launching the run of %s",
                                 e, self.unreachable_grace - (now - outage), what)
                time.sleep(max(self.poll_interval, 1.0))
        if outage is not None:
            self.log.info("Dagster at %s answers again after %.0fs; launched", client.url, time.monotonic() - outage)
        if self.deferrable:
            from airlift_airflow.triggers import DagsterRunTrigger

            self.log.info("Deferring: the triggerer waits for Dagster run(s) %s", ", ".join(run_ids))
            end_time = None if self.run_timeout is None else time.time() + self.run_timeout
            self.defer(
                trigger=DagsterRunTrigger(run_ids=run_ids, dagster_conn_id=self.dagster_conn_id,
                                          poll_interval=self.poll_interval, end_time=end_time,
                                          request_timeout=self.request_timeout, request_attempts=self.request_attempts,
                                          request_backoff=self.request_backoff, unreachable_grace=self.unreachable_grace),
                method_name="execute_complete",
            )
        try:
            results = hook.wait(run_ids, poll_interval=self.poll_interval, timeout=self.run_timeout,
                                grace=self.unreachable_grace, say=self.log.info, warn=self.log.warning,
                                started=self._watching)
        except Exception as e:
            self._left_running(client, run_ids, f"{type(e).__name__}: {e}")
            raise
        return self._finish(results, what=what)

    def _launch(self, context: Any, hook: DagsterHook, client: DagsterGraphQLClient, run_ids: list[str], *, what: str, try_number: int,
                map_index: int, max_tries: int | None) -> None:
        """Find this task's assets and launch (or re-attach to) one run per code location, appending each
        run id to ``run_ids``. Safe to repeat: a repeat finds the runs already launched for the try."""
        ti = context["ti"]
        dag_id, task_id, run_id = ti.dag_id, ti.task_id, context["run_id"]
        instance_name = resolve_instance_name(client, dag_id, self.instance_name, say=self.log.info)
        assets = hook.task_assets(dag_id=dag_id, task_id=None if self.whole_dag else task_id, asset_keys=self.asset_keys,
                                  instance_name=instance_name)
        self._check_assets(assets, what=what, url=client.url)
        partition = self._partition(context, assets, what=what)
        params = airflow_run_params(context) if self.pass_params else {}
        groups: dict[tuple[str, str], list[tuple[str, ...]]] = defaultdict(list)
        for asset in assets:
            groups[(asset.location, asset.repository)].append(asset.path)
        identity = dagster_run_tags(dag_id=dag_id, task_id=task_id, run_id=run_id, instance_name=instance_name)
        identity[AIRFLOW_MAP_INDEX_RUN_TAG] = str(map_index)
        for plan in hook.plan(groups, identity=identity, try_number=try_number, max_tries=max_tries):
            for run_id_, problem in hook.terminate([r.run_id for r in plan.stale]).items():
                self.log.warning("Dagster run %s of an earlier attempt of this task (cleared since) was still in flight: "
                                 "%s: %s", run_id_, "terminated" if problem is None else f"could not terminate ({problem})",
                                 client.run_url(run_id_))
            if plan.run is not None:
                if plan.run.run_id in run_ids:
                    continue
                self.log.info("Using Dagster run %s for code location %s (%s): %s",
                              plan.run.run_id, plan.location, plan.reason, client.run_url(plan.run.run_id))
                run_ids.append(plan.run.run_id)
                continue
            tags = {**self.run_tags, **airflow_param_run_tags(params)}
            tags |= operator_run_tags(instance_name=instance_name, dag_id=dag_id, task_id=task_id, run_id=run_id,
                                     try_number=try_number, map_index=map_index, location=plan.location,
                                     max_tries=max_tries)
            if partition is not None:
                tags[DAGSTER_PARTITION_TAG] = partition
            self._launching = tags
            new_run = hook.launch(location=plan.location, repository=plan.repository, asset_paths=plan.paths, tags=tags,
                                  say=self.log.warning, lookup_for=self.launch_lookup_timeout,
                                  asset_checks=_run_checks(assets, plan.paths),
                                  run_config=_run_config(assets, plan.paths, params))
            run_ids.append(new_run)
            self._launching = None
            self.log.info(
                "Launched Dagster run %s for %d asset(s) of %s in code location %s%s: %s",
                new_run, len(plan.paths), what, plan.location,
                f" (partition {partition})" if partition is not None else "", client.run_url(new_run),
            )

    def _watching(self, waiter: RunWaiter) -> None:
        self._waiter = waiter

    def execute_complete(self, context: Any, event: Mapping[str, Any]) -> list[str]:
        """Resumes a deferred task with the trigger's event; same results and log lines as waiting."""
        ti = context["ti"]
        what = f"Airflow DAG {ti.dag_id}" if self.whole_dag else f"Airflow task {ti.dag_id}.{ti.task_id}"
        client = self.get_hook().get_conn()
        if event.get("error"):
            self._left_running(client, event.get("run_ids") or [], event["error"])
            raise DagsterApiError(f"waiting for the Dagster run(s) of {what}: {event['error']}")
        if "results" in event:
            outcome = [(str(r), str(s), e) for r, s, e in event["results"]]
        else:  # an event of a trigger deferred before this version
            late = "still in flight at run_timeout" if event.get("timed_out") else None
            outcome = [(r, s, None if s in FINISHED_STATUSES else late) for r, s in event["statuses"].items()]
        self._run_ids = [r for r, _, _ in outcome]
        return self._finish([client.result(r, s, error=e) for r, s, e in outcome], what=what)

    def _finish(self, results: Sequence[DagsterRunResult], *, what: str) -> list[str]:
        failures = []
        for result in results:
            if result.status == "SUCCESS":
                self.log.info("Dagster run %s succeeded: %s", result.run_id, result.url)
            elif result.status in FINISHED_STATUSES:
                failures.append(f"Dagster run {result.status}: {result.url}\n{result.error or ''}".strip())
                self.log.error("Dagster run %s ended %s: %s", result.run_id, result.status, result.url)
            else:
                failures.append(f"Dagster run {result.status}: {result.url}\n{result.error}; the Dagster run goes on")
                self.log.error("Stopped waiting for Dagster run %s (last seen %s): %s. The run was left running: %s",
                               result.run_id, result.status, result.error, result.url)
        if failures:
            raise DagsterRunFailedError(f"the Dagster run of {what} did not succeed:\n" + "\n".join(failures))
        return [r.run_id for r in results]

    def _left_running(self, client: Any, run_ids: Sequence[str], why: str) -> None:
        for run_id in run_ids:
            self.log.error("Stopped waiting for Dagster run %s (%s). The run was left as it is: %s",
                           run_id, why, client.run_url(run_id))

    def on_kill(self) -> None:
        """Terminate the Dagster runs this try launched or re-attached to (after Dagster's retries of
        them), and a run whose launch was still waiting for its answer; say so in the log."""
        run_ids = self._waiter.current_run_ids() if self._waiter is not None else list(self._run_ids)
        launching = self._launching
        if not run_ids and launching is None:
            return
        hook = self.get_hook()
        client = hook.get_conn()
        outcome = hook.terminate(run_ids)
        if launching is not None:  # the launch's answer never came: Dagster may create the run a little later
            self.log.warning("Task killed while launching a Dagster run: looking it up by its tags for up to %gs",
                             ON_KILL_LOOKUP)
            end = time.monotonic() + ON_KILL_LOOKUP
            while True:
                found = hook.terminate_in_flight(launching)
                outcome.update(found)
                if found or time.monotonic() >= end:
                    break
                time.sleep(1.0)
        for run_id, problem in outcome.items():
            if problem is None:
                self.log.warning("Task killed: asked Dagster to terminate run %s: %s", run_id, client.run_url(run_id))
            else:
                self.log.error("Task killed: could not terminate Dagster run %s (%s): %s", run_id, problem,
                               client.run_url(run_id))

    @staticmethod
    def _check_assets(assets: Sequence[DagsterAsset], *, what: str, url: str) -> None:
        if not assets:
            raise DagsterApiError(
                f"no Dagster assets are tagged for {what} at {url}: tag its assets "
                "(e.g. task_defs / tags airlift/dag_id and airlift/task_id) and reload the code location, "
                "or set migrated: false"
            )
        not_executable = [a for a in assets if not a.executable]
        if not_executable:
            names = ", ".join("/".join(a.path) for a in not_executable)
            raise DagsterApiError(
                f"the Dagster assets of {what} at {url} are not executable ({names}): "
                "replace the AssetSpecs with asset definitions before migrating the task"
            )

    def get_partition_key(self, context: Mapping[str, Any], assets: Sequence[DagsterAsset]) -> str | None:
        """The partition the Dagster run materializes (``dagster/partition``), or ``None`` for none.
        Override it in a subclass (passed as ``dagster_operator_class``) to choose another: ``context``
        is the task's Airflow context, ``assets`` the asset nodes the run selects (``path``,
        ``partition_type``, ``partition_description``). The default is :func:`default_partition_key`.

        >>> class MonthlyOperator(DagsterOperator):
        ...     def get_partition_key(self, context, assets):
        ...         return context["logical_date"].strftime("%Y-%m-01")
        """
        ti = context["ti"]
        what = f"Airflow DAG {ti.dag_id}" if self.whole_dag else f"Airflow task {ti.dag_id}.{ti.task_id}"
        return default_partition_key(assets, context, what=what)

    def _partition(self, context: Mapping[str, Any], assets: Sequence[DagsterAsset], *, what: str) -> str | None:
        """:meth:`get_partition_key`; an override's error (or a non-string key) fails the task naming it."""
        try:
            key = self.get_partition_key(context, assets)
        except DagsterApiError:
            raise
        except Exception as e:
            raise DagsterApiError(f"{type(self).__name__}.get_partition_key raised {type(e).__name__} for {what}: {e}") from e
        if key is not None and not isinstance(key, str):
            raise DagsterApiError(f"{type(self).__name__}.get_partition_key returned {type(key).__name__} for {what}; "
                                  "return a partition key (str) or None")
        return key


def default_partition_key(assets: Sequence[DagsterAsset], context: Mapping[str, Any], *, what: str) -> str | None:
    """The partition of time-window partitioned ``assets`` that holds the Airflow run's data interval
    start (else logical date), by :func:`airlift_protocol.partition_key_for_airflow_run`; ``None`` when
    the assets are not partitioned. Mixed or non-time partitioning raises :class:`DagsterApiError`."""
    kinds = {(a.partition_type, a.partition_fmt, a.partition_description) for a in assets}
    if kinds == {(None, None, None)}:
        return None
    if len(kinds) > 1:
        listed = "; ".join(f"{'/'.join(a.path)}: {a.partition_description or 'not partitioned'}" for a in assets)
        raise DagsterApiError(
            f"the Dagster assets of {what} are partitioned differently ({listed}); one Airflow run materializes "
            "one partition of one partitioning: give them the same partitions definition or map them to different tasks"
        )
    asset = assets[0]
    if asset.partition_type != "TIME_WINDOW" or not asset.partition_fmt or not asset.partition_description:
        raise DagsterApiError(
            f"the Dagster assets of {what} have {asset.partition_type} partitions; only time-window partitions "
            "follow from an Airflow run (its data interval)"
        )
    try:
        partitioning = TimeWindowPartitioning.from_dagster(fmt=asset.partition_fmt, description=asset.partition_description)
        return partition_key_for_airflow_run(
            partitioning,
            logical_date=context.get("logical_date"),
            data_interval_start=context.get("data_interval_start"),
            data_interval_end=context.get("data_interval_end"),
            run_id=str(context.get("run_id", "")),
        )
    except PartitionKeyError as e:
        raise DagsterApiError(f"{what}: {e}") from e


def airflow_run_params(context: Mapping[str, Any]) -> dict[str, Any]:
    """The Airflow run's parameters: the DAG's ``params`` (as resolved for the run) overridden by the
    run's ``dag_run.conf``.

    >>> from types import SimpleNamespace
    >>> airflow_run_params({"params": {"region": "eu", "limit": 10}, "dag_run": SimpleNamespace(conf={"limit": 5})})
    {'region': 'eu', 'limit': 5}
    """
    params = context.get("params") or {}
    values: dict[str, Any] = {str(name): params[name] for name in params}
    conf = getattr(context.get("dag_run"), "conf", None)
    if isinstance(conf, Mapping):
        values.update((str(k), v) for k, v in conf.items())
    return values


def _run_config(assets: Sequence[DagsterAsset], paths: Sequence[tuple[str, ...]], params: Mapping[str, Any]) -> dict[str, Any]:
    """Run config giving each selected asset that declares a ``Config`` the parameters it declares
    (nothing for an asset none of whose fields is a parameter)."""
    wanted = {tuple(p) for p in paths}
    ops: dict[str, Any] = {}
    for asset in assets:
        if asset.path not in wanted or asset.op_name is None or asset.config_fields is None:
            continue
        config = {name: params[name] for name in asset.config_fields if name in params}
        if config:
            ops[asset.op_name] = {"config": config}
    return {"ops": ops} if ops else {}


def _run_checks(assets: Sequence[DagsterAsset], paths: Sequence[tuple[str, ...]]) -> list[tuple[tuple[str, ...], str]] | None:
    """The checks the run of ``paths`` executes (see :meth:`DagsterAsset.run_checks`); ``None`` when
    Dagster did not list some asset's checks (it then runs them all)."""
    by_path = {a.path: a.run_checks() for a in assets}
    selected: list[tuple[tuple[str, ...], str]] = []
    for path in paths:
        checks = by_path.get(tuple(path))
        if checks is None:
            return None
        selected.extend((tuple(path), name) for name in checks)
    return selected
