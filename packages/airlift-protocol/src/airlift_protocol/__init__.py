"""airlift-protocol: the shared vocabulary of Airlift.

Pure Python (PyYAML only): models of Airflow objects normalized across Airflow 2 and 3, the tag
names that link Dagster assets and runs to Airflow, and the migration-state file format.

>>> from airlift_protocol import DAG_ID_TAG, TASK_ID_TAG
>>> DAG_ID_TAG, TASK_ID_TAG
('airlift/dag_id', 'airlift/task_id')
"""

from __future__ import annotations

from airlift_protocol.errors import AirliftProtocolError, MigrationStateError, RestPayloadError
from airlift_protocol.migration_state import (
    VALID_FILE_EXAMPLE,
    DagMigrationState,
    MigrationState,
    TaskMigrationState,
    dump_dag_migration_state,
    dump_migration_state_to_yaml,
    load_dag_migration_state,
    load_migration_state_from_yaml,
    set_dag_migrated,
    set_task_migrated,
)
from airlift_protocol.models import (
    FINISHED_DAG_RUN_STATES,
    FINISHED_TASK_INSTANCE_STATES,
    AirflowDataset,
    ApiVersion,
    DagInfo,
    DagRun,
    DagRunState,
    DatasetEvent,
    TaskInfo,
    TaskInstance,
    TaskInstanceState,
    parse_airflow_datetime,
    with_upstream_task_ids,
)
from airlift_protocol.partitions import (
    DAGSTER_PARTITION_TAG,
    PartitionKeyError,
    TimeWindowPartitioning,
    partition_key_for_airflow_run,
)
from airlift_protocol.retry import NO_RETRY, RETRY_STATUSES, RetryPolicy
from airlift_protocol.tags import (
    AIRFLOW_DAG_ID_RUN_TAG,
    AIRFLOW_INSTANCE_RUN_TAG,
    AIRFLOW_MAP_INDEX_RUN_TAG,
    AIRFLOW_MAX_TRIES_RUN_TAG,
    AIRFLOW_RUN_ID_RUN_TAG,
    AIRFLOW_TASK_ID_RUN_TAG,
    AIRFLOW_TRY_NUMBER_RUN_TAG,
    DAG_ID_TAG,
    DAG_MIGRATION_DOC_HEADING,
    DAGSTER_CODE_LOCATION_RUN_TAG,
    MIGRATING_DAG_TAG,
    MIGRATION_DOC_MARKER,
    TASK_ID_TAG,
    WHOLE_DAG_TASK_ID,
    AirflowTaskRef,
    dagster_run_tags,
    encode_tag_value,
    operator_run_tags,
    parse_dagster_run_tags,
    run_counts_for_try,
    task_is_marked_migrated,
    task_migration_doc,
    tasks_migrated_in_dag_doc,
)
from airlift_protocol.version import __version__

__all__ = [
    "AIRFLOW_DAG_ID_RUN_TAG",
    "AIRFLOW_INSTANCE_RUN_TAG",
    "AIRFLOW_MAP_INDEX_RUN_TAG",
    "AIRFLOW_MAX_TRIES_RUN_TAG",
    "AIRFLOW_RUN_ID_RUN_TAG",
    "AIRFLOW_TASK_ID_RUN_TAG",
    "AIRFLOW_TRY_NUMBER_RUN_TAG",
    "DAGSTER_CODE_LOCATION_RUN_TAG",
    "DAGSTER_PARTITION_TAG",
    "DAG_ID_TAG",
    "DAG_MIGRATION_DOC_HEADING",
    "FINISHED_DAG_RUN_STATES",
    "FINISHED_TASK_INSTANCE_STATES",
    "MIGRATING_DAG_TAG",
    "MIGRATION_DOC_MARKER",
    "NO_RETRY",
    "RETRY_STATUSES",
    "TASK_ID_TAG",
    "VALID_FILE_EXAMPLE",
    "WHOLE_DAG_TASK_ID",
    "AirflowDataset",
    "AirflowTaskRef",
    "AirliftProtocolError",
    "ApiVersion",
    "DagInfo",
    "DagMigrationState",
    "DagRun",
    "DagRunState",
    "DatasetEvent",
    "MigrationState",
    "MigrationStateError",
    "PartitionKeyError",
    "RestPayloadError",
    "RetryPolicy",
    "TaskInfo",
    "TaskInstance",
    "TaskInstanceState",
    "TaskMigrationState",
    "TimeWindowPartitioning",
    "__version__",
    "dagster_run_tags",
    "dump_dag_migration_state",
    "dump_migration_state_to_yaml",
    "encode_tag_value",
    "load_dag_migration_state",
    "load_migration_state_from_yaml",
    "operator_run_tags",
    "parse_airflow_datetime",
    "parse_dagster_run_tags",
    "partition_key_for_airflow_run",
    "run_counts_for_try",
    "set_dag_migrated",
    "set_task_migrated",
    "task_is_marked_migrated",
    "task_migration_doc",
    "tasks_migrated_in_dag_doc",
    "with_upstream_task_ids",
]
