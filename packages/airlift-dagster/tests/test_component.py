"""AirflowInstanceComponent from YAML against the fake Airflow (both generations): the state is read
from Airflow only when written, definitions are built from it without a request, secrets stay out of
reprs and errors."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from dagster import (
    AssetKey,
    AssetSpec,
    DagsterInstance,
    Definitions,
    build_sensor_context,
)

from airlift_dagster import (
    AirflowInstanceComponent,
    AirflowTranslator,
    AirliftDagsterError,
    dataset_asset_key,
)
from airlift_dagster.translator import AirflowDagProps
from airlift_testing.fake_airflow import FakeAirflow, FakeDataset

YAML = """
name: fake_one
webserver_url: "{{ env.AIRLIFT_TEST_URL }}"
auth:
  kind: basic
  username: admin
  password: "{{ env.AIRLIFT_TEST_PASSWORD }}"
dags:
  id_pattern: "dag_0000[01]"
mappings:
  - dag_id: dag_00000
    task_id: task_000
    assets:
      - key: warehouse/orders
sensor:
  minimum_interval_seconds: 5
  history_window_seconds: 3600
  change_source: audit_log
  mirror_runs: true
"""


def _component(monkeypatch: pytest.MonkeyPatch, fake: FakeAirflow, yaml: str = YAML) -> AirflowInstanceComponent:
    monkeypatch.setenv("AIRLIFT_TEST_URL", fake.url)
    monkeypatch.setenv("AIRLIFT_TEST_PASSWORD", "admin")
    return AirflowInstanceComponent.resolve_from_yaml(yaml)


def _build(component: AirflowInstanceComponent, path: Path | None) -> Definitions:
    return component.build_defs_from_state(None, path)  # type: ignore[arg-type]  # the context is not used


def test_state_is_written_once_and_definitions_build_without_requests(
    monkeypatch: pytest.MonkeyPatch, fake: FakeAirflow, tmp_path: Path
) -> None:
    component = _component(monkeypatch, fake)
    assert "password" not in repr(component) and "token" not in repr(component.auth)
    state = tmp_path / "state"
    component.write_state_to_path(state)
    read = fake.total_requests
    assert read > 0
    for _ in range(2):  # a code-server load, then a reload
        defs = _build(component, state)
    assert fake.total_requests == read
    keys = {spec.key for spec in defs.resolve_all_asset_specs()}
    assert keys == {AssetKey(["fake_one", "dag", "dag_00000"]), AssetKey(["fake_one", "dag", "dag_00001"]), AssetKey(["warehouse", "orders"])}
    sensor = defs.resolve_sensor_def("fake_one__airflow_sensor")
    assert sensor.minimum_interval_seconds == 5
    assert component.sensor.settings().mirror_runs and component.sensor.settings().change_source == "audit_log"


def test_no_stored_state_defines_nothing_and_asks_for_a_refresh(
    monkeypatch: pytest.MonkeyPatch, fake: FakeAirflow, caplog: pytest.LogCaptureFixture
) -> None:
    defs = _build(_component(monkeypatch, fake), None)
    assert list(defs.assets or []) == []
    assert fake.total_requests == 0
    assert "dg utils refresh-defs-state" in caplog.text


def test_a_narrower_selection_applies_without_a_refresh(monkeypatch: pytest.MonkeyPatch, fake: FakeAirflow, tmp_path: Path) -> None:
    _component(monkeypatch, fake).write_state_to_path(tmp_path / "state")
    narrower = _component(monkeypatch, fake, YAML.replace('id_pattern: "dag_0000[01]"', "ids: [dag_00000]"))
    keys = {spec.key for spec in _build(narrower, tmp_path / "state").resolve_all_asset_specs()}
    assert AssetKey(["fake_one", "dag", "dag_00001"]) not in keys


@pytest.mark.parametrize(
    ("auth", "expected"),
    [
        ({"kind": "basic", "username": "admin"}, "kind basic needs username and password"),
        ({"kind": "token"}, "kind token needs token"),
        ({"kind": "mwaa"}, "kind mwaa needs mwaa_environment"),
    ],
)
def test_incomplete_auth_is_one_clear_error(auth: dict[str, Any], expected: str) -> None:
    component = AirflowInstanceComponent.resolve_from_dict({"name": "prod", "webserver_url": "http://airflow:8080", "auth": auth})
    with pytest.raises(AirliftDagsterError, match=expected) as info:
        component.build_airflow_instance()
    assert "attributes.auth" in str(info.value) and "'prod'" in str(info.value)


def test_a_secret_never_reaches_an_error(monkeypatch: pytest.MonkeyPatch, fake: FakeAirflow, tmp_path: Path) -> None:
    component = _component(monkeypatch, fake, YAML.replace("{{ env.AIRLIFT_TEST_PASSWORD }}", "wrong-s3cret"))
    with pytest.raises(AirliftDagsterError) as info:
        component.write_state_to_path(tmp_path / "state")
    assert "wrong-s3cret" not in str(info.value)


def test_state_of_another_instance_is_refused(monkeypatch: pytest.MonkeyPatch, fake: FakeAirflow, tmp_path: Path) -> None:
    _component(monkeypatch, fake).write_state_to_path(tmp_path / "state")
    other = _component(monkeypatch, fake, YAML.replace("name: fake_one", "name: fake_two"))
    with pytest.raises(AirliftDagsterError, match="give each component its own defs_state.key"):
        _build(other, tmp_path / "state")


def test_the_tutorial_yaml_variant_loads(monkeypatch: pytest.MonkeyPatch, fake: FakeAirflow, tmp_path: Path) -> None:
    import yaml

    tutorial = Path(__file__).resolve().parents[3] / "examples" / "tutorial-example" / "tutorial_example" / "dagster_defs"
    document = yaml.safe_load((tutorial / "peer_component" / "airflow" / "defs.yaml").read_text())
    assert document["type"] == "airlift_dagster.AirflowInstanceComponent"
    monkeypatch.setenv("TUTORIAL_AIRFLOW_URL", fake.url)
    monkeypatch.setenv("TUTORIAL_AIRFLOW_USER", "admin")
    monkeypatch.setenv("TUTORIAL_AIRFLOW_PASSWORD", "admin")
    component = AirflowInstanceComponent.resolve_from_yaml(yaml.safe_dump(document["attributes"]))
    component.write_state_to_path(tmp_path / "state")
    defs = _build(component, tmp_path / "state")
    assert defs.resolve_sensor_def("airflow_instance_one__airflow_sensor") is not None


def test_datasets_and_dag_asset_options_from_yaml(monkeypatch: pytest.MonkeyPatch, fake: FakeAirflow, tmp_path: Path) -> None:
    fake.state.datasets += [FakeDataset("s3://lake/orders", producing_tasks=[("dag_00000", "task_000")]),
                            FakeDataset("gs://other/x", producing_tasks=[("dag_00000", "task_001")])]
    fake.state.dags[0].tags = ["sales"]
    yaml = YAML + """datasets:
  uri_pattern: "^s3://"
