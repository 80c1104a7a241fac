"""``uv run scripts/tutorial.py --example NAME``, as the examples' READMEs say: the script serves the example's DAGs
and its ``defs.py`` (a module of its own: no other Airflow runs meanwhile)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from airlift_testing import free_port
from airlift_testing.tutorial import BANNER_END, start_tutorial, wait_for_banner

pytestmark = pytest.mark.integration


def test_the_tutorial_script_serves_an_example(airflow_version: str, tmp_path: Path) -> None:
    """``uv run scripts/tutorial.py --example mirror-runs`` as the README says (with ``--check``: start, banner, stop)."""
    log = tmp_path / "tutorial.out"
    process = start_tutorial("--example", "mirror-runs", "--check", "--airflow", airflow_version.split(".")[0],
                             "--airflow-port", str(free_port()), "--dagster-port", str(free_port()),
                             "--state-dir", str(tmp_path / "state"), log=log)
    try:
        out = wait_for_banner(process, log)
        assert process.wait(timeout=300) == 0, out
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=120)
    out = log.read_text()
    print(out)
    assert "Waiting for DAG nightly_export to be parsed, then unpausing it" in out
    assert "Airlift example 'mirror-runs' is running" in out and BANNER_END in out
    assert "follow examples/mirror-runs/README.md" in out
    assert (tmp_path / "state" / f"mirror-runs-airflow{airflow_version.split('.')[0]}" / "dagster-home").is_dir()
