"""Datasets/assets, observe-side partitions, the translator and the event transformer, against the
fake Airflow (both REST generations)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from dagster import (
    AssetCheckEvaluation,
    AssetKey,
    AssetMaterialization,
    AssetObservation,
    AssetSpec,
    DagsterInstance,
    DailyPartitionsDefinition,
    Definitions,
    build_sensor_context,
)

from airlift_client import AirflowInstance
from airlift_dagster import (
    PARTITION_CHECK_NAME,
    AirflowDagProps,
    AirflowTickView,
    AirflowTranslator,
    AirliftDagsterError,
    DatasetFilter,
    SensorSettings,
    build_defs_from_airflow_instance,
    dag_defs,
    dataset_asset_key,
    task_defs,
)
from airlift_protocol import AirflowDataset, ApiVersion, DagInfo
from airlift_protocol.tags import (
    AIRFLOW_DATASET_URI_TAG,
    AIRFLOW_EVENT_TAG,
    TASK_ASSET_INDEX_METADATA,
    airflow_event_key_of,
    parse_task_asset_index,
)
from airlift_testing.fake_airflow import FakeAirflow, FakeDataset, FakeDatasetEvent

NOW = datetime.now(timezone.utc).replace(microsecond=0)
ORDERS = "s3://lake/orders/daily.parquet"
REPORT = "warehouse://sales/report"
DAILY = DailyPartitionsDefinition(start_date="2024-01-01")


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


class Daemon:
    """Evaluates the sensor, stores its events, then keeps the cursor (as Dagster's daemon does)."""

    def __init__(self, defs: Definitions, instance: DagsterInstance, clock: Clock, cursor: str | None = None) -> None:
        self.defs, self.instance, self.clock, self.cursor = defs, instance, clock, cursor
        self.events: list[Any] = []

    def tick(self) -> list[Any]:
        sensor = self.defs.resolve_sensor_def("inst__airflow_sensor")
        result = sensor(build_sensor_context(instance=self.instance, definitions=self.defs, cursor=self.cursor))
        for event in result.asset_events:
            self.instance.report_runless_asset_event(event)
        self.cursor = result.cursor
        self.events.extend(result.asset_events)
        self.clock.now += timedelta(minutes=1)
        return list(result.asset_events)

    def materialized(self, key: AssetKey) -> list[AssetMaterialization]:
        return [e for e in self.events if isinstance(e, AssetMaterialization) and e.asset_key == key]


def _with_datasets(fake: FakeAirflow) -> None:
    fake.state.datasets += [
        FakeDataset(ORDERS, producing_tasks=[("dag_00000", "task_001")], consuming_dags=["dag_00001"]),
        FakeDataset(REPORT, producing_tasks=[("dag_00001", "task_000")], consuming_tasks=[("dag_00002", "task_000")]),
        FakeDataset("s3://elsewhere/unrelated", producing_tasks=[("not_selected", "t")]),
    ]


def _defs(instance: AirflowInstance, clock: Clock, *mapped: Definitions, **kwargs: Any) -> Definitions:
    return build_defs_from_airflow_instance(
        airflow_instance=instance,
        defs=Definitions.merge(*mapped) if mapped else dag_defs("dag_00000", task_defs("task_001", AssetSpec("orders_raw"))),
        sensor_settings=SensorSettings(clock=clock, settle=timedelta(0)),
        **kwargs,
    )


# ------------------------------------------------------------------------------------- dataset keys
def test_dataset_key_rule() -> None:
    assert dataset_asset_key("prod", "s3://lake/orders/daily.parquet").path == ["prod", "dataset", "s3", "lake", "orders", "daily_parquet"]
    assert dataset_asset_key("prod", "postgres://db:5432/public.orders?x=1").path == ["prod", "dataset", "postgres", "db_5432", "public_orders_x_1"]
    assert dataset_asset_key("prod", "orders").path == ["prod", "dataset", "orders"]
    assert dataset_asset_key("prod", "file:///tmp/a b/").path == ["prod", "dataset", "file", "tmp", "a_b"]
    assert dataset_asset_key("prod", "://").path == ["prod", "dataset", "_"]


def test_datasets_are_external_assets_with_lineage(fake: FakeAirflow, instance: AirflowInstance) -> None:
    _with_datasets(fake)
    defs = _defs(instance, Clock(), datasets=True)
    specs = {s.key: s for s in defs.resolve_all_asset_specs()}
    orders, report = dataset_asset_key("inst", ORDERS), dataset_asset_key("inst", REPORT)
    assert {d.asset_key for d in specs[orders].deps} == {AssetKey("orders_raw")}, "the producing task's mapped asset"
    assert {d.asset_key for d in specs[report].deps} == {AssetKey(["inst", "dag", "dag_00001"])}, "unmapped producer: its DAG"
    assert orders in {d.asset_key for d in specs[AssetKey(["inst", "dag", "dag_00001"])].deps}, "scheduled consumer downstream"
    if fake.generation == 3:  # Airflow 3 reports inlets
        assert report in {d.asset_key for d in specs[AssetKey(["inst", "dag", "dag_00002"])].deps}
    assert dataset_asset_key("inst", "s3://elsewhere/unrelated") not in specs
    assert specs[orders].metadata["Airflow URI"] == ORDERS
    assert specs[orders].tags["airlift/airflow_instance"] == "inst"
    assert all(s.key.path[1:2] != ["dataset"] for s in _defs(instance, Clock()).resolve_all_asset_specs())


def test_dataset_filters(fake: FakeAirflow, instance: AirflowInstance) -> None:
    _with_datasets(fake)
    fake.state.dags[1].tags = ["sales"]

    def keys(selection: DatasetFilter) -> set[str]:
        return {s.key.to_user_string() for s in _defs(instance, Clock(), datasets=selection).resolve_all_asset_specs()
                if s.key.path[1:2] == ["dataset"]}

    both = {"inst/dataset/s3/lake/orders/daily_parquet", "inst/dataset/warehouse/sales/report"}
    assert keys(DatasetFilter()) == both
    assert keys(DatasetFilter(uri_pattern="^s3://")) == {"inst/dataset/s3/lake/orders/daily_parquet"}
    assert keys(DatasetFilter(dag_tags=("sales",))) == both  # dag_00001 consumes one and produces the other
    assert keys(DatasetFilter(dag_id_pattern="0000[0]$")) == {"inst/dataset/s3/lake/orders/daily_parquet"}
    with pytest.raises(ValueError, match="uri_pattern"):
        DatasetFilter(uri_pattern="(")


def test_two_uris_with_one_key_is_an_error_naming_both(fake: FakeAirflow, instance: AirflowInstance) -> None:
    fake.state.datasets += [FakeDataset("s3://a/b.c", producing_tasks=[("dag_00000", "task_000")]),
                            FakeDataset("s3://a/b_c", producing_tasks=[("dag_00000", "task_000")])]
    with pytest.raises(AirliftDagsterError, match=r"'s3://a/b.c' and 's3://a/b_c'.*get_dataset_asset_key"):
        _defs(instance, Clock(), datasets=True)


def test_dataset_events_materialize_exactly_once(fake: FakeAirflow, instance: AirflowInstance, dagster_instance: DagsterInstance) -> None:
    _with_datasets(fake)
    clock = Clock()
    defs = _defs(instance, clock, datasets=True)
    daemon = Daemon(defs, dagster_instance, clock)
    daemon.tick()
    run = fake.state.add_run("dag_00000", start=clock.now - timedelta(seconds=50))
    stamp = run.start_date + timedelta(seconds=20)  # type: ignore[operator]
    fake.state.dataset_events += [
        FakeDatasetEvent(ORDERS, stamp, source_dag_id="dag_00000", source_task_id="task_001", source_run_id=run.run_id, extra={"rows": 7}),
        FakeDatasetEvent(ORDERS, stamp + timedelta(seconds=1)),  # posted through the REST API
        FakeDatasetEvent("s3://elsewhere/unrelated", stamp),
    ]
    saved = daemon.cursor
    daemon.tick()
    Daemon(defs, dagster_instance, clock, saved).tick()  # restarted before the cursor was saved
    daemon.tick()
    got = daemon.materialized(dataset_asset_key("inst", ORDERS))
    assert len(got) == 2
    by_task, outside = got
    assert by_task.metadata["Airflow run id"].value == run.run_id
    assert by_task.metadata["Source"].value == "dag_00000.task_001"
    assert by_task.metadata["Extra"].value == {"rows": 7}
    assert outside.metadata["Source"].value.startswith("outside a task")
    assert by_task.tags is not None and by_task.tags[AIRFLOW_DATASET_URI_TAG].startswith("airlift-sha1-")
    assert airflow_event_key_of(by_task.tags, instance_name="inst") == by_task.tags[AIRFLOW_EVENT_TAG]
    order = [e.asset_key for e in daemon.events if isinstance(e, AssetMaterialization)]
    assert order.index(AssetKey("orders_raw")) < order.index(dataset_asset_key("inst", ORDERS))
    stored = dagster_instance.fetch_materializations(dataset_asset_key("inst", ORDERS), limit=10).records
    assert len(stored) == 2, "a restarted sensor does not repeat what Dagster already holds"


def test_no_dataset_requests_without_datasets(fake: FakeAirflow, instance: AirflowInstance, dagster_instance: DagsterInstance) -> None:
    clock = Clock()
    daemon = Daemon(_defs(instance, clock), dagster_instance, clock)
    daemon.tick()
    fake.state.add_run("dag_00000", start=clock.now - timedelta(seconds=50))
    daemon.tick()
    assert not [p for _, p, _ in fake.request_log if "dataset" in p or "/assets" in p]


def test_airflow_2_reads_events_newest_first_and_stops_at_the_window(fake: FakeAirflow, instance: AirflowInstance) -> None:
    _with_datasets(fake)
    fake.maximum_page_limit = 2
    fake.state.dataset_events += [FakeDatasetEvent(ORDERS, NOW - timedelta(hours=h)) for h in range(20, 0, -1)]
    instance.page_size = 2
    got = list(instance.iter_dataset_events(timestamp_gte=NOW - timedelta(hours=3, minutes=30), timestamp_lte=NOW - timedelta(hours=1, minutes=30)))
    assert [e.timestamp for e in got] == [NOW - timedelta(hours=3), NOW - timedelta(hours=2)][:: -1 if fake.generation == 2 else 1]
    pages = [q for _, p, q in fake.request_log if p.endswith("/events")]
    assert len(pages) <= (3 if fake.generation == 2 else 1), pages


# ------------------------------------------------------------------------------------- partitions
def test_partitioned_asset_gets_the_runs_partition_or_a_failed_check(fake: FakeAirflow, instance: AirflowInstance,
                                                                       dagster_instance: DagsterInstance) -> None:
    clock = Clock()
    defs = _defs(instance, clock, dag_defs("dag_00000", task_defs("task_001", AssetSpec("daily_sales", partitions_def=DAILY)),
                                           task_defs("task_000", AssetSpec("plain"))))
    daemon = Daemon(defs, dagster_instance, clock)
    daemon.tick()
    aligned = fake.state.add_run("dag_00000", start=clock.now - timedelta(seconds=50))
    aligned.logical_date = datetime(2024, 3, 5, tzinfo=timezone.utc)
    no_date = fake.state.add_run("dag_00000", start=clock.now - timedelta(seconds=40))
    no_date.logical_date = None  # an Airflow 3 run triggered with logical_date null
    early = fake.state.add_run("dag_00000", start=clock.now - timedelta(seconds=30))
    early.logical_date = datetime(2023, 12, 31, tzinfo=timezone.utc)
    daemon.tick()
    got = daemon.materialized(AssetKey("daily_sales"))
    assert [(m.partition, m.metadata["Airflow run id"].value) for m in got] == [("2024-03-05", aligned.run_id)]
    assert [m.partition for m in daemon.materialized(AssetKey("plain"))] == [None, None, None]
    checks = [e for e in daemon.events if isinstance(e, AssetCheckEvaluation) and e.check_name == PARTITION_CHECK_NAME]
    assert [(c.passed, c.partition) for c in checks if c.passed] == [(True, "2024-03-05")]
    failed = sorted(c.description or "" for c in checks if not c.passed)
    assert len(failed) == 2
    assert any("no logical date" in d and no_date.run_id in d for d in failed)
    assert any("before the first partition" in d for d in failed)
    spec_checks = {k.name for k in defs.resolve_asset_graph().asset_check_keys if k.asset_key == AssetKey("daily_sales")}
    assert PARTITION_CHECK_NAME in spec_checks
    # the DAG asset's task index lists it as partitioned: push mode leaves it to the sensor
    dag_node = defs.resolve_asset_graph().get(AssetKey([instance.name, "dag", "dag_00000"]))
    index = dag_node.metadata[TASK_ASSET_INDEX_METADATA].value
    assert parse_task_asset_index(index, without_partitioned=True)["task_001"] == []
    assert parse_task_asset_index(index)["task_001"] == [("daily_sales",)]


@pytest.mark.parametrize("change_source", ["scan", "auto"])
def test_partition_run_read_when_only_the_task_changed(fake: FakeAirflow, instance: AirflowInstance, dagster_instance: DagsterInstance,
                                                       change_source: str) -> None:
    """The run naming a try's partition is read even when the run row is not among the changed rows:
    by id after the scan, from the running runs the audit-log source follows."""
    clock = Clock()
    defs = build_defs_from_airflow_instance(
        airflow_instance=instance, defs=dag_defs("dag_00000", task_defs("task_000", AssetSpec("daily_sales", partitions_def=DAILY))),
        sensor_settings=SensorSettings(clock=clock, settle=timedelta(0), change_source=change_source))
    daemon = Daemon(defs, dagster_instance, clock)
    daemon.tick()
    run = fake.state.add_run("dag_00000", start=clock.now - timedelta(seconds=50), state="running", task_state="success")
    run.logical_date = datetime(2024, 6, 1, 13, tzinfo=timezone.utc)
    run.updated_at = clock.now - timedelta(days=3)  # the run row did not change in the tick's window
    daemon.tick()
    assert [m.partition for m in daemon.materialized(AssetKey("daily_sales"))] == ["2024-06-01"]
    if change_source == "scan":
        assert [p for _, p, _ in fake.request_log if "/dags/dag_00000/dagRuns/manual__" in p], "the run was read for its logical date"


# ------------------------------------------------------------------------------------- translator
def _dag(**raw: Any) -> DagInfo:
    return DagInfo.from_rest({"dag_id": "sales.daily", "owners": ["airflow", "data-eng", "ana@example.com"],
                              "tags": [{"name": "sales"}, {"name": "pii data"}], **raw}, api=ApiVersion.V2)


def _tags(spec: AssetSpec) -> dict[str, str]:
    return {k: v for k, v in spec.tags.items() if not k.startswith("dagster/kind/")}


def test_translator_defaults_are_the_previous_behaviour(fake: FakeAirflow, instance: AirflowInstance) -> None:
    spec = AirflowTranslator().get_dag_asset_spec(AirflowDagProps("prod", _dag()))
    assert spec.key == AssetKey(["prod", "dag", "sales.daily"])
    assert (spec.group_name, spec.owners, _tags(spec), spec.kinds) == ("prod", [], {"airlift/airflow_instance": "prod"}, {"airflow"})
    plain = {s.key: s for s in _defs(instance, Clock()).resolve_all_asset_specs()}
    explicit = {s.key: s for s in _defs(instance, Clock(), translator=AirflowTranslator()).resolve_all_asset_specs()}
    assert plain.keys() == explicit.keys()
    for key, spec in plain.items():
        other = explicit[key]
        assert (spec.group_name, spec.owners, spec.tags, spec.kinds, spec.description, {d.asset_key for d in spec.deps}) == (
            other.group_name, other.owners, other.tags, other.kinds, other.description, {d.asset_key for d in other.deps})


def test_translator_owners_tags_and_overrides() -> None:
    spec = AirflowTranslator(owners_from_dag=True, tags_from_dag=True).get_dag_asset_spec(AirflowDagProps("prod", _dag()))
    assert spec.owners == ["ana@example.com", "team:data-eng"]
    assert _tags(spec) == {"sales": "", "pii_data": "", "airlift/airflow_instance": "prod"}

    class Grouped(AirflowTranslator):
        def get_dag_group_name(self, props: AirflowDagProps) -> str | None:
            return props.dag.dag_id.split(".")[0]

        def get_dag_kinds(self, props: AirflowDagProps) -> set[str]:
            return {"airflow", "python"}

    spec = Grouped().get_dag_asset_spec(AirflowDagProps("prod", _dag()))
    assert (spec.group_name, spec.kinds) == ("sales", {"airflow", "python"})


def test_a_changed_dag_key_is_used_by_the_sensor_and_airlift_metadata_stays(fake: FakeAirflow, instance: AirflowInstance,
                                                                            dagster_instance: DagsterInstance) -> None:
    class Renamed(AirflowTranslator):
        def get_dag_asset_key(self, props: AirflowDagProps) -> AssetKey:
            return AssetKey(["airflow", props.dag.dag_id])

        def get_dag_asset_spec(self, props: AirflowDagProps) -> AssetSpec:
            return AssetSpec(self.get_dag_asset_key(props), description="mine")  # drops Airlift's metadata and tags

    clock = Clock()
    defs = _defs(instance, clock, translator=Renamed())
    specs = {s.key: s for s in defs.resolve_all_asset_specs()}
    spec = specs[AssetKey(["airflow", "dag_00000"])]
    assert spec.description == "mine"
    assert "Airflow DAG" in spec.metadata and spec.tags["airlift/airflow_instance"] == "inst"
    assert AssetKey("orders_raw") in {d.asset_key for d in spec.deps}
    assert AssetKey(["inst", "dag", "dag_00000"]) not in specs
    daemon = Daemon(defs, dagster_instance, clock)
    daemon.tick()
    fake.state.add_run("dag_00000", start=clock.now - timedelta(seconds=50))
    daemon.tick()
    assert len(daemon.materialized(AssetKey(["airflow", "dag_00000"]))) == 1


def test_a_failing_translator_is_named(fake: FakeAirflow, instance: AirflowInstance) -> None:
    class Broken(AirflowTranslator):
        def get_dag_description(self, props: AirflowDagProps) -> str:
            raise KeyError("nope")

    with pytest.raises(AirliftDagsterError, match=r"translator .*get_dag_asset_spec raised KeyError for DAG 'dag_00000'"):
        _defs(instance, Clock(), translator=Broken())


# ------------------------------------------------------------------------------------- transformer
def test_event_transformer_sees_each_event_once_and_may_change_drop_or_add(fake: FakeAirflow, instance: AirflowInstance,
                                                                           dagster_instance: DagsterInstance) -> None:
    seen: list[tuple[list[Any], AirflowTickView]] = []

    def transform(events: Sequence[Any], view: AirflowTickView) -> Iterable[Any]:
        seen.append((list(events), view))
        for event in events:
            if isinstance(event, AssetCheckEvaluation):
                continue  # drop
            if isinstance(event, AssetMaterialization):
                run = view.run(view.task_instances[0].dag_id, str(event.metadata["Airflow run id"].value)) if view.task_instances else None
                yield event.with_metadata({**event.metadata, "Run type seen": str(run.run_type if run else None)})  # change
                yield AssetObservation(asset_key=event.asset_key, metadata={"note": "added"})  # add
            else:
                yield event

    clock = Clock()
    defs = _defs(instance, clock, event_transformer=transform)
    daemon = Daemon(defs, dagster_instance, clock)
    daemon.tick()
    run = fake.state.add_run("dag_00000", start=clock.now - timedelta(seconds=50))
    saved = daemon.cursor
    daemon.tick()
    Daemon(defs, dagster_instance, clock, saved).tick()  # a re-read after a crash: the transformer sees nothing again
    materialized = [e for e in daemon.events if isinstance(e, AssetMaterialization)]
    assert {e.asset_key.to_user_string() for e in materialized} == {"orders_raw", "inst/dag/dag_00000"}
    assert all(e.metadata["Run type seen"].value == "manual" for e in materialized)
    assert not [e for e in daemon.events if isinstance(e, AssetCheckEvaluation)]
    assert len([e for e in daemon.events if isinstance(e, AssetObservation) and e.metadata.get("note")]) == 2
    with_events = [(events, view) for events, view in seen if events]
    assert len(with_events) == 1
    _events, view = with_events[0]
    assert {t.run_id for t in view.task_instances} == {run.run_id}
    assert view.dag_asset_keys["dag_00000"] == AssetKey(["inst", "dag", "dag_00000"])
    assert view.task_asset_keys[("dag_00000", "task_001")] == (AssetKey("orders_raw"),)
    with pytest.raises(TypeError):
        view.dag_asset_keys["x"] = AssetKey("x")  # type: ignore[index]
    stored = dagster_instance.fetch_materializations(AssetKey("orders_raw"), limit=10).records
    assert len(stored) == 1


@pytest.mark.parametrize(("transformer", "message"), [
    (lambda events, view: 1 / 0, r"event transformer <lambda> raised ZeroDivisionError"),
    (lambda events, view: ["not an event"], r"returned a str; return AssetMaterialization"),
])
def test_a_failing_transformer_fails_the_tick_and_keeps_the_cursor(fake: FakeAirflow, instance: AirflowInstance,
                                                                   dagster_instance: DagsterInstance, transformer: Any, message: str) -> None:
    clock = Clock()
    defs = _defs(instance, clock, event_transformer=transformer)
    daemon = Daemon(defs, dagster_instance, clock)
    with pytest.raises(AirliftDagsterError, match=message):
        daemon.tick()
    assert daemon.cursor is None


def test_dataset_model_round_trips_through_cached_state() -> None:
    raw = {"uri": REPORT, "name": "report", "group": "asset", "producing_tasks": [{"dag_id": "p", "task_id": "t"}],
           "scheduled_dags": [{"dag_id": "c"}], "consuming_tasks": [{"dag_id": "i", "task_id": "t2"}]}
    dataset = AirflowDataset.from_rest(raw, api=ApiVersion.V2)
    assert AirflowDataset.from_rest(dataset.to_rest(), api=ApiVersion.V2) == dataset
    assert dataset.dag_ids == {"p", "c", "i"}


def test_run_workers_rebuild_the_selected_datasets_without_airflow(fake: FakeAirflow, instance: AirflowInstance) -> None:
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

    _with_datasets(fake)
    fake.state.dags[0].tags = ["sales"]
    selection = DatasetFilter(dag_tags=("sales",))
    defs = _defs(instance, Clock(), datasets=selection)
    metadata = {k: v.value for k, v in (defs.metadata or {}).items() if isinstance(v, CodeLocationReconstructionMetadataValue)}
    assert "unrelated" not in metadata["airlift/state/inst"], "only the selected datasets travel to run workers"
    before = fake.total_requests
    DefinitionsLoadContext.set(DefinitionsLoadContext(
        load_type=DefinitionsLoadType.RECONSTRUCTION,
        repository_load_data=RepositoryLoadData(cacheable_asset_data={}, reconstruction_metadata=metadata),
    ))
    try:
        rebuilt = _defs(instance, Clock(), datasets=selection)
    finally:
        DefinitionsLoadContext.set(DefinitionsLoadContext(load_type=DefinitionsLoadType.INITIALIZATION))
    assert fake.total_requests == before
    assert {s.key for s in rebuilt.resolve_all_asset_specs()} == {s.key for s in defs.resolve_all_asset_specs()}
    assert dataset_asset_key("inst", ORDERS) in {s.key for s in rebuilt.resolve_all_asset_specs()}
