"""The one table of versions the matrix, the fixtures, CI and the README's support table use.

``python -m airlift_testing.versions`` prints the README's supported-versions table (a test of the
repository checks the README against it and against the nox sessions).
"""

from __future__ import annotations

import glob
import os
import shutil

__all__ = [
    "AIRFLOW_2_PINS",
    "AIRFLOW_PINS",
    "AIRFLOW_VERSIONS",
    "COMPAT_AIRFLOW_VERSIONS",
    "DAGSTER_REQUIREMENTS",
    "DAGSTER_VERSIONS",
    "DEFAULT_DAGSTER",
    "DEFAULT_PYTHON",
    "DEFAULT_SHAPES",
    "MIN_AIRFLOW",
    "PYTHONS",
    "SHAPES",
    "airflow_requirement",
    "airflow_requirements",
    "all_airflow_versions",
    "dagster_requirements",
    "declared_ranges",
    "default_shape",
    "find_python",
    "resolve_airflow_version",
    "supported_versions_table",
]

#: Airflow generation (major version) -> exact release tested by the default run (``uvx nox``).
AIRFLOW_VERSIONS: dict[str, str] = {"2": "2.11.2", "3": "3.3.2"}
#: The wider matrix (``uvx nox -t compat``): every other supported Airflow minor -> release tested.
#: 2.7 is the lowest: the task-instance batch body filters the client sends (``dag_run_ids``,
#: ``task_ids``) are new in Airflow 2.7.1; older releases answer 400 "Unknown field".
COMPAT_AIRFLOW_VERSIONS: dict[str, str] = {
    "2.7": "2.7.3",
    "2.9": "2.9.3",
    "2.10": "2.10.5",
    "3.0": "3.0.6",
    "3.1": "3.1.8",
    "3.2": "3.2.2",
}
#: Release -> extra pins its venv needs. Airflow is installed without its constraints files (no
#: network but the package registries); these are the versions those files pinned, where a newer
#: release of the dependency breaks that Airflow (e.g. Flask-Session 0.6 dropped a module 2.7 imports).
AIRFLOW_PINS: dict[str, tuple[str, ...]] = {
    "2.7.3": ("flask-session<0.6", "connexion<3", "pendulum<3", "sqlalchemy<2", "werkzeug<3", "flask<2.3", "pydantic<2.5"),
    # 3.0 leaves FastAPI unbounded; with today's FastAPI/Cadwyn its execution API answers every task
    # runner with a 422 (3.1 bounds FastAPI below 0.118 itself).
    "3.0.6": ("fastapi<0.118", "cadwyn<5.5"),
    # 3.2 leaves them unbounded too; with Cadwyn 9 / FastAPI 0.165 its API server cannot build its
    # schemas and never listens. These are the releases Airflow 3.3's own bounds resolve to.
    "3.2.2": ("fastapi<0.137", "cadwyn<7.1"),
}
#: Lowest Airflow release the client and airlift-airflow support (declared in their pyproject files).
MIN_AIRFLOW = "2.7.1"
DEFAULT_PYTHON = "3.11"
PYTHONS: tuple[str, ...] = ("3.10", "3.11", "3.12", "3.13")
#: Deployment shapes of the test Airflow servers -> what they are. Each Airflow generation's default-run sessions use
#: its shape in :data:`DEFAULT_SHAPES`; the other shapes run with the default run's Airflow versions in ``-<shape>``
#: sessions (tags compat and <shape>).
SHAPES: dict[str, str] = {
    "standalone": "`airflow standalone` on SQLite; Airflow 3 with its simple auth manager",
    "production": "PostgreSQL (the machine's `postgresql` server), LocalExecutor running tasks in parallel; Airflow 3 with the FAB auth manager; one API server (Airflow 3) or webserver (Airflow 2) worker per CPU core (2 to 4)",
}
#: Airflow generation -> the shape its servers have unless a test or ``--airflow-shape`` says otherwise. Airflow 2 on
#: SQLite can only run the SequentialExecutor: one task at a time, a new interpreter for each, the scheduler waiting on
#: it, a setup no production runs (its real-server tests took 4 to 5 times as long there as on PostgreSQL with the
#: LocalExecutor). Airflow 3's standalone runs the LocalExecutor on SQLite and is its documented first setup.
DEFAULT_SHAPES: dict[str, str] = {"2": "production", "3": "standalone"}


