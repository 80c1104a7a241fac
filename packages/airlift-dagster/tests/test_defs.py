from __future__ import annotations

import base64
import json
import zlib
from datetime import timedelta

import pytest
from dagster import AssetKey, AssetSpec, Definitions, asset, multi_asset

from airlift_client import AirflowInstance, BasicAuthBackend
from airlift_dagster import (
    AirflowInstanceState,
    AirliftDagsterError,
    SensorSettings,
    build_defs_from_airflow_instance,
    dag_asset_key,
    dag_defs,
    task_defs,
)
from airlift_protocol import MIGRATION_DOC_MARKER, ApiVersion, DagInfo, TaskInfo, encode_tag_value
from airlift_protocol.tags import SENSOR_SETTLE_METADATA, parse_sensor_settle
from airlift_testing.fake_airflow import FakeAirflow, FakeAirflowState


def test_tags_on_specs_assets_and_multi_assets() -> None:
    @asset
    def executable() -> None: ...

    @multi_asset(specs=[AssetSpec("m1"), AssetSpec("m2")])
    def multi():  # type: ignore[no-untyped-def]  # dagster reads the (absent) annotation
        ...

    long_dag = "d" * 80
    defs = dag_defs(
        long_dag,
        task_defs("t1", AssetSpec(["raw", "c"])),
        task_defs("t.2", executable, Definitions(assets=[multi])),
    )
    specs = {s.key: s for s in defs.resolve_all_asset_specs()}
    assert specs[AssetKey(["raw", "c"])].tags == {"airlift/dag_id": encode_tag_value(long_dag), "airlift/task_id": "t1"}
    assert specs[AssetKey("m2")].tags["airlift/task_id"] == "t.2"
    assert specs[AssetKey("executable")].metadata["airlift/dag_id"] == long_dag
    with pytest.raises(AirliftDagsterError, match=r"task_defs\('t'\): expected AssetSpec"):
        task_defs("t", "not an asset")  # type: ignore[arg-type]


def test_peer_defs_shape(instance: AirflowInstance, fake: FakeAirflow) -> None:
    fake.state.dags[0].tasks[1].doc_md = f"{MIGRATION_DOC_MARKER}\nmigrated"
    defs = build_defs_from_airflow_instance(
        airflow_instance=instance,
        defs=dag_defs("dag_00000", task_defs("task_000", AssetSpec("a")), task_defs("task_001", AssetSpec("b", deps=["a"]))),
    )
    specs = {s.key: s for s in defs.resolve_all_asset_specs()}
    dag_key = dag_asset_key("inst", "dag_00000")
    assert dag_key == AssetKey(["inst", "dag", "dag_00000"])
    assert {d.asset_key for d in specs[dag_key].deps} == {AssetKey("a"), AssetKey("b")}
    meta = specs[dag_key].metadata
    assert "dag_00000" in meta["Source code"].value
    assert meta["Airflow DAG"].value.endswith("/dags/dag_00000" + ("/grid" if fake.generation == 2 else ""))
    assert meta["Raw DAG (REST)"].value["dag_id"] == "dag_00000"
    assert specs[AssetKey("b")].metadata["Migrated to Dagster"] is True
    assert specs[AssetKey("a")].metadata["Migrated to Dagster"] is False
    assert specs[AssetKey("a")].metadata["Airflow task (raw)"].value["task_id"] == "task_000"
    assert defs.resolve_sensor_def("inst__airflow_sensor").minimum_interval_seconds == 30
    checks = {k.name for k in defs.resolve_asset_graph().asset_check_keys}
    assert checks == {"airflow_dag_run_succeeded", "airflow_task_succeeded"}


@pytest.mark.parametrize(("settings", "published"), [(None, 10.0), (SensorSettings(settle=timedelta(seconds=3.5)), 3.5),
                                                     (SensorSettings(settle=timedelta(0)), 0.0)])
