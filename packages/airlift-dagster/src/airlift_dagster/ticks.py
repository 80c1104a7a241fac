"""What a sensor tick did, in words Dagster's UI shows on the tick.

Dagster 1.12-1.13 ends a sensor tick that launched no run as ``SKIPPED`` whatever else it did (there
is no tick status for "recorded events"); its UI labels such a tick "0 runs requested" and shows the
tick's skip reason as the label's tooltip, which defaults to "Sensor function returned an empty
result". :func:`build_sensor_result` fills that reason with a summary of the events the tick recorded,
so a tick that materialized assets says so instead of reading as empty.

>>> from dagster import AssetMaterialization
>>> describe_tick_events([AssetMaterialization("a"), AssetMaterialization("b")])
'Recorded 2 asset materializations from Airflow (no Dagster run needed).'
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetMaterialization,
    AssetObservation,
    RunRequest,
    SensorResult,
)

__all__ = ["build_sensor_result", "describe_tick_events"]

_KINDS: tuple[tuple[type, str], ...] = (
    (AssetMaterialization, "asset materialization"),
    (AssetObservation, "asset observation"),
    (AssetCheckEvaluation, "asset check result"),
)


def describe_tick_events(events: Sequence[Any]) -> str:
    """One sentence counting a tick's events by kind.

    >>> describe_tick_events([])
    'No Airflow run finished since the last tick; nothing to record.'
    """
    counts: Counter[str] = Counter()
    for event in events:
        label = next((name for kind, name in _KINDS if isinstance(event, kind)), "event")
        counts[label] += 1
    if not counts:
        return "No Airflow run finished since the last tick; nothing to record."
    parts = [f"{n} {label}{'' if n == 1 else 's'}" for label, n in counts.items()]
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"Recorded {listed} from Airflow (no Dagster run needed)."


def build_sensor_result(*, asset_events: Sequence[Any], cursor: str | None,
                        run_requests: Sequence[RunRequest] = (), warnings: Sequence[str] = ()) -> SensorResult:
    """A ``SensorResult`` whose tick, when it launches no run, carries :func:`describe_tick_events`
    and then any ``warnings`` as its reason (Dagster allows a reason only on ticks without run
    requests; the sensor also logs the warnings to the tick's log).

    >>> result = build_sensor_result(asset_events=[AssetMaterialization("a")], cursor="c")
    >>> result.skip_reason.skip_message
    'Recorded 1 asset materialization from Airflow (no Dagster run needed).'
    """
    if run_requests:
        return SensorResult(asset_events=list(asset_events), cursor=cursor, run_requests=list(run_requests))
    reason = " ".join([describe_tick_events(asset_events), *(f"WARNING: {w}" for w in warnings)])
    return SensorResult(asset_events=list(asset_events), cursor=cursor, skip_reason=reason)
