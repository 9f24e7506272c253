"""The memory model: bytes per component per GPU for a LoRA/QLoRA run on the Hugging Face stack.

Pure arithmetic over a ModelSpec, Settings and Hardware. It models what transformers + peft +
bitsandbytes keep alive at the step's peak, not a rule of thumb:

    peak_allocated = static + dynamic
        static  = base weights + 16-bit/fp32 leftovers + LoRA weights + LoRA grads + optimizer states
        dynamic = max over the step's phases of what is alive then:
            loss phase:   saved activations of every layer + the logits and their fp32 copies
            layer phase:  saved activations + one layer recomputed and its backward temporaries
            optimizer:    the optimizer's step temporaries (activations are gone by then)
    peak_reserved  = peak_allocated + allocator fragmentation + CUDA context (what nvidia-smi shows)

Sources are cited beside each formula. GiB = 1024**3 throughout.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpudoctor.errors import BadInput
from gpudoctor.plan.types import Hardware, MemoryEstimate
from gpudoctor.settings import Settings
from gpudoctor.types import GIB, ModelSpec

DTYPE_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}

# QLoRA (Dettmers et al. 2023, §3 "Double Quantization"; bitsandbytes functional.quantize_4bit,
# blocksize 64): 4-bit codes plus one fp32 absmax per 64 weights = 0.5 + 4/64 bytes per weight;
# double quantization stores the absmax in 8 bits with one fp32 constant per 256 of them.
NF4_BYTES = 0.5 + 4 / 64
NF4_DQ_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)

# peft.prepare_model_for_kbit_training casts every parameter that is not 4-bit (embeddings,
# lm_head, norms, biases) to fp32 (peft/utils/other.py); gpudoctor train (train/model.py),
# TRL's SFTTrainer and Axolotl call it.
KBIT_LEFTOVER_BYTES = 4
# peft creates LoRA matrices in fp32 (get_peft_model(autocast_adapter_dtype=True)).
LORA_PARAM_BYTES = 4
# Adam keeps two states per trainable weight: fp32 (8 bytes) or bitsandbytes 8-bit blockwise (2).
OPTIMIZER_STATE_BYTES = {"adamw_torch": 8, "adamw_torch_fused": 8, "paged_adamw_32bit": 8, "adamw_8bit": 2, "paged_adamw_8bit": 2}
# torch.optim.AdamW (foreach) allocates about two fp32 temporaries per weight during step();
# the fused AdamW and bitsandbytes' optimizers update in one kernel.
OPTIMIZER_STEP_TEMP_BYTES = {"adamw_torch": 8, "adamw_torch_fused": 0, "paged_adamw_32bit": 0, "adamw_8bit": 0, "paged_adamw_8bit": 0}

# Loss (HF ForCausalLMLoss -> cross_entropy), bytes per logit at its peak. Forward: the 16-bit
# logits, their fp32 upcast and the fp32 log-softmax output (saved); backward adds the fp32
# gradient of the log-softmax output and of its input, then the 16-bit gradient of the logits.
# Profiled on transformers 5.24 + torch 2.13 the peak is 16.0 B per logit
# (tests/plan/test_memory.py::test_loss_peak_per_logit_matches_the_profiled_hf_loss).
LOSS_BYTES_PER_LOGIT = 16

# CUDA/HIP context, cuBLAS/cuDNN handles and kernels: outside torch's allocator, inside
# nvidia-smi's figure (PyTorch "CUDA semantics" notes; typically 0.3-0.6 GiB with lazy loading).
GPU_CONTEXT_BYTES = int(0.5 * GIB)
# On the CPU: the Python process itself. Measured on this project's stack (torch 2.13 CPU,
# transformers 5.24): 0.46 GiB resident after importing torch/transformers/peft/bitsandbytes and
# ~0.77 GiB beyond the model's own bytes in a Trainer run (bench/plan_vs_measured.py --device cpu).
CPU_PROCESS_BYTES = int(0.8 * GIB)
# Caching-allocator fragmentation: freed activation blocks that cannot be reused for a differently
# sized request stay reserved. A stated assumption: 10% of the step's dynamic memory.
FRAGMENTATION = 0.10


@dataclass(frozen=True)
class Linear:
    name: str
    in_features: int
    out_features: int

    @property
    def params(self) -> int:
        return self.in_features * self.out_features


def head_dim(model: ModelSpec) -> int:
    return model.head_dim or model.hidden_size // model.num_attention_heads


def layer_linears(model: ModelSpec) -> list[Linear]:
    """The projections of one decoder layer, under the module names peft targets."""
    h, inter = model.hidden_size, model.intermediate_size
    q_out = model.num_attention_heads * head_dim(model)
    kv_out = model.num_key_value_heads * head_dim(model)
    if model.architecture == "phi3":  # fused projections (modeling_phi3.py)
        return [
            Linear("qkv_proj", h, q_out + 2 * kv_out),
            Linear("o_proj", q_out, h),
            Linear("gate_up_proj", h, 2 * inter),
            Linear("down_proj", inter, h),
        ]
    return [
        Linear("q_proj", h, q_out),
        Linear("k_proj", h, kv_out),
        Linear("v_proj", h, kv_out),
        Linear("o_proj", q_out, h),
        Linear("gate_proj", h, inter),
        Linear("up_proj", h, inter),
        Linear("down_proj", inter, h),
    ]


def linear_names(model: ModelSpec) -> list[str]:
    return [linear.name for linear in layer_linears(model)]


def targeted(model: ModelSpec, targets: list[str]) -> list[Linear]:
    """The layer projections LoRA wraps; 'all-linear' means every one (the lm_head is never wrapped)."""
    linears = layer_linears(model)
    if targets == ["all-linear"]:
        return linears
    names = {linear.name for linear in linears}
    unknown = [t for t in targets if t not in names]
    if unknown:
        raise BadInput(
            f"--lora-targets: '{unknown[0]}' is not a projection of {model.name}; use all-linear or some of {','.join(sorted(names))}"
        )
    return [linear for linear in linears if linear.name in targets]


def norms_per_layer(model: ModelSpec) -> int:
    return 4 if model.architecture == "gemma2" else 2  # Gemma 2 adds post-attention/post-MLP norms


def param_counts(model: ModelSpec) -> dict[str, int]:
    """Parameters by storage class: the decoder projections (quantizable) and everything else."""
    h, layers = model.hidden_size, model.num_hidden_layers
    linear = sum(lin.params for lin in layer_linears(model)) * layers
    embeddings = model.vocab_size * h * (1 if model.tie_word_embeddings else 2)
    norms = (norms_per_layer(model) * layers + 1) * h
    biases = 0
    if model.architecture == "qwen2":  # q/k/v projections carry biases
        biases = layers * (model.num_attention_heads + 2 * model.num_key_value_heads) * head_dim(model)
    return {"linear": linear, "embeddings": embeddings, "other": norms + biases}


def total_params(model: ModelSpec) -> int:
    return sum(param_counts(model).values())


def lora_params(model: ModelSpec, settings: Settings) -> int:
    """LoRA adds A (r x in) and B (out x r) to every targeted projection of every layer."""
    per_layer = sum(settings.lora_r * (lin.in_features + lin.out_features) for lin in targeted(model, settings.lora_targets))
    return per_layer * model.num_hidden_layers


def layer_activation_bytes_per_token(model: ModelSpec, settings: Settings, device: str = "cuda") -> float:
    """Bytes one decoder layer saves for backward per token (Korthikanti et al. 2022, "Reducing
    Activation Recomputation in Large Transformer Models", §4.1, redone for a Llama-style layer:
    RMSNorm, GQA attention without an S x S matrix (SDPA/flash), SwiGLU MLP, frozen 4-bit/16-bit
    projections that save no input, and LoRA, which saves its input)."""
    a = DTYPE_BYTES[settings.compute_dtype]
    h, inter = model.hidden_size, model.intermediate_size
    q_out = model.num_attention_heads * head_dim(model)
    kv_out = model.num_key_value_heads * head_dim(model)
    seq = settings.seq_len
    # RMSNorm (modeling_llama.py) saves the fp32 copy of its input (for the variance and the scaling).
    total = norms_per_layer(model) * 4 * h
    # Attention: SDPA saves q, k, v (GQA heads repeated by HF when a mask is passed) and its output;
    # flash-attn keeps k/v at kv size. Eager materialises softmax(QK^T) in fp32 and a 16-bit copy.
    if settings.attn == "flash":
        total += a * (2 * q_out + 2 * kv_out)
    else:
        total += a * 3 * q_out + a * q_out
    if settings.attn == "eager":
        total += (4 + a) * model.num_attention_heads * seq
    # SwiGLU MLP: gate output (saved by SiLU), SiLU output and up output (saved by the product).
    total += 3 * a * inter
    # LoRA saves its input per wrapped projection: peft casts it to the fp32 adapter dtype, dropout
    # keeps its mask (CUDA's fused dropout a bool; the CPU path an fp32 noise tensor), and autocast's
    # 16-bit copy is what lora_A saves, so projections reading the same tensor do not share it.
    # Plus the r-wide lora_A output that lora_B saves.
    wrapped = targeted(model, settings.lora_targets)
    mask = 0 if settings.lora_dropout == 0 else (4 if device == "cpu" else 1)
    total += sum((a + mask) * lin.in_features for lin in wrapped)
    total += a * settings.lora_r * len(wrapped)
    return total


def logits_bytes_per_token(model: ModelSpec, settings: Settings) -> float:
    """The loss phase per token (LOSS_BYTES_PER_LOGIT per vocabulary entry); Gemma 2's final tanh
    soft-cap keeps two more 16-bit copies of the logits for its backward."""
    a = DTYPE_BYTES[settings.compute_dtype]
    per_logit = LOSS_BYTES_PER_LOGIT + (2 * a if model.final_logit_softcapping else 0)
    return per_logit * model.vocab_size


def static_bytes(model: ModelSpec, settings: Settings) -> dict[str, float]:
    """Weights, adapters, gradients and optimizer states per GPU: alive for the whole step."""
    a = DTYPE_BYTES[settings.compute_dtype]
    counts = param_counts(model)
    shards = settings.gpus if settings.strategy == "fsdp" else 1
    if settings.method == "qlora":
        per_weight = NF4_DQ_BYTES if settings.double_quant else NF4_BYTES
        base = counts["linear"] * per_weight
        leftover = (counts["embeddings"] + counts["other"]) * KBIT_LEFTOVER_BYTES
    else:  # 16-bit LoRA: every frozen weight in the compute dtype
        base = counts["linear"] * a
        leftover = (counts["embeddings"] + counts["other"]) * a
    trainable = lora_params(model, settings)
    breakdown: dict[str, float] = {
        "base_weights": base / shards,
        "base_16bit": leftover / shards,
        "lora_weights": trainable * LORA_PARAM_BYTES / shards,
        "lora_grads": trainable * LORA_PARAM_BYTES / shards,
        "optimizer": trainable * OPTIMIZER_STATE_BYTES[settings.optimizer] / shards,
    }
    if settings.strategy == "ddp" and settings.gpus > 1:
        breakdown["ddp_buckets"] = trainable * LORA_PARAM_BYTES  # DDP's flat gradient buckets
    if settings.strategy == "fsdp" and settings.gpus > 1:
        # FSDP gathers one layer's full weights and prefetches the next.
        breakdown["fsdp_gather"] = 2 * (base + trainable * LORA_PARAM_BYTES) / model.num_hidden_layers
    return breakdown


@dataclass(frozen=True)
class Phases:
    """What a step holds on top of the static bytes, per phase (see the module docstring)."""

    saved: float  # activations kept for backward (incl. the embedding output)
    loss: float  # the loss phase: logits and their copies
    layer: float  # one layer's recompute + backward temporaries
    optimizer: float  # the optimizer step's temporaries


def phases(model: ModelSpec, settings: Settings, device: str) -> Phases:
    """The dynamic memory of one micro batch: saved activations and each phase's temporaries."""
    a = DTYPE_BYTES[settings.compute_dtype]
    tokens = settings.micro_batch * settings.seq_len
    per_layer = layer_activation_bytes_per_token(model, settings, device) * tokens
    h = model.hidden_size
    largest = max(lin.params for lin in layer_linears(model))
    # The residual stream: with fp32 embeddings (QLoRA after prepare_model_for_kbit_training) every
    # residual add promotes to fp32, so layer inputs and their gradients are fp32 too.
    residual = KBIT_LEFTOVER_BYTES if settings.method == "qlora" else a
    # Backward temporaries of one layer: gradients of the MLP intermediates and of the hidden state,
    # plus (4-bit) the dequantised weight of the projection being differentiated.
    backward_temp = (a * 3 * model.intermediate_size + residual * 4 * h) * tokens
    if settings.method == "qlora":
        backward_temp += largest * a
    if settings.grad_ckpt:
        # Only each layer's input is kept; backward recomputes one layer at a time.
        saved = model.num_hidden_layers * residual * h * tokens
        layer_phase = per_layer + backward_temp
    else:
        saved = model.num_hidden_layers * per_layer
        layer_phase = backward_temp
    embedding_out = residual * h * tokens
    # Under autocast a fp32 lm_head is cast to 16-bit for its matmul, forward and backward.
    lm_head_cast = model.vocab_size * h * a if (settings.method == "qlora" and a < 4) else 0
    # The final norm saves its (residual-dtype) input, the lm_head its 16-bit input.
    loss_phase = logits_bytes_per_token(model, settings) * tokens + lm_head_cast + (residual + a) * h * tokens
    shards = settings.gpus if settings.strategy == "fsdp" else 1
    optimizer_phase = lora_params(model, settings) * OPTIMIZER_STEP_TEMP_BYTES[settings.optimizer] / shards
    return Phases(saved + embedding_out, loss_phase, layer_phase, optimizer_phase)


