"""The push listener: Airflow tells Dagster about successful task tries and DAG runs within seconds.

Registered by :class:`airlift_airflow.plugin.AirliftPlugin` (entry point ``airflow.plugins``);
it does nothing until push is switched on in Airflow's configuration::

    [airlift]
    push_enabled = True          # AIRFLOW__AIRLIFT__PUSH_ENABLED=True
    dagster_conn_id = dagster_default

The Airflow instance's name on the Dagster side is learned per DAG from Dagster, as DagsterOperator
learns it (:func:`airlift_airflow.dagster_api.resolve_instance_name`: the DAG asset ``[name, "dag",
dag_id]``); ``instance_name`` (``AIRLIFT_AIRFLOW_INSTANCE_NAME`` wins) sets it, and Dagster must then
have that DAG asset. A DAG whose name cannot be resolved is not reported (counted and logged).

Optional: ``airflow_url`` (the Airflow UI's URL as the Dagster side knows it, for links; default
the webserver's/API's ``base_url``), ``max_queue`` (1000), ``max_age`` (8 seconds; lowered to the
sensor's ``settle`` minus 2 s, which the DAG asset says), ``flush_timeout`` (2 seconds a task process waits, after its success is
recorded, for its events to be handed over when ``detach`` is off), ``index_ttl`` (60 seconds), ``detach``
(True: a task's events go to the push relay, a process of its own that the first task starts and that
exits after ``relay_idle_seconds``, 300, without work; see :mod:`airlift_airflow.relay`; so the task's
process never waits for Dagster; DAG-run events are sent from the scheduler's queue).

On a successful try of a task mapped to assets (the task -> asset index on the DAG asset), one
materialization per asset and a passing ``airflow_task_succeeded`` check; on a successful DAG run,
the DAG asset's. Tasks run by ``DagsterOperator`` are not reported (their Dagster run materialized
the assets). See :mod:`airlift_airflow.push` for delivery, drops and failures.

>>> listener = AirliftListener(settings=PushSettings(enabled=False))
>>> listener.on_dag_run_success(dag_run=None, msg="")  # disabled: nothing happens
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from airlift_airflow.hook import DagsterHook
from airlift_airflow.operator import DagsterOperator, configured_instance_name
from airlift_airflow.push import (
    DEFAULT_MAX_AGE,
    DEFAULT_MAX_QUEUE,
    PushItem,
    PushSender,
    build_reporter,
)
from airlift_airflow.relay import (
    DEFAULT_IDLE_SECONDS,
    RelayTarget,
    actionable_problem,
    send_or_spawn,
    status_file,
)
from airlift_airflow.run_events import enum_value
from airlift_airflow.version_compat import (
    AIRFLOW_V_3_0_PLUS,
    airflow_conf,
    airflow_ui_url,
    hookimpl,
    task_instance_fields,
)
from airlift_protocol import ApiVersion

__all__ = ["SECTION", "AirliftListener", "PushSettings", "listener"]

log = logging.getLogger("airlift_airflow.push")

#: Airflow configuration section of push mode.
SECTION = "airlift"


@dataclass(frozen=True)
class PushSettings:
    """Push mode's settings (see the module docstring).

    >>> PushSettings().max_age
    8.0
    """

    enabled: bool = False
    #: ``None``: learned per DAG from Dagster.
    instance_name: str | None = None
    dagster_conn_id: str = "dagster_default"
    airflow_url: str | None = None
    max_queue: int = DEFAULT_MAX_QUEUE
    max_age: float = DEFAULT_MAX_AGE
    flush_timeout: float = 2.0
    index_ttl: float = 60.0
    detach: bool = True
    relay_idle_seconds: float = DEFAULT_IDLE_SECONDS

    @classmethod
    def from_airflow_conf(cls) -> PushSettings:
        """Read ``[airlift]`` from Airflow's configuration (``AIRFLOW__AIRLIFT__*`` variables too)."""
        def get(key: str, default: Any) -> Any:
            return airflow_conf.get(SECTION, key, fallback=default)

        return cls(
            enabled=str(get("push_enabled", "False")).strip().lower() in ("1", "true", "yes", "on"),
            instance_name=configured_instance_name(),
            dagster_conn_id=str(get("dagster_conn_id", "dagster_default")),
            airflow_url=get("airflow_url", None) or None,
            max_queue=int(get("max_queue", DEFAULT_MAX_QUEUE)),
            max_age=float(get("max_age", DEFAULT_MAX_AGE)),
            flush_timeout=float(get("flush_timeout", 2.0)),
            index_ttl=float(get("index_ttl", 60.0)),
            detach=str(get("detach", "True")).strip().lower() in ("1", "true", "yes", "on"),
            relay_idle_seconds=float(get("relay_idle_seconds", DEFAULT_IDLE_SECONDS)),
        )


