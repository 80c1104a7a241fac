"""The release check the release workflow runs before publishing a package."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
check = runpy.run_path(str(ROOT / "scripts" / "check_release.py"))
check_tag = check["check_tag"]
ReleaseCheckError = check["ReleaseCheckError"]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    package = tmp_path / "packages" / "airlift-dagster"
    (package / "src" / "airlift_dagster").mkdir(parents=True)
    (package / "pyproject.toml").write_text("[project]\nname = 'airlift-dagster'\n")
    (package / "src" / "airlift_dagster" / "version.py").write_text('__version__ = "0.2.0"\n')
    (package / "CHANGELOG.md").write_text("# Changelog\n\n## 0.2.0 (2026-12-01)\n- Faster ticks.\n\n## 0.1.0\n- First release.\n")
    return tmp_path


def test_a_released_entry_passes(repo: Path) -> None:
    assert check_tag("airlift-dagster-v0.2.0", repo) == repo / "packages" / "airlift-dagster"


@pytest.mark.parametrize(("tag", "changelog", "message"), [
    ("airlift-dagster-0.2.0", None, "is not <distribution>-v<version>"),
    ("airlift-nothing-v0.2.0", None, "no package 'airlift-nothing'"),
    ("airlift-dagster-v0.3.0", None, "version.py says 0.2.0, the tag says 0.3.0"),
    ("airlift-dagster-v0.2.0", "## 0.2.0 (unreleased)\n- Faster ticks.\n", "still marked unreleased"),
    ("airlift-dagster-v0.2.0", "## 0.1.0\n- First release.\n", "has no '## 0.2.0' entry"),
    ("airlift-dagster-v0.2.0", "## 0.2.0 (2026-12-01)\n\n## 0.1.0\n- First.\n", "has no '## 0.2.0' entry"),
])
def test_what_blocks_a_release(repo: Path, tag: str, changelog: str | None, message: str) -> None:
    if changelog is not None:
        (repo / "packages" / "airlift-dagster" / "CHANGELOG.md").write_text(f"# Changelog\n\n{changelog}")
    with pytest.raises(ReleaseCheckError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_tag(tag, repo)


def test_a_package_under_testing_is_released_too(repo: Path) -> None:
    package = repo / "testing" / "airlift-testing"
    (package / "src" / "airlift_testing").mkdir(parents=True)
    (package / "pyproject.toml").write_text("[project]\nname = 'airlift-testing'\n")
    (package / "src" / "airlift_testing" / "version.py").write_text('__version__ = "0.2.0"\n')
    (package / "CHANGELOG.md").write_text("# Changelog\n\n## 0.2.0 (2026-12-03)\n- The fake Airflow, documented.\n")
    assert check_tag("airlift-testing-v0.2.0", repo) == package
    with pytest.raises(ReleaseCheckError, match="known: airlift-dagster, airlift-testing"):
        check_tag("airlift-tests-v0.2.0", repo)


RELEASED = [*sorted((ROOT / "packages").iterdir()), ROOT / "testing" / "airlift-testing"]


def test_six_packages_are_released_and_the_wheel_check_covers_each() -> None:
    assert len(RELEASED) == 6
    wheels = runpy.run_path(str(ROOT / "tests" / "check_wheels.py"))["CHECKS"]
    assert sorted(wheels) == sorted(p.name for p in RELEASED)


def test_every_package_has_a_changelog_entry_for_its_version() -> None:
    for package in RELEASED:
        version_file = package / "src" / package.name.replace("-", "_") / "version.py"
        version = runpy.run_path(str(version_file))["__version__"]
        text = (package / "CHANGELOG.md").read_text()
        assert f"## {version}" in text, f"{package / 'CHANGELOG.md'} has no entry for {version}"


def test_the_workflow_runs_the_check_and_publishes_with_trusted_publishing() -> None:
    workflow = (ROOT / ".github" / "workflows" / "release.yml").read_text()
    assert "scripts/check_release.py" in workflow
    assert "id-token: write" in workflow and "pypa/gh-action-pypi-publish" in workflow
    assert "password" not in workflow  # trusted publishing: no token stored anywhere
