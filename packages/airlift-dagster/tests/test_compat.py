"""The one module with Dagster's private and preview APIs works against the installed Dagster, and
no other module reaches into Dagster internals or prints."""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

import dagster
import pytest
from dagster import Definitions, PreviewWarning

import airlift_dagster
from airlift_dagster import _compat

SRC = Path(airlift_dagster.__file__).parent


def test_private_dagster_apis_resolve_on_the_installed_dagster() -> None:
    assert _compat.DefinitionsLoadContext.get().load_type in set(_compat.DefinitionsLoadType)
    defs = Definitions()
    with warnings.catch_warnings():
        warnings.simplefilter("error", PreviewWarning)
        with _compat.preview_api():
            assert defs.with_reconstruction_metadata({"k": "v"}) is not None
    assert dagster.__version__
    with pytest.raises(_compat.DagsterInvalidMetadata):
        dagster.MetadataValue.json({"at": object()})
    assert "dagster/kind/x" in dagster.AssetSpec("a", kinds={"x"}).tags and _compat.KIND_PREFIX == "dagster/kind/"


def _modules() -> list[Path]:
    return sorted(p for p in SRC.glob("*.py") if p.name != "_compat.py")


def test_only_the_compat_module_imports_dagster_internals_and_nothing_prints() -> None:
    for path in _modules():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith("dagster._"), f"{path.name} imports {node.module}; use _compat"
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("dagster._") for a in node.names), path.name
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id != "print", f"{path.name}:{node.lineno} prints; log through logging"


def test_exports_are_documented() -> None:
    for name in airlift_dagster.__all__:
        value = getattr(airlift_dagster, name)
        if callable(value) and not name.isupper():
            assert (value.__doc__ or "").strip(), f"{name} has no docstring"
    assert "TickOutcome" in airlift_dagster.__all__ and "evaluate_tick" in airlift_dagster.__all__
