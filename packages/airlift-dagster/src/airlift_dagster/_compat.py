"""Dagster APIs Airlift relies on that Dagster 1.13 marks as preview, used in one place."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from dagster import PreviewWarning

__all__ = ["preview_api"]


@contextmanager
def preview_api() -> Iterator[None]:
    """Call a preview-marked Dagster API (map_asset_specs, with_reconstruction_metadata) without its
    warning, so users' ``-W error`` test suites keep passing."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PreviewWarning)
        yield
