"""dbt_defs on a small dbt project of our own (the tutorial's), parsed with the real dbt."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from dagster import AssetKey, materialize
from dagster_dbt import DagsterDbtTranslator, DbtProject

from airlift_dagster import dag_defs, task_defs
from airlift_dbt import AirliftDbtError, dbt_defs

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "tutorial-example" / "dbt_project"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "dbt_project"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("target", "logs"))
    db = tmp_path / "warehouse.duckdb"
    monkeypatch.setenv("TUTORIAL_DUCKDB_PATH", str(db))
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE SCHEMA raw_data")
        con.execute("CREATE TABLE raw_data.raw_customers AS SELECT * FROM (VALUES (1, 'Ada', 'L.'), (2, 'Bo', 'K.')) t(id, first_name, last_name)")
    dbt = Path(sys.executable).parent / "dbt"
    subprocess.run([str(dbt), "parse", "--project-dir", str(folder), "--profiles-dir", str(folder)], check=True, capture_output=True,
                   env={**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"})
    return folder


def test_one_asset_per_model_and_seed_with_lineage(project: Path) -> None:
    defs = dbt_defs(manifest=project / "target" / "manifest.json", project=DbtProject(project))
    specs = {s.key: s for s in defs.resolve_all_asset_specs()}
    (dbt_assets_def,) = defs.assets or []
    assert set(dbt_assets_def.keys) == {AssetKey(k) for k in (  # type: ignore[union-attr]
        ["customers"], ["stg_customers"], ["stg_orders"], ["stg_payments"], ["raw_data", "raw_orders"], ["raw_data", "raw_payments"],
    )}
    assert {d.asset_key for d in specs[AssetKey("customers")].deps} == {AssetKey("stg_customers"), AssetKey("stg_orders"), AssetKey("stg_payments")}
    assert {d.asset_key for d in specs[AssetKey("stg_customers")].deps} == {AssetKey(["raw_data", "raw_customers"])}
    assert "lifetime value" in (specs[AssetKey("customers")].description or "")


def test_tags_from_task_defs_reach_dbt_assets(project: Path) -> None:
    defs = dag_defs("rebuild_customers_list", task_defs("run_dbt_model", dbt_defs(manifest=project / "target" / "manifest.json", project=DbtProject(project))))
    (dbt_assets_def,) = defs.assets or []
    for spec in dbt_assets_def.specs:  # type: ignore[union-attr]
        assert spec.tags["airlift/task_id"] == "run_dbt_model"


def test_translator_customises_keys(project: Path) -> None:
    class Prefixed(DagsterDbtTranslator):
        def get_asset_key(self, dbt_resource_props):  # type: ignore[no-untyped-def]
            return super().get_asset_key(dbt_resource_props).with_prefix("warehouse")

    defs = dbt_defs(manifest=project / "target" / "manifest.json", project=DbtProject(project), translator=Prefixed())
    assert AssetKey(["warehouse", "customers"]) in {s.key for s in defs.resolve_all_asset_specs()}


def test_assets_execute_dbt_build(project: Path) -> None:
    defs = dbt_defs(manifest=project / "target" / "manifest.json", project=DbtProject(project))
    assets = list(defs.assets or [])
    result = materialize(assets, resources=defs.resources)
    assert result.success
    keys = {e.asset_key for e in result.get_asset_materialization_events() for e in [e.event_specific_data.materialization]}
    assert AssetKey("customers") in keys
    with duckdb.connect(os.environ["TUTORIAL_DUCKDB_PATH"]) as con:
        assert con.execute("SELECT count(*) FROM main.customers").fetchone() == (2,)


def test_missing_and_stale_manifest_errors(project: Path, caplog: pytest.LogCaptureFixture) -> None:
    manifest = project / "target" / "manifest.json"
    with pytest.raises(AirliftDbtError, match=r"does not exist: produce it with `dbt parse"):
        dbt_defs(manifest=project / "nope.json", project=DbtProject(project))
    # Modification times alone (image layers, checkouts, `dbt deps`) never fail a load.
    future = time.time() + 100
    for path in project.rglob("*"):
        if "target" not in path.relative_to(project).parts:
            os.utime(path, (future, future))
    dbt_defs(manifest=manifest, project=DbtProject(project))
    assert "is older than" in caplog.text and ".yml" in caplog.text
    # Installed packages are not checked.
    package_model = project / "dbt_packages" / "utils" / "models" / "helper.sql"
    package_model.parent.mkdir(parents=True)
    package_model.write_text("select 1")
    dbt_defs(manifest=manifest, project=DbtProject(project))
    # Changed content, a new model and a deleted model each fail with the file named.
    model = project / "models" / "customers.sql"
    original = model.read_text()
    model.write_text(original + "\n-- changed\n")
    with pytest.raises(AirliftDbtError, match=r"customers.sql changed since the manifest was built.*dbt parse"):
        dbt_defs(manifest=manifest, project=DbtProject(project))
    model.write_text("\n" + original + "\n\n")  # whitespace around the code: dbt's checksum strips it
    dbt_defs(manifest=manifest, project=DbtProject(project))
    extra = project / "models" / "new_model.sql"
    extra.write_text("select 1 as x")
    with pytest.raises(AirliftDbtError, match=r"new_model.sql is not in the manifest"):
        dbt_defs(manifest=manifest, project=DbtProject(project))
    extra.unlink()
    model.unlink()
    with pytest.raises(AirliftDbtError, match=r"customers.sql is in the manifest but no longer exists"):
        dbt_defs(manifest=manifest, project=DbtProject(project))
    model.write_text(original)
    manifest.write_text("{not json")
    with pytest.raises(AirliftDbtError, match="cannot be read"):
        dbt_defs(manifest=manifest, project=DbtProject(project))
