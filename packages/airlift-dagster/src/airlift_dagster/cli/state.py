"""``airlift state ...``: scaffold, inspect, change and check migration-state files."""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import click
import requests
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from airlift_dagster.cli._airflow import LiveDag, fetch_live_dags, latest_task_instances
from airlift_dagster.cli._connect import (
    DAGSTER_TOKEN_HINT,
    Connection,
    UserCode,
    connection_options,
)
from airlift_dagster.cli._errors import EXIT_OK, EXIT_PROBLEMS, CliError
from airlift_dagster.cli._output import Output, diff_text, first_line, json_option, plain
from airlift_dagster.cli._proxied import ProxiedDag, load_proxied_folder
from airlift_dagster.cli._yaml_edit import (
    create_state_file,
    edit_state_file,
    new_state_text,
    state_file_for,
    unified_diff,
    whole_dag_refusal,
)
from airlift_protocol import (
    AIRFLOW_DAG_ID_RUN_TAG,
    AIRFLOW_TASK_ID_RUN_TAG,
    MIGRATING_DAG_TAG,
    DagMigrationState,
    MigrationState,
    MigrationStateError,
    load_dag_migration_state,
    load_migration_state_from_yaml,
    task_is_marked_migrated,
)
from airlift_protocol.migration_state import MIGRATION_STATE_SUFFIXES

__all__ = ["state"]

STATE_FOLDER_NAME = "migration_state"


def state_dir_of(dags_folder: str, state_dir: str | None) -> Path:
    return Path(state_dir) if state_dir else Path(dags_folder) / STATE_FOLDER_NAME


folder_options = [
    click.option("--dags-folder", "-d", envvar="AIRLIFT_DAGS_FOLDER", default=".", show_default=True,
                 type=click.Path(file_okay=False), help="Folder of the DAG files; state lives in its migration_state/."),
    click.option("--state-dir", envvar="AIRLIFT_STATE_DIR", type=click.Path(file_okay=False),
                 help="The migration-state folder itself (default: DAGS_FOLDER/migration_state)."),
]


def with_folders(func: Any) -> Any:
    for option in reversed(folder_options):
        func = option(func)
    return func


def _load_state(folder: Path) -> MigrationState:
    return load_migration_state_from_yaml(folder)


@click.group()
def state() -> None:
    """Scaffold, inspect, change and validate migration-state files (migration_state/<dag_id>.yaml)."""


# ---------------------------------------------------------------------------------------- scaffold
@state.command()
@click.argument("dags_folder", type=click.Path(file_okay=False))
@click.option("--dag", "patterns", multiple=True, help="Only DAG ids matching this glob (repeatable).")
@click.option("--update", is_flag=True, help="Add tasks missing from existing files (never changes a flag).")
@connection_options
def scaffold(conn: Connection, dags_folder: str, patterns: tuple[str, ...], update: bool) -> None:
    """Write DAGS_FOLDER/migration_state/<dag_id>.yaml for the live DAGs, every task "migrated: false".

    DAGs and tasks are read over Airflow's REST API (no Airflow install needed here). An existing
    file is never overwritten; with --update its missing tasks are appended.

    \b
    Example:
        airlift state scaffold airflow_dags/ --dag 'sales_*'
    """
    out = Output()
    live = fetch_live_dags(conn.instance(), out, patterns=patterns)
    if not live:
        raise CliError(f"no DAG in {conn.instance().webserver_url} matches {plain(patterns)}; nothing written.")
    folder = Path(dags_folder) / STATE_FOLDER_NAME
    for dag_id in live:  # every existing file must be valid before anything is written
        if state_file_for(folder, dag_id).exists():
            load_dag_migration_state(state_file_for(folder, dag_id))
    created, updated, kept = 0, 0, 0
    for dag_id, dag in live.items():
        path = state_file_for(folder, dag_id)
        if not path.exists():
            create_state_file(path, dag_id=dag_id, task_ids=dag.task_ids)
            out.print(f"[green]created[/] {escape(str(path))} ({len(dag.tasks)} tasks)")
            created += 1
        elif update:
            edit = edit_state_file(path, add_missing=dag.task_ids)
            if edit.changed:
                out.print(f"[yellow]updated[/] {escape(str(path))}")
                out.print(diff_text(unified_diff(edit.before, edit.after, path)))
                updated += 1
            else:
                kept += 1
        else:
            out.print(f"[dim]exists[/]  {escape(str(path))} (kept; --update adds missing tasks)")
            kept += 1
    out.print(f"{created} created, {updated} updated, {kept} unchanged in {escape(str(folder))}")