dag_assets:
  tags_from_dag: true
"""
    component = _component(monkeypatch, fake, yaml)
    # a state written before datasets were enabled maps none, and says how to read them
    _component(monkeypatch, fake).write_state_to_path(tmp_path / "old")
    keys = {spec.key for spec in _build(component, tmp_path / "old").resolve_all_asset_specs()}
    assert dataset_asset_key("fake_one", "s3://lake/orders") not in keys
    component.write_state_to_path(tmp_path / "state")
    specs = {spec.key: spec for spec in _build(component, tmp_path / "state").resolve_all_asset_specs()}
    assert dataset_asset_key("fake_one", "s3://lake/orders") in specs
    assert dataset_asset_key("fake_one", "gs://other/x") not in specs
    assert "sales" in specs[AssetKey(["fake_one", "dag", "dag_00000"])].tags
    bad = _component(monkeypatch, fake, YAML + "datasets:\n  uri_pattern: '('\n")
    with pytest.raises(AirliftDagsterError, match="attributes.datasets"):
        bad.write_state_to_path(tmp_path / "bad")


def test_a_subclass_supplies_the_translator(monkeypatch: pytest.MonkeyPatch, fake: FakeAirflow, tmp_path: Path) -> None:
    class Grouped(AirflowTranslator):
        def get_dag_group_name(self, props: AirflowDagProps) -> str | None:
            return "airflow_" + props.dag.dag_id

    class MyComponent(AirflowInstanceComponent):
        def get_translator(self) -> AirflowTranslator:
            return Grouped()

    monkeypatch.setenv("AIRLIFT_TEST_URL", fake.url)
    monkeypatch.setenv("AIRLIFT_TEST_PASSWORD", "admin")
    component = MyComponent.resolve_from_yaml(YAML)
    component.write_state_to_path(tmp_path / "state")
    specs = {spec.key: spec for spec in _build(component, tmp_path / "state").resolve_all_asset_specs()}
    assert specs[AssetKey(["fake_one", "dag", "dag_00001"])].group_name == "airflow_dag_00001"


def test_the_dag_selection_is_asked_of_airflow_and_sources_can_be_left_unread(
    monkeypatch: pytest.MonkeyPatch, fake: FakeAirflow, tmp_path: Path
) -> None:
    from airlift_testing.fake_airflow import all_paths

    component = _component(monkeypatch, fake, YAML + "dag_assets:\n  source_code: false\n")
    component.write_state_to_path(tmp_path / "state")
    lists = [p for p in all_paths(fake) if "order_by=dag_id" in p]
    assert lists and all("dag_id_pattern=dag_0000" in p for p in lists), lists
    assert not [p for p in all_paths(fake) if "dagSources" in p]
    assert {spec.key for spec in _build(component, tmp_path / "state").resolve_all_asset_specs()} >= {
        AssetKey(["fake_one", "dag", "dag_00000"]), AssetKey(["fake_one", "dag", "dag_00001"])}


BY_KEY_YAML = YAML.replace("""      - key: warehouse/orders
""", """      - key: warehouse/orders
  - dag_id: dag_00000
    task_id: task_001
    by_key: [warehouse/loaded]
  - dag_id: dag_00001
    by_key: [reports/weekly]
