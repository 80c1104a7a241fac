"""Read dagster-airlift's ``proxied_state/<dag_id>.yaml`` files (for ``airlift state import-proxied``).

Their two shapes, as dagster-airlift's documentation describes them: task by task, a list of
``{id: <task_id>, proxied: <bool>}`` under ``tasks``; or, for a DAG proxied as a whole, one top-level
``proxied: <bool>``. Each maps to Airlift's migration-state file: ``proxied`` is ``migrated``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from airlift_dagster.cli._errors import CliError
from airlift_dagster.cli._output import first_line
from airlift_protocol.migration_state import MIGRATION_STATE_SUFFIXES

__all__ = ["ProxiedDag", "load_proxied_folder"]

SHAPE = "expected 'tasks: [{id: <task_id>, proxied: true|false}, ...]' or 'proxied: true|false'"


@dataclass(frozen=True)
class ProxiedDag:
    """One proxied-state file: its path, the DAG id (the file name) and its flags."""

    path: Path
    dag_id: str
    #: task id -> proxied, in file order (empty for a DAG proxied as a whole)
    tasks: dict[str, bool] = field(default_factory=dict)
    #: the whole-DAG switch, or None for a file listing tasks
    dag_proxied: bool | None = None


def _bool(path: Path, where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise CliError(f"{path}: {where} is {value!r}; expected true or false (nothing was written).")
    return value


def load_proxied_file(path: Path) -> ProxiedDag:
    """One file, checked: any other shape is one error naming the file and the key."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise CliError(f"{path}: cannot read it as YAML ({first_line(e)}); nothing was written.") from e
    dag_id = path.stem
    if not isinstance(data, dict) or ("tasks" in data) == ("proxied" in data) or set(data) - {"tasks", "proxied"}:
        raise CliError(f"{path}: {SHAPE}; found {data!r} (nothing was written).")
    if "proxied" in data:
        return ProxiedDag(path, dag_id, dag_proxied=_bool(path, "'proxied'", data["proxied"]))
    entries = data["tasks"] or []
    if not isinstance(entries, list):
        raise CliError(f"{path}: 'tasks' is {entries!r}; {SHAPE} (nothing was written).")
    tasks: dict[str, bool] = {}
    for position, entry in enumerate(entries):
        where = f"tasks[{position}]"
        if not isinstance(entry, dict) or set(entry) != {"id", "proxied"} or not isinstance(entry["id"], str):
            raise CliError(f"{path}: {where} is {entry!r}; expected {{id: <task_id>, proxied: true|false}} (nothing was written).")
        if entry["id"] in tasks:
            raise CliError(f"{path}: {where} lists task {entry['id']!r} a second time (nothing was written).")
        tasks[entry["id"]] = _bool(path, f"{where}.proxied", entry["proxied"])
    return ProxiedDag(path, dag_id, tasks=tasks)


def load_proxied_folder(folder: Path) -> list[ProxiedDag]:
    """Every ``<dag_id>.yaml``/``.yml`` of ``folder``, sorted by DAG id; all are checked before any is used."""
    if not folder.is_dir():
        raise CliError(f"{folder}: no such folder of proxied-state files (give it with --proxied-dir).")
    files = sorted(p for p in folder.iterdir() if p.suffix in MIGRATION_STATE_SUFFIXES and p.is_file())
    if not files:
        raise CliError(f"{folder}: no proxied-state file (<dag_id>.yaml) in it; nothing to import.")
    dags = [load_proxied_file(p) for p in files]
    seen: dict[str, Path] = {}
    for dag in dags:
        if dag.dag_id in seen:
            raise CliError(f"{dag.path}: DAG {dag.dag_id!r} also has {seen[dag.dag_id]}; keep one (nothing was written).")
        seen[dag.dag_id] = dag.path
    return dags
