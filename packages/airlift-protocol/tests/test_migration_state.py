from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from airlift_protocol import (
    VALID_FILE_EXAMPLE,
    DagMigrationState,
    MigrationState,
    MigrationStateError,
    dump_dag_migration_state,
    dump_migration_state_to_yaml,
    load_dag_migration_state,
    load_migration_state_from_yaml,
    set_task_migrated,
)

VALID = Path(__file__).parent / "fixtures" / "migration_state" / "valid"


def test_load_valid_folder() -> None:
    state = load_migration_state_from_yaml(VALID)
    assert set(state.dag_ids) == {
        "rebuild_customers_list",
        "team.sales-daily_v2",
        "empty_tasks",
        "null_tasks",
        "whole_dag_nightly",
    }
    assert state.dag_state("whole_dag_nightly") == DagMigrationState("whole_dag_nightly", dag_migrated=True)
    dag = state.dag_state("rebuild_customers_list")
    assert dag is not None
    assert list(dag.tasks) == ["load_raw_customers", "run_dbt_model", "export_customers"]
    assert dag.migrated_task_ids == ("run_dbt_model",)
    assert state.is_task_migrated(dag_id="rebuild_customers_list", task_id="run_dbt_model") is True
    assert state.is_task_migrated(dag_id="rebuild_customers_list", task_id="export_customers") is False
    assert state.is_task_migrated(dag_id="rebuild_customers_list", task_id="nope") is None
    assert state.is_task_migrated(dag_id="nope", task_id="x") is None
    dotted = state.dag_state("team.sales-daily_v2")
    assert dotted is not None
    assert dotted.is_task_migrated("extract.orders") is True
    # quoted keys that look like numbers or YAML 1.1 booleans are task ids, verbatim
    assert dotted.is_task_migrated("123") is False
    assert dotted.is_task_migrated("yes") is True
    assert state.dag_state("empty_tasks") == DagMigrationState("empty_tasks")
    assert state.dag_state("null_tasks") == DagMigrationState("null_tasks")


@pytest.mark.parametrize("name", sorted(p.name for p in VALID.glob("*.y*ml")))
def test_every_fixture_round_trips(name: str, tmp_path: Path) -> None:
    original = load_dag_migration_state(VALID / name)
    (tmp_path / f"{original.dag_id}.yaml").write_text(dump_dag_migration_state(original))
    again = load_dag_migration_state(tmp_path / f"{original.dag_id}.yaml")
    assert again == original
    assert list(again.tasks) == list(original.tasks)


def test_folder_round_trip(tmp_path: Path) -> None:
    state = load_migration_state_from_yaml(VALID)
    written = dump_migration_state_to_yaml(state, tmp_path / "out")
    assert len(written) == len(state.dag_ids)
    assert load_migration_state_from_yaml(tmp_path / "out") == state


def test_dump_format_is_the_documented_one() -> None:
    state = DagMigrationState("d").with_task("a", migrated=True).with_task("b", migrated=False)
    assert dump_dag_migration_state(state) == (
        "tasks:\n  a:\n    migrated: true\n  b:\n    migrated: false\n"
    )


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MigrationStateError, match=r"does not exist") as info:
        load_migration_state_from_yaml(tmp_path / "missing")
    assert str(tmp_path / "missing") in str(info.value)


def test_folder_that_is_a_file(tmp_path: Path) -> None:
    f = tmp_path / "f.yaml"
    f.write_text("tasks: {}\n")
    with pytest.raises(MigrationStateError, match="found a file"):
        load_migration_state_from_yaml(f)


def test_empty_folder_is_empty_state(tmp_path: Path) -> None:
    assert load_migration_state_from_yaml(tmp_path) == MigrationState()


INVALID = {
    "unknown_top_key": ("tasks: {}\nowner: me\n", "owner", 2, "unknown key"),
    "unknown_task_key": ("tasks:\n  a:\n    migrated: true\n    proxied: true\n", "tasks.a.proxied", 4, "unknown key"),
    "string_bool": ("tasks:\n  a:\n    migrated: 'true'\n", "tasks.a.migrated", 3, "expected true or false"),
    "yes_is_not_bool": ("tasks:\n  a:\n    migrated: yes\n", "tasks.a.migrated", 3, "found 'yes'"),
    "int_bool": ("tasks:\n  a:\n    migrated: 1\n", "tasks.a.migrated", 3, "expected true or false"),
    "null_bool": ("tasks:\n  a:\n    migrated:\n", "tasks.a.migrated", None, "expected true or false"),
    "list_file": ("- tasks\n", None, 1, "expected a mapping, found a list"),
    "scalar_file": ("just text\n", None, 1, "expected a mapping"),
    "empty_file": ("", None, None, "the file is empty"),
    "no_tasks": ("dag_id: no_tasks\n", "tasks", 1, "no 'tasks' key"),
    "tasks_list": ("tasks:\n  - a\n", "tasks", 2, "expected a mapping, found a list"),
    "task_not_mapping": ("tasks:\n  a: true\n", "tasks.a", 2, "expected a mapping"),
    "missing_migrated": ("tasks:\n  a: {}\n", "tasks.a.migrated", 2, "missing 'migrated'"),
    "duplicate_task": ("tasks:\n  a:\n    migrated: true\n  a:\n    migrated: false\n", "tasks.a", 4, "duplicate key (first defined on line 2)"),
    "duplicate_top": ("tasks: {}\ntasks: {}\n", "tasks", 2, "duplicate key"),
    "duplicate_migrated": ("tasks:\n  a:\n    migrated: true\n    migrated: false\n", "tasks.a.migrated", 4, "duplicate key"),
    "bad_yaml": ("tasks:\n  a: [unclosed\n", None, None, "not valid YAML"),
    "tab_yaml": ("tasks:\n\ta:\n", None, 2, "not valid YAML"),
    "dag_id_mismatch": ("dag_id: other\ntasks: {}\n", "dag_id", 1, "does not match the file name"),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_files_name_file_key_and_line(case: str, tmp_path: Path) -> None:
    text, key_path, line, problem = INVALID[case]
    folder = tmp_path / "migration_state"
    folder.mkdir()
    file = folder / f"{case}.yaml"
    file.write_text(text)
    with pytest.raises(MigrationStateError) as info:
        load_migration_state_from_yaml(folder)
    message = str(info.value)
    assert str(file) in message
    assert problem in message
    if key_path is not None:
        assert f"key {key_path!r}" in message
    if line is not None:
        assert f"line {line}" in message
    assert VALID_FILE_EXAMPLE in message


def test_yaml_and_yml_for_same_dag_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "d.yaml").write_text("tasks: {}\n")
    (tmp_path / "d.yml").write_text("tasks: {}\n")
    with pytest.raises(MigrationStateError, match="two migration-state files"):
        load_migration_state_from_yaml(tmp_path)