def default_shape(version: str) -> str:
    """The server shape of an Airflow version's default-run sessions (:data:`DEFAULT_SHAPES` of its generation)."""
    return DEFAULT_SHAPES[resolve_airflow_version(version).split(".")[0]]


#: Dagster minor -> the Dagster-side requirements of the servers and of the sessions testing it.
DAGSTER_VERSIONS: dict[str, tuple[str, ...]] = {
    "1.12": ("dagster==1.12.*", "dagster-webserver==1.12.*", "dagster-graphql==1.12.*", "dagster-dbt==0.28.*"),
    "1.13": ("dagster==1.13.*", "dagster-webserver==1.13.*", "dagster-graphql==1.13.*", "dagster-dbt==0.29.*"),
}
#: The Dagster minor of the default run.
DEFAULT_DAGSTER = "1.13"
_DBT = ("dbt-duckdb", "dbt-core<1.12")


def dagster_requirements(minor: str | None = None) -> tuple[str, ...]:
    """Requirements of a Dagster venv: ``minor`` ("1.12"), else ``$AIRLIFT_DAGSTER_VERSION``, else
    :data:`DEFAULT_DAGSTER`. Raises ``ValueError`` naming the supported minors."""
    chosen = minor or os.environ.get("AIRLIFT_DAGSTER_VERSION") or DEFAULT_DAGSTER
    if chosen not in DAGSTER_VERSIONS:
        raise ValueError(f"unknown Dagster version {chosen!r} (AIRLIFT_DAGSTER_VERSION); use one of {sorted(DAGSTER_VERSIONS)}")
    return (*DAGSTER_VERSIONS[chosen], *_DBT)


#: Requirements of the default run's Dagster venv.
DAGSTER_REQUIREMENTS: tuple[str, ...] = (*DAGSTER_VERSIONS[DEFAULT_DAGSTER], *_DBT)


def all_airflow_versions() -> dict[str, str]:
    """Every tested Airflow minor ("2.7", ..., "3.3") -> exact release, oldest first."""
    table = {".".join(v.split(".")[:2]): v for v in (*COMPAT_AIRFLOW_VERSIONS.values(), *AIRFLOW_VERSIONS.values())}
    return dict(sorted(table.items(), key=lambda kv: tuple(int(p) for p in kv[0].split("."))))


def resolve_airflow_version(version: str) -> str:
    """The exact release of a generation ("3"), a tested minor ("2.9") or an exact version."""
    return AIRFLOW_VERSIONS.get(version) or all_airflow_versions().get(version) or version


def airflow_requirement(version: str) -> str:
    """``apache-airflow==X`` for a version, a tested minor ("2.9") or a generation key ("2"/"3")."""
    return f"apache-airflow=={resolve_airflow_version(version)}"


#: Pins every Airflow 2 release needs. cryptography 51 made Fernet objects refuse new attributes, and Airflow 2's
#: ``get_fernet`` sets ``is_encrypted`` on one: ``airflow db migrate`` / ``standalone`` fail with AttributeError
#: (Airflow 3 wraps the object instead).
AIRFLOW_2_PINS: tuple[str, ...] = ("cryptography<51",)


def airflow_requirements(version: str) -> tuple[str, ...]:
    """What to install for an Airflow version: ``apache-airflow==X`` plus its :data:`AIRFLOW_PINS` (and
    :data:`AIRFLOW_2_PINS` on Airflow 2)."""
    release = resolve_airflow_version(version)
    generation = AIRFLOW_2_PINS if release.startswith("2.") else ()
    return (f"apache-airflow=={release}", *AIRFLOW_PINS.get(release, ()), *generation)


