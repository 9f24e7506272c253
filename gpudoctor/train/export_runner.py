"""Run llama.cpp's own convert_hf_to_gguf.py unchanged, telling it one thing: the BPE pre-tokenizer.

gpudoctor runs this file as a subprocess (standard library only; nothing of gpudoctor is imported):

    python export_runner.py CONVERTER_DIR PRE_TOKENIZER -- <convert_hf_to_gguf.py arguments>

The converter names a BPE tokenizer's pre-tokenizer by hashing how it tokenizes a fixed text, and
refuses a hash it does not know (any locally trained tokenizer). When PRE_TOKENIZER is not "-",
gpudoctor has checked that the tokenizer's pre-tokenization has that llama.cpp shape, so an
unknown hash gets that name; a known hash keeps llama.cpp's own answer. Either way one line
`gpudoctor-pre-tokenizer: NAME (recognised|named)` tells gpudoctor which was written. The
converter's gguf package is the one vendored beside it (gguf-py), never an installed `gguf`.
"""

from __future__ import annotations

import sys

if sys.path and sys.path[0] == __file__.rpartition("/")[0]:
    del sys.path[0]  # this file's folder holds gpudoctor modules (model.py, report.py, ...) that must not shadow others

import importlib  # noqa: E402
import os  # noqa: E402
from pathlib import Path  # noqa: E402

MARK = "gpudoctor-pre-tokenizer:"


def _text_model(module):
    """The class holding get_vocab_base_pre: conversion.TextModel (llama.cpp since 2026) or the script's own."""
    found = getattr(module, "TextModel", None)
    if found is None:
        found = importlib.import_module("conversion").TextModel
    return found


def _name_pre_tokenizer(text_model, fallback: str) -> None:
    original = text_model.get_vocab_base_pre

    def get_vocab_base_pre(self, tokenizer):
        try:
            name = original(self, tokenizer)
        except NotImplementedError:
            if fallback == "-":
                raise
            print(f"{MARK} {fallback} (named)", file=sys.stderr, flush=True)
            return fallback
        print(f"{MARK} {name} (recognised)", file=sys.stderr, flush=True)
        return name

    text_model.get_vocab_base_pre = get_vocab_base_pre


def main(argv: list[str]) -> None:
    if len(argv) < 4 or argv[3] != "--":
        sys.exit("usage: export_runner.py CONVERTER_DIR PRE_TOKENIZER|- -- <convert_hf_to_gguf.py arguments>")
    root, fallback, args = Path(argv[1]), argv[2], argv[4:]
    os.environ.pop("NO_LOCAL_GGUF", None)
    sys.path[:0] = [str(root), str(root / "gguf-py")]
    gguf = importlib.import_module("gguf")
    if not Path(gguf.__file__).resolve().is_relative_to((root / "gguf-py").resolve()):
        sys.exit(f"error: imported gguf from {gguf.__file__}, not the gguf-py beside the converter in {root}")
    converter = importlib.import_module("convert_hf_to_gguf")
    _name_pre_tokenizer(_text_model(converter), fallback)
    sys.argv = [str(root / "convert_hf_to_gguf.py"), *args]
    converter.main()


if __name__ == "__main__":
    main(sys.argv)