def test_dag_assets_publish_the_sensor_settle_for_push(instance: AirflowInstance, settings: SensorSettings | None,
                                                       published: float) -> None:
    """Push (Airflow side) reads the sensor's settle from every DAG asset to stop reporting before the sensor reads a row."""
    defs = build_defs_from_airflow_instance(airflow_instance=instance, sensor_settings=settings,
                                            defs=dag_defs("dag_00000", task_defs("task_000", AssetSpec("a"))))
    specs = {s.key: s for s in defs.resolve_all_asset_specs()}
    dag_specs = [spec for key, spec in specs.items() if key.path[1:2] == ["dag"]]
    assert len(dag_specs) > 1
    assert {parse_sensor_settle(spec.metadata[SENSOR_SETTLE_METADATA].value) for spec in dag_specs} == {published}


def test_dag_ids_with_dots_and_dashes_build_their_checks(instance: AirflowInstance, fake: FakeAirflow) -> None:
    """Every supported Dagster (1.12 derives op input names from asset keys) takes them."""
    for collection in (fake.state.runs, fake.state.task_instances):
        for item in collection:
            if item.dag_id == "dag_00000":
                item.dag_id = "team.sales-daily_v2"
    fake.state.dags[0].dag_id = "team.sales-daily_v2"
    defs = build_defs_from_airflow_instance(airflow_instance=instance,
                                            defs=dag_defs("team.sales-daily_v2", task_defs("task_000", AssetSpec("a"))))
    checks = {(k.asset_key, k.name) for k in defs.resolve_asset_graph().asset_check_keys}
    assert (dag_asset_key("inst", "team.sales-daily_v2"), "airflow_dag_run_succeeded") in checks
    assert (AssetKey("a"), "airflow_task_succeeded") in checks
    assert defs.resolve_implicit_global_asset_job_def() is not None


def test_dag_selector(instance: AirflowInstance) -> None:
    defs = build_defs_from_airflow_instance(airflow_instance=instance, dag_selector_fn=lambda d: d.dag_id.endswith("1"))
    assert [s.key for s in defs.resolve_all_asset_specs()] == [dag_asset_key("inst", "dag_00001")]

    def broken(_: object) -> bool:
        raise KeyError("x")

    with pytest.raises(AirliftDagsterError, match="dag_selector_fn .*broken raised KeyError for DAG 'dag_00000'"):
        build_defs_from_airflow_instance(airflow_instance=instance, dag_selector_fn=broken)


def test_two_instances_merge_without_clashes() -> None:
    with FakeAirflow(FakeAirflowState.generate(dags=2, tasks_per_dag=1), generation=2) as one, \
         FakeAirflow(FakeAirflowState.generate(dags=2, tasks_per_dag=1), generation=3) as two:
        defs = Definitions.merge(*(
            build_defs_from_airflow_instance(
                airflow_instance=AirflowInstance(auth_backend=BasicAuthBackend(webserver_url=f.url, username="admin", password="admin"), name=n)
            )
            for f, n in ((one, "airflow_instance_one"), (two, "airflow_instance_two"))
        ))
        keys = {s.key for s in defs.resolve_all_asset_specs()}
        assert len(keys) == 4
        assert {defs.resolve_sensor_def(f"{n}__airflow_sensor").name for n in ("airflow_instance_one", "airflow_instance_two")}


def test_state_round_trip(instance: AirflowInstance) -> None:
    from airlift_dagster import fetch_airflow_state

    state = fetch_airflow_state(instance)
    again = AirflowInstanceState.from_json(state.to_json())
    assert again == state
    assert [t.upstream_task_ids for t in again.tasks["dag_00000"]] == [(), ("task_000",), ("task_001",)]


def test_unreachable_airflow_at_load_is_clear() -> None:
    from airlift_client import RetryPolicy
    from airlift_testing.procs import free_port

    inst = AirflowInstance(
        auth_backend=BasicAuthBackend(webserver_url=f"http://127.0.0.1:{free_port()}", username="a", password="b"),
        name="down", retry_policy=RetryPolicy(max_attempts=1),
    )
    with pytest.raises(AirliftDagsterError, match="could not load the state of Airflow instance 'down'"):
        build_defs_from_airflow_instance(airflow_instance=inst)


