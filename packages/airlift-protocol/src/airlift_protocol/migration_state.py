"""The migration-state file format: one YAML file per DAG, ``<folder>/<dag_id>.yaml``.

A valid file::

    tasks:
      load_raw_customers:
        migrated: true
      export_customers:
        migrated: false

``migrated: true`` makes ``mark_as_dagster_migrating`` (airlift-airflow) run that task as a Dagster
run of its assets; ``false`` (or no entry) keeps the original Airflow operator. An optional top-level
``dag_id`` key must equal the file name.

Whole-DAG migration: a top-level ``migrated: true`` (instead of ``tasks``) replaces every task of
the DAG by one task that runs the assets mapped to the DAG itself (``dag_defs``); ``migrated: false``
rolls it back. A DAG-level switch next to ``tasks`` is an error (one file, one way). Only ``true``/``false`` are booleans (``yes``/``on`` are
rejected, not guessed). Every problem raises :class:`MigrationStateError` naming the file, key path
and line.

Example (``folder`` holding the file above as ``rebuild_customers_list.yaml``)::

    state = load_migration_state_from_yaml(folder)
    state.is_task_migrated(dag_id="rebuild_customers_list", task_id="load_raw_customers")  # True
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import yaml

from airlift_protocol.errors import MigrationStateError

__all__ = [
    "MIGRATION_STATE_SUFFIXES",
    "VALID_FILE_EXAMPLE",
    "DagMigrationState",
    "MigrationState",
    "TaskMigrationState",
    "dump_dag_migration_state",
    "dump_migration_state_to_yaml",
    "load_dag_migration_state",
    "load_migration_state_from_yaml",
    "set_dag_migrated",
    "set_task_migrated",
]

MIGRATION_STATE_SUFFIXES = (".yaml", ".yml")

VALID_FILE_EXAMPLE = """\
A valid migration-state file is named <dag_id>.yaml and looks like:
  tasks:
    <task_id>:
      migrated: true    # or false
    <other_task_id>:
      migrated: false
or, to run the whole DAG as one Dagster run of the assets mapped to the DAG:
  migrated: true    # or false"""

_BOOL_TAG = "tag:yaml.org,2002:bool"
_STR_TAG = "tag:yaml.org,2002:str"


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader where only true/false (any case) are booleans; yes/no/on/off stay strings."""


_StrictLoader.yaml_implicit_resolvers = {
    first: [
        (tag, regexp)
        for tag, regexp in resolvers
        if tag != _BOOL_TAG
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
for _first in "tTfF":
    _StrictLoader.add_implicit_resolver(
        _BOOL_TAG,
        re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
        [_first],
    )


@dataclass(frozen=True)
class TaskMigrationState:
    """Whether one task runs in Dagster (``migrated=True``) or in Airflow."""

    task_id: str
    migrated: bool


@dataclass(frozen=True)
class DagMigrationState:
    """The migration state of one DAG: its tasks in file order."""

    dag_id: str
    tasks: Mapping[str, TaskMigrationState] = field(default_factory=dict)
    #: The DAG-level switch (``None`` when the file has per-task entries instead).
    dag_migrated: bool | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", MappingProxyType(dict(self.tasks)))
        if self.dag_migrated is not None and self.tasks:
            raise MigrationStateError(
                f"DAG {self.dag_id!r}: a DAG-level 'migrated' switch cannot sit next to task entries; keep one"
            )

    def is_task_migrated(self, task_id: str) -> bool | None:
        """``True``/``False`` from the file, ``None`` when the task has no entry."""
        entry = self.tasks.get(task_id)
        return None if entry is None else entry.migrated

    @property
    def migrated_task_ids(self) -> tuple[str, ...]:
        """Ids of the tasks marked ``migrated: true``, in file order."""
        return tuple(t.task_id for t in self.tasks.values() if t.migrated)

    def with_task(self, task_id: str, *, migrated: bool) -> DagMigrationState:
        """A copy with one task's flag set (added at the end if it had no entry)."""
        tasks = dict(self.tasks)
        tasks[task_id] = TaskMigrationState(task_id=task_id, migrated=migrated)
        return DagMigrationState(dag_id=self.dag_id, tasks=tasks)

    def with_dag_migrated(self, migrated: bool) -> DagMigrationState:
        """A copy with the DAG-level switch set (and no task entries)."""
        return DagMigrationState(dag_id=self.dag_id, dag_migrated=migrated)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DagMigrationState):
            return NotImplemented
        return (self.dag_id, self.dag_migrated) == (other.dag_id, other.dag_migrated) and list(
            self.tasks.items()
        ) == list(other.tasks.items())

    def __hash__(self) -> int:
        return hash((self.dag_id, self.dag_migrated, tuple(self.tasks.items())))


