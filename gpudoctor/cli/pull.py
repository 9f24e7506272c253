"""`gpudoctor pull MODEL`: download a base model into the Hugging Face cache, checked first.

The logic lives in gpudoctor/train/pull.py; huggingface_hub loads only when the command runs.
"""

from __future__ import annotations

import sys
from typing import Any

import typer


def register(app: typer.Typer) -> None:
    app.command("pull", help="Download a model (profile id or Hugging Face id) into the Hugging Face cache: safetensors, config and tokenizer only.")(pull)


def pull(
    model: str = typer.Argument(..., help="A profile id (mistral-7b) or a Hugging Face repo id (owner/name).", show_default=False),
) -> None:
    from gpudoctor.cli.output import progress
    from gpudoctor.train.pull import pull as run_pull

    pulled = run_pull(model, say=progress())
    typer.echo(str(pulled.path))  # the folder alone on stdout, for scripts: MODEL_DIR=$(gpudoctor pull MODEL)


def ensure_pulled(model: str, *, yes: bool, console: Any) -> None:
    """train's hook: download `model` when it is a hub model not in the cache, asking first when it is big."""
    from gpudoctor.train.pull import ensure_model

    ensure_model(model, yes=yes, ask=_ask, say=lambda line: console.print(line, markup=False, soft_wrap=True))


def _ask(question: str) -> bool:
    """A yes/no question on the terminal; no terminal (a script, CI) is a no: it must pass --yes."""
    if not sys.stdin.isatty():
        return False
    return typer.confirm(question, default=False, err=True)
