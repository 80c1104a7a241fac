"""Terminal output: rich tables and colours (off under ``NO_COLOR`` or when not a terminal), JSON for
scripts, progress bars on stderr for long fetches."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.text import Text

__all__ = ["Output", "diff_text", "json_option"]

K = TypeVar("K")
V = TypeVar("V")

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts) instead of a table.")


class Output:
    """Where a command writes: tables and text to stdout, errors and progress to stderr."""

    def __init__(self, *, as_json: bool = False) -> None:
        self.as_json = as_json
        # rich honours NO_COLOR and turns colours off when stdout is not a terminal.
        self.out = Console(highlight=False, soft_wrap=True)
        self.err = Console(stderr=True, highlight=False, soft_wrap=True)

    def print(self, *objects: Any, **kwargs: Any) -> None:
        """Human output (nothing in ``--json`` mode)."""
        if not self.as_json:
            self.out.print(*objects, **kwargs)

    def emit_json(self, data: Any) -> None:
        """The JSON document of a read command (only in ``--json`` mode)."""
        if self.as_json:
            click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))

    def error(self, message: str) -> None:
        """One line on stderr."""
        self.err.print(Text.assemble(("error:", "bold red"), " ", message))

    def map_with_progress(
        self, description: str, keys: Sequence[K], work: Callable[[K], V], *, workers: int = 8
    ) -> dict[K, V]:
        """``{key: work(key)}`` computed concurrently, with a progress bar on stderr when it is a
        terminal and the output is not JSON."""
        results: dict[K, V] = {}
        if not keys:
            return results
        show = self.err.is_terminal and not self.as_json and len(keys) > 1
        with ThreadPoolExecutor(max_workers=min(workers, len(keys))) as pool, Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            console=self.err, transient=True, disable=not show,
        ) as progress:
            bar = progress.add_task(description, total=len(keys))
            futures = {pool.submit(work, key): key for key in keys}
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                progress.advance(bar)
        return {key: results[key] for key in keys}


def first_line(message: object) -> str:
    """The first line of an error message (the rest is background for logs)."""
    text = str(message).strip()
    return text.splitlines()[0] if text else type(message).__name__


def plain(values: Iterable[object]) -> str:
    """Comma-separated values, or a dash when empty."""
    shown = [str(v) for v in values]
    return ", ".join(shown) if shown else "-"


def diff_text(diff: str) -> Text:
    """A unified diff with added lines green and removed lines red."""
    text = Text()
    for line in diff.rstrip("\n").splitlines(keepends=True):
        style = "green" if line.startswith("+") and not line.startswith("+++") else (
            "red" if line.startswith("-") and not line.startswith("---") else "")
        text.append(line, style=style)
    return text
