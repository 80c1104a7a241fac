"""Repository-level checks: layering of the packages, and that CI runs what the README says."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ROOT / "packages"

# package -> top-level imports its source must never contain
FORBIDDEN_IMPORTS = {
    "airlift-protocol": {"dagster", "airflow", "requests", "airlift_client", "airlift_dagster", "airlift_airflow", "airlift_dbt", "dagster_dbt"},
    "airlift-client": {"dagster", "airflow", "airlift_dagster", "airlift_airflow", "airlift_dbt"},
    "airlift-dagster": {"airflow", "airlift_airflow", "airlift_dbt"},
    "airlift-airflow": {"dagster", "dagster_dbt", "dagster_graphql", "airlift_client", "airlift_dagster", "airlift_dbt"},
    "airlift-dbt": {"airflow", "airlift_airflow"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN_IMPORTS))
def test_layering(package: str) -> None:
    src = PACKAGES / package / "src"
    offenders = []
    for file in sorted(src.rglob("*.py")):
        bad = _imports(file) & FORBIDDEN_IMPORTS[package]
        if bad:
            offenders.append(f"{file.relative_to(ROOT)} imports {sorted(bad)}")
    assert not offenders, f"{package} breaks the one-way layering:\n" + "\n".join(offenders)


@pytest.mark.parametrize("package", sorted(FORBIDDEN_IMPORTS))
def test_package_layout(package: str) -> None:
    folder = PACKAGES / package
    module = package.replace("-", "_")
    for required in ("pyproject.toml", "README.md", "CHANGELOG.md", f"src/{module}/py.typed", f"src/{module}/__init__.py", f"src/{module}/version.py", "tests"):
        assert (folder / required).exists(), f"{folder / required} is missing"
    pyproject = (folder / "pyproject.toml").read_text()
    assert 'build-backend = "hatchling.build"' in pyproject
    assert f'name = "{package}"' in pyproject


def _readme_test_command() -> str:
    readme = (ROOT / "README.md").read_text()
    commands = [line.strip() for line in readme.splitlines() if re.match(r"^\s*(uvx |uv run |python3? -m )?nox( |$)", line)]
    assert commands, "README.md must show the test command (a nox command on a line of its own)"
    return commands[0]


def test_ci_runs_the_readme_test_command() -> None:
    command = _readme_test_command()
    assert command in (ROOT / ".ci" / "run").read_text(), f".ci/run must run {command!r}"
    if command.endswith("-s ci"):  # the session runs the default sessions through the parallel driver
        assert 'default="uvx nox"' in (ROOT / ".ci" / "nox_parallel.py").read_text()
        assert "nox_parallel.py" in (ROOT / "noxfile.py").read_text()


def test_github_workflow_reads_the_nox_table() -> None:
    workflow = (ROOT / ".github" / "workflows" / "ci.yml").read_text()
    assert "nox --list --json" in workflow or "nox -l --json" in workflow
    assert "fromJSON" in workflow
    assert "nox --list --json -t compat" in workflow, "the workflow must run the wider matrix (`uvx nox -t compat`) too"


def test_parallel_driver_runs_every_session_and_fails_when_one_fails(tmp_path: Path) -> None:
    fake_nox = tmp_path / "nox"
    fake_nox.write_text(
        "#!/usr/bin/env python3\n"
        "import json, sys\n"
        "if '--list' in sys.argv:\n"
        "    names = ['c1', 'c2'] if 'compat' in sys.argv else ['unit-a', 'integration-b', 'lint']\n"
        "    print(json.dumps([{'session': n} for n in names])); sys.exit(0)\n"
        "name = sys.argv[sys.argv.index('-s') + 1]\n"
        "print('ran', name); sys.exit(1 if name == 'lint' else 0)\n"
    )
    fake_nox.chmod(0o755)
    driver = ROOT / ".ci" / "nox_parallel.py"
    out = subprocess.run([sys.executable, str(driver), "--nox", str(fake_nox), "-j", "2", "--logs", str(tmp_path / "logs")], capture_output=True, text=True)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "2/3 sessions passed" in out.stdout and "lint failed" in out.stdout and "ran lint" in out.stdout
    assert out.stdout.index("integration-b (") < out.stdout.index("session wall times")
    assert re.search(r"CPU busy \d+% of the run on \d+ CPUs", out.stdout), out.stdout
    compat = subprocess.run([sys.executable, str(driver), "--nox", str(fake_nox), "-t", "compat", "--logs", str(tmp_path / "logs")], capture_output=True, text=True)
    assert compat.returncode == 0 and "2/2 sessions passed" in compat.stdout, compat.stdout + compat.stderr


def test_cpu_sampler_sees_a_busy_cpu() -> None:
    sys.path.insert(0, str(ROOT / ".ci"))
    try:
        import nox_parallel
    finally:
        sys.path.pop(0)
    assert nox_parallel._cpu_times() is not None, "CI runs on Linux: /proc/stat is readable"
    sampler = nox_parallel.CpuSampler(every=0.2).start()
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:  # one CPU fully busy
        pass
    summary = sampler.summary()
    busy = int(re.search(r"CPU busy (\d+)%", summary).group(1))  # type: ignore[union-attr]
    assert busy >= 100 // (os.cpu_count() or 1) - 15, summary  # at least one CPU's share, within noise
    assert len(sampler.samples) >= 3


def test_parallel_driver_prints_the_slowest_tests_of_a_slow_session(tmp_path: Path) -> None:
    fake_nox = tmp_path / "nox"
    fake_nox.write_text(
        "#!/usr/bin/env python3\n"
        "import json, sys, time\n"
        "if '--list' in sys.argv:\n"
        "    print(json.dumps([{'session': 'integration-x'}, {'session': 'unit-y'}])); sys.exit(0)\n"
        "name = sys.argv[sys.argv.index('-s') + 1]\n"
        "print('=== slowest 10 durations ===')\n"
        "print(f'512.00s call     tests/test_{name}.py::test_slow')\n"
        "time.sleep(1.2 if name == 'integration-x' else 0)\n"
    )
    fake_nox.chmod(0o755)
    driver = ROOT / ".ci" / "nox_parallel.py"
    env = {**os.environ, "AIRLIFT_SLOW_SESSION_SECONDS": "1"}
    out = subprocess.run([sys.executable, str(driver), "--nox", str(fake_nox), "--logs", str(tmp_path / "logs")],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "slowest tests of integration-x:" in out.stdout and "tests/test_integration-x.py::test_slow" in out.stdout
    assert "slowest tests of unit-y" not in out.stdout


def test_nox_sessions_cover_every_package_and_airflow_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "nox", "--list", "--json", "-f", str(ROOT / "noxfile.py")],
        capture_output=True, text=True, cwd=ROOT,
    )
    if out.returncode != 0 and "No module named nox" in out.stderr:
        out = subprocess.run(["uvx", "nox", "--list", "--json"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    names = {s["session"] for s in json.loads(out.stdout)}
    from airlift_testing.versions import AIRFLOW_VERSIONS

    for package in FORBIDDEN_IMPORTS:
        assert any(n.startswith(f"unit-{package}") for n in names), f"no unit session for {package}"
    for generation in AIRFLOW_VERSIONS:
        for package in ("airlift-client", "airlift-dagster", "airlift-airflow"):
            assert f"integration-{package}-airflow{generation}" in names
        assert f"unit-airlift-airflow-airflow{generation}" in names
    assert {"lint", "typecheck", "build"} <= names


def _nox_sessions(*args: str) -> list[dict[str, object]]:
    command = [sys.executable, "-m", "nox", "--list", "--json", "-f", str(ROOT / "noxfile.py"), *args]
    out = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0 and "No module named nox" in out.stderr:
        out = subprocess.run(["uvx", "nox", "--list", "--json", *args], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return list(json.loads(out.stdout))


def test_readme_versions_table_is_the_generated_one() -> None:
    from airlift_testing.versions import supported_versions_table

    readme = (ROOT / "README.md").read_text()
    found = re.search(r"<!-- supported-versions:start -->\n(.*?)<!-- supported-versions:end -->", readme, re.S)
    assert found, "README.md must hold the supported-versions table between its markers"
    expected = supported_versions_table()
    assert found.group(1) == expected, (
        "README.md's supported-versions table differs from airlift_testing/versions.py; replace it with:\n" + expected
    )


def test_every_row_of_the_versions_table_has_sessions() -> None:
    from airlift_testing.versions import (
        AIRFLOW_VERSIONS,
        COMPAT_AIRFLOW_VERSIONS,
        DAGSTER_VERSIONS,
        DEFAULT_DAGSTER,
        DEFAULT_PYTHON,
        DEFAULT_SHAPES,
        PYTHONS,
        SHAPES,
    )

    default = {str(s["session"]) for s in _nox_sessions()}
    compat = {str(s["session"]) for s in _nox_sessions("-t", "compat")}
    assert not default & compat, f"compat sessions must not be in the default run: {sorted(default & compat)}"
    for generation in AIRFLOW_VERSIONS:
        for suite in ("integration-airlift-client", "integration-airlift-dagster", "integration-airlift-airflow", "unit-airlift-airflow"):
            assert f"{suite}-airflow{generation}" in default
    for minor in COMPAT_AIRFLOW_VERSIONS:
        for suite in ("integration-airlift-client", "integration-airlift-dagster", "integration-airlift-airflow", "unit-airlift-airflow"):
            assert f"{suite}-airflow{minor}" in compat, f"Airflow {minor} is in the table but {suite}-airflow{minor} is no compat session"
    for minor in DAGSTER_VERSIONS:
        if minor != DEFAULT_DAGSTER:
            assert {f"unit-airlift-dagster-dagster{minor}", f"integration-airlift-dagster-airflow3-dagster{minor}"} <= compat
    for python in PYTHONS:
        if python != DEFAULT_PYTHON:
            assert {f"unit-airlift-protocol-py{python}", f"unit-airlift-client-py{python}"} <= default
    assert set(DEFAULT_SHAPES) == set(AIRFLOW_VERSIONS) and set(DEFAULT_SHAPES.values()) <= set(SHAPES)
    for shape in SHAPES:
        tagged = {str(s["session"]) for s in _nox_sessions("-t", shape)}
        for generation in (g for g in AIRFLOW_VERSIONS if DEFAULT_SHAPES[g] != shape):
            for suite in ("integration-airlift-dagster", "integration-airlift-airflow", "integration-airlift-client"):
                assert f"{suite}-airflow{generation}-{shape}" in tagged & compat


@pytest.mark.parametrize("package", sorted(FORBIDDEN_IMPORTS))
def test_declared_ranges_match_the_versions_table(package: str) -> None:
    import tomllib

    from airlift_testing.versions import PYTHONS, declared_ranges

    ranges = declared_ranges()
    project = tomllib.loads((PACKAGES / package / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ranges["requires-python"], f"{package}: requires-python"
    declared_pythons = sorted(c.rsplit(" :: ", 1)[1] for c in project["classifiers"] if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c))
    assert declared_pythons == sorted(PYTHONS), f"{package}: Python classifiers {declared_pythons} != {list(PYTHONS)}"
    requirements = [*project.get("dependencies", []), *(r for extra in project.get("optional-dependencies", {}).values() for r in extra)]
    for requirement in requirements:
        name = re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0]
        if name in ranges:
            assert requirement == f"{name}{ranges[name]}", f"{package} declares {requirement!r}; the tested range is {name}{ranges[name]}"