@dataclass(frozen=True)
class MigrationState:
    """The migration state of every DAG found in a folder."""

    dags: Mapping[str, DagMigrationState] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "dags", MappingProxyType(dict(self.dags)))

    @property
    def dag_ids(self) -> tuple[str, ...]:
        """DAG ids that have a migration-state file."""
        return tuple(self.dags)

    def dag_state(self, dag_id: str) -> DagMigrationState | None:
        """The state of one DAG, or ``None`` when it has no file."""
        return self.dags.get(dag_id)

    def is_task_migrated(self, *, dag_id: str, task_id: str) -> bool | None:
        """``True``/``False`` from the file, ``None`` when the DAG or task has no entry."""
        dag = self.dags.get(dag_id)
        return None if dag is None else dag.is_task_migrated(task_id)

    def with_task(self, *, dag_id: str, task_id: str, migrated: bool) -> MigrationState:
        """A copy with one task's flag set."""
        dags = dict(self.dags)
        dags[dag_id] = (dags.get(dag_id) or DagMigrationState(dag_id)).with_task(
            task_id, migrated=migrated
        )
        return MigrationState(dags)

    def __iter__(self) -> Iterator[DagMigrationState]:
        return iter(self.dags.values())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MigrationState):
            return NotImplemented
        return dict(self.dags) == dict(other.dags)

    def __hash__(self) -> int:
        return hash(tuple(self.dags.items()))


def _error(path: Path, key_path: str | None, line: int | None, problem: str) -> MigrationStateError:
    where = str(path)
    if line is not None:
        where += f", line {line}"
    if key_path:
        where += f", key {key_path!r}"
    return MigrationStateError(f"{where}: {problem}\n{VALID_FILE_EXAMPLE}")


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _mapping_items(
    node: yaml.Node, path: Path, key_path: str | None
) -> list[tuple[str, yaml.Node, yaml.Node]]:
    if not isinstance(node, yaml.MappingNode):
        kind = "a list" if isinstance(node, yaml.SequenceNode) else f"the value {node.value!r}"
        raise _error(path, key_path, _line(node), f"expected a mapping, found {kind}.")
    seen: dict[str, int] = {}
    items: list[tuple[str, yaml.Node, yaml.Node]] = []
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            raise _error(path, key_path, _line(key_node), "keys must be plain names.")
        key = str(key_node.value)
        if key in seen:
            child = f"{key_path}.{key}" if key_path else key
            raise _error(
                path, child, _line(key_node), f"duplicate key (first defined on line {seen[key]})."
            )
        seen[key] = _line(key_node)
        items.append((key, key_node, value_node))
    return items


def _bool(path: Path, key_path: str, node: yaml.Node) -> bool:
    if not (isinstance(node, yaml.ScalarNode) and node.tag == _BOOL_TAG):
        shown = node.value if isinstance(node, yaml.ScalarNode) else "a collection"
        raise _error(path, key_path, _line(node), f"expected true or false, found {shown!r}.")
    return str(node.value).lower() == "true"