""")


def test_by_key_maps_assets_the_project_defines_elsewhere(monkeypatch: pytest.MonkeyPatch, fake: FakeAirflow, tmp_path: Path) -> None:
    from dagster import asset

    from airlift_protocol.tags import TASK_ASSET_INDEX_METADATA, parse_task_asset_index

    @asset(key=["warehouse", "loaded"])
    def loaded() -> None: ...

    @asset(key=["reports", "weekly"])
    def weekly() -> None: ...

    component = _component(monkeypatch, fake, BY_KEY_YAML)
    state = tmp_path / "state"
    component.write_state_to_path(state)
    built = _build(component, state)
    # the component defines none of them: the project's own definitions do, executable
    defined = {k for a in built.assets or () for k in ([a.key] if isinstance(a, AssetSpec) else a.keys)}
    assert defined == {AssetKey(["fake_one", "dag", "dag_00000"]), AssetKey(["fake_one", "dag", "dag_00001"]), AssetKey(["warehouse", "orders"])}
    project = Definitions.merge(built, Definitions(assets=[loaded, weekly]))
    graph = project.resolve_asset_graph()
    assert graph.get(AssetKey(["warehouse", "loaded"])).is_executable
    specs = {s.key: s for s in project.resolve_all_asset_specs()}
    index = parse_task_asset_index(specs[AssetKey(["fake_one", "dag", "dag_00000"])].metadata[TASK_ASSET_INDEX_METADATA].value)
    assert index is not None and index["task_001"] == [("warehouse", "loaded")] and index["task_000"] == [("warehouse", "orders")]
    whole = parse_task_asset_index(specs[AssetKey(["fake_one", "dag", "dag_00001"])].metadata[TASK_ASSET_INDEX_METADATA].value)
    assert whole is not None and whole[None] == [("reports", "weekly")]
    assert AssetKey(["warehouse", "loaded"]) in {d.asset_key for d in specs[AssetKey(["fake_one", "dag", "dag_00000"])].deps}
    checks = {k for c in project.asset_checks or () for k in getattr(c, "check_keys", ())}
    assert any(k.asset_key == AssetKey(["warehouse", "loaded"]) for k in checks)

    # the sensor reports them: a successful Airflow run materializes the by_key assets (in its mirrored run)
    fake.state.add_run("dag_00000", start=datetime.now(timezone.utc) - timedelta(minutes=10))
    fake.state.add_run("dag_00001", start=datetime.now(timezone.utc) - timedelta(minutes=10))
    with DagsterInstance.ephemeral() as dagster:
        project.resolve_sensor_def("fake_one__airflow_sensor")(build_sensor_context(instance=dagster, definitions=project))
        for key in (AssetKey(["warehouse", "loaded"]), AssetKey(["reports", "weekly"])):
            assert dagster.get_latest_materialization_event(key) is not None, key


def test_by_key_with_an_unknown_task_is_the_usual_error(monkeypatch: pytest.MonkeyPatch, fake: FakeAirflow, tmp_path: Path) -> None:
    component = _component(monkeypatch, fake, BY_KEY_YAML.replace("task_id: task_001", "task_id: task_0o1"))
    state = tmp_path / "state"
    component.write_state_to_path(state)
    with pytest.raises(AirliftDagsterError, match="has no task 'task_0o1'"):
        _build(component, state)


def test_a_change_source_typo_names_the_key_and_the_choices(monkeypatch: pytest.MonkeyPatch, fake: FakeAirflow) -> None:
    with pytest.raises(Exception, match=r"(?s)change_source.*'auto', 'audit_log' or 'scan'"):
        _component(monkeypatch, fake, YAML.replace("change_source: audit_log", "change_source: auditlog"))
