from dagster import AssetSpec, Definitions, in_process_executor, multi_asset
from dagster_dbt import DbtProject

from airlift_dagster import build_defs_from_airflow_instance, dag_defs, task_defs
from airlift_dbt import dbt_defs
from tutorial_example.dagster_defs.airflow_instance import airflow_instance
from tutorial_example.dagster_defs.factories import load_csv_to_duckdb_defs
from tutorial_example.shared.load_csv_to_duckdb import export_table_to_csv
from tutorial_example.shared.paths import dbt_project_path, duckdb_path, export_path
from tutorial_example.shared.tutorial_loads import raw_customers_load


@multi_asset(specs=[AssetSpec(key="customers_csv", deps=["customers"])])
def export_customers():
    export_table_to_csv(duckdb_path=duckdb_path(), table="main.customers", csv_path=export_path())


defs = build_defs_from_airflow_instance(
    airflow_instance=airflow_instance,
    defs=Definitions.merge(
        dag_defs(
            "rebuild_customers_list",
            task_defs("load_raw_customers", load_csv_to_duckdb_defs(raw_customers_load())),
            task_defs(
                "run_dbt_model",
                dbt_defs(
                    manifest=dbt_project_path() / "target" / "manifest.json",
                    project=DbtProject(dbt_project_path()),
                ),
            ),
            task_defs("export_customers", Definitions(assets=[export_customers])),
        ),
        # each migrated task's run is one small step writing the one DuckDB file: run it in the run's
        # own process (no step subprocess that loads the code location again)
        Definitions(executor=in_process_executor),
    ),
)
