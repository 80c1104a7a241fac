"""``airlift decommission DAG_ID``: hand a fully migrated DAG's schedule to Dagster and pause it in Airflow.

The command writes ``<out-dir>/<dag_id>.yaml`` (read by :func:`airlift_dagster.load_decommissioned_defs`)
from the DAG's timetable, then pauses the DAG over Airflow's REST API; ``--undo`` unpauses it (unless
it was paused before) and removes the file. Nothing is written when a check fails.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import click
from rich.markup import escape

from airlift_dagster.cli._airflow import LiveDag, fetch_live_dags
from airlift_dagster.cli._connect import Connection, UserCode, connection_options
from airlift_dagster.cli._errors import CliError
from airlift_dagster.cli._output import Output, diff_text
from airlift_dagster.cli._yaml_edit import state_file_for, unified_diff
from airlift_dagster.cli.state import state_dir_of, with_folders
from airlift_dagster.decommission import (
    DecommissionPlan,
    dump_decommission_plan,
    load_decommission_plan,
    load_decommissioned_defs,
    schedule_from_timetable,
)
from airlift_dagster.translator import dag_asset_key
from airlift_protocol import WHOLE_DAG_TASK_ID, load_dag_migration_state, task_is_marked_migrated

__all__ = ["decommission"]

DEFAULT_DIR_NAME = "decommissioned"


def decommissioned_dir(out_dir: str | None, conn: Connection) -> Path:
    """Where decommission files live: ``--out-dir``, else ``decommissioned/`` next to the ``--defs``
    file, else ``./decommissioned``."""
    if out_dir:
        return Path(out_dir)
    if conn.defs_path:
        return Path(conn.defs_path).resolve().parent / DEFAULT_DIR_NAME
    return Path(DEFAULT_DIR_NAME)


def _unmigrated(dag: LiveDag, state_folder: Path) -> str | None:
    """Why the DAG is not fully migrated (``None``: every task runs in Dagster, as Airflow shows)."""
    path = state_file_for(state_folder, dag.dag.dag_id)
    if not path.exists():
        return f"{path}: no migration-state file, so every task still runs in Airflow; migrate them first (`airlift state set`)"
    dag_state = load_dag_migration_state(path)
    if dag_state.dag_migrated is not None:  # the whole DAG is switched: Airflow runs one task in its place
        if not dag_state.dag_migrated:
            return f"{path} switches the whole DAG and says 'migrated: false'; migrate it first (`airlift state set {dag.dag.dag_id} --migrated`)"
        if dag.task_ids != (WHOLE_DAG_TASK_ID,) or not task_is_marked_migrated(getattr(dag.task(WHOLE_DAG_TASK_ID), "doc_md", None)):
            return ("Airflow still runs the DAG's own tasks (the whole-DAG migration is not deployed or not re-parsed yet); "
                    "deploy it and wait until `airlift state diff` shows no change")
        return None
    pending = [t for t in dag.task_ids if not dag_state.is_task_migrated(t)]
    if pending:
        return f"tasks not migrated in {path}: {', '.join(pending)}; migrate them first (`airlift state set {dag.dag.dag_id} ... --migrated`)"
    undeployed = [t for t in dag.task_ids if not task_is_marked_migrated(getattr(dag.task(t), "doc_md", None))]
    if undeployed:
        return (f"Airflow still runs the original operator of {', '.join(undeployed)} (the migration is not deployed "
                "or not re-parsed yet); deploy it and wait until `airlift state diff` shows no change")
    return None


def _unmapped(dag: LiveDag, code: UserCode | None) -> str | None:
    if code is None or dag.task_ids == (WHOLE_DAG_TASK_ID,):  # whole-DAG assets: checked when the job is built
        return None
    missing = [t for t in dag.task_ids if not code.assets_by_task.get((dag.dag.dag_id, t))]
    return f"no Dagster asset in {code.source} is mapped to task {', '.join(missing)}" if missing else None


def _cleanup(dag: LiveDag, state_folder: Path) -> tuple[str, ...]:
    where = dag.dag.fileloc or "its DAG file"
    return (
        f"delete DAG {dag.dag.dag_id!r} from {where} in the Airflow deployment (Dagster keeps its asset and history)",
        f"delete {state_file_for(state_folder, dag.dag.dag_id)} (its migration state)",
    )


def _write_new(path: Path, text: str) -> None:
    """Create ``path`` with ``text`` atomically; an existing file is never replaced."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=".airlift-", dir=path.parent))
    except OSError as e:
        raise CliError(f"{path}: cannot write the decommission file ({e.strerror or e}); nothing changed.") from e
    try:
        candidate = scratch / path.name
        candidate.write_text(text, encoding="utf-8")
        load_decommission_plan(candidate)
        try:
            os.link(candidate, path)
        except FileExistsError:
            raise CliError(f"{path}: already exists (DAG already decommissioned?); nothing changed. "
                           "`airlift decommission --undo` removes it.") from None
        except OSError as e:
            raise CliError(f"{path}: cannot write the decommission file ({e.strerror or e}); nothing changed.") from e
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _check_builds(plan: DecommissionPlan, code: UserCode | None, text: str) -> None:
    """With ``--defs``, build the definitions the file will give, so a problem shows now, not at load."""
    if code is None or code.definitions is None:
        return
    scratch = Path(tempfile.mkdtemp(prefix=".airlift-decommission-"))
    try:
        (scratch / f"{plan.dag_id}.yaml").write_text(text, encoding="utf-8")
        defs = load_decommissioned_defs(scratch, defs=code.definitions)
        defs.resolve_all_job_defs()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _plan(conn: Connection, dag_id: str, state_folder: Path) -> tuple[DecommissionPlan, LiveDag]:
    instance = conn.instance(named=True)  # its name is part of the DAG asset's key in the file
    live = fetch_live_dags(instance, Output(), dag_ids=[dag_id]).get(dag_id)
    if live is None:
        raise CliError(f"DAG {dag_id!r} is not in {instance.webserver_url}; nothing changed.")
    if live.broken_note():
        raise CliError(f"{live.broken_note()}; nothing changed.")
    code = conn.user_code()
    reason = _unmigrated(live, state_folder) or _unmapped(live, code)
    if reason:
        raise CliError(f"cannot decommission DAG {dag_id!r}: {reason}; nothing changed.")
    schedule = schedule_from_timetable(instance.get_dag_timetable(dag_id))
    plan = DecommissionPlan(
        dag_id=dag_id,
        airflow_instance=instance.name,
        dag_asset_key=tuple(dag_asset_key(instance.name, dag_id).path),
        airflow_was_paused=live.dag.is_paused,
        schedule=schedule,
        catchup_from=datetime.now(timezone.utc).replace(microsecond=0),
        airflow_cleanup=_cleanup(live, state_folder),
    )
    return plan, live


