"""Test matrix of the Airlift monorepo, generated from ONE table.

Every session below is generated from ``SUITES`` (what to test, where) crossed with the Airflow and
Python versions in ``testing/airlift-testing/src/airlift_testing/versions.py``. CI reads the same
sessions with ``nox --list --json``, so local runs and CI cannot drift.

    uvx nox                      # everything CI runs (the README's test command)
    uvx nox -l                   # list sessions
    uvx nox -s unit-airlift-protocol
    uvx nox -s "integration-airlift-client-airflow3"
    uvx nox -s bench             # benchmark vs dagster-airlift (not part of the default run)
    uvx nox -t compat            # the wider matrix: every other supported Airflow and Dagster minor, and each
                                 # Airflow major on its other server shape (versions.SHAPES: Airflow 2 runs on
                                 # PostgreSQL + LocalExecutor by default, Airflow 3 standalone on SQLite)
    uvx nox -t standalone        # Airflow 2 on `airflow standalone` with SQLite (SequentialExecutor)
    uvx nox -t production        # Airflow 3 on PostgreSQL + LocalExecutor + FAB auth, and the story on the production-shaped
                                 # deployment (deploy-airflow2/3: Celery workers, a Postgres-backed Dagster, a code server)
    uvx nox -t extended          # real-server tests of the optional features (push, datasets, dg component, decommission)
    uvx nox -t chaos             # the chaos suite: scripted operations on real servers, exactly once
    uvx nox -t chaos-ci          # its quick subset (three scenarios; also in the default run) on both majors and 2.9
    uvx nox -t tutorial          # the user guide end to end on both majors (Airflow 3's session is in the default run)
    uvx nox -t tutorial-script   # scripts/tutorial.py as a user runs it, on both majors

Isolation rules the sessions keep (they model production):
- a session testing airlift-airflow never installs dagster; one testing airlift-dagster never installs
  apache-airflow into its own venv (real Airflow servers run from their own cached venvs, see
  airlift_testing.venvs);
- integration sessions start real Airflow 2/3 and Dagster servers on 127.0.0.1.
"""

from __future__ import annotations

import runpy
from dataclasses import dataclass, field
from pathlib import Path

import nox

ROOT = Path(__file__).parent
# The one version table, read as a plain file (nox's own environment has none of our dependencies).
_VERSIONS = runpy.run_path(str(ROOT / "testing" / "airlift-testing" / "src" / "airlift_testing" / "versions.py"))
AIRFLOW_VERSIONS: dict[str, str] = _VERSIONS["AIRFLOW_VERSIONS"]
COMPAT_AIRFLOW_VERSIONS: dict[str, str] = _VERSIONS["COMPAT_AIRFLOW_VERSIONS"]
DAGSTER_VERSIONS: dict[str, tuple[str, ...]] = _VERSIONS["DAGSTER_VERSIONS"]
DEFAULT_DAGSTER: str = _VERSIONS["DEFAULT_DAGSTER"]
DEFAULT_PYTHON: str = _VERSIONS["DEFAULT_PYTHON"]
PYTHONS: tuple[str, ...] = _VERSIONS["PYTHONS"]
SHAPES: dict[str, str] = _VERSIONS["SHAPES"]
DEFAULT_SHAPES: dict[str, str] = _VERSIONS["DEFAULT_SHAPES"]
airflow_requirement = _VERSIONS["airflow_requirement"]
airflow_requirements = _VERSIONS["airflow_requirements"]

nox.options.default_venv_backend = "uv"
nox.options.error_on_missing_interpreters = True

PKG = ROOT / "packages"
TESTING = "testing/airlift-testing"
PACKAGES = ("airlift-protocol", "airlift-client", "airlift-dagster", "airlift-airflow", "airlift-dbt")
# Internal dependencies (one-way): installed editable together with the package under test.
INTERNAL_DEPS = {
    "airlift-protocol": (),
    "airlift-client": ("airlift-protocol",),
    "airlift-dagster": ("airlift-protocol", "airlift-client"),
    "airlift-airflow": ("airlift-protocol",),
    "airlift-dbt": ("airlift-protocol", "airlift-client", "airlift-dagster"),
}


