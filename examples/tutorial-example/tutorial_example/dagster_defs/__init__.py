"""Dagster definitions for each step of the guide: `dagster dev -f <step>.py`."""
