"""Cached venvs: the key, reuse, rebuild of half-built venvs, and errors (with a stand-in uv)."""

from __future__ import annotations

import os
import stat
import textwrap
from pathlib import Path

import pytest

from airlift_testing.venvs import VenvBuildError, ensure_venv, venv_dir, venv_key

# Plays uv: `uv venv -q -p PY DIR` makes DIR/bin/python; `uv pip install ...` logs its arguments
# (or fails when FAKE_UV_FAIL is set). Every call is appended to $FAKE_UV_LOG.
FAKE_UV = textwrap.dedent(
    """\
    #!/bin/sh
    echo "$@" >> "$FAKE_UV_LOG"
    if [ "$1" = "venv" ]; then
        for last; do :; done
        mkdir -p "$last/bin" && touch "$last/bin/python"
        exit 0
    fi
    if [ -n "$FAKE_UV_FAIL" ]; then
        echo "error: No solution found when resolving dependencies: nope==9" >&2
        exit 2
    fi
    """
)


@pytest.fixture
def fake_uv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    uv = bin_dir / "uv"
    uv.write_text(FAKE_UV)
    uv.chmod(uv.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "uv.log"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_UV_LOG", str(log))
    monkeypatch.setenv("AIRLIFT_CACHE_DIR", str(tmp_path / "cache"))
    return log


def test_key_depends_on_python_requirements_and_editable_paths(tmp_path: Path) -> None:
    base = venv_key(["a==1"], python="3.11")
    assert len(base) == 12
    assert venv_key(["a==1"], python="3.11") == base
    assert venv_key(["a==2"], python="3.11") != base
    assert venv_key(["a==1"], python="3.12") != base
    assert venv_key(["a==1"], python="3.11", editable=[tmp_path]) != base
    # the same folder spelled differently is the same venv
    assert venv_key([], editable=[tmp_path / "x" / ".."]) == venv_key([], editable=[tmp_path])


def test_venv_dir_lives_under_the_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRLIFT_CACHE_DIR", str(tmp_path))
    path = venv_dir("airflow-3.3.2", ["apache-airflow==3.3.2"])
    assert path.parent == tmp_path / "venvs"
    assert path.name == f"airflow-3.3.2-{venv_key(['apache-airflow==3.3.2'])}"


def test_builds_once_then_reuses(fake_uv: Path, tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    venv = ensure_venv("demo", ["requests"], editable=[package])
    assert (venv / ".complete").exists()
    calls = fake_uv.read_text().splitlines()
    assert calls[0].startswith("venv -q -p ")
    assert calls[1].startswith("pip install -q -p ") and f"requests -e {package}" in calls[1]
    assert ensure_venv("demo", ["requests"], editable=[package]) == venv
    assert len(fake_uv.read_text().splitlines()) == 2, "a complete venv is not rebuilt"


def test_half_built_venv_is_rebuilt(fake_uv: Path) -> None:
    venv = venv_dir("demo", ["requests"])
    (venv / "bin").mkdir(parents=True)
    (venv / "leftover").write_text("from a build that was killed")
    assert ensure_venv("demo", ["requests"]) == venv
    assert not (venv / "leftover").exists()
    assert (venv / ".complete").exists()


def test_failed_install_names_the_venv_and_shows_uv_output(fake_uv: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_UV_FAIL", "1")
    with pytest.raises(VenvBuildError, match=r"building .*demo-\w+ failed(.|\n)*No solution found"):
        ensure_venv("demo", ["nope==9"])
    assert not (venv_dir("demo", ["nope==9"]) / ".complete").exists()


def test_missing_editable_folder_is_a_clear_error(fake_uv: Path, tmp_path: Path) -> None:
    with pytest.raises(VenvBuildError, match=r"editable package folder .*missing does not exist"):
        ensure_venv("demo", [], editable=[tmp_path / "missing"])
