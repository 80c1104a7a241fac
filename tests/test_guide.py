"""The guide's code blocks are the example's files: they can never drift apart."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "guide.md"
INCLUDE = re.compile(r"<!-- include: (?P<path>[^ ]+) -->\n```[a-z]*\n(?P<body>.*?)\n```", re.S)


def test_every_included_block_matches_its_file() -> None:
    blocks = list(INCLUDE.finditer(GUIDE.read_text()))
    assert len(blocks) >= 9
    for block in blocks:
        path = ROOT / block["path"]
        assert path.exists(), f"the guide includes {block['path']}, which does not exist"
        assert block["body"] == path.read_text().rstrip(), f"docs/guide.md is out of date for {block['path']}"


def test_guide_covers_every_step_file() -> None:
    text = GUIDE.read_text()
    for step in ("peer", "observe", "observe_with_factory", "migrate", "decommission"):
        assert f"dagster_defs/{step}.py" in text
    assert "<<" not in text and "COMPLETED CODE HERE" not in text


def test_the_testing_readme_example_is_its_file() -> None:
    """airlift-testing's "Testing your definitions" shows the example the unit-airlift-dagster session runs."""
    readme = ROOT / "testing" / "airlift-testing" / "README.md"
    blocks = list(INCLUDE.finditer(readme.read_text()))
    assert [b["path"] for b in blocks] == ["testing/airlift-testing/examples/test_my_definitions.py"]
    for block in blocks:
        assert block["body"] == (ROOT / block["path"]).read_text().rstrip(), f"{readme} is out of date for {block['path']}"
