"""The shapes of the REST responses the client reads, per API generation (pydantic models).

Each model names the fields the client uses, with their JSON types; other fields are allowed (both
REST generations add fields over time). A body is validated before any of it is used, so a garbled,
truncated or foreign answer becomes one :class:`~airlift_client.errors.AirflowBadResponseError`
instead of a ``KeyError`` or ``TypeError`` in the caller.

>>> from airlift_protocol import ApiVersion
>>> problems(SCHEMAS[ApiVersion.V2].version, {"version": "3.3.2", "git_version": None})
>>> problems(SCHEMAS[ApiVersion.V2].version, {"version": 3})
'version: Input should be a valid string'
"""

from __future__ import annotations

from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, ValidationError

from airlift_protocol import ApiVersion

__all__ = ["SCHEMAS", "Schemas", "problems"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")


class _Tag(_Model):
    name: str


class _Dag(_Model):
    dag_id: str
    is_paused: bool | None = None
    fileloc: str | None = None
    owners: list[str] | None = None
    tags: list[_Tag] | None = None
    description: str | None = None
    dag_display_name: str | None = None


class _DagV1(_Dag):
    file_token: str
    is_active: bool | None = None


class _DagV2(_Dag):
    file_token: str | None = None
    is_stale: bool | None = None


class _DagsV1(_Model):
    dags: list[_DagV1]
    total_entries: int


class _DagsV2(_Model):
    dags: list[_DagV2]
    total_entries: int


class _Task(_Model):
    task_id: str
    downstream_task_ids: list[str] = []
    is_mapped: bool | None = None
    retries: float | None = None
    operator_name: str | None = None
    class_ref: dict[str, Any] | None = None
    doc_md: str | None = None


class _Tasks(_Model):
    tasks: list[_Task]


class _Run(_Model):
    dag_id: str
    dag_run_id: str
    state: str | None = None
    run_type: str | None = None
    logical_date: str | None = None
    start_date: str | None = None
    end_date: str | None = None


class _RunV1(_Run):
    execution_date: str | None = None


class _RunV2(_Run):
    run_after: str | None = None


class _RunsV1(_Model):
    dag_runs: list[_RunV1]
    total_entries: int


class _RunsV2(_Model):
    dag_runs: list[_RunV2]
    total_entries: int


class _TaskInstance(_Model):
    dag_id: str
    dag_run_id: str
    task_id: str
    map_index: int | None = None
    try_number: int | None = None
    state: str | None = None
    logical_date: str | None = None
    start_date: str | None = None
    end_date: str | None = None


class _TaskInstanceV1(_TaskInstance):
    execution_date: str | None = None


class _TaskInstancesV1(_Model):
    task_instances: list[_TaskInstanceV1]
    total_entries: int


class _TaskInstancesV2(_Model):
    task_instances: list[_TaskInstance]
    total_entries: int


class _SourceV1(_Model):
    content: str


class _SourceV2(_Model):
    content: str | None
    dag_id: str | None = None


class _DagRef(_Model):
    dag_id: str | None = None


class _TaskRef(_Model):
    dag_id: str | None = None
    task_id: str | None = None


class _Dataset(_Model):
    uri: str
    producing_tasks: list[_TaskRef] = []


class _DatasetV1(_Dataset):
    consuming_dags: list[_DagRef] = []


class _DatasetV2(_Dataset):
    name: str
    group: str | None = None
    scheduled_dags: list[_DagRef] = []
    consuming_tasks: list[_TaskRef] = []


class _DatasetsV1(_Model):
    datasets: list[_DatasetV1]
    total_entries: int


class _DatasetsV2(_Model):
    assets: list[_DatasetV2]
    total_entries: int


class _DatasetEvent(_Model):
    timestamp: str
    source_dag_id: str | None = None
    source_task_id: str | None = None
    source_run_id: str | None = None
    source_map_index: int | None = None
    extra: dict[str, Any] | None = None


class _DatasetEventV1(_DatasetEvent):
    dataset_uri: str


class _DatasetEventV2(_DatasetEvent):
    id: int
    uri: str | None
    name: str | None = None


class _DatasetEventsV1(_Model):
    dataset_events: list[_DatasetEventV1]
    total_entries: int


class _DatasetEventsV2(_Model):
    asset_events: list[_DatasetEventV2]
    total_entries: int


class _ImportError(_Model):
    filename: str
    stack_trace: str | None = None
    timestamp: str | None = None


class _ImportErrorV2(_ImportError):
    bundle_name: str | None = None


class _ImportErrorsV1(_Model):
    import_errors: list[_ImportError]
    total_entries: int


class _ImportErrorsV2(_Model):
    import_errors: list[_ImportErrorV2]
    total_entries: int


class _EventLog(_Model):
    event_log_id: int
    when: str
    event: str
    dag_id: str | None = None
    task_id: str | None = None
    run_id: str | None = None
    map_index: int | None = None
    try_number: int | None = None
    owner: str | None = None
    extra: str | None = None


class _EventLogV1(_EventLog):
    execution_date: str | None = None


class _EventLogV2(_EventLog):
    logical_date: str | None = None


class _EventLogsV1(_Model):
    event_logs: list[_EventLogV1]
    total_entries: int


class _EventLogsV2(_Model):
    event_logs: list[_EventLogV2]
    total_entries: int


class _Version(_Model):
    version: str


class Token(_Model):
    """``POST /auth/token`` (Airflow 3)."""

    access_token: str


class Schemas(NamedTuple):
    """The response models of one REST generation."""

    dag: type[BaseModel]
    dags: type[BaseModel]
    tasks: type[BaseModel]
    run: type[BaseModel]
    runs: type[BaseModel]
    task_instances: type[BaseModel]
    source: type[BaseModel]
    version: type[BaseModel]
    datasets: type[BaseModel]
    dataset_events: type[BaseModel]
    import_errors: type[BaseModel]
    event_logs: type[BaseModel]


SCHEMAS = {
    ApiVersion.V1: Schemas(_DagV1, _DagsV1, _Tasks, _RunV1, _RunsV1, _TaskInstancesV1, _SourceV1, _Version,
                           _DatasetsV1, _DatasetEventsV1, _ImportErrorsV1, _EventLogsV1),
    ApiVersion.V2: Schemas(_DagV2, _DagsV2, _Tasks, _RunV2, _RunsV2, _TaskInstancesV2, _SourceV2, _Version,
                           _DatasetsV2, _DatasetEventsV2, _ImportErrorsV2, _EventLogsV2),
}


def problems(model: type[BaseModel], body: Any) -> str | None:
    """None if ``body`` fits ``model``, else a short description of the first mismatches (field
    paths and what was expected, never the values)."""
    try:
        model.model_validate(body)
    except ValidationError as e:
        found = e.errors(include_url=False, include_input=False, include_context=False)
        shown = [f"{'.'.join(str(p) for p in err['loc']) or '(body)'}: {err['msg']}" for err in found[:3]]
        more = f" (and {len(found) - 3} more)" if len(found) > 3 else ""
        return "; ".join(shown) + more
    return None