def test_run_workers_rebuild_from_slim_metadata_without_airflow(instance: AirflowInstance, fake: FakeAirflow) -> None:
    from dagster._core.definitions.definitions_load_context import (
        DefinitionsLoadContext,
        DefinitionsLoadType,
    )
    from dagster._core.definitions.metadata.metadata_value import (
        CodeLocationReconstructionMetadataValue,
    )
    from dagster._core.definitions.repository_definition.repository_definition import (
        RepositoryLoadData,
    )

    fake.state.dags[0].tasks[1].doc_md = f"{MIGRATION_DOC_MARKER}\nmigrated"
    mapping = dag_defs("dag_00000", task_defs("task_000", AssetSpec("a")), task_defs("task_001", AssetSpec("b", deps=["a"])))
    defs = build_defs_from_airflow_instance(airflow_instance=instance, defs=mapping)
    metadata = {k: v.value for k, v in (defs.metadata or {}).items() if isinstance(v, CodeLocationReconstructionMetadataValue)}
    text = zlib.decompress(base64.b64decode(json.loads(metadata["airlift/state/inst"])["z"])).decode()
    assert "dag_00000" in text and "Source" not in text and "task_002" not in text, "ids and mapped tasks only"
    before = fake.total_requests
    DefinitionsLoadContext.set(DefinitionsLoadContext(
        load_type=DefinitionsLoadType.RECONSTRUCTION,
        repository_load_data=RepositoryLoadData(cacheable_asset_data={}, reconstruction_metadata=metadata),
    ))
    try:
        rebuilt = build_defs_from_airflow_instance(airflow_instance=instance, defs=mapping)
    finally:
        DefinitionsLoadContext.set(DefinitionsLoadContext(load_type=DefinitionsLoadType.INITIALIZATION))
    assert fake.total_requests == before, "a run worker does not call Airflow"
    assert {s.key for s in rebuilt.resolve_all_asset_specs()} == {s.key for s in defs.resolve_all_asset_specs()}
    assert rebuilt.resolve_asset_graph().asset_check_keys == defs.resolve_asset_graph().asset_check_keys
    specs = {s.key: s for s in rebuilt.resolve_all_asset_specs()}
    assert specs[AssetKey("b")].metadata["Migrated to Dagster"] is True


def test_reconstruction_metadata_of_10000_dags_is_compressed_and_round_trips() -> None:
    dags = tuple(DagInfo.from_rest({"dag_id": f"dag_{d:05d}"}, api=ApiVersion.V2) for d in range(10_000))
    tasks = {d.dag_id: tuple(TaskInfo.from_rest({"task_id": f"task_{t:03d}"}, dag_id=d.dag_id, api=ApiVersion.V2) for t in range(10))
             for d in dags}
    state = AirflowInstanceState("inst", ApiVersion.V2, "http://airflow:8080", dags, tasks)
    mapped = {d.dag_id: ["task_000", "task_001"] for d in dags}
    text = state.to_reconstruction_json(mapped)
    assert len(text) < 100_000, f"{len(text):,} bytes for 10,000 DAGs x 2 mapped tasks"
    again = AirflowInstanceState.from_json(text)
    assert [d.dag_id for d in again.dags] == [d.dag_id for d in dags]
    assert {k: [t.task_id for t in v] for k, v in again.tasks.items()} == mapped
    with pytest.raises(AirliftDagsterError, match="does not decompress"):
        AirflowInstanceState.from_json('{"v": 3, "z": "bm90IHpsaWI="}')


def test_ids_airflow_does_not_have_are_an_error_unless_allowed(instance: AirflowInstance) -> None:
    with pytest.raises(AirliftDagsterError, match=r"dag_defs\('nope'\): Airflow instance 'inst' .* has no DAG 'nope'.*allow_unknown_ids"):
        build_defs_from_airflow_instance(airflow_instance=instance, defs=dag_defs("nope", task_defs("t", AssetSpec("x"))))
    with pytest.raises(AirliftDagsterError, match=r"task_defs\('nope'\) in dag_defs\('dag_00000'\).*has no task 'nope'"):
        build_defs_from_airflow_instance(airflow_instance=instance, defs=dag_defs("dag_00000", task_defs("nope", AssetSpec("x"))))
    defs = build_defs_from_airflow_instance(airflow_instance=instance, defs=dag_defs("nope", task_defs("t", AssetSpec("x"))),
                                            allow_unknown_ids=["nope"])
    assert AssetKey("x") in {s.key for s in defs.resolve_all_asset_specs()}


