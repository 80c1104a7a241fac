"""Every Dagster API airlift-dagster uses that is private or marked preview, in one place (checked by
``tests/test_compat.py`` against the installed Dagster)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from dagster import PreviewWarning

# Dagster's reconstruction-metadata mechanism (Definitions.with_reconstruction_metadata is public;
# its load context is not re-exported at the top level in 1.13).
from dagster._core.definitions.definitions_load_context import (
    DefinitionsLoadContext,
    DefinitionsLoadType,
)

# What MetadataValue.json raises for data json.dumps refuses.
from dagster._core.errors import DagsterInvalidMetadata

# The payloads of asset events stored in a run's event log (what Dagster's own step execution and
# report_runless_asset_event build), for runs that stand for Airflow DAG runs (run_mirror.py).
from dagster._core.events import AssetObservationData, StepMaterializationData

# Where a run's job lives (Dagster's run timeline only lists runs that carry one).
from dagster._core.remote_origin import RemoteJobOrigin, RemoteRepositoryOrigin

# The tag prefix AssetSpec stores its kinds under (merge_attributes drops those tags and rebuilds
# them from ``kinds``; defs.py does the same when it builds a spec in one step).
from dagster._core.storage.tags import KIND_PREFIX

__all__ = ["KIND_PREFIX", "AssetObservationData", "DagsterInvalidMetadata", "DefinitionsLoadContext", "DefinitionsLoadType", "RemoteJobOrigin",
           "RemoteRepositoryOrigin", "StepMaterializationData", "preview_api"]


@contextmanager
def preview_api() -> Iterator[None]:
    """Call a preview-marked Dagster API (map_asset_specs, with_reconstruction_metadata) without its
    warning, so users' ``-W error`` test suites keep passing."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PreviewWarning)
        yield
