"""`gpudoctor export`: a trained run (merged first) or a merged folder as one GGUF file, plus an Ollama Modelfile.

The logic lives in gpudoctor/train/export.py; the training stack loads only when the command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from gpudoctor.errors import BadInput


def register(app: typer.Typer) -> None:
    app.command("export", help="Export a trained adapter (merged first) or a merged model as GGUF through llama.cpp's own converter.")(export)


def export(
    adapter: Optional[Path] = typer.Option(None, "--adapter", help="A `gpudoctor train` output folder (merged first, into a temp folder)."),
    model: Optional[Path] = typer.Option(None, "--model", help="An already merged model folder (`gpudoctor merge` output) instead of --adapter."),
    gguf: bool = typer.Option(False, "--gguf", help="Write GGUF (llama.cpp, Ollama, LM Studio); the one format so far."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="The .gguf file to write."),
    quant: str = typer.Option("q8_0", "--quant", help="q8_0 (about half of f16's size) or f16."),
    ollama: bool = typer.Option(False, "--ollama", help="Also write <OUT>.Modelfile for `ollama create`."),
    converter: Optional[Path] = typer.Option(
        None, "--converter", help="llama.cpp's convert_hf_to_gguf.py, a llama.cpp checkout, or the llama-cpp-python sdist (.tar.gz or unpacked)."
    ),
    fetch_converter: bool = typer.Option(False, "--fetch-converter", help="pip download the llama-cpp-python sdist and unpack its converter into the cache."),
    force: bool = typer.Option(False, "--force", help="Replace OUT when it exists."),
    into: str = typer.Option("nf4", "--into", help="How --adapter is merged: nf4 (faithful, default) or original (see `gpudoctor merge`)."),
    base: Optional[str] = typer.Option(None, "--base", help="The base model folder for --adapter; default: the one adapter_config.json names."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Allow the model folder's own Python code to run."),
) -> None:
    from gpudoctor.cli.output import progress
    from gpudoctor.train import export as exporting

    say = progress()

    if fetch_converter:
        say(f"export: pip download llama-cpp-python=={exporting.LLAMA_CPP_PYTHON} (the sdist, not built; its converter alone is kept)")
        say(f"export: unpacked llama.cpp's converter into {exporting.fetch_converter(say=say)}")
        if adapter is None and model is None:
            return
    if not gguf:
        raise BadInput("export: add --gguf (GGUF is the one format `gpudoctor export` writes so far)")
    if output is None:
        raise BadInput("export: add -o OUT.gguf, the file to write")
    request = exporting.ExportRequest(
        output=output, adapter=adapter, model=model, quant=quant, ollama=ollama, converter=converter,
        force=force, into=into, base=base, trust_remote_code=trust_remote_code,
    )  # fmt: skip
    exporting.export(request, say=say)
