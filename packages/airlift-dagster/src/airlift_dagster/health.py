"""DAGs whose file Airflow fails to import: how their Dagster assets show it.

Such a DAG keeps its assets and history (see :func:`airlift_dagster.state.fetch_airflow_state`). Its DAG
asset carries Airflow's import error in its description and metadata, and a check,
``airflow_dag_imports``, that the sensor fails once per import error (Airflow's file name and error
time name it), so the asset's health shows the problem until the file imports again; the check
then leaves the definitions with the error.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckKey,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    DagsterInstance,
    MetadataValue,
)

from airlift_protocol import AirflowImportError
from airlift_protocol.events import DAG_IMPORT_CHECK_NAME

__all__ = ["DAG_IMPORT_CHECK_NAME", "import_error_check_specs", "import_error_description", "import_error_evaluations",
           "import_error_metadata"]

_ERROR_ID = "Airflow import error id"


def _error_id(error: AirflowImportError) -> str:
    stamp = error.timestamp.isoformat() if error.timestamp else ""
    return hashlib.sha1(f"{error.bundle_name or ''}\x1f{error.filename}\x1f{stamp}".encode()).hexdigest()[:16]


def import_error_description(dag_id: str, error: AirflowImportError) -> str:
    """One line for the DAG asset and its failed check."""
    return (f"Airflow cannot import the file of DAG {dag_id!r} ({error.filename}): {error.summary}. Its assets and history "
            "stay as Airflow last parsed them; fix the file, then reload the code location.")


def import_error_metadata(error: AirflowImportError) -> dict[str, Any]:
    """The DAG asset's metadata entries for an import error."""
    return {
        "Airflow import error": MetadataValue.md(f"`{error.filename}`\n\n```\n{error.stack_trace.strip()}\n```"),
        "Airflow import error file": error.filename,
    }


def import_error_check_specs(dag_keys: Mapping[str, AssetKey], errors: Mapping[str, AirflowImportError]) -> list[AssetCheckSpec]:
    """One ``airflow_dag_imports`` check per DAG asset whose file fails to import."""
    return [AssetCheckSpec(DAG_IMPORT_CHECK_NAME, asset=dag_keys[dag_id],
                           description="Airflow imports this DAG's file (failed while Airflow reports an import error for it).")
            for dag_id in sorted(errors) if dag_id in dag_keys]


def import_error_evaluations(
    instance: DagsterInstance | None, dag_keys: Mapping[str, AssetKey], errors: Mapping[str, AirflowImportError],
) -> list[AssetCheckEvaluation]:
    """Failed ``airflow_dag_imports`` evaluations for the import errors Dagster does not show yet (one
    read of the latest evaluation of those checks only)."""
    wanted = {AssetCheckKey(dag_keys[dag_id], DAG_IMPORT_CHECK_NAME): (dag_id, error)
              for dag_id, error in errors.items() if dag_id in dag_keys}
    if not wanted:
        return []
    latest: Mapping[AssetCheckKey, Any] = {}
    if instance is not None:
        latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(list(wanted))
    out = []
    for key, (dag_id, error) in sorted(wanted.items(), key=lambda item: str(item[0])):
        record = latest.get(key)
        evaluation = record.event.asset_check_evaluation if record is not None and record.event is not None else None
        shown = evaluation.metadata.get(_ERROR_ID) if evaluation is not None else None
        if shown is not None and getattr(shown, "value", shown) == _error_id(error):
            continue
        out.append(AssetCheckEvaluation(
            asset_key=key.asset_key, check_name=DAG_IMPORT_CHECK_NAME, passed=False, severity=AssetCheckSeverity.ERROR,
            description=import_error_description(dag_id, error),
            metadata={**import_error_metadata(error), _ERROR_ID: _error_id(error)},
        ))
    return out
