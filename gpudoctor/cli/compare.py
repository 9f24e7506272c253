"""`gpudoctor compare`: the base model and the adapter answer the same prompts, side by side.

The logic lives in gpudoctor/train/compare.py (compare.json and report.html in the run folder);
this prints the table. The training stack loads only when the command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from gpudoctor.train.compare import DEFAULT_MAX_NEW_TOKENS, DEFAULT_MAX_PROMPTS


def register(app: typer.Typer) -> None:
    app.command("compare", help="Answer prompts with the base model and with the adapter, side by side; writes compare.json and report.html.")(compare)


def compare(
    adapter: Path = typer.Option(..., "--adapter", help="A `gpudoctor train` output folder."),
    prompts: Optional[Path] = typer.Option(
        None, "--prompts", help="A text file (one prompt a line) or JSON/JSONL Alpaca records; default: the run's validation records."
    ),
    max_new_tokens: int = typer.Option(DEFAULT_MAX_NEW_TOKENS, "--max-new-tokens", help="Longest answer, in tokens."),
    seed: int = typer.Option(0, "--seed", help="Set before each answer (decoding is greedy)."),
    max_prompts: int = typer.Option(DEFAULT_MAX_PROMPTS, "--max-prompts", help="Answer at most this many prompts (the first ones)."),
) -> None:
    from gpudoctor.cli.output import console, progress
    from gpudoctor.train.compare import CompareRequest
    from gpudoctor.train.compare import compare as run_compare

    request = CompareRequest(adapter=adapter, prompts=prompts, max_new_tokens=max_new_tokens, seed=seed, max_prompts=max_prompts)
    result = run_compare(request, say=progress())
    show(result, console())


def show(result: dict[str, Any], out: Any) -> None:
    """The answers as a rich table (prompt, base, tuned; control characters as U+FFFD), then where compare.json and report.html are."""
    from rich.table import Table
    from rich.text import Text

    from gpudoctor.train.compare import COMPARE_FILE
    from gpudoctor.train.report_html import REPORT_HTML, printable

    table = Table(show_lines=True, expand=True)
    for name, ratio in (("prompt", 2), ("base", 3), ("tuned (base + adapter)", 3)):
        table.add_column(name, ratio=ratio, overflow="fold")
    for answer in result["answers"]:
        table.add_row(*(Text(printable(answer[key])) for key in ("prompt", "base", "tuned")))  # a model's stray escape byte stays off the terminal
    out.print(table)
    folder = Path(result["adapter"])
    out.print(f"{result['differ']} of {result['prompts']} answers differ with the adapter ({result['decoding']}, seed {result['seed']})", markup=False)
    for note in result.get("notes") or []:
        out.print(f"note: {note}", markup=False, soft_wrap=True)
    out.print(f"answers: {folder / COMPARE_FILE}", markup=False, soft_wrap=True)
    out.print(f"report: {folder / REPORT_HTML}", markup=False, soft_wrap=True)