class AirliftListener:
    """Airflow listener (pluggy hook implementations) of push mode; settings are read on first use.

    ``overhead`` holds the seconds each task callback held the task's process (for the bench).
    """

    def __init__(self, settings: PushSettings | None = None) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._sender: PushSender | None = None
        self._target: RelayTarget | None = None
        self.overhead: list[float] = []

    def __repr__(self) -> str:
        return f"AirliftListener(settings={self._settings!r})"

    @property
    def settings(self) -> PushSettings:
        if self._settings is None:
            try:
                self._settings = PushSettings.from_airflow_conf()
            except Exception as e:  # a bad setting must not fail a task
                log.warning("Airlift push disabled: cannot read the [%s] settings (%s)", SECTION, e)
                self._settings = PushSettings(enabled=False)
        return self._settings

    def sender(self) -> PushSender | None:
        """The sender (built on first use; ``None`` when push is off or Dagster's URL is unknown)."""
        settings = self.settings
        if not settings.enabled:
            return None
        with self._lock:
            if self._sender is None:
                try:
                    url, token = DagsterHook(settings.dagster_conn_id).url_and_token()
                except Exception as e:
                    log.warning("Airlift push: no Dagster URL (%s); the Airlift sensor reports everything", e)
                    self._settings = PushSettings(enabled=False)
                    return None
                # where a task's events go (the relay), and the in-process queue (the scheduler's DAG-run
                # events; a task's when no relay can be reached or ``detach`` is off)
                self._target = RelayTarget(url, token, settings.instance_name, ApiVersion.V2 if AIRFLOW_V_3_0_PLUS else ApiVersion.V1,
                                           settings.airflow_url or airflow_ui_url(), max_age=settings.max_age,
                                           idle_seconds=settings.relay_idle_seconds)
                reporter = build_reporter(url, api_token=token, instance_name=settings.instance_name, api=self._target.api,
                                          airflow_url=self._target.airflow_url, max_age=settings.max_age, index_ttl=settings.index_ttl)
                self._sender = PushSender(deliver=reporter, max_queue=settings.max_queue, max_age=settings.max_age,
                                          status=status_file())
            return self._sender

    @hookimpl
    def on_task_instance_running(self, previous_state: Any, task_instance: Any) -> None:
        """Have the DAG's task -> asset index fetched while the task runs (by the relay, started now
        if none runs, so it is up when the task ends)."""
        started = time.perf_counter()
        try:
            sender = self.sender()
            if sender is not None and not _migrated(task_instance):
                item = PushItem(dag_id=str(task_instance.dag_id), run_id="", prefetch=True)
                if not (self.settings.detach and self._detach(item)):
                    sender.submit(item)
        except Exception:
            log.exception("Airlift push: on_task_instance_running failed (the task is not affected)")
        self.overhead.append(time.perf_counter() - started)

    @hookimpl
    def on_task_instance_success(self, previous_state: Any, task_instance: Any) -> None:
        """Report the try's events without keeping the task waiting (the task's success is already
        recorded when Airflow calls this): a detached process delivers them (``detach``, the
        default), else the queue, waited on up to ``flush_timeout``."""
        started = time.perf_counter()
        try:
            sender = self.sender()
            if sender is None or _migrated(task_instance):
                return
            item = PushItem.for_task(**task_instance_fields(task_instance))
            if self.settings.detach and self._detach(item):
                outcome = "handed to the push relay"
            elif sender.submit(item):
                handed = sender.flush(self.settings.flush_timeout)
                outcome = "handed to Dagster" if handed else "still queued (the Airlift sensor reports what push misses)"
                if sender.status is not None:
                    sender.status.flush()
            else:
                return
            log.info("Airlift push: task events %s; the listener took %.1f ms", outcome, (time.perf_counter() - started) * 1000)
            problem = actionable_problem(item.dag_id)
            if problem is not None:
                log.warning("Airlift push: reports of DAG %s do not reach Dagster (%s, %s: %s); the Airlift sensor reports "
                            "them; see airlift doctor --push-status", item.dag_id, problem.at, problem.what, problem.reason)
        except Exception:
            log.exception("Airlift push: on_task_instance_success failed (the task is not affected)")
        finally:
            self.overhead.append(time.perf_counter() - started)

    def _detach(self, item: PushItem) -> bool:
        return self._target is not None and send_or_spawn(item, self._target) != "failed"

    @hookimpl
    def on_dag_run_success(self, dag_run: Any, msg: str) -> None:
        """Queue the DAG asset's materialization (in the scheduler, which keeps running)."""
        try:
            sender = self.sender()
            if sender is not None and dag_run is not None:
                sender.submit(PushItem.for_dag_run(
                    dag_id=str(dag_run.dag_id), run_id=str(dag_run.run_id), run_type=enum_value(getattr(dag_run, "run_type", None)),
                    start_date=getattr(dag_run, "start_date", None), end_date=getattr(dag_run, "end_date", None),
                ))
        except Exception:
            log.exception("Airlift push: on_dag_run_success failed (the DAG run is not affected)")


def _migrated(task_instance: Any) -> bool:
    """True for a task run by DagsterOperator: its Dagster run reported the assets already."""
    return isinstance(getattr(task_instance, "task", None), DagsterOperator)


#: The listener the plugin registers.
listener = AirliftListener()
