from __future__ import annotations

import subprocess

import pytest

from airlift_testing.versions import AIRFLOW_VERSIONS, PYTHONS, airflow_requirement, find_python


def test_airflow_table_covers_both_generations() -> None:
    assert set(AIRFLOW_VERSIONS) == {"2", "3"}
    assert AIRFLOW_VERSIONS["2"].startswith("2.") and AIRFLOW_VERSIONS["3"].startswith("3.")
    assert airflow_requirement("3") == f"apache-airflow=={AIRFLOW_VERSIONS['3']}"
    assert airflow_requirement("2.10.0") == "apache-airflow==2.10.0"


@pytest.mark.parametrize("version", PYTHONS)
def test_every_python_of_the_matrix_is_found(version: str) -> None:
    out = subprocess.run([find_python(version), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == version


def test_unknown_python_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="No Python 2.5 found"):
        find_python("2.5")
