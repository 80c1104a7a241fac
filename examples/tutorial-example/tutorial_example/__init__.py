"""The Airlift tutorial: an Airflow DAG that loads, transforms (dbt) and exports customers."""
