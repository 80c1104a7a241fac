"""What a tick knows before it runs: the user's knobs (:class:`SensorSettings`) and what the definitions
fix (:class:`SensorPlan`: mapped tasks, asset order, DAG coverage digests). No I/O."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from dagster import (
    AssetCheckKey,
    AssetKey,
    AssetSpec,
)

from airlift_dagster.errors import AirliftDagsterError
from airlift_protocol import (
    ApiVersion,
    TimeWindowPartitioning,
)

#: Stands in :func:`dag_digest` for assets mapped to the DAG as a whole (no task id is empty).
DAG_LEVEL_MARK = ""


def dag_digest(dag_id: str, mapped_task_ids: Iterable[str] = ()) -> str:
    """8 hex characters standing in the cursor for a DAG and the tasks mapped to assets in it
    (:data:`DAG_LEVEL_MARK` for assets mapped to the DAG itself); a DAG whose digest the cursor lacks
    joined the selector or the mapping: its history is backfilled."""
    return hashlib.sha1("\x1f".join([dag_id, *sorted(mapped_task_ids)]).encode()).hexdigest()[:8]


#: Values of :attr:`SensorSettings.change_source`.
CHANGE_SOURCES = ("auto", "audit_log", "scan")


@dataclass(frozen=True)
class SensorSettings:
    """The sensor's knobs (see the guide for costs).

    - ``history_window``: how far back the first tick (and the first tick after a DAG joins the
      mapping) reports;
    - ``lateness_window``: how long after a row's ``updated_at`` a late commit is still caught (each
      changed row is read twice: once when it appears, once ``lateness_window`` later);
    - ``max_rows_per_tick``: runs + task instances read per tick (bounds tick time and memory; with the
      audit log, its rows too); a backlog drains by at most this many a tick;
    - ``settle``: rows changed in the last ``settle`` are left for the next tick (commits in flight);
    - ``audit_interval``: how often the windows already read twice are counted again for commits
      later than ``lateness_window`` (two count requests; at most once per interval);
    - ``change_source``: how a tick learns what changed: ``"auto"`` (the default) reads Airflow's
      audit log (indexed by time; the task instances are then read by run) and falls back to
      ``"scan"`` with a warning when the user may not read it (Airflow 2: Admin only) or Airflow
      is older than 2.9; ``"audit_log"`` fails the tick instead of falling back; ``"scan"`` reads
      the runs and task instances by ``updated_at`` (Airflow indexes neither: a sequential scan of
      both tables per window);
    - ``mirror_runs``: also show each Airflow DAG run as a Dagster run (see :mod:`airlift_dagster.run_mirror`);
    - ``clock``: the current time (injectable for tests).

    >>> SensorSettings(lateness_window=timedelta(hours=12)).max_rows_per_tick
    10000
    """

    history_window: timedelta = timedelta(days=1)
    lateness_window: timedelta = timedelta(hours=6)
    max_rows_per_tick: int = 10_000
    settle: timedelta = timedelta(seconds=10)
    audit_interval: timedelta = timedelta(minutes=5)
    change_source: str = "auto"
    mirror_runs: bool = False
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(timezone.utc), compare=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("history_window", "lateness_window", "settle", "audit_interval"):
            value = getattr(self, name)
            if not isinstance(value, timedelta) or value < timedelta(0):
                raise AirliftDagsterError(f"sensor setting {name} must be a timedelta of zero or more, got {value!r}")
        if self.change_source not in CHANGE_SOURCES:
            raise AirliftDagsterError(f"sensor setting change_source must be one of {', '.join(map(repr, CHANGE_SOURCES))}, "
                                      f"got {self.change_source!r}")
        if not isinstance(self.max_rows_per_tick, int) or self.max_rows_per_tick < 10:
            raise AirliftDagsterError(f"sensor setting max_rows_per_tick must be an int of at least 10, got {self.max_rows_per_tick!r}")


@dataclass(frozen=True)
class SensorPlan:
    """Everything a tick needs that is known when definitions are built (no I/O)."""

    instance_name: str
    api: ApiVersion
    webserver_url: str
    dag_ids: frozenset[str]
    by_task: Mapping[tuple[str, str], Sequence[AssetKey]]
    order: Mapping[AssetKey, int]
    task_rank: Mapping[tuple[str, str], int]
    dag_asset_keys: Mapping[str, AssetKey]
    user_check_keys: Mapping[AssetKey, Sequence[AssetCheckKey]]
    coverage: Mapping[str, str] = field(default_factory=dict)
    #: Airflow dataset / asset URI → its asset key (empty: dataset events are not read).
    dataset_keys: Mapping[str, AssetKey] = field(default_factory=dict)
    #: Mapped asset key → its time-window partitioning (its materializations carry a partition key).
    partitioning: Mapping[AssetKey, TimeWindowPartitioning] = field(default_factory=dict)
    #: DAG id → its mapped task ids (those of ``by_task``).
    tasks_by_dag: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: DAG id → the assets mapped to the DAG as a whole (materialized when a run of the DAG succeeds).
    by_dag: Mapping[str, Sequence[AssetKey]] = field(default_factory=dict)
    #: DAGs whose DAG asset is executable (it triggers the DAG): a Dagster run that triggered a DAG
    #: run reports that run's success, so the tick leaves it to that run.
    triggered_dags: frozenset[str] = frozenset()

    @classmethod
    def build(
        cls,
        *,
        instance_name: str,
        api: ApiVersion,
        webserver_url: str,
        upstream: Mapping[str, Mapping[str, Sequence[str]]],
        by_task: Mapping[tuple[str, str], Sequence[AssetKey]],
        specs: Sequence[AssetSpec],
        dag_asset_keys: Mapping[str, AssetKey],
        user_check_keys: Mapping[AssetKey, Sequence[AssetCheckKey]],
        dataset_keys: Mapping[str, AssetKey] | None = None,
        partitioning: Mapping[AssetKey, TimeWindowPartitioning] | None = None,
        by_dag: Mapping[str, Sequence[AssetKey]] | None = None,
        triggered_dags: Collection[str] = (),
    ) -> SensorPlan:
        """``upstream``: per DAG, each task's upstream task ids (Airflow's dependencies)."""
        rank: dict[tuple[str, str], int] = {}
        for dag_id, tasks in upstream.items():
            for position, task_id in enumerate(_topological(tasks)):
                rank[(dag_id, task_id)] = position
        mapped: dict[str, list[str]] = defaultdict(list)
        for dag_id, task_id in by_task:
            mapped[dag_id].append(task_id)
        by_dag = {dag_id: tuple(keys) for dag_id, keys in (by_dag or {}).items() if keys}
        return cls(
            tasks_by_dag={dag_id: tuple(task_ids) for dag_id, task_ids in mapped.items()},
            by_dag=by_dag,
            coverage={dag_id: dag_digest(dag_id, [*mapped.get(dag_id, ()), *([DAG_LEVEL_MARK] if dag_id in by_dag else [])])
                      for dag_id in dag_asset_keys},
            instance_name=instance_name,
            api=api,
            webserver_url=webserver_url,
            dag_ids=frozenset(dag_asset_keys),
            by_task={k: tuple(v) for k, v in by_task.items()},
            order=_topological_order(specs),
            task_rank=rank,
            dag_asset_keys=dict(dag_asset_keys),
            user_check_keys={k: tuple(v) for k, v in user_check_keys.items()},
            dataset_keys=dict(dataset_keys or {}),
            partitioning=dict(partitioning or {}),
            triggered_dags=frozenset(triggered_dags),
        )


def _topological(deps: Mapping[Any, Sequence[Any]]) -> list[Any]:
    order: list[Any] = []
    done: set[Any] = set()
    visiting: set[Any] = set()

    def visit(node: Any) -> None:
        if node in done or node in visiting:
            return
        visiting.add(node)
        for dep in sorted(deps.get(node, ()), key=str):
            visit(dep)
        visiting.discard(node)
        done.add(node)
        order.append(node)

    for node in sorted(deps, key=str):
        visit(node)
    return order


def _topological_order(specs: Sequence[AssetSpec]) -> dict[AssetKey, int]:
    deps = {spec.key: [d.asset_key for d in spec.deps] for spec in specs}
    return {key: i for i, key in enumerate(_topological(deps))}