def supported_versions_table() -> str:
    """The README's supported-versions table (Markdown), generated from the tables above."""
    default = set(AIRFLOW_VERSIONS.values())
    rows = ["| component | version | tested release | run by |", "|---|---|---|---|"]
    for minor, release in all_airflow_versions().items():
        generation = release.split(".")[0]
        run_by = f"`uvx nox` (`-airflow{generation}` sessions)" if release in default else f"`uvx nox -t compat` (`-airflow{minor}` sessions)"
        rows.append(f"| Airflow | {minor} | {release} | {run_by} |")
    for minor in DAGSTER_VERSIONS:
        run_by = "`uvx nox`" if minor == DEFAULT_DAGSTER else f"`uvx nox -t compat` (`-dagster{minor}` sessions)"
        rows.append(f"| Dagster | {minor} | {minor}.* | {run_by} |")
    for shape, what in SHAPES.items():
        for generation, release in AIRFLOW_VERSIONS.items():
            if DEFAULT_SHAPES[generation] == shape:
                minors = [m for m in COMPAT_AIRFLOW_VERSIONS if m.split(".")[0] == generation]
                run_by = "`uvx nox`" + (f"; `uvx nox -t compat` for Airflow {', '.join(minors)}" if minors else "")
            else:
                run_by = f"`uvx nox -t {shape}` (`-airflow{generation}-{shape}` sessions, also in `-t compat`)"
            rows.append(f"| Airflow server shape | {shape}: {what} | {release} | {run_by} |")
    for python in PYTHONS:
        run_by = "`uvx nox` (all sessions; Airflow and Dagster servers)" if python == DEFAULT_PYTHON else f"`uvx nox` (`-py{python}` sessions)"
        rows.append(f"| Python | {python} | {python}.* | {run_by} |")
    return "\n".join(rows) + "\n"


def _next_minor(minor: str) -> str:
    major, number = minor.split(".")
    return f"{major}.{int(number) + 1}"


def declared_ranges() -> dict[str, str]:
    """The dependency ranges every pyproject must declare, derived from the tables above
    (lowest supported release to the next untested minor)."""
    airflow = list(all_airflow_versions())
    dagster = sorted(DAGSTER_VERSIONS, key=lambda m: tuple(int(p) for p in m.split(".")))
    dbt_minors = sorted({r.split("==")[1].rstrip(".*") for m in dagster for r in DAGSTER_VERSIONS[m] if r.startswith("dagster-dbt==")})
    return {
        "apache-airflow": f">={MIN_AIRFLOW},<{_next_minor(airflow[-1])}",
        "dagster": f">={dagster[0]},<{_next_minor(dagster[-1])}",
        "dagster-dbt": f">={dbt_minors[0]},<{_next_minor(dbt_minors[-1])}",
        "requires-python": f">={PYTHONS[0]}",
    }


def _patch_level(path: str) -> tuple[int, ...]:
    name = os.path.basename(os.path.dirname(os.path.dirname(path)))
    return tuple(int(part) if part.isdigit() else -1 for part in name.split("."))


def find_python(version: str) -> str:
    """Path of a CPython ``version`` ("3.11").

    Looks in pyenv's versions folder (``$PYENV_ROOT/versions/X.Y.*/bin/python``, newest patch
    release first) and then for ``pythonX.Y`` on PATH, skipping pyenv shims: a shim of a version
    that is not pyenv's global one fails when run. Raises ``RuntimeError`` naming both places.
    """
    pyenv_root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates = glob.glob(os.path.join(pyenv_root, "versions", f"{version}.*", "bin", "python"))
    for candidate in sorted(candidates, key=_patch_level, reverse=True):
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(f"python{version}")
    if found and "/shims/" not in found:
        return found
    raise RuntimeError(
        f"No Python {version} found on PATH or under {pyenv_root}/versions; install it (e.g. pyenv install {version})."
    )


if __name__ == "__main__":
    print(supported_versions_table(), end="")
