"""Coming from dagster-airlift: a project in its documented layout (``dagster_airlift_project/``) is
converted with ``airlift state import-proxied`` and its specs map through dagster-airlift's metadata,
against the fake Airflow (both generations)."""

from __future__ import annotations

import runpy
import shutil
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from dagster import (
    AssetKey,
    AssetMaterialization,
    AssetSpec,
    DagsterInstance,
    Definitions,
    SensorResult,
    build_sensor_context,
)

from airlift_client import AirflowInstance, BasicAuthBackend
from airlift_dagster import AirliftDagsterError, build_defs_from_airflow_instance
from airlift_dagster.cli import _yaml_edit
from airlift_dagster.cli._errors import EXIT_ERROR, EXIT_OK
from airlift_dagster.cli.main import cli
from airlift_dagster.mapping import dag_handle_of, task_handles_of
from airlift_protocol import load_migration_state_from_yaml
from airlift_protocol.tags import TASK_ASSET_INDEX_METADATA, parse_task_asset_index
from airlift_testing.fake_airflow import FakeAirflow, FakeAirflowState, FakeDag, FakeTask

PROJECT = Path(__file__).parent / "dagster_airlift_project"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    copy = tmp_path / "project"
    shutil.copytree(PROJECT, copy)
    return copy


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env={"NO_COLOR": "1", "COLUMNS": "200"}, catch_exceptions=False)


def test_import_proxied_dry_run_shows_the_diffs_and_writes_nothing(project: Path) -> None:
    dags = project / "airflow_dags"
    result = run("state", "import-proxied", "-d", str(dags), "--dry-run")
    assert result.exit_code == EXIT_OK, result.output
    assert "would create" in result.output and "+    migrated: true" in result.output and "+migrated: true" in result.output
    assert "2 migration-state file(s) would change" in result.output
    assert not (dags / "migration_state").exists()


def test_import_proxied_writes_migration_state_files_airlift_reads(project: Path) -> None:
    dags = project / "airflow_dags"
    result = run("state", "import-proxied", "-d", str(dags))
    assert result.exit_code == EXIT_OK, result.output
    state = load_migration_state_from_yaml(dags / "migration_state")
    assert state.is_task_migrated(dag_id="rebuild_customers_list", task_id="load_raw_customers")
    assert not state.is_task_migrated(dag_id="rebuild_customers_list", task_id="build_dbt_models")
    assert list(state.dag_state("rebuild_customers_list").tasks) == ["load_raw_customers", "build_dbt_models", "export_customers"]
    nightly = state.dag_state("nightly_refresh")
    assert nightly is not None and nightly.dag_migrated is True
    again = run("state", "import-proxied", "-d", str(dags))
    assert again.exit_code == EXIT_OK and "0 migration-state file(s) changed" in again.output, again.output


def test_import_proxied_edits_an_existing_file_in_place(project: Path) -> None:
    dags = project / "airflow_dags"
    state_dir = dags / "migration_state"
    state_dir.mkdir()
    existing = state_dir / "rebuild_customers_list.yaml"
    existing.write_text("# reviewed by the data team\ntasks:\n  export_customers:\n    migrated: true  # since May\n"
                        "  load_raw_customers:\n    migrated: false\n")
    result = run("state", "import-proxied", "-d", str(dags))
    assert result.exit_code == EXIT_OK, result.output
    text = existing.read_text()
    assert text.startswith("# reviewed by the data team\n")
    assert "  export_customers:\n    migrated: false # since May\n" in text  # the proxied-state file says so
    assert "  load_raw_customers:\n    migrated: true\n" in text and "build_dbt_models:\n    migrated: false" in text
    assert f"updated {existing}" in result.output and "+    migrated: true" in result.output


