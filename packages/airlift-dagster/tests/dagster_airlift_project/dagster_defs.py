"""The Dagster side of a dagster-airlift project: asset specs carrying the task- and DAG-mapping
metadata dagster-airlift writes (``assets_with_task_mappings`` / ``assets_with_dag_mappings`` in
dagster-airlift 0.29 produce exactly these keys and values)."""

from dagster import AssetSpec


def mapped_specs() -> list[AssetSpec]:
    def task(dag_id: str, task_id: str) -> dict[str, object]:
        return {"dagster-airlift/task-mapping": [{"dag_id": dag_id, "task_id": task_id}]}

    return [
        AssetSpec(key=["raw_data", "raw_customers"], metadata=task("rebuild_customers_list", "load_raw_customers")),
        AssetSpec(key="customers", deps=[["raw_data", "raw_customers"]], metadata=task("rebuild_customers_list", "build_dbt_models")),
        AssetSpec(key="customers_csv", deps=["customers"], metadata=task("rebuild_customers_list", "export_customers")),
        AssetSpec(key="nightly_report", metadata={"dagster-airlift/dag-mapping": [{"dag_id": "nightly_refresh"}]}),
    ]