@dataclass(frozen=True)
class Suite:
    """One row of the matrix: a test folder, what its venv holds, and where it runs."""

    name: str
    paths: tuple[str, ...]
    install: tuple[str, ...]
    marker: str = "not integration"
    # "host": apache-airflow is installed INTO the test venv (code that runs inside Airflow).
    # "server": real Airflow servers are started from their own venvs (the test venv has no Airflow).
    # None: the suite does not depend on an Airflow version.
    airflow: str | None = None
    pythons: tuple[str, ...] = (DEFAULT_PYTHON,)
    extra_pytest_args: tuple[str, ...] = field(default=())
    # Also run in the wider matrix (tag "compat", not in the default run): on every Airflow minor of
    # COMPAT_AIRFLOW_VERSIONS when the suite depends on Airflow, and on every other Dagster minor
    # when it tests the Dagster side ("dagster" below).
    compat: bool = False
    # Only these minors of COMPAT_AIRFLOW_VERSIONS (None: every one).
    compat_minors: tuple[str, ...] | None = None
    # The suite tests code that runs in Dagster: its compat sessions pin each other Dagster minor
    # (test venv and Dagster servers).
    dagster: bool = False
    # Also run on the server shapes (versions.SHAPES) other than the default of each Airflow generation
    # (versions.DEFAULT_SHAPES: production, i.e. PostgreSQL + LocalExecutor, on Airflow 2; standalone, i.e. SQLite, on
    # Airflow 3), for the default run's Airflow versions: sessions "<name>-airflow2-standalone" and
    # "<name>-airflow3-production", tags "compat" and the shape's name.
    other_shapes: bool = False
    # Not in the default run: its sessions carry this tag instead (`uvx nox -t <tag>`).
    tag: str | None = None
    # In the default run all the same (its default-version sessions; the tag still selects them alone).
    in_default_run: bool = False
    # The Airflow generations ("2", "3") it runs on; None: every one of AIRFLOW_VERSIONS.
    generations: tuple[str, ...] | None = None


def _pkg(name: str, extras: str = "") -> tuple[str, ...]:
    deps = [f"-e{PKG / d}" for d in INTERNAL_DEPS[name]]
    return (*deps, f"-e{PKG / name}{extras}")


_TEST_TOOLS = ("pytest>=8", f"-e{ROOT / TESTING}")