def estimate(model: ModelSpec, settings: Settings, hardware: Hardware) -> MemoryEstimate:
    """Bytes per component per GPU at the peak of a training step (see the module docstring).

    Pure arithmetic over settings the caller has checked (gpudoctor.settings.check_values: the
    CLI, run.yaml and the planner all do)."""
    breakdown = static_bytes(model, settings)
    step = phases(model, settings, hardware.device)
    breakdown["activations"] = step.saved
    # The peak is whichever phase holds more on top of the saved activations.
    if step.loss >= step.layer:
        breakdown["logits"] = step.loss
    else:
        breakdown["layer_backward"] = step.layer
    dynamic = step.saved + max(step.loss, step.layer)
    if step.optimizer > dynamic:
        breakdown["optimizer_step"] = step.optimizer - dynamic
        dynamic = step.optimizer

    allocated = sum(breakdown.values())
    breakdown["allocator_overhead"] = FRAGMENTATION * dynamic
    breakdown["cuda_context"] = CPU_PROCESS_BYTES if hardware.device == "cpu" else GPU_CONTEXT_BYTES
    reserved = allocated + breakdown["allocator_overhead"] + breakdown["cuda_context"]
    return MemoryEstimate(
        breakdown_bytes={key: int(value) for key, value in breakdown.items()},
        peak_allocated_bytes=int(allocated),
        peak_reserved_bytes=int(reserved),
        budget_bytes=hardware.budget_bytes,
    )
