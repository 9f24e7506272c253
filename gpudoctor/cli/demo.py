"""`gpudoctor demo`: the whole path on the built-in default — check → plan → train --demo → compare → chat.

A thin chain over the other commands (each step is exactly what its own command prints), so the
demo can never drift from what a user runs by hand. Only typer is imported at module level.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import typer

from gpudoctor.errors import EXIT_OK, BadInput

DEMO_PROMPT = "I'm having trouble getting Product X to work properly."
# Of the 16 held-out records, a few, with room for a whole reply (the demo's are 61-77 tokens): on a
# 2-core CPU compare takes 2-10 s for 3 (model load included), ~15 s for all 16 at 96 tokens.
COMPARE_PROMPTS, COMPARE_TOKENS = 3, 80


def register(app: typer.Typer) -> None:
    app.command("demo", help="Run check → plan → train the tiny demo model → compare → chat, on the built-in data (CPU: about a minute).")(demo)


def _is_demo_run(folder: Path) -> bool:
    """True when `folder` holds a run of the built-in demo (its run.yaml trains the demo model)."""
    from gpudoctor.plan.runconfig import read_run_config
    from gpudoctor.train.demo import DATA

    try:
        return Path(read_run_config(folder / "run.yaml").data or "").resolve() == DATA.resolve()
    except BadInput:
        return False


def demo(
    output: Path = typer.Option(Path("gpudoctor-demo"), "--output", help="Run folder for the demo adapter."),
    prompt: str = typer.Option(DEMO_PROMPT, "--prompt", help="What to ask the trained model at the end."),
    retrain: bool = typer.Option(False, "--retrain", help="Train again even if --output holds a finished demo run."),
    max_steps: int | None = typer.Option(None, "--max-steps", help="Stop training after N steps (a quick look)."),
    compare_prompts: int = typer.Option(COMPARE_PROMPTS, "--compare-prompts", help="Held-out prompts the base and the adapter both answer (0: skip)."),
) -> int:
    from gpudoctor.cli.main import run
    from gpudoctor.cli.output import console

    out = console()

    def step(title: str) -> None:
        out.print()
        out.rule(title, align="left")

    step("1/4 gpudoctor check — is this machine ready?")
    ready = run(["check"]) == EXIT_OK
    plan_for = [] if ready else ["--gpu", "cpu"]
    if not ready:
        out.print("demo: the GPU is not ready (see above), so the demo plans for and trains on the CPU", soft_wrap=True)

    step("2/4 gpudoctor train --demo — plan for this hardware, then train")
    finished = (output / "report.json").is_file() and _is_demo_run(output)
    if finished and not retrain:
        out.print(f"demo: {output} already holds a finished demo run; `gpudoctor demo --retrain` trains it again", soft_wrap=True)
    else:
        if retrain and output.exists():
            if not _is_demo_run(output):
                raise BadInput(f"--output {output}: holds something other than a demo run; pick another --output")
            shutil.rmtree(output)
        steps = ["--max-steps", str(max_steps)] if max_steps else []
        code = run(["train", "--demo", "--output", str(output), *plan_for, *steps])
        if code != EXIT_OK:
            return code

    step("3/4 gpudoctor compare — the base and the adapter answer the held-out prompts")
    if compare_prompts > 0:
        code = run(["compare", "--adapter", str(output), "--max-prompts", str(compare_prompts), "--max-new-tokens", str(COMPARE_TOKENS)])
        if code != EXIT_OK:
            return code
    out.print(f"demo: open {(output / 'report.html').resolve()} in a browser: the loss curves, memory, settings, data and these answers", soft_wrap=True)

    step("4/4 gpudoctor chat — ask the trained adapter")
    out.print(f"prompt: {prompt}", soft_wrap=True)
    return run(["chat", "--adapter", str(output), "--prompt", prompt])
