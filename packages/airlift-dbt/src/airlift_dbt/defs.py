"""``dbt_defs``: one Dagster asset per dbt model, seed and snapshot, executable with ``dbt build``."""

# No `from __future__ import annotations`: Dagster inspects the `context` annotation at runtime.

import hashlib
import json
import logging
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from dagster import AssetExecutionContext, Definitions
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets

__all__ = ["AirliftDbtError", "dbt_defs"]

_CODE_SUFFIXES = {".sql", ".py", ".csv"}
_DEFAULT_PATHS = {"model-paths": ["models"], "seed-paths": ["seeds"], "snapshot-paths": ["snapshots"]}

log = logging.getLogger("airlift_dbt")


class AirliftDbtError(Exception):
    """The dbt manifest is missing, unreadable or does not match the project (message says how to fix)."""


def _dbt_checksum(path: Path) -> str:
    """The checksum dbt records for a model, seed or snapshot file: sha256 of its stripped UTF-8 text."""
    return hashlib.sha256(path.read_bytes().decode("utf-8").strip().encode("utf-8")).hexdigest()


def _code_paths(project_dir: Path) -> list[Path]:
    """Folders holding the project's models, seeds and snapshots (``*-paths`` in dbt_project.yml)."""
    config: dict[str, Any] = {}
    project_file = project_dir / "dbt_project.yml"
    if project_file.exists():
        try:
            loaded = yaml.safe_load(project_file.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as e:
            raise AirliftDbtError(f"{project_file} cannot be read ({e}); fix the file, then run `dbt parse`") from e
        config = loaded if isinstance(loaded, dict) else {}
    folders: list[Path] = []
    for key, default in _DEFAULT_PATHS.items():
        value = config.get(key, default)
        for name in value if isinstance(value, list) else default:
            folders.append(project_dir / str(name))
    return folders


def _check_manifest(manifest: Path, project_dir: Path) -> None:
    """Fail when the manifest does not describe the project's code as it is now.

    Compared by content, not modification times (container image layers and ``dbt deps`` reset
    those): every model, seed and snapshot of the project must exist with the checksum dbt recorded,
    and every such file of the project must be in the manifest. Installed packages
    (``dbt_packages/``) are not checked. YAML property files carry no checksum in the manifest: one
    newer than the manifest is logged as a warning, never an error.
    """
    fix = f"produce it with `dbt parse --project-dir {project_dir} --profiles-dir {project_dir}`"
    if not manifest.exists():
        raise AirliftDbtError(f"dbt manifest {manifest} does not exist: {fix}")
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise AirliftDbtError(f"dbt manifest {manifest} cannot be read ({e}): {fix}") from e
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), dict):
        raise AirliftDbtError(f"dbt manifest {manifest} is not a dbt manifest (no 'nodes'): {fix}")
    project_name = (data.get("metadata") or {}).get("project_name")
    recorded: dict[Path, dict[str, Any]] = {}
    for node in data["nodes"].values():
        if not isinstance(node, dict) or node.get("resource_type") not in ("model", "seed", "snapshot"):
            continue
        if project_name and node.get("package_name") != project_name:
            continue  # a node of an installed package (dbt_packages/)
        original = node.get("original_file_path")
        if isinstance(original, str):
            recorded[(project_dir / original).resolve()] = node.get("checksum") or {}
    stale: list[str] = []
    for path, checksum in recorded.items():
        if not path.is_file():
            stale.append(f"{path} is in the manifest but no longer exists")
        elif checksum.get("name") == "sha256" and _dbt_checksum(path) != checksum.get("checksum"):
            stale.append(f"{path} changed since the manifest was built")
    for folder in _code_paths(project_dir):
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            if path.suffix in _CODE_SUFFIXES and path.is_file() and path.resolve() not in recorded:
                stale.append(f"{path} is not in the manifest")
    if stale:
        more = f" (and {len(stale) - 1} more)" if len(stale) > 1 else ""
        raise AirliftDbtError(f"dbt manifest {manifest} does not match the project: {stale[0]}{more}: {fix}")
    built = manifest.stat().st_mtime
    newer_yaml = [
        p for folder in [project_dir / "dbt_project.yml", *_code_paths(project_dir)]
        for p in ([folder] if folder.is_file() else sorted(folder.rglob("*.y*ml")) if folder.is_dir() else [])
        if p.stat().st_mtime > built + 1
    ]
    if newer_yaml:
        log.warning(
            "dbt manifest %s is older than %s (and %d more YAML files); if their content changed, %s",
            manifest, newer_yaml[0], len(newer_yaml) - 1, fix,
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