def test_a_dag_filter_is_asked_of_airflow_and_sources_can_be_skipped() -> None:
    """``dag_filter`` narrows Airflow's DAG list server side (a glob's literal part as
    ``dag_id_pattern``, tags as Airflow's tag filter; exact ids read by id, no list), and
    ``include_sources=False`` reads no DAG source."""
    from airlift_dagster import DagFilter

    state = FakeAirflowState.generate(dags=12, tasks_per_dag=2)
    state.dags[3].tags = ["finance"]
    with FakeAirflow(state, generation=2) as fake:
        instance = AirflowInstance(auth_backend=BasicAuthBackend(webserver_url=fake.url, username="admin", password="admin"), name="i")
        defs = build_defs_from_airflow_instance(airflow_instance=instance, dag_filter=DagFilter(id_pattern="dag_0001*"),
                                                include_sources=False, refresh=True)
        dag_keys = {k for k in defs.resolve_asset_graph().get_all_asset_keys() if k.path[1] == "dag"}
        assert dag_keys == {AssetKey(["i", "dag", f"dag_{n:05d}"]) for n in (10, 11)}
        listed = [p for m, p, _ in fake.request_log if m == "GET" and p.startswith("/api/v1/dags?order_by")]
        assert listed and all("dag_id_pattern=dag_0001" in p for p in listed), listed
        assert fake.requests["GET /api/v1/dags/{id}/tasks"] == 2
        assert not [k for k in fake.requests if "dagSources" in k], fake.requests

        fake.request_log.clear()
        fake.requests.clear()
        tagged = build_defs_from_airflow_instance(airflow_instance=instance, dag_filter=DagFilter(tags=("finance",)), refresh=True)
        assert {k.path[2] for k in tagged.resolve_asset_graph().get_all_asset_keys() if k.path[1] == "dag"} == {"dag_00003"}
        assert fake.requests["GET /api/v1/dags/{id}/tasks"] == 1

        fake.request_log.clear()
        by_id = build_defs_from_airflow_instance(airflow_instance=instance, dag_filter=DagFilter(ids=("dag_00005", "nope")),
                                                 include_sources=False, refresh=True)
        assert {k.path[2] for k in by_id.resolve_asset_graph().get_all_asset_keys() if k.path[1] == "dag"} == {"dag_00005"}
        assert not [p for _, p, _ in fake.request_log if p.startswith("/api/v1/dags?order_by")], "no DAG list read"


def test_sources_are_read_by_default_only_up_to_the_auto_limit(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """``include_sources`` unset: sources are read for at most ``SOURCES_AUTO_LIMIT`` selected DAGs;
    above it none is read and the load says so; ``True`` and ``False`` are obeyed at any size."""
    import airlift_dagster.state as state_module
    from airlift_dagster import DagFilter

    monkeypatch.setattr(state_module, "SOURCES_AUTO_LIMIT", 5)
    with FakeAirflow(FakeAirflowState.generate(dags=8, tasks_per_dag=2), generation=2) as fake:
        instance = AirflowInstance(auth_backend=BasicAuthBackend(webserver_url=fake.url, username="admin", password="admin"), name="i")

        def sources_read(**kwargs: object) -> int:
            fake.requests.clear()
            build_defs_from_airflow_instance(airflow_instance=instance, refresh=True, **kwargs)  # type: ignore[arg-type]
            return sum(n for k, n in fake.requests.items() if "dagSources" in k)

        with caplog.at_level("INFO", logger="airlift_dagster"):
            assert sources_read() == 0
        assert "8 DAGs selected, more than 5: their sources are not read" in caplog.text
        assert "include_sources=True" in caplog.text
        assert sources_read(include_sources=True) == 8
        assert sources_read(dag_filter=DagFilter(id_pattern="dag_0000[0-4]")) == 5
        assert sources_read(dag_filter=DagFilter(id_pattern="dag_0000[0-4]"), include_sources=False) == 0