def test_import_proxied_never_writes_over_an_edit_saved_meanwhile(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dags = project / "airflow_dags"
    state_dir = dags / "migration_state"
    state_dir.mkdir()
    path = state_dir / "rebuild_customers_list.yaml"
    path.write_text("tasks:\n  load_raw_customers:\n    migrated: false\n")
    theirs = "tasks:\n  load_raw_customers:\n    migrated: false  # hold: under review\n"
    real_load = _yaml_edit.load_dag_migration_state

    def load_while_someone_else_saves(file: Path) -> Any:
        if Path(file) != path and Path(file).name == path.name:  # its edited copy is checked: another editor saves meanwhile
            path.write_text(theirs)
        return real_load(file)

    monkeypatch.setattr(_yaml_edit, "load_dag_migration_state", load_while_someone_else_saves)
    result = run("state", "import-proxied", "-d", str(dags), "--proxied-dir", str(dags / "proxied_state"))
    assert result.exit_code == EXIT_ERROR
    assert "the file changed since this command read it" in result.output
    assert path.read_text() == theirs


@pytest.mark.parametrize(("text", "message"), [
    ("tasks:\n  - id: load_raw_customers\n    proxied: maybe\n", "tasks[0].proxied is 'maybe'; expected true or false"),
    ("tasks:\n  - task: load_raw_customers\n", "tasks[0] is {'task': 'load_raw_customers'}"),
    ("proxied: true\ntasks: []\n", "expected 'tasks: [{id: <task_id>, proxied: true|false}, ...]' or 'proxied: true|false'"),
])
def test_a_bad_proxied_state_file_is_one_error_and_nothing_is_written(project: Path, text: str, message: str) -> None:
    dags = project / "airflow_dags"
    bad = dags / "proxied_state" / "zz_bad.yaml"
    bad.write_text(text)
    result = run("state", "import-proxied", "-d", str(dags))
    assert result.exit_code == EXIT_ERROR
    assert result.output.startswith(f"error: {bad}: ") and message in result.output, result.output
    assert not (dags / "migration_state").exists()


def test_a_shape_mismatch_with_an_existing_file_is_refused(project: Path) -> None:
    dags = project / "airflow_dags"
    (dags / "migration_state").mkdir()
    (dags / "migration_state" / "nightly_refresh.yaml").write_text("tasks:\n  refresh:\n    migrated: false\n")
    result = run("state", "import-proxied", "-d", str(dags))
    assert result.exit_code == EXIT_ERROR
    assert "lists tasks but" in result.output and "switches the whole DAG" in result.output
    assert (dags / "migration_state" / "nightly_refresh.yaml").read_text() == "tasks:\n  refresh:\n    migrated: false\n"


# ------------------------------------------------------------------------------ mapping metadata
@pytest.fixture(params=[2, 3], ids=["airflow2", "airflow3"])
def airflow(request: pytest.FixtureRequest) -> Iterator[tuple[FakeAirflow, FakeAirflowState]]:
    tasks = [FakeTask("load_raw_customers", downstream=["build_dbt_models"]), FakeTask("build_dbt_models", downstream=["export_customers"]),
             FakeTask("export_customers")]
    state = FakeAirflowState(dags=[FakeDag("rebuild_customers_list", tasks=tasks, fileloc="/dags/r.py", source="#"),
                                   FakeDag("nightly_refresh", tasks=[FakeTask("refresh")], fileloc="/dags/n.py", source="#")])
    with FakeAirflow(state, generation=request.param) as server:
        yield server, state


def _defs(server: FakeAirflow, specs: list[AssetSpec]) -> Definitions:
    instance = AirflowInstance(auth_backend=BasicAuthBackend(webserver_url=server.url, username="admin", password="admin"), name="prod")
    return build_defs_from_airflow_instance(airflow_instance=instance, defs=Definitions(assets=specs))


def test_dagster_airlift_mapping_metadata_maps_the_specs_unchanged(airflow: tuple[FakeAirflow, FakeAirflowState]) -> None:
    server, state = airflow
    specs = runpy.run_path(str(PROJECT / "dagster_defs.py"))["mapped_specs"]()
    defs = _defs(server, specs)
    by_key = {s.key: s for s in defs.resolve_all_asset_specs()}
    index = parse_task_asset_index(by_key[AssetKey(["prod", "dag", "rebuild_customers_list"])].metadata[TASK_ASSET_INDEX_METADATA].value)
    assert index == {"load_raw_customers": [("raw_data", "raw_customers")], "build_dbt_models": [("customers",)],
                     "export_customers": [("customers_csv",)], None: []}
    nightly = parse_task_asset_index(by_key[AssetKey(["prod", "dag", "nightly_refresh"])].metadata[TASK_ASSET_INDEX_METADATA].value)
    assert nightly == {None: [("nightly_report",)]}

    # the sensor reports them as Airlift-mapped assets: a successful run materializes each
    state.add_run("rebuild_customers_list", start=datetime.now(timezone.utc) - timedelta(minutes=10))
    state.add_run("nightly_refresh", start=datetime.now(timezone.utc) - timedelta(minutes=10))
    sensor = defs.resolve_sensor_def("prod__airflow_sensor")
    with DagsterInstance.ephemeral() as dagster:
        result = sensor(build_sensor_context(instance=dagster, definitions=defs))
    assert isinstance(result, SensorResult)
    materialized = {e.asset_key for e in result.asset_events if isinstance(e, AssetMaterialization)}
    assert {AssetKey(["raw_data", "raw_customers"]), AssetKey("customers"), AssetKey("customers_csv"), AssetKey("nightly_report")} <= materialized


def test_an_unknown_task_in_dagster_airlift_metadata_is_the_usual_error(airflow: tuple[FakeAirflow, FakeAirflowState]) -> None:
    spec = AssetSpec("x", metadata={"dagster-airlift/task-mapping": [{"dag_id": "rebuild_customers_list", "task_id": "load_raw"}]})
    with pytest.raises(AirliftDagsterError, match="has no task 'load_raw'"):
        _defs(airflow[0], [spec])


@pytest.mark.parametrize(("metadata", "message"), [
    ({"dagster-airlift/task-mapping": [{"dag_id": "d"}]}, "expected a list of {\"dag_id\": \"...\", \"task_id\": \"...\"}"),
    ({"dagster-airlift/dag-mapping": [{"dag_id": "a"}, {"dag_id": "b"}]}, "maps it to the DAGs ['a', 'b']"),
])
def test_malformed_dagster_airlift_metadata_is_one_error_naming_the_asset(metadata: dict[str, Any], message: str) -> None:
    spec = AssetSpec(["warehouse", "x"], metadata=metadata)
    with pytest.raises(AirliftDagsterError, match="asset 'warehouse/x'") as raised:
        task_handles_of(spec) if "task-mapping" in next(iter(metadata)) else dag_handle_of(spec)
    assert message in str(raised.value)