# ------------------------------------------------------------------------------------------ status
@dataclass
class TaskStatus:
    """One row of ``state status``."""

    dag_id: str
    task_id: str
    migrated: bool | None
    airflow_shows_migrated: bool | None
    assets: list[str] = field(default_factory=list)
    last_airflow_state: str | None = None
    last_airflow_run: str | None = None
    last_dagster_run: str | None = None
    warnings: list[str] = field(default_factory=list)


def _drift(task_id: str, migrated: bool | None, live: LiveDag | None, code: UserCode | None, dag_id: str) -> tuple[bool | None, list[str]]:
    warnings: list[str] = []
    shown: bool | None = None
    if live is not None:
        task = live.task(task_id)
        if task is None:
            warnings.append("task not in Airflow's DAG")
        else:
            shown = task_is_marked_migrated(task.doc_md)
            if migrated and not shown:
                warnings.append("Airflow still runs the original operator (not deployed or not re-parsed yet)")
            elif not migrated and shown:
                warnings.append("Airflow still runs it in Dagster (rollback not deployed or not re-parsed yet)")
    if code is not None and migrated and not code.assets_by_task.get((dag_id, task_id)):
        warnings.append("migrated, but no Dagster asset is mapped to it")
    return shown, warnings


def _local_dagster_runs(pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """The latest run in the Dagster instance of ``DAGSTER_HOME`` for each (dag_id, task_id)."""
    from dagster import DagsterInstance, RunsFilter

    result: dict[tuple[str, str], str] = {}
    with DagsterInstance.get() as instance:
        for dag_id, task_id in pairs:
            tags = {AIRFLOW_DAG_ID_RUN_TAG: dag_id, AIRFLOW_TASK_ID_RUN_TAG: task_id}
            runs = instance.get_runs(filters=RunsFilter(tags=tags), limit=1)
            if runs:
                result[(dag_id, task_id)] = f"{runs[0].status.value} {runs[0].run_id[:8]}"
    return result


def _dagster_runs(conn: Connection, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """The latest Dagster run launched for each (dag_id, task_id), as ``STATUS run_id``, read from
    the webserver's GraphQL API (with the Dagster+ API token, when given)."""
    dagster_url = str(conn.dagster_url)
    query = (
        "query($tags: [ExecutionTag!]) { runsOrError(filter: {tags: $tags}, limit: 1) "
        "{ ... on Runs { results { runId status } } } }"
    )
    result: dict[tuple[str, str], str] = {}
    for dag_id, task_id in pairs:
        tags = [{"key": AIRFLOW_DAG_ID_RUN_TAG, "value": dag_id}, {"key": AIRFLOW_TASK_ID_RUN_TAG, "value": task_id}]
        try:
            response = conn.post_dagster_graphql(query, {"tags": tags})
            if response.status_code in (401, 403):
                raise CliError(f"{dagster_url}: could not read Dagster runs (HTTP {response.status_code}). {DAGSTER_TOKEN_HINT}.")
            runs = response.json()["data"]["runsOrError"]["results"]
        except (requests.RequestException, ValueError, KeyError, TypeError) as e:
            raise CliError(f"{dagster_url}: could not read Dagster runs ({first_line(e)}); check --dagster-url.") from e
        if runs:
            result[(dag_id, task_id)] = f"{runs[0]['status']} {runs[0]['runId'][:8]}"
    return result


@state.command()
@with_folders
@click.option("--days", default=30.0, show_default=True, help="How far back to look for the latest Airflow run.")
@connection_options
@json_option
def status(conn: Connection, dags_folder: str, state_dir: str | None, days: float, as_json: bool) -> None:
    """Per DAG and task: migrated or not, mapped assets (with --defs), the latest Airflow try, the
    latest Dagster run launched for it (from --dagster-url, or with --defs from the Dagster instance of
    DAGSTER_HOME) and drift between the files and what Airflow runs.

    \b
    Example:
        airlift state status -d airflow_dags/ --defs dagster_defs/migrate.py --json
    """
    out = Output(as_json=as_json)
    folder = state_dir_of(dags_folder, state_dir)
    current = _load_state(folder)
    instance = conn.instance()
    code = conn.user_code()
    live = fetch_live_dags(instance, out, dag_ids=list(current.dag_ids))
    runs, tis = latest_task_instances(instance, list(live), days=days)
    rows: list[TaskStatus] = []
    dag_warnings: dict[str, list[str]] = {}
    for dag_state in current:
        dag_id = dag_state.dag_id
        dag = live.get(dag_id)
        if dag is None:
            dag_warnings[dag_id] = ["no such DAG in Airflow"]
        elif dag.broken_note():
            dag_warnings[dag_id] = [str(dag.broken_note())]
        task_ids = list(dag_state.tasks) + [t for t in (dag.task_ids if dag else ()) if t not in dag_state.tasks]
        for task_id in task_ids:
            migrated = dag_state.is_task_migrated(task_id)
            shown, warnings = _drift(task_id, migrated, dag, code, dag_id)
            if migrated is None:
                warnings.append("no entry in the state file (runs in Airflow)")
            ti = tis.get((dag_id, task_id))
            rows.append(TaskStatus(
                dag_id=dag_id, task_id=task_id, migrated=migrated, airflow_shows_migrated=shown,
                assets=sorted(k.to_user_string() for k in (code.assets_by_task.get((dag_id, task_id), []) if code else [])),
                last_airflow_state=(f"{ti.state or 'none'} (try {ti.try_number})" if ti else None),
                last_airflow_run=runs[dag_id].run_id if dag_id in runs and ti else None,
                warnings=warnings,
            ))
    pairs = [(r.dag_id, r.task_id) for r in rows]
    dagster_source: str | None = None
    dagster: dict[tuple[str, str], str] = {}
    if conn.dagster_url:
        dagster_source = conn.dagster_url
        dagster = _dagster_runs(conn, pairs)
    elif code is not None and os.environ.get("DAGSTER_HOME"):
        dagster_source = f"DAGSTER_HOME={os.environ['DAGSTER_HOME']}"
        dagster = _local_dagster_runs(pairs)
    if dagster_source is not None:
        for row in rows:
            row.last_dagster_run = dagster.get((row.dag_id, row.task_id))
    if as_json:
        out.emit_json({
            "state_dir": str(folder),
            "airflow": instance.webserver_url,
            "dagster": dagster_source,
            "dags": [{"dag_id": d, "warnings": w} for d, w in dag_warnings.items()],
            "tasks": [asdict(r) for r in rows],
        })
        return
    table = Table(title=f"Migration state in {folder} vs {instance.webserver_url}", title_justify="left")
    for column in ("DAG", "task", "migrated", "assets", "last Airflow try", "last Dagster run", "warnings"):
        table.add_column(column, overflow="fold")
    for row in rows:
        mark = {True: "[green]yes[/]", False: "no", None: "[dim]-[/]"}[row.migrated]
        table.add_row(
            escape(row.dag_id), escape(row.task_id), mark,
            escape(plain(row.assets)) if code else "[dim]--defs[/]",
            escape(row.last_airflow_state or "-"),
            escape(row.last_dagster_run or "-") if dagster_source else "[dim]--dagster-url[/]",
            Text("; ".join(row.warnings), style="yellow"),
        )
    out.print(table)
    for dag_id, warnings in dag_warnings.items():
        out.print(f"[yellow]warning:[/] {escape(dag_id)}: {escape('; '.join(warnings))}")


# -------------------------------------------------------------------------------- set / rollback
def _check_against_airflow(conn: Connection, dag_id: str, task_ids: Sequence[str], *, offline: bool) -> None:
    if offline:
        return
    live = fetch_live_dags(conn.instance(), Output(), dag_ids=[dag_id])
    if dag_id not in live:
        raise CliError(f"DAG {dag_id!r} is not in {conn.instance().webserver_url}; nothing changed (--offline skips this check).")
    if live[dag_id].broken_note():
        conn_note = f"{live[dag_id].broken_note()}. The change is written; it takes effect once the file imports."
        Output().print(f"[yellow]warning:[/] {escape(conn_note)}")
    unknown = [t for t in task_ids if live[dag_id].task(t) is None]
    if unknown:
        raise CliError(
            f"DAG {dag_id!r} has no task {', '.join(map(repr, unknown))} in Airflow; nothing changed "
            f"(its tasks: {', '.join(live[dag_id].task_ids)})."
        )


def _apply(path: Path, out: Output, **changes: Any) -> None:
    edit = edit_state_file(path, **changes)
    if not edit.changed:
        out.print(f"{escape(str(path))}: already so, nothing changed")
        return
    out.print(diff_text(unified_diff(edit.before, edit.after, path)))


def _existing_file(folder: Path, dag_id: str) -> Path:
    path = state_file_for(folder, dag_id)
    if not path.exists():
        raise CliError(f"{path}: no migration-state file for DAG {dag_id!r}; run `airlift state scaffold` first.")
    return path


@state.command(name="set")
@with_folders
@click.argument("dag_id")
@click.argument("task_ids", nargs=-1)
@click.option("--migrated/--not-migrated", required=True, help="Run the tasks in Dagster, or in Airflow again.")
@click.option("--offline", is_flag=True, help="Do not check the DAG and tasks against Airflow.")
@connection_options
def set_(conn: Connection, dags_folder: str, state_dir: str | None, dag_id: str, task_ids: tuple[str, ...],
         migrated: bool, offline: bool) -> None:
    """Set TASK_IDS of DAG_ID migrated (or not), editing the file in place (comments and order kept).
    A file that switches the whole DAG ("migrated: true" instead of "tasks") takes no TASK_IDS: its
    switch is set.

    \b
    Example:
        airlift state set -d airflow_dags/ rebuild_customers_list load_raw_customers --migrated
    """
    out = Output()
    path = _existing_file(state_dir_of(dags_folder, state_dir), dag_id)
    current = load_dag_migration_state(path)
    if current.dag_migrated is not None:
        if task_ids:
            raise CliError(whole_dag_refusal(path, current))
        _check_against_airflow(conn, dag_id, (), offline=offline)
        _apply(path, out, all_tasks_to=migrated)
        return
    if not task_ids:
        raise CliError(f"{path}: name the tasks of DAG {dag_id!r} to set (e.g. `airlift state set {dag_id} TASK_ID "
                       f"--migrated`); nothing changed.")
    _check_against_airflow(conn, dag_id, task_ids, offline=offline)
    _apply(path, out, set_tasks=dict.fromkeys(task_ids, migrated))


@state.command()
@with_folders
@click.argument("dag_id")
@click.argument("task_ids", nargs=-1)
@click.option("--offline", is_flag=True, help="Do not check the DAG and tasks against Airflow.")
@connection_options
def rollback(conn: Connection, dags_folder: str, state_dir: str | None, dag_id: str, task_ids: tuple[str, ...],
             offline: bool) -> None:
    """Roll back TASK_IDS of DAG_ID (every task when none is given, or the switch of a file that
    migrates the whole DAG) to run in Airflow.

    \b
    Example:
        airlift state rollback -d airflow_dags/ rebuild_customers_list load_raw_customers
    """
    out = Output()
    path = _existing_file(state_dir_of(dags_folder, state_dir), dag_id)
    current = load_dag_migration_state(path)
    if task_ids and current.dag_migrated is not None:
        raise CliError(whole_dag_refusal(path, current))
    if task_ids:
        missing = [t for t in task_ids if t not in current.tasks]
        if missing:
            raise CliError(f"{path}: no entry for task {', '.join(map(repr, missing))}; nothing to roll back.")
        _check_against_airflow(conn, dag_id, task_ids, offline=offline)
        _apply(path, out, set_tasks=dict.fromkeys(task_ids, False))
    else:
        _apply(path, out, all_tasks_to=False)


# -------------------------------------------------------------------------------------- validate
@dataclass(frozen=True)
class Problem:
    """One finding of ``state validate`` (``level`` is error or warning)."""

    level: str
    where: str
    message: str


def _load_each(folder: Path) -> tuple[dict[str, DagMigrationState], list[Problem]]:
    if not folder.is_dir():
        raise CliError(f"{folder}: the migration-state folder does not exist (run `airlift state scaffold`).")
    states: dict[str, DagMigrationState] = {}
    problems: list[Problem] = []
    for path in sorted(p for p in folder.iterdir() if p.suffix in MIGRATION_STATE_SUFFIXES and p.is_file()
                       and not p.name.startswith(".")):
        try:
            loaded = load_dag_migration_state(path)
        except MigrationStateError as e:
            problems.append(Problem("error", str(path), first_line(e).removeprefix(f"{path}, ").removeprefix(f"{path}: ")))
            continue
        if loaded.dag_id in states:
            problems.append(Problem("error", str(path), f"DAG {loaded.dag_id!r} has two state files (.yaml and .yml); keep one"))
        states[loaded.dag_id] = loaded
    return states, problems


@state.command()
@with_folders
@click.option("--offline", is_flag=True, help="Only check the files (no Airflow).")
@connection_options
@json_option
def validate(conn: Connection, dags_folder: str, state_dir: str | None, offline: bool, as_json: bool) -> None:
    """Check the state files against the live DAGs and (with --defs) the Dagster mapping.

    Errors: invalid files (file and line), unknown DAGs or tasks, a migrated task with no mapped
    asset, assets mapped to tasks Airflow does not have. Warnings: tasks missing from a file. Exit
    code 1 on errors, for a DAGs repository's CI.

    \b
    Example:
        airlift state validate -d airflow_dags/ --defs dagster_defs/migrate.py
    """
    out = Output(as_json=as_json)
    folder = state_dir_of(dags_folder, state_dir)
    states, problems = _load_each(folder)
    live: dict[str, LiveDag] = {}
    if not offline:
        live = fetch_live_dags(conn.instance(), out, expected=sorted(states))
        for dag_id, dag_state in states.items():
            path = str(state_file_for(folder, dag_id))
            dag = live.get(dag_id)
            if dag is None:
                close = difflib.get_close_matches(dag_id, sorted(live), n=1)
                problems.append(Problem("error", path, f"DAG {dag_id!r} is not in Airflow" + (f"; did you mean {close[0]!r}?" if close else "")))
                continue
            if dag.broken_note():
                problems.append(Problem("error", path, str(dag.broken_note())))
            for task_id in dag_state.tasks:
                if dag.task(task_id) is None:
                    problems.append(Problem("error", path, f"task {task_id!r} is not in Airflow's DAG {dag_id!r}"))
            missing = [t for t in dag.task_ids if t not in dag_state.tasks]
            if missing:
                problems.append(Problem("warning", path, f"tasks not listed (they run in Airflow): {', '.join(missing)}"))
    code = conn.user_code()
    if code is not None:
        for dag_id, dag_state in states.items():
            for task_id in dag_state.migrated_task_ids:
                if not code.assets_by_task.get((dag_id, task_id)):
                    problems.append(Problem("error", str(state_file_for(folder, dag_id)),
                                            f"task {task_id!r} is migrated but no Dagster asset is mapped to it in {code.source}"))
        if not offline:
            for (dag_id, task_id), keys in sorted(code.assets_by_task.items()):
                dag = live.get(dag_id)
                if dag is None or dag.task(task_id) is None:
                    where = f"DAG {dag_id!r}" if dag is None else f"task {task_id!r} of DAG {dag_id!r}"
                    problems.append(Problem("error", code.source, f"assets {plain(k.to_user_string() for k in keys)} are mapped to {where}, which Airflow does not have"))
    errors = [p for p in problems if p.level == "error"]
    if as_json:
        out.emit_json({"state_dir": str(folder), "files": len(states), "ok": not errors, "problems": [asdict(p) for p in problems]})
    else:
        for p in problems:
            colour = "red" if p.level == "error" else "yellow"
            out.print(f"[{colour}]{p.level}:[/] {escape(p.where)}: {escape(p.message)}")
        summary = f"{len(states)} state file(s) checked: {len(errors)} error(s), {len(problems) - len(errors)} warning(s)"
        out.print(f"[red]{summary}[/]" if errors else f"[green]{summary}[/]")
    raise SystemExit(EXIT_PROBLEMS if errors else EXIT_OK)


# ------------------------------------------------------------------------------------------ diff
@dataclass
class DagChange:
    """What deploying the state folder would change for one DAG."""

    dag_id: str
    to_dagster: list[str] = field(default_factory=list)
    back_to_airflow: list[str] = field(default_factory=list)
    tag_now: bool = False
    tag_after: bool = False
    note: str = ""

    @property
    def changes(self) -> bool:
        """Whether a deploy changes which tasks run where."""
        return bool(self.to_dagster or self.back_to_airflow)


@state.command()
@with_folders
@click.option("--exit-code", is_flag=True, help="Exit 1 when a deploy would change something, or a state file's DAG is not in Airflow or fails to import.")
@connection_options
@json_option
def diff(conn: Connection, dags_folder: str, state_dir: str | None, exit_code: bool, as_json: bool) -> None:
    """What a deploy of the state folder would change compared with what Airflow shows now.

    Airflow shows a migrated task by a marker in its docs and a migrating DAG by the tag
    "airlift:migrating": tasks the files migrate that Airflow still runs, and tasks Airflow runs in
    Dagster that the files roll back, are listed per DAG.

    \b
    Example:
        airlift state diff -d airflow_dags/ --exit-code
    """
    out = Output(as_json=as_json)
    folder = state_dir_of(dags_folder, state_dir)
    current = _load_state(folder)
    live = fetch_live_dags(conn.instance(), out, expected=sorted(current.dag_ids))
    changes: list[DagChange] = []
    for dag_id in sorted(set(current.dag_ids) | {d for d, dag in live.items() if MIGRATING_DAG_TAG in dag.dag.tags}):
        dag = live.get(dag_id)
        dag_state = current.dag_state(dag_id)
        change = DagChange(dag_id=dag_id)
        if dag is None:
            change.note = "not in Airflow: the file has no effect until the DAG is parsed"
            changes.append(change)
            continue
        if dag.broken_note():
            change.note = f"{dag.broken_note()}: a deploy changes nothing for this DAG until it imports"
            changes.append(change)
            continue
        change.tag_now = MIGRATING_DAG_TAG in dag.dag.tags
        change.tag_after = change.tag_now or dag_state is not None
        for task_id in dag.task_ids:
            task = dag.task(task_id)
            shown = task is not None and task_is_marked_migrated(task.doc_md)
            wanted = bool(dag_state and dag_state.is_task_migrated(task_id))
            if wanted and not shown:
                change.to_dagster.append(task_id)
            elif shown and not wanted:
                change.back_to_airflow.append(task_id)
        if dag_state is None:
            change.note = "tagged airlift:migrating but has no state file: every task goes back to Airflow"
        elif not change.tag_now:
            change.note = "not tagged airlift:migrating yet: call mark_as_dagster_migrating in the DAG file"
        changes.append(change)
    pending = [c for c in changes if c.changes]
    unappliable = [c for c in changes if not c.changes and c.note and (c.note.startswith("not in Airflow") or "fails to import" in c.note)]
    if as_json:
        out.emit_json({"state_dir": str(folder), "airflow": conn.instance().webserver_url,
                       "changes": [asdict(c) for c in changes if c.changes or c.note]})
    else:
        if not pending:
            out.print(f"[green]Airflow already runs every task where {escape(str(folder))} says.[/]")
        for c in (c for c in changes if c.changes or c.note):
            out.print(f"[bold]{escape(c.dag_id)}[/]")
            for t in c.to_dagster:
                out.print(f"  [green]+ {escape(t)}[/]  Airflow → Dagster")
            for t in c.back_to_airflow:
                out.print(f"  [red]- {escape(t)}[/]  Dagster → Airflow")
            if c.note:
                out.print(f"  [yellow]{escape(c.note)}[/]")
    raise SystemExit(EXIT_PROBLEMS if exit_code and (pending or unappliable) else EXIT_OK)



# --------------------------------------------------------------------------------- import-proxied
PROXIED_FOLDER_NAME = "proxied_state"


def _import_one(dag: ProxiedDag, folder: Path, out: Output, *, dry_run: bool) -> bool:
    """Convert one proxied-state file; print its diff; whether it changes (or would change) a file."""
    path = state_file_for(folder, dag.dag_id)
    if not path.exists():
        text = new_state_text(dag.dag_id, dag.tasks, migrated=dag.tasks, dag_migrated=dag.dag_proxied,
                              note=f"Imported from {dag.path.name} (dagster-airlift's proxied_state): proxied is migrated.")
        if not dry_run:
            create_state_file(path, dag_id=dag.dag_id, task_ids=dag.tasks, text=text)
        out.print(f"[green]{'would create' if dry_run else 'created'}[/] {escape(str(path))}")
        out.print(diff_text(unified_diff("", text, path)))
        return True
    current = load_dag_migration_state(path)
    if (current.dag_migrated is None) != (dag.dag_proxied is None):
        ours = "switches the whole DAG" if current.dag_migrated is not None else "lists tasks"
        theirs = "switches the whole DAG" if dag.dag_proxied is not None else "lists tasks"
        raise CliError(f"{path} {ours} but {dag.path} {theirs}; nothing was written for DAG {dag.dag_id!r}. Make "
                       "them the same shape (or move the migration-state file away to import it anew), then re-run.")
    if dag.dag_proxied is not None:
        edit = edit_state_file(path, all_tasks_to=dag.dag_proxied, dry_run=dry_run)
    else:
        edit = edit_state_file(path, set_tasks=dag.tasks, dry_run=dry_run)
    if not edit.changed:
        out.print(f"[dim]same[/]    {escape(str(path))}: already says what {escape(str(dag.path))} says")
        return False
    out.print(f"[yellow]{'would update' if dry_run else 'updated'}[/] {escape(str(path))}")
    out.print(diff_text(unified_diff(edit.before, edit.after, path)))
    return True


@state.command(name="import-proxied")
@with_folders
@click.option("--proxied-dir", type=click.Path(file_okay=False),
              help="dagster-airlift's proxied-state folder (default: DAGS_FOLDER/proxied_state).")
@click.option("--dry-run", is_flag=True, help="Show the diffs; write nothing.")
def import_proxied(dags_folder: str, state_dir: str | None, proxied_dir: str | None, dry_run: bool) -> None:
    """Convert dagster-airlift's proxied_state/<dag_id>.yaml files into migration-state files
    (proxied is migrated), showing each change as a diff.

    A DAG without a migration-state file gets one; an existing file is edited in place like
    `airlift state set` does (comments and order kept, validated, written atomically, never over an edit
    saved meanwhile), setting only the flags the proxied-state file lists. Every proxied-state file is
    checked before anything is written. Nothing is asked of Airflow: run `airlift state validate` next.

    \b
    Example:
        airlift state import-proxied -d airflow_dags/ --dry-run
    """
    out = Output()
    proxied = Path(proxied_dir) if proxied_dir else Path(dags_folder) / PROXIED_FOLDER_NAME
    folder = state_dir_of(dags_folder, state_dir)
    dags = load_proxied_folder(proxied)
    for dag in dags:  # every existing migration-state file must be valid before anything is written
        if state_file_for(folder, dag.dag_id).exists():
            load_dag_migration_state(state_file_for(folder, dag.dag_id))
    changed = sum(_import_one(dag, folder, out, dry_run=dry_run) for dag in dags)
    verb = "would change" if dry_run else "changed"
    out.print(f"{len(dags)} proxied-state file(s) read from {escape(str(proxied))}; {changed} migration-state file(s) {verb} "
              f"in {escape(str(folder))}.")
