"""Comment-preserving edits of migration-state files, written atomically and validated first.

The file format itself (and its validation) belongs to :mod:`airlift_protocol.migration_state`; this
module only edits the text with ruamel.yaml's round-trip mode so comments, key order and quoting
survive, and never leaves a half-written or invalid file behind: the new text is written to a
temporary file in the same folder (with the old file's mode), loaded back with the protocol loader, then
renamed over the old one, unless the old file changed since it was read (another edit won: nothing is
written and the command says to re-run).
"""

from __future__ import annotations

import difflib
import io
import os
import shutil
import stat
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import YAMLError

from airlift_dagster.cli._errors import CliError
from airlift_protocol import DagMigrationState, MigrationStateError, load_dag_migration_state
from airlift_protocol.migration_state import MIGRATION_STATE_SUFFIXES

__all__ = [
    "StateEdit",
    "create_state_file",
    "edit_state_file",
    "new_state_text",
    "state_file_for",
    "unified_diff",
    "whole_dag_refusal",
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


def _unwritable(path: Path, error: OSError) -> CliError:
    reason = error.strerror or type(error).__name__
    return CliError(
        f"{path}: cannot write the migration-state file ({reason}); nothing changed. Make the file and its "
        "folder writable for this user (or run as their owner) and re-run."
    )


def _write_validated(path: Path, text: str, *, overwrite: bool, before: str | None = None) -> DagMigrationState:
    """Write ``text`` to ``path`` through a temporary file that the protocol loader reads back first.

    With ``overwrite=False`` an existing file is never replaced (the link fails instead). With
    ``before`` (the text the edit started from) the file is replaced only while it still holds that
    text, and the new file keeps the old one's mode. Errors name ``path``, never the temporary file.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # A hidden folder next to the target: same file system (atomic rename), and the loader sees the
        # real file name (the dag id is the file name).
        scratch = Path(tempfile.mkdtemp(prefix=".airlift-", dir=path.parent))
    except OSError as e:
        raise _unwritable(path, e) from e
    try:
        candidate = scratch / path.name
        try:
            candidate.write_text(text, encoding="utf-8")
            if overwrite and path.exists():
                os.chmod(candidate, stat.S_IMODE(path.stat().st_mode))
        except OSError as e:
            raise _unwritable(path, e) from e
        try:
            state = load_dag_migration_state(candidate)
        except MigrationStateError as e:
            problem = str(e).strip().splitlines()[0].replace(str(candidate), str(path))
            raise CliError(f"{problem} (in the edited text: the edit is not written, {path} is unchanged)") from e
        if overwrite:
            _replace_if_unchanged(candidate, path, before)
        else:
            try:
                os.link(candidate, path)
            except FileExistsError:
                raise CliError(f"{path}: already exists; not overwritten (use --update to add missing tasks).") from None
            except OSError as e:
                raise _unwritable(path, e) from e
        return state
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _replace_if_unchanged(candidate: Path, path: Path, before: str | None) -> None:
    """Rename ``candidate`` over ``path`` unless ``path`` no longer holds ``before`` (someone else
    edited it since it was read: last-writer-wins would silently drop their change)."""
    if before is not None:
        try:
            now = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            now = None
        except OSError as e:
            raise _unwritable(path, e) from e
        if now != before:
            raise CliError(
                f"{path}: the file changed since this command read it (another edit?); nothing written. "
                "Re-run the command to apply it to the current file."
            )
    try:
        os.replace(candidate, path)
    except OSError as e:
        raise _unwritable(path, e) from e


def new_state_text(dag_id: str, task_ids: Iterable[str], *, migrated: Mapping[str, bool] = {},
                   dag_migrated: bool | None = None, note: str | None = None) -> str:
    """The text of a new state file: every task ``migrated: false`` unless ``migrated`` says otherwise,
    or only the whole-DAG switch ``dag_migrated``; ``note``: one more comment line."""
    if dag_migrated is not None:
        return "\n".join([
            f"# Migration state of the Airflow DAG {dag_id!r}, switched as a whole: `migrated: true` runs it in Dagster,",
            "# false rolls it back (`airlift state set` / `airlift state rollback` without task ids).",
            *([f"# {note}"] if note else []), f"migrated: {str(dag_migrated).lower()}",
        ]) + "\n"
    lines = [
        f"# Migration state of the Airflow DAG {dag_id!r}: set a task's `migrated` to true to run it in",
        "# Dagster (`airlift state set`), back to false to roll it back (`airlift state rollback`).",
        *([f"# {note}"] if note else []),
    ]
    lines.append("tasks:")
    body = CommentedMap()
    for task_id in task_ids:
        body[task_id] = CommentedMap([("migrated", bool(migrated.get(task_id, False)))])
    if body:
        buffer = io.StringIO()
        _yaml().dump(body, buffer)
        lines.extend("  " + line for line in buffer.getvalue().rstrip("\n").splitlines())
    else:
        lines[-1] = "tasks: {}"
    return "\n".join(lines) + "\n"


def create_state_file(path: Path, *, dag_id: str, task_ids: Iterable[str], text: str | None = None) -> DagMigrationState:
    """Create ``path`` with every task ``migrated: false`` (or with ``text``, from :func:`new_state_text`);
    an existing file is left untouched (:class:`CliError`)."""
    return _write_validated(path, text if text is not None else new_state_text(dag_id, task_ids), overwrite=False)


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
    listed task, or the DAG-level ``migrated`` switch of a file that migrates the whole DAG (such a
    file has no task entries: ``set_tasks`` is refused, ``add_missing`` adds nothing). The file is
    validated before and after; nothing is written when the result would be invalid, nothing changed,
    or the file changed since it was read.
    """
    current = load_dag_migration_state(path)  # the current file must be valid: errors name file and line
    try:
        before = path.read_text(encoding="utf-8")
    except OSError as e:  # pragma: no cover - the protocol loader read it a moment ago
        raise CliError(f"{path}: cannot read the file ({e}).") from e
    if current.dag_migrated is not None:
        if set_tasks:
            raise CliError(whole_dag_refusal(path, current))
        add_missing = ()
    yaml = _yaml()
    try:
        root: Any = yaml.load(before)
    except YAMLError as e:  # pragma: no cover - the protocol loader rejected it already
        raise CliError(f"{path}: not valid YAML ({e}).") from e
    if not isinstance(root, CommentedMap):
        raise CliError(f"{path}: expected a mapping with a 'tasks' key.")
    if all_tasks_to is not None and "migrated" in root:
        root["migrated"] = all_tasks_to
    tasks = root.get("tasks")
    if not isinstance(tasks, CommentedMap):
        tasks = CommentedMap()
        if set_tasks or add_missing:
            root["tasks"] = tasks
    if all_tasks_to is not None:
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
    state = _write_validated(path, after, overwrite=True, before=before)
    return StateEdit(path, before, after, state)


def whole_dag_refusal(path: Path, current: DagMigrationState) -> str:
    """Why task ids cannot be set in a file that switches the whole DAG, and what to run instead."""
    switch = "true" if current.dag_migrated else "false"
    return (
        f"{path}: DAG {current.dag_id!r} is switched as a whole ('migrated: {switch}'), so it has no task "
        f"entries; nothing changed. Switch the whole DAG with `airlift state set {current.dag_id} --migrated` "
        f"or `airlift state rollback {current.dag_id}` (no task ids), or replace the switch by 'tasks' to "
        "migrate task by task."
    )


def unified_diff(before: str, after: str, path: Path) -> str:
    """A unified diff of a state file's edit (empty when nothing changed)."""
    return "".join(
        difflib.unified_diff(
            before.splitlines(keepends=True), after.splitlines(keepends=True), fromfile=str(path), tofile=str(path)
        )
    )