@click.command()
@with_folders
@click.argument("dag_id")
@click.option("--undo", is_flag=True, help="Unpause the DAG in Airflow (unless it was paused before) and remove its file.")
@click.option("--dry-run", is_flag=True, help="Show the file and the Airflow change without making them.")
@click.option("--out-dir", envvar="AIRLIFT_DECOMMISSIONED_DIR", type=click.Path(file_okay=False),
              help="Folder of decommission files (default: decommissioned/ next to --defs, else ./decommissioned).")
@connection_options
def decommission(conn: Connection, dags_folder: str, state_dir: str | None, dag_id: str, undo: bool, dry_run: bool,
                 out_dir: str | None) -> None:
    """Move DAG_ID's schedule to Dagster once every task of it runs in Dagster: write
    OUT_DIR/<dag_id>.yaml (a job of the DAG's assets with its schedule or dataset automation, loaded
    by load_decommissioned_defs) and pause the DAG in Airflow. The DAG's asset and its history stay
    in Dagster. Refused, with the reason, for a DAG with tasks not migrated or a timetable Dagster
    cannot express.

    \b
    Example:
        airlift decommission -d airflow_dags/ --defs dagster_defs/migrate.py rebuild_customers_list --dry-run
        airlift decommission --undo -d airflow_dags/ --defs dagster_defs/migrate.py rebuild_customers_list
    """
    out = Output()
    path = decommissioned_dir(out_dir, conn) / f"{dag_id}.yaml"
    if undo:
        _undo(conn, path, dag_id, out, dry_run=dry_run)
        return
    if path.exists():
        raise CliError(f"{path}: DAG {dag_id!r} is already decommissioned; nothing changed (`--undo` reverts it).")
    plan, live = _plan(conn, dag_id, state_dir_of(dags_folder, state_dir))
    text = dump_decommission_plan(plan)
    _check_builds(plan, conn.user_code(), text)
    out.print(diff_text(unified_diff("", text, path)))
    pause = f"pause DAG {dag_id!r} in {conn.instance().webserver_url}" + (" (already paused)" if live.dag.is_paused else "")
    for note in plan.schedule.notes:
        out.print(f"[yellow]note:[/] {escape(note)}")
    if dry_run:
        out.print(f"[bold]dry run:[/] would write {escape(str(path))} and {escape(pause)}; nothing changed.")
        return
    _write_new(path, text)
    try:
        conn.instance().set_dag_paused(dag_id, paused=True)
    except Exception:
        path.unlink(missing_ok=True)  # the DAG still runs in Airflow: Dagster must not run it too
        raise
    out.print(f"[green]decommissioned[/] {escape(dag_id)}: Dagster runs it {escape(plan.schedule.describe())}; "
              f"wrote {escape(str(path))}; {escape(pause.replace('pause ', 'paused ', 1))}.")
    out.print("Load it in your Definitions: defs = load_decommissioned_defs(<folder>, defs=defs). On the Airflow side:")
    for item in plan.airflow_cleanup:
        out.print(f"  - {escape(item)}")


def _undo(conn: Connection, path: Path, dag_id: str, out: Output, *, dry_run: bool) -> None:
    if not path.exists():
        raise CliError(f"{path}: DAG {dag_id!r} is not decommissioned (no such file); nothing changed.")
    text = path.read_text(encoding="utf-8")
    plan = load_decommission_plan(path)
    out.print(diff_text(unified_diff(text, "", path)))
    action = ("leave it paused (it was paused before)" if plan.airflow_was_paused
              else f"unpause DAG {dag_id!r} in {conn.instance().webserver_url}")
    if dry_run:
        out.print(f"[bold]dry run:[/] would remove {escape(str(path))} and {escape(action)}; nothing changed.")
        return
    if not plan.airflow_was_paused:
        conn.instance().set_dag_paused(dag_id, paused=False)
    if path.read_text(encoding="utf-8") != text:
        raise CliError(f"{path}: the file changed while undoing; not removed. Re-run `airlift decommission --undo {dag_id}`.")
    path.unlink()
    out.print(f"[green]undone[/] {escape(dag_id)}: removed {escape(str(path))}; {escape(action.replace('unpause ', 'unpaused ', 1))}. "
              "Airflow schedules it again; Dagster drops its job and schedule on the next code reload.")

