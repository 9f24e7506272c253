"""`gpudoctor chat` (alias `generate`): load base + adapter from a run folder and answer prompts.

With --prompt it answers once; without, it reads prompts from standard input until EOF or an
empty line. --base loads the adapter onto another copy of its base (a moved folder, say). The training stack loads only when the command runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command("chat", help="Answer prompts with a trained adapter (base model + LoRA).")(chat)
    app.command("generate", help="Same as chat.", hidden=True)(chat)


def chat(
    adapter: Path = typer.Option(..., "--adapter", help="A `gpudoctor train` output folder."),
    base: str | None = typer.Option(
        None, "--base", help="The base model folder (or Hugging Face id) to load the adapter onto; default: the one its adapter_config.json names."
    ),
    prompt: str | None = typer.Option(None, "--prompt", help="Answer this prompt and exit (else read prompts from stdin)."),
    max_new_tokens: int = typer.Option(96, "--max-new-tokens", help="Longest answer, in tokens."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Allow the model folder's own Python code to run."),
) -> None:
    from gpudoctor.cli.output import console, err_console
    from gpudoctor.train.generate import load_chatbot

    if max_new_tokens < 1:
        from gpudoctor.errors import BadInput

        raise BadInput(f"--max-new-tokens {max_new_tokens}: must be at least 1")
    bot = load_chatbot(adapter, base=base, trust_remote_code=trust_remote_code)
    out = console()
    if prompt is not None:
        out.print(bot.answer(prompt, max_new_tokens), markup=False, soft_wrap=True)
        return
    err_console().print("chat: type a prompt and press Enter; an empty line or Ctrl-D ends")
    for line in sys.stdin:
        text = line.strip()
        if not text:
            break
        out.print(bot.answer(text, max_new_tokens), markup=False, soft_wrap=True)