SUITES: tuple[Suite, ...] = (
    # unit tests (no network)
    Suite("unit-airlift-protocol", ("packages/airlift-protocol",), _pkg("airlift-protocol"), pythons=PYTHONS),
    Suite("unit-airlift-client", ("packages/airlift-client/tests",), _pkg("airlift-client", "[mwaa,composer]"), pythons=PYTHONS),
    Suite("unit-airlift-dagster", ("packages/airlift-dagster/tests", "testing/airlift-testing/examples"), _pkg("airlift-dagster"), compat=True, dagster=True),
    Suite("unit-airlift-airflow", ("packages/airlift-airflow/tests",), _pkg("airlift-airflow"), airflow="host", compat=True),
    Suite("unit-airlift-dbt", ("packages/airlift-dbt/tests",), (*_pkg("airlift-dbt", "[duckdb]"),)),
    Suite("unit-airlift-testing", (f"{TESTING}/tests",), ()),
    Suite("unit-repo", ("tests",), ("nox>=2024.4",)),
    # integration tests against real servers on 127.0.0.1
    Suite("integration-airlift-testing", (f"{TESTING}/tests",), (), marker="integration", airflow="server", other_shapes=True),
    Suite("integration-airlift-client", ("packages/airlift-client/tests",), _pkg("airlift-client", "[mwaa,composer]"), marker="integration", airflow="server", compat=True, other_shapes=True),
    Suite("integration-airlift-dagster", ("packages/airlift-dagster/tests",), (*_pkg("airlift-dagster"), "dagster-dg-cli"), marker="integration and not extended", airflow="server", compat=True, dagster=True, other_shapes=True),
    Suite("integration-airlift-airflow", ("packages/airlift-airflow/tests/integration",), _pkg("airlift-protocol"), marker="integration and not extended", airflow="server", compat=True, other_shapes=True),
    # the optional features on real servers (push mode, datasets and partitions, the dg component):
    # `uvx nox -t extended`, jobs of their own in the GitHub workflow, keeping the default run in budget
    Suite("extended-airlift-dagster", ("packages/airlift-dagster/tests",), (*_pkg("airlift-dagster"), "dagster-dg-cli"), marker="integration and extended", airflow="server", tag="extended"),
    Suite("extended-airlift-airflow", ("packages/airlift-airflow/tests/integration",), _pkg("airlift-protocol"), marker="integration and extended", airflow="server", tag="extended"),
    # real Airflow behind a fault-injection proxy (30% of requests, seeds 1-3): exact materializations, clear errors
    # (about 8 minutes per Airflow major on 2 cores: `uvx nox -t faults`, a job of its own in the GitHub workflow)
    Suite("faults", ("testing/fault-suite",), _pkg("airlift-dagster"), marker="integration", airflow="server", tag="faults"),
    # real Airflow (push on) and a real Dagster webserver + daemon under scripted operations (clears, marks, retries,
    # restarts, a stopped daemon, a slow Dagster, a lost cursor, a DAG newly mapped): one ledger row per Airflow try,
    # exactly once (`uvx nox -t chaos`, a job of its own in the GitHub workflow)
    Suite("chaos", ("testing/chaos-suite",), _pkg("airlift-protocol"), marker="integration and not deploy", airflow="server", tag="chaos"),
    # its quick subset, in the default run (alone: `uvx nox -t chaos-ci`): instance names differing on both sides, a
    # re-attached retry, push with a backlog; one Airflow, one Dagster and one backlog of two runs for the three.
    # Also on Airflow 2.9 in the wider matrix (`uvx nox -s chaos-ci-airflow2.9`, tag compat): before 2.10 the
    # listener's try number differs from REST's outside RUNNING, and push must still report each try once.
    Suite("chaos-ci", ("testing/chaos-suite",), _pkg("airlift-protocol"), marker="integration and chaos_ci", airflow="server",
          tag="chaos-ci", in_default_run=True, compat=True, compat_minors=("2.9",)),
    # the story on the production-shaped deployment (Airflow: CeleryExecutor, Redis, two workers, PostgreSQL; Dagster:
    # PostgreSQL, a code server, webserver and daemon, a run queue of one; see airlift_testing.deploy), exactly once
    # (`uvx nox -t production`, or `-s deploy-airflow2` / `-s deploy-airflow3`)
    Suite("deploy", ("testing/chaos-suite/test_deploy.py",), _pkg("airlift-protocol"), marker="integration and deploy",
          airflow="server", tag="production"),
    # the user guide, end to end: peer, observe, migrate task by task, roll back
    # scripts/tutorial.py as a user runs it: start, trigger, see the materialization, two Ctrl-C, nothing left
    # (`uvx nox -t tutorial-script`, a job of its own in the GitHub workflow; its unit tests run by default in unit-repo)
    Suite("tutorial-script", ("tests/test_tutorial_script.py",), (), marker="integration", airflow="server", tag="tutorial-script"),
    # the feature examples (examples/datasets, examples/partitions, examples/mirror-runs) on real Airflow: `uvx nox -t examples`
    # (not in the default run: the default run's time budget)
    Suite("examples", ("examples/tests",), _pkg("airlift-dagster"), marker="integration", airflow="server", tag="examples"),
    # (`uvx nox -t tutorial`: both majors; the default run walks it on Airflow 3, whose DAG-side code differs more from
    # the other suites', and leaves Airflow 2 (its longest session: 640-840 s in two-at-a-time runs) to that tag, a job of
    # its own in the GitHub workflow, to keep within its time budget; peer, observe and migrate on Airflow 2 are in
    # integration-airlift-dagster-airflow2 and integration-airlift-airflow-airflow2)
    Suite("tutorial", ("examples/tutorial-example/tests",), (*_pkg("airlift-dbt", "[duckdb]"), f"-e{ROOT / 'examples' / 'tutorial-example'}"), marker="integration and not extended", airflow="server",
          generations=("3",), tag="tutorial", in_default_run=True),
    Suite("tutorial", ("examples/tutorial-example/tests",), (*_pkg("airlift-dbt", "[duckdb]"), f"-e{ROOT / 'examples' / 'tutorial-example'}"), marker="integration and not extended", airflow="server",
          generations=("2",), tag="tutorial"),
    # the guide's Step 4 on the tutorial's DAG: migrate every task, decommission, run the job, undo (`uvx nox -t extended`)
    Suite("extended-tutorial", ("examples/tutorial-example/tests",), (*_pkg("airlift-dbt", "[duckdb]"), f"-e{ROOT / 'examples' / 'tutorial-example'}"), marker="integration and extended", airflow="server", tag="extended"),
)


