"""FSDP's layer inputs under transformers' Trainer: the memory model's Recipe.fsdp_holds_layer_inputs term
held against a profiled FSDP1 step on the CPU (two gloo ranks, tests/plan/fsdp_step.py).

With transformers 4.39-4.51 a frozen decoder-layer unit checkpointed from outside keeps its recomputed
input and that input's gradient until backward ends: the step's peak grows by two hidden states per layer
instead of one. The profiled test runs with whatever transformers is installed (5.x in CI, where the
checkpoint runs inside the unit and nothing is kept) and asserts that the model's per-layer growth for that
version is the measured one; bench/fsdp_retention.py prints the same figures for any installed stack (with
transformers 4.43.3 it measures 2.02 hidden states per layer, see tests/plan/measurements_found.md).
"""

from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # fsdp_step

import fsdp_step  # noqa: E402
from gpudoctor.plan import memory  # noqa: E402
from gpudoctor.settings import Settings  # noqa: E402
from gpudoctor.types import ModelSpec  # noqa: E402

TOKENS = 1024


def spec(layers: int) -> ModelSpec:
    return ModelSpec("fsdp-tiny", "llama", fsdp_step.HIDDEN, fsdp_step.INTER, layers, fsdp_step.HEADS, fsdp_step.KV_HEADS, fsdp_step.VOCAB, 4096)


def fsdp_settings(**changes) -> Settings:
    base = dict(recipe="trl", method="lora", quant=None, compute_dtype="bf16", lora_r=8, lora_alpha=16,
                lora_targets=["q_proj", "k_proj", "v_proj", "o_proj"], seq_len=TOKENS, micro_batch=1,
                grad_ckpt=True, gpus=2, strategy="fsdp")
    return Settings(**{**base, **changes})


def held_and_saved(layers: int, versions: memory.Versions) -> float:
    """What the layer phase holds of hidden states: the checkpoints plus any inputs' gradients FSDP keeps."""
    settings = fsdp_settings()
    recipe = memory.recipe_for(settings, versions)
    saved = memory.phases(spec(layers), settings, recipe, "cuda").saved
    return saved + memory.fsdp_held_input_grads(spec(layers), settings, recipe)


@pytest.mark.parametrize(("transformers", "holds"), [("4.38.2", False), ("4.39.0", True), ("4.43.3", True), ("4.51.3", True), ("4.52.0", False), ("5.24.0", False)])
def test_the_trainer_holds_layer_inputs_only_from_4_39_to_4_51(transformers, holds):
    versions = memory.Versions(transformers=transformers)
    assert memory.recipe_for(fsdp_settings(), versions).fsdp_holds_layer_inputs is holds
    assert memory.recipe_for(fsdp_settings(recipe="axolotl"), versions).fsdp_holds_layer_inputs is holds
    assert not memory.recipe_for(fsdp_settings(recipe="gpudoctor"), versions).fsdp_holds_layer_inputs


def test_held_gradients_are_one_hidden_state_per_layer_but_one_and_only_when_sharded_and_checkpointed():
    old = memory.Versions(transformers="4.43.3")
    recipe = memory.recipe_for(fsdp_settings(), old)
    one_state = fsdp_step.HIDDEN * 2 * TOKENS
    assert memory.fsdp_held_input_grads(spec(8), fsdp_settings(), recipe) == 7 * one_state
    assert memory.fsdp_held_input_grads(spec(8), fsdp_settings(micro_batch=3), recipe) == 21 * one_state
    for unsharded in (fsdp_settings(grad_ckpt=False), fsdp_settings(gpus=1, strategy="single"), fsdp_settings(strategy="ddp")):
        assert memory.fsdp_held_input_grads(spec(8), unsharded, memory.recipe_for(unsharded, old)) == 0


@pytest.mark.slow
def test_the_profiled_fsdp_step_grows_per_layer_as_the_model_says_for_the_installed_transformers():
    pytest.importorskip("peft")
    installed = memory.installed_versions(("transformers", "peft"))
    measured = fsdp_step.fsdp_peaks([(2, True), (4, True)], TOKENS)
    per_layer = (measured[(4, True)] - measured[(2, True)]) / 2
    predicted = (held_and_saved(4, installed) - held_and_saved(2, installed)) / 2
    version = importlib.metadata.version("transformers")
    # The peak also grows by each layer's sharded LoRA weights and the gathered flat parameters' padding:
    # about 2 % of a hidden state here.
    assert per_layer == pytest.approx(predicted, rel=0.05), f"transformers {version}: measured {per_layer / fsdp_step.hidden_copy_bytes(TOKENS):.2f} hidden states per layer, the model {predicted / fsdp_step.hidden_copy_bytes(TOKENS):.2f}"
