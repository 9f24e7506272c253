"""One LoRA training step of a tiny Llama under torch FSDP1 on the CPU (gloo, two ranks), set up the way
transformers' Trainer sets up a PEFT LoRA model under accelerate FSDP, and the peak bytes it allocates.

The set-up follows the Hugging Face stack of 2024 (transformers 4.39-4.48, accelerate 0.3x):
- auto-wrap with peft.utils.other.fsdp_auto_wrap_policy, which transformers' Trainer applies to a PEFT
  LoRA model (Trainer._fsdp_qlora_plugin_updates): every decoder layer is an FSDP unit and every LoRA
  Linear its own unit inside it, so a decoder layer's flat parameter is frozen;
- use_orig_params=True and MixedPrecision(bf16, bf16, bf16), as accelerate's set_mixed_precision;
- the trainable (LoRA) flat parameters upcast to fp32, as accelerate's prepare_model does when mixed
  precision is on;
- forward under autocast, transformers' gradient checkpointing, reentrant or not.

The peak is read from torch.profiler's allocation events of the second step (the first makes the
optimizer states), on rank 0. Runs with the installed torch / transformers / peft; bench/fsdp_retention.py
prints the figures, tests/plan/test_fsdp_memory.py holds them against gpudoctor.plan.memory
(modelled_hidden_states: the same run as the memory model sees it).
"""

from __future__ import annotations

import os
import queue
import socket

HIDDEN, INTER, HEADS, KV_HEADS, VOCAB = 128, 352, 4, 2, 256
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")  # fms-acceleration's benchmark targets


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def lora_llama(layers: int, reentrant: bool):
    """A bf16 Llama with LoRA on TARGETS, checkpointed."""
    import peft
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        hidden_size=HIDDEN, intermediate_size=INTER, num_hidden_layers=layers, num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS, vocab_size=VOCAB, max_position_embeddings=4096, use_cache=False,
    )
    config._attn_implementation = "sdpa"
    model = transformers.LlamaForCausalLM(config).to(torch.bfloat16)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": reentrant})
    model.enable_input_require_grads()
    lora = peft.LoraConfig(r=8, lora_alpha=16, target_modules=list(TARGETS), lora_dropout=0.0)
    model = peft.get_peft_model(model, lora)
    for param in model.parameters():
        if param.requires_grad:
            param.data = param.data.to(torch.bfloat16)  # one dtype per flat parameter before wrapping
    return model


def fsdp_wrapped(model):
    """FSDP1 as the Trainer and accelerate wrap a PEFT LoRA model (see the module docstring)."""
    import torch
    from peft.utils.other import fsdp_auto_wrap_policy
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    from torch.distributed.fsdp import MixedPrecision

    mixed = MixedPrecision(param_dtype=torch.bfloat16, reduce_dtype=torch.bfloat16, buffer_dtype=torch.bfloat16)
    wrapped = FSDP(model, auto_wrap_policy=fsdp_auto_wrap_policy(model), use_orig_params=True, device_id=torch.device("cpu"), mixed_precision=mixed)
    for unit in FSDP.fsdp_modules(wrapped):
        flat = unit._flat_param if unit._has_params else None
        if flat is not None and flat.requires_grad and flat.dtype != torch.float32:
            flat.data = flat.data.to(torch.float32)
            unit._handle._orig_param_dtype = torch.float32
    return wrapped


def allocation_peak(prof) -> int:
    """The most bytes alive at once among the allocations the profile saw (earlier ones left out)."""
    from torch._C._profiler import _EventType
    from torch.profiler._memory_profiler import OpTree

    events = sorted(
        (event.start_time_ns, event.typed[1].ptr, event.typed[1].alloc_size)
        for event in OpTree(prof.profiler.kineto_results).dfs()
        if event.typed[0] == _EventType.Allocation
    )
    live: dict[int, int] = {}
    now = peak = 0
    for _, ptr, size in events:
        if size > 0:
            live[ptr] = size
            now += size
        else:
            now -= live.pop(ptr, 0)
        peak = max(peak, now)
    return peak


def step_peak(model, tokens: int) -> int:
    """Peak bytes allocated by the second of two forward + backward + AdamW steps."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(0, VOCAB, (1, tokens), generator=torch.Generator().manual_seed(0))

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=False)

    step()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True) as prof:
        step()
    return allocation_peak(prof)


def _rank(rank: int, port: int, cases: list[tuple[int, bool]], tokens: int, results) -> None:
    import torch
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        for layers, reentrant in cases:
            peak = step_peak(fsdp_wrapped(lora_llama(layers, reentrant)), tokens)
            if rank == 0:
                results.put((layers, reentrant, peak))
    finally:
        dist.destroy_process_group()


def fsdp_peaks(cases: list[tuple[int, bool]], tokens: int) -> dict[tuple[int, bool], int]:
    """{(layers, reentrant): rank 0's peak bytes} for each case, all in one pair of processes."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    port = free_port()
    ranks = [context.Process(target=_rank, args=(rank, port, cases, tokens, results)) for rank in range(2)]
    for process in ranks:
        process.start()
    found: dict[tuple[int, bool], int] = {}
    try:
        while len(found) < len(cases):
            if any(process.exitcode for process in ranks):
                raise RuntimeError(f"an FSDP rank failed (exit codes {[process.exitcode for process in ranks]})")
            try:
                layers, reentrant, peak = results.get(timeout=2)
            except queue.Empty:
                continue
            found[(layers, reentrant)] = peak
    finally:
        for process in ranks:
            process.join(timeout=60)
            if process.is_alive():
                process.kill()
    return found


def hidden_copy_bytes(tokens: int) -> int:
    """One 16-bit hidden state of `tokens` tokens: the unit the retention is counted in."""
    return tokens * HIDDEN * 2


# The same run as gpudoctor's memory model sees it.


def model_spec(layers: int):
    from gpudoctor.types import ModelSpec

    return ModelSpec("fsdp-tiny", "llama", HIDDEN, INTER, layers, HEADS, KV_HEADS, VOCAB, 4096)


def run_settings(tokens: int, **changes):
    """Settings for lora_llama's run under the trl recipe (the Trainer's), on two GPUs under FSDP."""
    from gpudoctor.settings import Settings

    base = dict(recipe="trl", method="lora", quant=None, compute_dtype="bf16", lora_r=8, lora_alpha=16,
                lora_targets=list(TARGETS), seq_len=tokens, micro_batch=1, grad_ckpt=True, gpus=2, strategy="fsdp")
    return Settings(**{**base, **changes})


def modelled_hidden_states(layers: int, tokens: int, versions) -> float:
    """Bytes of hidden states the model's layer phase holds for this run: the checkpoints plus the inputs'
    gradients FSDP keeps (memory.fsdp_held_input_grads) with these library versions."""
    from gpudoctor.plan import memory

    settings = run_settings(tokens)
    recipe = memory.recipe_for(settings, versions)
    saved = memory.phases(model_spec(layers), settings, recipe, "cuda").saved
    return saved + memory.fsdp_held_input_grads(model_spec(layers), settings, recipe)

