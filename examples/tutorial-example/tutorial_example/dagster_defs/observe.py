from dagster import AssetSpec
from dagster_dbt import DbtProject

from airlift_dagster import build_defs_from_airflow_instance, dag_defs, task_defs
from airlift_dbt import dbt_defs
from tutorial_example.dagster_defs.airflow_instance import airflow_instance
from tutorial_example.shared.paths import dbt_project_path

defs = build_defs_from_airflow_instance(
    airflow_instance=airflow_instance,
    defs=dag_defs(
        "rebuild_customers_list",
        task_defs("load_raw_customers", AssetSpec(key=["raw_data", "raw_customers"])),
        task_defs(
            "run_dbt_model",
            dbt_defs(
                manifest=dbt_project_path() / "target" / "manifest.json",
                project=DbtProject(dbt_project_path()),
            ),
        ),
        # encode dependency on customers output
        task_defs("export_customers", AssetSpec(key="customers_csv", deps=["customers"])),
    ),
)
