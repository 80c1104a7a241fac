"""Step 1 (peer) in YAML: the AirflowInstanceComponent in ``peer_component/airflow/defs.yaml``."""

from pathlib import Path

from dagster import load_from_defs_folder

defs = load_from_defs_folder(project_root=Path(__file__).resolve().parents[2])
