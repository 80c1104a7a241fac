"""Links into the Airflow UI for both generations: re-exported from :mod:`airlift_protocol.links`, the one
implementation shared with the push listener inside Airflow (examples there)."""

from __future__ import annotations

from airlift_protocol.links import AirflowUiLinks, ui_links_for

__all__ = ["AirflowUiLinks", "ui_links_for"]
