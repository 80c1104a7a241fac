"""Code shared by the Airflow DAG and the Dagster definitions (no Airflow or Dagster imports)."""
