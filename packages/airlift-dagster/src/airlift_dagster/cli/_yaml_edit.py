"""Comment-preserving edits of migration-state files, written atomically and validated first.

The file format itself (and its validation) belongs to :mod:`airlift_protocol.migration_state`; this
module only edits the text with ruamel.yaml's round-trip mode so comments, key order and quoting
survive, and never leaves a half-written or invalid file behind: the new text is written to a
temporary file in the same folder, loaded back with the protocol loader, then renamed over the old one.
"""

from __future__ import annotations

import difflib
import io
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import YAMLError

from airlift_dagster.cli._errors import CliError
from airlift_protocol import DagMigrationState, load_dag_migration_state
from airlift_protocol.migration_state import MIGRATION_STATE_SUFFIXES

__all__ = [
    "StateEdit",
    "create_state_file",
    "edit_state_file",
    "state_file_for",
    "unified_diff",
]


def state_file_for(folder: Path, dag_id: str) -> Path:
    """The DAG's existing ``<dag_id>.yaml``/``.yml`` in ``folder``, else the ``.yaml`` path to create."""
    for suffix in MIGRATION_STATE_SUFFIXES:
        candidate = folder / f"{dag_id}{suffix}"
        if candidate.exists():
            return candidate
    return folder / f"{dag_id}.yaml"


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def _write_validated(path: Path, text: str, *, overwrite: bool) -> DagMigrationState:
    """Write ``text`` to ``path`` through a temporary file that the protocol loader reads back first.
    With ``overwrite=False`` an existing file is never replaced (the link fails instead)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # A hidden folder next to the target: same file system (atomic rename), and the loader sees the
    # real file name (the dag id is the file name).
    scratch = Path(tempfile.mkdtemp(prefix=".airlift-", dir=path.parent))
    try:
        candidate = scratch / path.name
        candidate.write_text(text, encoding="utf-8")
        state = load_dag_migration_state(candidate)
        if overwrite:
            os.replace(candidate, path)
        else:
            try:
                os.link(candidate, path)
            except FileExistsError:
                raise CliError(f"{path}: already exists; not overwritten (use --update to add missing tasks).") from None
        return state
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def create_state_file(path: Path, *, dag_id: str, task_ids: Iterable[str]) -> DagMigrationState:
    """Create ``path`` with every task ``migrated: false``; an existing file is left untouched
    (:class:`CliError`)."""
    lines = [
        f"# Migration state of the Airflow DAG {dag_id!r}: set a task's `migrated` to true to run it in",
        "# Dagster (`airlift state set`), back to false to roll it back (`airlift state rollback`).",
        "tasks:",
    ]
    body = CommentedMap()
    for task_id in task_ids:
        body[task_id] = CommentedMap([("migrated", False)])
    if body:
        buffer = io.StringIO()
        _yaml().dump(body, buffer)
        lines.extend("  " + line for line in buffer.getvalue().rstrip("\n").splitlines())
    else:
        lines[-1] = "tasks: {}"
    return _write_validated(path, "\n".join(lines) + "\n", overwrite=False)


class StateEdit:
    """An edit of one state file: the text before and after, and the loaded new state."""

    def __init__(self, path: Path, before: str, after: str, state: DagMigrationState | None) -> None:
        self.path = path
        self.before = before
        self.after = after
        self.state = state

    @property
    def changed(self) -> bool:
        """Whether the edit changed the file."""
        return self.before != self.after


def edit_state_file(
    path: Path,
    *,
    set_tasks: Mapping[str, bool] = {},
    add_missing: Iterable[str] = (),
    all_tasks_to: bool | None = None,
    dry_run: bool = False,
) -> StateEdit:
    """Edit one existing state file in place, keeping comments and order.

    ``set_tasks`` sets those tasks' flags (a task without an entry is appended); ``add_missing``
    appends ``migrated: false`` entries for tasks the file does not list; ``all_tasks_to`` sets every
    listed task (and a DAG-level ``migrated`` key, where the format has one). The file is validated
    before and after; nothing is written when the result would be invalid or nothing changed.
    """
    load_dag_migration_state(path)  # the current file must be valid: errors name file and line
    before = path.read_text(encoding="utf-8")
    yaml = _yaml()
    try:
        root: Any = yaml.load(before)
    except YAMLError as e:  # pragma: no cover - the protocol loader rejected it already
        raise CliError(f"{path}: not valid YAML ({e}).") from e
    if not isinstance(root, CommentedMap):
        raise CliError(f"{path}: expected a mapping with a 'tasks' key.")
    tasks = root.get("tasks")
    if not isinstance(tasks, CommentedMap):
        tasks = CommentedMap()
        root["tasks"] = tasks
    if all_tasks_to is not None:
        if "migrated" in root:
            root["migrated"] = all_tasks_to
        for entry in tasks.values():
            if isinstance(entry, CommentedMap):
                entry["migrated"] = all_tasks_to
    for task_id in add_missing:
        if task_id not in tasks:
            tasks[task_id] = CommentedMap([("migrated", False)])
    for task_id, migrated in set_tasks.items():
        entry = tasks.get(task_id)
        if isinstance(entry, CommentedMap):
            entry["migrated"] = migrated
        else:
            tasks[task_id] = CommentedMap([("migrated", migrated)])
    buffer = io.StringIO()
    yaml.dump(root, buffer)
    after = buffer.getvalue()
    if after == before or dry_run:
        return StateEdit(path, before, after, None)
    state = _write_validated(path, after, overwrite=True)
    return StateEdit(path, before, after, state)


def unified_diff(before: str, after: str, path: Path) -> str:
    """A unified diff of a state file's edit (empty when nothing changed)."""
    return "".join(
        difflib.unified_diff(
            before.splitlines(keepends=True), after.splitlines(keepends=True), fromfile=str(path), tofile=str(path)
        )
    )
