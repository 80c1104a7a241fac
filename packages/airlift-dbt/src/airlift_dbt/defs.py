"""``dbt_defs``: one Dagster asset per dbt model, seed and snapshot, executable with ``dbt build``."""

# No `from __future__ import annotations`: Dagster inspects the `context` annotation at runtime.

import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dagster import AssetExecutionContext, Definitions
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets

__all__ = ["AirliftDbtError", "dbt_defs"]

_SOURCE_SUFFIXES = {".sql", ".yml", ".yaml", ".csv", ".py", ".md"}


class AirliftDbtError(Exception):
    """The dbt manifest is missing, unreadable or older than the project (message says how to fix)."""


def _check_manifest(manifest: Path, project_dir: Path) -> None:
    fix = f"produce it with `dbt parse --project-dir {project_dir} --profiles-dir {project_dir}`"
    if not manifest.exists():
        raise AirliftDbtError(f"dbt manifest {manifest} does not exist: {fix}")
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise AirliftDbtError(f"dbt manifest {manifest} cannot be read ({e}): {fix}") from e
    if not isinstance(data, dict) or "nodes" not in data:
        raise AirliftDbtError(f"dbt manifest {manifest} is not a dbt manifest (no 'nodes'): {fix}")
    built = manifest.stat().st_mtime
    newer = [
        p for p in project_dir.rglob("*")
        if p.suffix in _SOURCE_SUFFIXES and p.is_file() and "target" not in p.relative_to(project_dir).parts[:1]
        and p.stat().st_mtime > built + 1
    ]
    if (project_dir / "dbt_project.yml").exists() and (project_dir / "dbt_project.yml").stat().st_mtime > built + 1:
        newer.append(project_dir / "dbt_project.yml")
    if newer:
        raise AirliftDbtError(
            f"dbt manifest {manifest} is older than {newer[0]} (and {len(newer) - 1} more project files): {fix}"
        )


def dbt_defs(
    *,
    manifest: str | Path,
    project: DbtProject,
    translator: DagsterDbtTranslator | None = None,
    name: str | None = None,
    select: str = "fqn:*",
    exclude: str | None = None,
    resource_key: str = "dbt",
) -> Definitions:
    """Assets for the dbt project's models, seeds and snapshots, with dbt's lineage, built from the
    manifest by dagster-dbt; running them calls ``dbt build``. Use it inside ``task_defs``: the same
    definitions serve the observe step (materialized by the Airlift sensor when the Airflow task
    succeeds) and the migrate step (run by Dagster). Customise keys, groups and descriptions with a
    ``DagsterDbtTranslator`` subclass."""
    manifest_path = Path(manifest)
    project_dir = Path(project.project_dir)
    _check_manifest(manifest_path, project_dir)

    @dbt_assets(
        manifest=manifest_path,
        project=project,
        dagster_dbt_translator=translator or DagsterDbtTranslator(),
        name=name or f"dbt_{project_dir.name}",
        select=select,
        exclude=exclude,
        required_resource_keys={resource_key},
    )
    def _dbt_assets(context: AssetExecutionContext) -> Iterator[Any]:
        dbt: DbtCliResource = getattr(context.resources, resource_key)
        yield from dbt.cli(["build"], context=context).stream()

    return Definitions(
        assets=[_dbt_assets], resources={resource_key: DbtCliResource(project_dir=project, dbt_executable=_dbt_executable())}
    )


def _dbt_executable() -> str:
    """dbt of this environment (a code location's venv is often not on PATH), else ``dbt`` on PATH."""
    beside = Path(sys.executable).parent / "dbt"
    return str(beside) if beside.exists() else (shutil.which("dbt") or "dbt")