def test_unreadable_file(tmp_path: Path) -> None:
    (tmp_path / "d.yaml").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(MigrationStateError, match=r"d\.yaml: cannot read"):
        load_migration_state_from_yaml(tmp_path)


def test_set_task_migrated_updates_one_task_and_keeps_others(tmp_path: Path) -> None:
    shutil.copy(VALID / "rebuild_customers_list.yaml", tmp_path)
    before = load_dag_migration_state(tmp_path / "rebuild_customers_list.yaml")
    after = set_task_migrated(tmp_path, dag_id="rebuild_customers_list", task_id="load_raw_customers", migrated=True)
    assert after.migrated_task_ids == ("load_raw_customers", "run_dbt_model")
    assert load_dag_migration_state(tmp_path / "rebuild_customers_list.yaml") == after
    assert list(after.tasks) == list(before.tasks)
    # rollback
    rolled = set_task_migrated(tmp_path, dag_id="rebuild_customers_list", task_id="load_raw_customers", migrated=False)
    assert rolled == before
    assert not list(tmp_path.glob(".*tmp")), "no temporary files are left behind"


def test_set_task_migrated_creates_file(tmp_path: Path) -> None:
    state = set_task_migrated(tmp_path / "ms", dag_id="new.dag", task_id="t", migrated=True)
    assert state.is_task_migrated("t") is True
    assert load_migration_state_from_yaml(tmp_path / "ms").is_task_migrated(dag_id="new.dag", task_id="t")


def test_set_task_migrated_refuses_to_overwrite_invalid_file(tmp_path: Path) -> None:
    (tmp_path / "d.yaml").write_text("tasks:\n  a:\n    migrated: maybe\n")
    with pytest.raises(MigrationStateError, match="maybe"):
        set_task_migrated(tmp_path, dag_id="d", task_id="a", migrated=True)
    assert (tmp_path / "d.yaml").read_text() == "tasks:\n  a:\n    migrated: maybe\n"


def test_state_objects_are_immutable() -> None:
    state = MigrationState().with_task(dag_id="d", task_id="t", migrated=True)
    with pytest.raises(TypeError):
        state.dags["x"] = DagMigrationState("x")  # type: ignore[index]
    assert MigrationState().dag_ids == ()


def test_whole_dag_switch_round_trips_and_rolls_back(tmp_path: Path) -> None:
    from airlift_protocol import set_dag_migrated

    state = set_dag_migrated(tmp_path, dag_id="nightly", migrated=True)
    assert state.dag_migrated is True and dict(state.tasks) == {}
    assert (tmp_path / "nightly.yaml").read_text() == "migrated: true\n"
    assert load_migration_state_from_yaml(tmp_path).dag_state("nightly") == state
    assert set_dag_migrated(tmp_path, dag_id="nightly", migrated=False).dag_migrated is False
    with pytest.raises(MigrationStateError, match="switched as a whole"):
        set_task_migrated(tmp_path, dag_id="nightly", task_id="a", migrated=True)


def test_whole_dag_switch_next_to_tasks_and_unknown_keys_are_errors(tmp_path: Path) -> None:
    (tmp_path / "d.yaml").write_text("migrated: true\ntasks:\n  a:\n    migrated: false\n")
    with pytest.raises(MigrationStateError, match=r"d.yaml, line 1, key 'migrated': a DAG-level 'migrated' switch cannot sit next to 'tasks'"):
        load_migration_state_from_yaml(tmp_path)
    (tmp_path / "d.yaml").write_text("migrated: yes\n")
    with pytest.raises(MigrationStateError, match=r"key 'migrated': expected true or false, found 'yes'"):
        load_migration_state_from_yaml(tmp_path)
    (tmp_path / "d.yaml").write_text("migrate: true\n")
    with pytest.raises(MigrationStateError, match=r"key 'migrate': unknown key; the only top-level keys are 'tasks', 'migrated'"):
        load_migration_state_from_yaml(tmp_path)
