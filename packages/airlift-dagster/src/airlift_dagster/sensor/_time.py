"""Time helpers shared by the sensor's steps (ISO text and microsecond integers in the cursor)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

_TICK = timedelta(microseconds=1)


def _iso(value: datetime) -> str:
    return value.astimezone(timezone.utc).isoformat()


def _us(value: datetime) -> int:
    return int(value.timestamp() * 1_000_000)


def _from_us(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1_000_000, tz=timezone.utc)

