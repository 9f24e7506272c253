"""`gpudoctor merge`: merge a trained adapter into its base and write one model plain transformers loads.

The logic lives in gpudoctor/train/merge.py; the training stack loads only when the command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    app.command("merge", help="Merge a trained adapter into its base: sharded safetensors + tokenizer + chat template.")(merge)


def merge(
    adapter: Path = typer.Option(..., "--adapter", help="A `gpudoctor train` output folder."),
    output: Path = typer.Option(..., "-o", "--output", help="The folder to write the merged model into (must not exist, or be empty)."),
    into: str = typer.Option(
        "nf4", "--into", help="nf4: into the dequantized 4-bit base the adapter was trained against (faithful); original: into the original weights."
    ),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="bf16, fp16 or fp32 (default: the run's compute dtype)."),
    force: bool = typer.Option(False, "--force", help="Replace OUT when it exists and is not empty."),
    base: Optional[str] = typer.Option(None, "--base", help="The base model folder (or Hugging Face id); default: the one adapter_config.json names."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Allow the model folder's own Python code to run."),
) -> None:
    from gpudoctor.cli.output import progress
    from gpudoctor.train.merge import MergeRequest
    from gpudoctor.train.merge import merge as run_merge

    request = MergeRequest(adapter=adapter, output=output, into=into, dtype=dtype, force=force, base=base, trust_remote_code=trust_remote_code)
    run_merge(request, say=progress())
