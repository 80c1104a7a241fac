"""AssetSpec and asset factories that derive what a task builds from the same arguments the Airflow
operator takes, so both sides name the same table."""

from dagster import AssetSpec, Definitions, multi_asset

from tutorial_example.shared.load_csv_to_duckdb import LoadCsvToDuckDbArgs, load_csv_to_duckdb


def load_csv_to_duckdb_asset_spec(load: LoadCsvToDuckDbArgs) -> AssetSpec:
    """The table a LoadCSVToDuckDB task builds, as an observable AssetSpec."""
    return AssetSpec(key=load.asset_key, description=f"{load.csv_path.name} loaded into duckdb")


def load_csv_to_duckdb_defs(load: LoadCsvToDuckDbArgs) -> Definitions:
    """The same table as an executable asset: Dagster runs the load itself (the migrate step)."""

    @multi_asset(specs=[load_csv_to_duckdb_asset_spec(load)], name=f"load_{load.duckdb_schema}_{load.table_name}")
    def _load_csv():
        load_csv_to_duckdb(load)

    return Definitions(assets=[_load_csv])
