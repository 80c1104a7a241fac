from __future__ import annotations

import subprocess

import pytest

from airlift_testing.versions import (
    AIRFLOW_VERSIONS,
    PYTHONS,
    airflow_requirement,
    airflow_requirements,
    all_airflow_versions,
    dagster_requirements,
    declared_ranges,
    find_python,
    resolve_airflow_version,
)


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


def test_minors_resolve_to_their_tested_release() -> None:
    table = all_airflow_versions()
    minors = list(table)
    assert (minors[0], minors[-1]) == ("2.7", "3.3")
    assert resolve_airflow_version("2.9") == table["2.9"] and resolve_airflow_version("3") == AIRFLOW_VERSIONS["3"]
    assert resolve_airflow_version("2.8.4") == "2.8.4"
    assert airflow_requirements("2.7")[0] == f"apache-airflow=={table['2.7']}"
    assert any(pin.startswith("flask-session") for pin in airflow_requirements("2.7"))
    assert airflow_requirements("3") == (airflow_requirement("3"),)
    # every Airflow 2 release: cryptography 51 breaks Airflow 2's Fernet (AttributeError on is_encrypted)
    assert all("cryptography<51" in airflow_requirements(v) for v in ("2", "2.7", "2.9", "2.10"))


def test_dagster_minor_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRLIFT_DAGSTER_VERSION", "1.12")
    assert "dagster==1.12.*" in dagster_requirements()
    monkeypatch.setenv("AIRLIFT_DAGSTER_VERSION", "0.9")
    with pytest.raises(ValueError, match="unknown Dagster version '0.9'"):
        dagster_requirements()


def test_declared_ranges_follow_the_table() -> None:
    assert declared_ranges() == {
        "apache-airflow": ">=2.7.1,<3.4",
        "dagster": ">=1.12,<1.14",
        "dagster-dbt": ">=0.28,<0.30",
        "requires-python": ">=3.10",
    }