def _register(suite: Suite, python: str, airflow_version: str | None, dagster: str | None = None, shape: str | None = None) -> None:
    """One session of ``suite``; ``airflow_version`` is a generation key ("2") or, in the wider
    matrix, a minor ("2.9"); ``dagster`` a Dagster minor other than the default one; ``shape`` a
    server shape other than the generation's default (``DEFAULT_SHAPES``)."""
    name = suite.name
    if suite.pythons != (DEFAULT_PYTHON,):
        name += f"-py{python}"
    if airflow_version is not None:
        name += f"-airflow{airflow_version}"
    if dagster is not None:
        name += f"-dagster{dagster}"
    if shape is not None:
        name += f"-{shape}"
    compat = dagster is not None or shape is not None or airflow_version in COMPAT_AIRFLOW_VERSIONS
    release = AIRFLOW_VERSIONS.get(airflow_version or "") or COMPAT_AIRFLOW_VERSIONS.get(airflow_version or "")

    def run(session: nox.Session) -> None:
        install = list(suite.install) + list(_TEST_TOOLS)
        if suite.airflow == "host" and release is not None:
            install.extend(airflow_requirements(release))
        if dagster is not None:
            install.extend(DAGSTER_VERSIONS[dagster][:1])  # the test venv's dagster at that minor
        session.install(*install)
        args = ["pytest", *suite.paths, "-m", suite.marker, *suite.extra_pytest_args]
        if suite.airflow == "server":
            args.append("--durations=10")  # real-server sessions: the slowest tests in the log (see .ci/nox_parallel.py)
        env = {"AIRLIFT_REPO_ROOT": str(ROOT)}
        if airflow_version is not None:
            args += ["--airflow-version", airflow_version]
            env["AIRLIFT_AIRFLOW_VERSION"] = airflow_version
        if dagster is not None:
            env["AIRLIFT_DAGSTER_VERSION"] = dagster
        if shape is not None:
            args += ["--airflow-shape", shape]
        if suite.airflow == "host":
            # Keep Airflow's own files out of ~/airflow; each session gets its own home.
            env["AIRFLOW_HOME"] = str(Path(session.create_tmp()).resolve() / "airflow-home")
            env["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
            env["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
        session.run(*args, *session.posargs, env=env)

    run.__doc__ = f"pytest {' '.join(suite.paths)} -m '{suite.marker}'" + (f" with Airflow {release}" if release else "") + (
        f" and Dagster {dagster}" if dagster else ""
    ) + (f" ({shape} shape)" if shape else "")
    tags = (["compat"] if compat else []) + ([shape] if shape else []) + ([suite.tag] if suite.tag else [])
    nox.session(name=name, python=python, default=not compat and (suite.tag is None or suite.in_default_run), tags=tags)(run)


for _suite in SUITES:
    for _python in _suite.pythons:
        for _gen in (_suite.generations or AIRFLOW_VERSIONS) if _suite.airflow else (None,):
            _register(_suite, _python, _gen)
        if _python != DEFAULT_PYTHON:
            continue
        for _shape in SHAPES if _suite.other_shapes else ():
            for _gen in AIRFLOW_VERSIONS:
                if _shape != DEFAULT_SHAPES[_gen]:
                    _register(_suite, _python, _gen, shape=_shape)
        if not _suite.compat:
            continue
        # the wider matrix (`uvx nox -t compat`)
        for _minor in COMPAT_AIRFLOW_VERSIONS if _suite.airflow else ():
            if _suite.compat_minors is None or _minor in _suite.compat_minors:
                _register(_suite, _python, _minor)
        for _dagster in DAGSTER_VERSIONS if _suite.dagster else ():
            if _dagster != DEFAULT_DAGSTER:
                _register(_suite, _python, "3" if _suite.airflow else None, _dagster)


@nox.session(python=DEFAULT_PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check (lint rules and import order) over the whole repository."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")


@nox.session(python=DEFAULT_PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict over every package's src, airlift-testing's included (each package's deps installed;
    the sample DAG files are Airflow code, excluded like the examples)."""
    session.install(
        "mypy>=1.10", "types-PyYAML", "types-requests", "boto3-stubs[mwaa]", "pytest",
        *_pkg("airlift-dbt", "[duckdb]"), f"-e{PKG / 'airlift-client'}[mwaa,composer]", f"-e{ROOT / TESTING}",
    )
    session.run("mypy", *(str(PKG / p / "src") for p in PACKAGES if p != "airlift-airflow"), str(ROOT / TESTING / "src"))
    # airlift-airflow runs inside Airflow: check it where Airflow is installed.
    session.install(f"-e{PKG / 'airlift-airflow'}", airflow_requirement(AIRFLOW_VERSIONS["3"]))
    session.run("mypy", str(PKG / "airlift-airflow" / "src"))


@nox.session(python=DEFAULT_PYTHON)
def build(session: nox.Session) -> None:
    """Build every package's sdist and wheel with hatchling; install each wheel in a fresh venv
    (with only its declared dependencies, internal ones from the freshly built wheels) and import it.
    Also proves the layering: airlift-airflow's install has no dagster, airlift-dagster's has no
    apache-airflow, airlift-protocol's has nothing but PyYAML, airlift-testing's has neither."""
    session.install("build>=1.2", "hatchling>=1.21")
    dist = Path(session.create_tmp()) / "dist"
    if dist.exists():
        for old in dist.iterdir():
            old.unlink()
    for folder in (*(PKG / package for package in PACKAGES), ROOT / TESTING):
        session.run("python", "-m", "build", "--no-isolation", "--outdir", str(dist), str(folder))
    session.run("python", str(ROOT / "tests" / "check_wheels.py"), str(dist), external=False)


@nox.session(python=DEFAULT_PYTHON)
def lowest(session: nox.Session) -> None:
    """Unit tests of protocol and client with every dependency at its declared lower bound."""
    session.install("--resolution", "lowest-direct", *_pkg("airlift-client", "[mwaa,composer]"), *_TEST_TOOLS)
    session.run("pytest", "packages/airlift-protocol", "packages/airlift-client/tests", "-m", "not integration")


@nox.session(python=DEFAULT_PYTHON, default=False)
def bench_sensor(session: nox.Session) -> None:
    """The sensor's catch-up of a 100,000 task-instance backlog and the reconstruction metadata size."""
    session.install(*_pkg("airlift-dagster"), *_TEST_TOOLS)
    session.run("python", "bench/sensor.py", *session.posargs, env={"AIRLIFT_REPO_ROOT": str(ROOT)})


@nox.session(python=DEFAULT_PYTHON, default=False)
def bench_scale(session: nox.Session) -> None:
    """Costs at production size: sensor ticks against a real Airflow 2.11 and 3.3 on PostgreSQL with
    5,000,000 task instances (pg_stat_statements, plans), the ledger's read against 1,000,000
    unrelated Dagster events and definitions loads at 1,000 and 10,000 DAGs (``-- --quick`` for a
    smaller run; ``-- --parts airflow`` for one part). The ledger part also runs on a Dagster instance on
    PostgreSQL: dagster-postgres at the minor paired with the default Dagster minor (the library minor
    dagster-dbt has in the version table; each dagster-postgres release pins its dagster release exactly)."""
    dagster = DAGSTER_VERSIONS[DEFAULT_DAGSTER]
    postgres = "dagster-postgres" + next(r for r in dagster if r.startswith("dagster-dbt==")).removeprefix("dagster-dbt")
    session.install(*_pkg("airlift-dagster"), dagster[0], postgres, *_TEST_TOOLS)
    session.run("python", "bench/scale.py", *session.posargs, env={"AIRLIFT_REPO_ROOT": str(ROOT)})


@nox.session(python=DEFAULT_PYTHON, default=False)
def bench_push(session: nox.Session) -> None:
    """Push vs polling latency (task end -> Dagster event log) and the listener's time per task, on a
    real Airflow (``-- --airflow 2`` or ``3``) with 100 tasks ending in a burst."""
    session.install(*_pkg("airlift-dagster"), *_TEST_TOOLS)
    session.run("python", "bench/push.py", *session.posargs, env={"AIRLIFT_REPO_ROOT": str(ROOT)})


@nox.session(python=False, default=False)
def ci(session: nox.Session) -> None:
    """The whole default run as CI runs it: every default session, two at a time
    (``AIRLIFT_CI_JOBS``), with each session's wall time and the total against the 45-minute budget."""
    session.run("python3", str(ROOT / ".ci" / "nox_parallel.py"), *session.posargs, external=True)


@nox.session(python=DEFAULT_PYTHON, default=False)
def bench(session: nox.Session) -> None:
    """Airlift vs dagster-airlift 0.29 at 1,000 DAGs x 10 tasks (``-- --quick`` for 100 DAGs)."""
    session.install(*_pkg("airlift-dagster"), *_TEST_TOOLS)
    session.run("python", "bench/run.py", *session.posargs, env={"AIRLIFT_REPO_ROOT": str(ROOT)})