def _parse_text(text: str, path: Path, expected_dag_id: str) -> DagMigrationState:
    try:
        root = yaml.compose(text, Loader=_StrictLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = int(mark.line) + 1 if mark is not None else None
        problem = getattr(e, "problem", None) or str(e)
        raise _error(path, None, line, f"not valid YAML ({problem}).") from e
    if root is None:
        raise _error(path, None, None, "the file is empty.")
    dag_id = expected_dag_id
    tasks_node: yaml.Node | None = None
    dag_switch: tuple[yaml.Node, yaml.Node] | None = None
    for key, key_node, value_node in _mapping_items(root, path, None):
        if key == "tasks":
            tasks_node = value_node
        elif key == "migrated":
            dag_switch = (key_node, value_node)
        elif key == "dag_id":
            if value_node.value != expected_dag_id:
                raise _error(
                    path,
                    "dag_id",
                    _line(value_node),
                    f"dag_id {value_node.value!r} does not match the file name, which says "
                    f"{expected_dag_id!r}; rename the file to <dag_id>.yaml or fix the key.",
                )
        else:
            raise _error(
                path,
                key,
                _line(key_node),
                "unknown key; the only top-level keys are 'tasks', 'migrated' (whole DAG) and 'dag_id'.",
            )
    if dag_switch is not None:
        if tasks_node is not None:
            raise _error(
                path,
                "migrated",
                _line(dag_switch[0]),
                "a DAG-level 'migrated' switch cannot sit next to 'tasks'; migrate the whole DAG "
                "(keep 'migrated', remove 'tasks') or task by task (keep 'tasks', remove 'migrated').",
            )
        return DagMigrationState(dag_id=dag_id, dag_migrated=_bool(path, "migrated", dag_switch[1]))
    if tasks_node is None:
        raise _error(path, "tasks", _line(root), "the file has no 'tasks' key.")
    tasks: dict[str, TaskMigrationState] = {}
    if isinstance(tasks_node, yaml.ScalarNode) and tasks_node.tag == "tag:yaml.org,2002:null":
        return DagMigrationState(dag_id=dag_id, tasks=tasks)
    for task_id, key_node, value_node in _mapping_items(tasks_node, path, "tasks"):
        task_path = f"tasks.{task_id}"
        migrated: bool | None = None
        for key, k_node, v_node in _mapping_items(value_node, path, task_path):
            if key != "migrated":
                raise _error(
                    path, f"{task_path}.{key}", _line(k_node), "unknown key; a task has only 'migrated'."
                )
            migrated = _bool(path, f"{task_path}.migrated", v_node)
        if migrated is None:
            raise _error(path, f"{task_path}.migrated", _line(key_node), "missing 'migrated'.")
        tasks[task_id] = TaskMigrationState(task_id=task_id, migrated=migrated)
    return DagMigrationState(dag_id=dag_id, tasks=tasks)


def load_dag_migration_state(path: str | os.PathLike[str]) -> DagMigrationState:
    """Load and validate one ``<dag_id>.yaml`` file."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MigrationStateError(f"{file}: no such migration-state file.") from None
    except (OSError, UnicodeDecodeError) as e:
        raise MigrationStateError(f"{file}: cannot read the file ({e}).") from e
    return _parse_text(text, file, file.stem)


def _state_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.suffix in MIGRATION_STATE_SUFFIXES and p.is_file() and not p.name.startswith(".")
    )


def load_migration_state_from_yaml(path: str | os.PathLike[str]) -> MigrationState:
    """Load every ``<dag_id>.yaml`` in a folder. A missing folder is an error; an empty folder is an
    empty state. Files with other suffixes are ignored."""
    folder = Path(path)
    if not folder.exists():
        raise MigrationStateError(
            f"{folder}: the migration-state folder does not exist. Create it next to your DAG files "
            f"with one <dag_id>.yaml per DAG.\n{VALID_FILE_EXAMPLE}"
        )
    if not folder.is_dir():
        raise MigrationStateError(f"{folder}: expected a folder of <dag_id>.yaml files, found a file.")
    dags: dict[str, DagMigrationState] = {}
    for file in _state_files(folder):
        state = load_dag_migration_state(file)
        if state.dag_id in dags:
            raise MigrationStateError(
                f"{file}: DAG {state.dag_id!r} has two migration-state files in {folder} "
                "(.yaml and .yml); keep one."
            )
        dags[state.dag_id] = state
    return MigrationState(dags)


def dump_dag_migration_state(state: DagMigrationState) -> str:
    """The YAML text of one DAG's state (what :func:`load_dag_migration_state` reads back)."""
    body: dict[str, object]
    if state.dag_migrated is not None:
        body = {"migrated": state.dag_migrated}
    else:
        body = {"tasks": {t.task_id: {"migrated": t.migrated} for t in state.tasks.values()}}
    return yaml.safe_dump(body, sort_keys=False, default_flow_style=False, allow_unicode=True)


def _atomic_write(file: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{file.name}.", suffix=".tmp", dir=file.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, file)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def dump_migration_state_to_yaml(
    state: MigrationState, path: str | os.PathLike[str]
) -> list[Path]:
    """Write one ``<dag_id>.yaml`` per DAG into a folder (created if needed); each file is replaced
    atomically, so a reader never sees a half-written file. Returns the written paths."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for dag_state in state:
        file = folder / f"{dag_state.dag_id}.yaml"
        _atomic_write(file, dump_dag_migration_state(dag_state))
        written.append(file)
    return written


def set_task_migrated(
    path: str | os.PathLike[str], *, dag_id: str, task_id: str, migrated: bool
) -> DagMigrationState:
    """Flip one task's flag in ``<folder>/<dag_id>.yaml`` (validating the file first; creating it if
    absent) and return the new state of that DAG. Use it to migrate or roll back a task."""
    folder = Path(path)
    file = next(
        (folder / f"{dag_id}{s}" for s in MIGRATION_STATE_SUFFIXES if (folder / f"{dag_id}{s}").exists()),
        folder / f"{dag_id}.yaml",
    )
    current = load_dag_migration_state(file) if file.exists() else DagMigrationState(dag_id)
    if current.dag_migrated is not None:
        raise MigrationStateError(
            f"{file}: DAG {dag_id!r} is switched as a whole ('migrated: {str(current.dag_migrated).lower()}'); "
            "use set_dag_migrated, or replace the switch by 'tasks' to migrate task by task"
        )
    updated = current.with_task(task_id, migrated=migrated)
    folder.mkdir(parents=True, exist_ok=True)
    _atomic_write(file, dump_dag_migration_state(updated))
    return updated


def set_dag_migrated(path: str | os.PathLike[str], *, dag_id: str, migrated: bool) -> DagMigrationState:
    """Set the DAG-level switch in ``<folder>/<dag_id>.yaml`` (the file then holds only that switch):
    ``True`` runs the whole DAG as one Dagster run of the assets mapped to it, ``False`` rolls back.

    >>> import tempfile
    >>> set_dag_migrated(tempfile.mkdtemp(), dag_id="nightly", migrated=True).dag_migrated
    True
    """
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    file = next(
        (folder / f"{dag_id}{s}" for s in MIGRATION_STATE_SUFFIXES if (folder / f"{dag_id}{s}").exists()),
        folder / f"{dag_id}.yaml",
    )
    if file.exists():
        load_dag_migration_state(file)  # a broken file is reported, not overwritten
    updated = DagMigrationState(dag_id).with_dag_migrated(migrated)
    _atomic_write(file, dump_dag_migration_state(updated))
    return updated
