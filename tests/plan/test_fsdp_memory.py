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

TOKENS = 1024


@pytest.mark.parametrize(("transformers", "holds"), [("4.38.2", False), ("4.39.0", True), ("4.43.3", True), ("4.51.3", True), ("4.52.0", False), ("5.24.0", False)])
def test_the_trainer_holds_layer_inputs_only_from_4_39_to_4_51(transformers, holds):
    versions = memory.Versions(transformers=transformers)
    assert memory.recipe_for(fsdp_step.run_settings(TOKENS), versions).fsdp_holds_layer_inputs is holds
    assert memory.recipe_for(fsdp_step.run_settings(TOKENS, recipe="axolotl"), versions).fsdp_holds_layer_inputs is holds
    assert not memory.recipe_for(fsdp_step.run_settings(TOKENS, recipe="gpudoctor"), versions).fsdp_holds_layer_inputs


def test_held_gradients_are_one_hidden_state_per_layer_but_one_and_only_when_sharded_and_checkpointed():
    old = memory.Versions(transformers="4.43.3")
    recipe = memory.recipe_for(fsdp_step.run_settings(TOKENS), old)
    one_state = fsdp_step.hidden_copy_bytes(TOKENS)
    assert memory.fsdp_held_input_grads(fsdp_step.model_spec(8), fsdp_step.run_settings(TOKENS), recipe) == 7 * one_state
    assert memory.fsdp_held_input_grads(fsdp_step.model_spec(8), fsdp_step.run_settings(TOKENS, micro_batch=3), recipe) == 21 * one_state
    for unsharded in (fsdp_step.run_settings(TOKENS, grad_ckpt=False), fsdp_step.run_settings(TOKENS, gpus=1, strategy="single"), fsdp_step.run_settings(TOKENS, strategy="ddp")):
        assert memory.fsdp_held_input_grads(fsdp_step.model_spec(8), unsharded, memory.recipe_for(unsharded, old)) == 0


@pytest.mark.slow
def test_the_profiled_fsdp_step_grows_per_layer_as_the_model_says_for_the_installed_transformers():
    pytest.importorskip("peft")
    installed = memory.installed_versions(("transformers", "peft"))
    measured = fsdp_step.fsdp_peaks([(2, True), (4, True)], TOKENS)
    per_layer = (measured[(4, True)] - measured[(2, True)]) / 2
    predicted = (fsdp_step.modelled_hidden_states(4, TOKENS, installed) - fsdp_step.modelled_hidden_states(2, TOKENS, installed)) / 2
    version = importlib.metadata.version("transformers")
    # The peak also grows by each layer's sharded LoRA weights and the gathered flat parameters' padding:
    # about 2 % of a hidden state here.
    assert per_layer == pytest.approx(predicted, rel=0.05), f"transformers {version}: measured {per_layer / fsdp_step.hidden_copy_bytes(TOKENS):.2f} hidden states per layer, the model {predicted / fsdp_step.hidden_copy_bytes(TOKENS):.2f}"
