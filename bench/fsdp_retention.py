"""Print how a LoRA step's peak grows per decoder layer under FSDP1 on the CPU, with the installed torch,
transformers and peft, against what gpudoctor's memory model says for those versions.

    .venv/bin/python bench/fsdp_retention.py [--tokens 1024] [--layers 2,4]

Two gloo ranks train a tiny bf16 Llama with LoRA on q, k, v, o, wrapped as transformers' Trainer wraps a
PEFT model under accelerate FSDP (tests/plan/fsdp_step.py), with transformers' gradient checkpointing,
reentrant and not. For each it prints rank 0's profiled peak per layer count and the growth per layer in
hidden states (tokens x hidden x 2 bytes): 1.0 when only the checkpoints grow with depth, 2.0 when each
layer's input and its gradient are kept to the end of backward (Recipe.fsdp_holds_layer_inputs). Run it
from another virtual environment (with gpudoctor's repo on the path) to measure another stack; the
figures in tests/plan/measurements_found.md came from this script.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "plan"))

import fsdp_step  # noqa: E402


def model_growth(tokens: int, layers: tuple[int, int]) -> float:
    """The memory model's growth per layer of checkpoints plus held gradients, in hidden states."""
    from gpudoctor.plan import memory

    versions = memory.installed_versions(("transformers", "peft"))
    held = [fsdp_step.modelled_hidden_states(count, tokens, versions) for count in layers]
    return (held[1] - held[0]) / (layers[1] - layers[0]) / fsdp_step.hidden_copy_bytes(tokens)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--layers", default="2,4", help="two layer counts")
    args = parser.parse_args()
    low, high = (int(n) for n in args.layers.split(","))
    versions = {name: importlib.metadata.version(name) for name in ("torch", "transformers", "peft")}
    print("stack:", ", ".join(f"{name} {version}" for name, version in versions.items()), "| CPU, 2 gloo ranks")
    cases = [(layers, reentrant) for reentrant in (False, True) for layers in (low, high)]
    peaks = fsdp_step.fsdp_peaks(cases, args.tokens)
    one = fsdp_step.hidden_copy_bytes(args.tokens)
    for reentrant in (False, True):
        growth = (peaks[(high, reentrant)] - peaks[(low, reentrant)]) / (high - low) / one
        print(f"use_reentrant={reentrant!s:5}  peak {low} layers {peaks[(low, reentrant)] / 2**20:7.2f} MiB, {high} layers {peaks[(high, reentrant)] / 2**20:7.2f} MiB: {growth:.2f} hidden states per layer")
    print(f"the memory model for this transformers (reentrant, the Trainer's default before 5.0): {model_growth(args.tokens, (low, high)):.2f} hidden states per layer")


if __name__ == "__main__":
    main()
