"""Check a release tag before building and publishing one package.

    python scripts/check_release.py airlift-dagster-v0.1.0        # prints packages/airlift-dagster

A tag ``<distribution>-v<version>`` releases one package. The check fails (exit 1, one line naming the
file) unless the distribution is a folder of ``packages/`` (or ``testing/``: airlift-testing), its ``version.py`` says ``<version>``, and
its ``CHANGELOG.md`` has a ``## <version>`` entry that is not marked ``(unreleased)`` and lists at least
one change. The release workflow (.github/workflows/release.yml) runs it first.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The folders holding released packages, one package folder (named as its distribution) each.
PACKAGE_FOLDERS = ("packages", "testing")
TAG = re.compile(r"^(?P<dist>airlift-[a-z]+)-v(?P<version>\d+\.\d+\.\d+(?:(?:a|b|rc)\d+)?)$")


class ReleaseCheckError(Exception):
    """The tag cannot be released; the message says what to fix."""


def changelog_entry(changelog: Path, version: str) -> list[str]:
    """The bullet lines under ``## <version>`` (empty if there is no released entry)."""
    lines = changelog.read_text(encoding="utf-8").splitlines()
    heading = re.compile(rf"^## {re.escape(version)}(?:\s|$)")
    for i, line in enumerate(lines):
        if heading.match(line):
            if "unreleased" in line.lower():
                raise ReleaseCheckError(f"{changelog}: the entry {line.strip()!r} is still marked unreleased; "
                                        f"replace '(unreleased)' with the release date")
            body = []
            for following in lines[i + 1:]:
                if following.startswith("## "):
                    break
                if following.lstrip().startswith("- "):
                    body.append(following.strip())
            return body
    return []


def check_tag(tag: str, root: Path = ROOT) -> Path:
    """The package folder a tag releases; raises :class:`ReleaseCheckError` naming what is wrong."""
    match = TAG.match(tag)
    if not match:
        raise ReleaseCheckError(f"tag {tag!r} is not <distribution>-v<version>, e.g. airlift-dagster-v0.1.0")
    dist, version = match["dist"], match["version"]
    folders = [root / folder for folder in PACKAGE_FOLDERS if (root / folder).is_dir()]
    package = next((f / dist for f in folders if (f / dist / "pyproject.toml").exists()), None)
    if package is None:
        known = ", ".join(sorted(p.name for f in folders for p in f.iterdir() if (p / "pyproject.toml").exists()))
        raise ReleaseCheckError(f"tag {tag!r}: no package {dist!r} under {' or '.join(f + '/' for f in PACKAGE_FOLDERS)} (known: {known})")
    version_file = package / "src" / dist.replace("-", "_") / "version.py"
    found = re.search(r'__version__\s*=\s*"([^"]+)"', version_file.read_text(encoding="utf-8"))
    if not found or found[1] != version:
        raise ReleaseCheckError(f"{version_file} says {found[1] if found else 'no __version__'}, the tag says {version}")
    changelog = package / "CHANGELOG.md"
    if not changelog.exists():
        raise ReleaseCheckError(f"{changelog} is missing")
    if not changelog_entry(changelog, version):
        raise ReleaseCheckError(f"{changelog} has no '## {version}' entry listing the changes (lines starting with '- ')")
    return package


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        package = check_tag(argv[0])
    except ReleaseCheckError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(package.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
