"""FSDP-QLoRA, as far as a CPU can take it.

torch 2.13's FSDP2 (`fully_shard`) does train an NF4 + LoRA model over gloo on the CPU (checked by hand, see
test_fully_shard_trains_nf4_lora_over_gloo below), but accelerate 1.15 never turns FSDP on for a CPU run:
AcceleratorState makes FSDP only of MULTI_GPU-like types, and a CPU run is MULTI_CPU, so
`train --gpu cpu --gpus 2 --strategy fsdp` through accelerate and the Trainer cannot shard (the planner
says so: several CPU processes train with ddp). What the GPU path needs is tested here without it: the
NF4 weights stored in the compute dtype (FSDP shards float tensors only), the model loaded without a
device map (accelerate shards it), and the adapter save that every rank joins (the gather is a collective)
while rank 0 alone writes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from gpudoctor.train import run


def test_fsdp_stores_the_4bit_weights_in_the_compute_dtype(tiny_model, tiny_settings):
    import torch

    from gpudoctor.train.model import load_base

    sharded = load_base(tiny_model, tiny_settings(strategy="fsdp", gpus=2))
    plain = load_base(tiny_model, tiny_settings())
    weight = sharded.model.layers[0].self_attn.q_proj.weight
    assert weight.dtype == torch.float32 and weight.quant_storage == torch.float32  # fp32 is the tiny settings' compute dtype
    assert plain.model.layers[0].self_attn.q_proj.weight.dtype == torch.uint8


class FakeModel:
    def __init__(self) -> None:
        self.saved: list[object] = []

    def save_pretrained(self, folder, safe_serialization=True, state_dict=None):
        self.saved.append(state_dict)
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "adapter_model.safetensors").write_bytes(b"x")


@pytest.mark.parametrize("rank", ["0", "1"])
def test_every_rank_joins_the_gather_and_rank_0_alone_writes(tmp_path, monkeypatch, rank):
    monkeypatch.setenv("RANK", rank)
    gathered = []
    model = FakeModel()
    tokenizer = SimpleNamespace(save_pretrained=FakeModel().save_pretrained)
    prepared = SimpleNamespace(output=tmp_path, tokenizer=tokenizer)
    fitted = SimpleNamespace(model=model, gather=lambda: gathered.append(rank) or {"lora_A": 1})
    run.save_adapter(prepared, fitted)
    assert gathered == [rank]  # the collective, on every rank
    if rank == "0":
        assert model.saved == [{"lora_A": 1}] and (tmp_path / "adapter_model.safetensors").is_file()
    else:
        assert model.saved == [] and not (tmp_path / "adapter_model.safetensors").exists()


def test_ddp_gathers_nothing():
    assert run.sharded_gather(SimpleNamespace(accelerator=SimpleNamespace(distributed_type=SimpleNamespace(value="MULTI_CPU")))) is None
    fsdp = SimpleNamespace(accelerator=SimpleNamespace(distributed_type=SimpleNamespace(value="FSDP"), get_state_dict=lambda model: {"of": model}), model_wrapped="w")
    assert run.sharded_gather(fsdp)() == {"of": "w"}


PROBE = textwrap.dedent(
    """
    import sys, torch, torch.distributed as dist
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig
    dist.init_process_group("gloo")
    q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32, bnb_4bit_quant_storage=torch.float32)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(sys.argv[1], quantization_config=q, dtype=torch.float32), LoraConfig(r=8, target_modules="all-linear"))
    for layer in model.base_model.model.model.layers:
        fully_shard(layer)
    fully_shard(model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    x = torch.randint(0, 100, (2, 32), generator=torch.Generator().manual_seed(0))
    losses = []
    for _ in range(3):
        loss = model(input_ids=x, labels=x).loss
        loss.backward(); optimizer.step(); optimizer.zero_grad(); losses.append(loss.item())
    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    with open(f"{sys.argv[2]}/rank{dist.get_rank()}.txt", "w") as said:
        said.write(f"{losses[-1] < losses[0]} {sum('lora_' in k for k in state)}")
    dist.destroy_process_group()
    """
)


@pytest.mark.slow
def test_fully_shard_trains_nf4_lora_over_gloo(tiny_model, tmp_path):
    """torch's own FSDP2 on the CPU (without accelerate, which does not shard a CPU run): NF4 stored as fp32 + LoRA
    shards, trains, and the full state dict gathers onto rank 0. The evidence the GPU path rests on."""
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    from gpudoctor.train.distributed import free_port

    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()), str(script), str(tiny_model), str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    said = [(tmp_path / f"rank{rank}.txt").read_text() for rank in (0, 1)]
    assert said == ["True 28", "True 0"], result.stderr[-3000:]  # the loss fell on both; 2 layers x 7 linears x (A, B), gathered on rank 0 only
