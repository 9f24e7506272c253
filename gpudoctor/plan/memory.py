"""The memory model: bytes per component per GPU for a LoRA/QLoRA run, exact to the training recipe.

Pure arithmetic over a ModelSpec, Settings, Hardware, the recipe (who trains: gpudoctor's own lean
loop, TRL, Axolotl, Answer.AI's fsdp_qlora, or a Recipe a caller spells out) and the versions of the
libraries whose behaviour changes bytes. It models what is alive at the step's peak, not a rule of
thumb:

    peak_allocated = static + dynamic                       (torch.cuda.max_memory_allocated)
        static  = base weights + 16-bit/fp32 leftovers + LoRA weights + LoRA grads + optimizer states
        dynamic = max over the step's phases of what is alive then:
            loss phase:   saved activations (or checkpoints) + the final norm and lm_head inputs + the loss
                          (LitGPT's chunked lm_head: the largest of its moments, the previous micro batch's
                          graph included where the loop still references it)
            layer phase:  checkpoints + one layer recomputed + its backward temporaries (+ held logits)
            optimizer:    the optimizer's step temporaries (activations are gone by then)
    peak_reserved  = peak_allocated + what the caching allocator holds free at that peak
                                                            (torch.cuda.max_memory_reserved)
    device_used    = peak_reserved + CUDA/HIP context       (what nvidia-smi / amd-smi show)

A recipe decides the dtypes that flow through a decoder layer. peft.prepare_model_for_kbit_training
casts norms, embeddings and lm_head to fp32; an RMSNorm with an fp32 weight returns fp32, a 4-bit
layer returns its input's dtype, and a residual add promotes, so the whole residual stream, every
gradient checkpoint and the MLP intermediates become fp32. Recipes that keep those weights in 16 bits
keep all of it 16-bit. The tests hold each term against what torch really saves and allocates on the
CPU (tests/plan/test_memory.py) and the whole model against published peaks (tests/plan/measurements.yaml).

Sources are cited beside each formula. GiB = 1024**3 throughout.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from gpudoctor.errors import BadInput
from gpudoctor.plan.types import Hardware, MemoryEstimate
from gpudoctor.settings import RECIPES, Settings
from gpudoctor.types import GIB, ModelSpec

DTYPE_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}

# QLoRA (Dettmers et al. 2023, §3 "Double Quantization"; bitsandbytes functional.quantize_4bit,
# blocksize 64): 4-bit codes plus one fp32 absmax per 64 weights = 0.5 + 4/64 bytes per weight;
# double quantization stores the absmax in 8 bits with one fp32 constant per 256 of them.
NF4_BYTES = 0.5 + 4 / 64
NF4_DQ_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)

# Adam keeps two states per trainable weight: torch's AdamW in the parameter's dtype (fp32 adapters: 8
# bytes, bf16 adapters: 4), bitsandbytes' 32-bit optimizers always in fp32 (8), its 8-bit ones in
# blockwise 8 bits (2) (bitsandbytes/optim/optimizer.py, Optimizer2State.init_state).
OPTIMIZER_STATES = {"adamw_torch": 2, "adamw_torch_fused": 2, "paged_adamw_32bit": 8, "adamw_8bit": 2, "paged_adamw_8bit": 2}
PARAM_DTYPE_STATES = ("adamw_torch", "adamw_torch_fused")  # these count states (x param bytes), the others bytes
# torch.optim.AdamW (foreach) allocates about two temporaries per weight in the weight's dtype
# during step(); the fused AdamW and bitsandbytes' optimizers update in one kernel.
OPTIMIZER_STEP_TEMPS = {"adamw_torch": 2, "adamw_torch_fused": 0, "paged_adamw_32bit": 0, "adamw_8bit": 0, "paged_adamw_8bit": 0}

# CUDA/HIP context, cuBLAS/cuDNN handles and kernels: outside torch's allocator, inside
# nvidia-smi's figure (PyTorch "CUDA semantics" notes; typically 0.3-0.6 GiB with lazy loading).
GPU_CONTEXT_BYTES = int(0.5 * GIB)
# On the CPU: the Python process itself. Measured on this project's stack (torch 2.13 CPU,
# transformers 5.24): 0.46 GiB resident after importing torch/transformers/peft/bitsandbytes and
# ~0.77 GiB beyond the model's own bytes in a Trainer run (bench/plan_vs_measured.py --device cpu).
CPU_PROCESS_BYTES = int(0.8 * GIB)


# ---------------------------------------------------------------------------------------------
# Library versions that change bytes. The planner reads the installed ones (package metadata only,
# never an import) when one matters; estimate() takes them as an argument, today's by default.


@dataclass(frozen=True)
class Versions:
    bitsandbytes: str = "0.50.2"
    transformers: str = "5.24.0"
    peft: str = "0.21.2"
    trl: str = "1.9.0"


TODAY = Versions()


def at_least(version: str, minimum: str) -> bool:
    """'0.43.1' >= '0.43.2'? Numeric release parts only (pre/dev suffixes count as the release)."""

    def parts(text: str) -> tuple[int, ...]:
        return tuple(int(p) for p in re.findall(r"\d+", text.split("+")[0])[:3])

    return parts(version) >= parts(minimum)


def installed_versions(names: tuple[str, ...] = ("bitsandbytes", "transformers", "peft", "trl"), base: Versions = TODAY) -> Versions:
    """`base` with the installed version of each distribution in `names` (importlib.metadata, no import of
    the package itself); a package that is not installed keeps base's (today's) version."""
    import importlib.metadata

    found = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return replace(base, **found)


def versions_that_matter(settings: Settings, checkpointing_choices: tuple[bool, ...] = (True,)) -> tuple[str, ...]:
    """The distributions whose version changes this plan's bytes (read only those)."""
    names = []
    if settings.method == "qlora" and False in checkpointing_choices:
        names.append("bitsandbytes")  # < 0.43.2 saves each 4-bit layer's input
    if settings.recipe != "gpudoctor":
        names += ["transformers", "peft"]  # the HF loss; the adapters' dtype
    if settings.recipe == "trl":
        names.append("trl")
    return tuple(names)


# ---------------------------------------------------------------------------------------------
# Losses: bytes per logit at the peak of the loss's forward and backward, and what the caching allocator
# reserves for them. Counted tensor by tensor, profiled on the CPU and replayed through the CUDA caching
# allocator's policy (tests/plan/test_memory.py::test_loss_bytes_per_logit_match_the_profiled_losses,
# tests/plan/caching_allocator.py).


@dataclass(frozen=True)
class Loss:
    """What a cross-entropy over the vocabulary keeps alive, in bytes per logit.

    peaks[(several rows, output held)] = (allocated, reserved) at the loss's peak: the 16-bit lm_head output,
    its fp32 upcast, a contiguous copy of logits[..., :-1, :] (with one row the slice is already contiguous
    and nothing is copied), the saved log-softmax, its gradient and its input's gradient; reserved adds the
    blocks the caching allocator holds free because a later buffer did not fit an earlier one's;
    held: what the model output a loop keeps referenced holds through the rest of backward;
    chunk_tokens: only this many tokens' logits exist at a time (0: all of them), peaks per chunk logit
    (chunk_per_row: this many positions of every row, as LitGPT splits the sequence dimension);
    whole: (allocated, reserved) per logit of the whole sequence a chunked loss still keeps (LitGPT);
    head_copy: bytes per lm_head weight of a copy the loss makes for its matmul (TRL's fp32 chunks)."""

    peaks: dict[tuple[bool, bool], tuple[float, float]]
    held: float = 0
    chunk_tokens: int = 0
    whole: tuple[float, float] = (0, 0)
    head_copy: float = 0
    chunk_per_row: bool = False

    def chunk(self, micro_batch: int, seq_len: int) -> int:
        """Tokens whose logits exist at once: a chunk of the flattened tokens, or of every row's positions."""
        tokens = micro_batch * seq_len
        if not self.chunk_tokens:
            return tokens
        return min(tokens, self.chunk_tokens * (micro_batch if self.chunk_per_row else 1))

    def peak(self, micro_batch: int, holds_outputs: bool) -> tuple[float, float]:
        return self.peaks[(micro_batch > 1, holds_outputs)]


def _same(allocated: float, reserved: float) -> dict[tuple[bool, bool], tuple[float, float]]:
    return {(rows, held): (allocated, reserved) for rows in (False, True) for held in (False, True)}


LOSSES = {
    # transformers >= 4.49 ForCausalLMLoss (loss/loss_utils.py): logits.float(), the labels padded and
    # shifted instead of the logits. Forward 2 + 4 + 4, backward 4 + 4 + 4; held: the 16-bit logits.
    "hf": Loss({(False, False): (12, 14), (True, False): (12, 14), (False, True): (14, 14), (True, True): (14, 14)}, held=2),
    # transformers 4.46-4.48 ForCausalLMLoss: logits.float() then logits[..., :-1, :].contiguous().
    "hf-shift": Loss({(False, False): (12, 14), (True, False): (14, 18), (False, True): (14, 14), (True, True): (14, 18)}, held=2),
    # transformers <= 4.45 LlamaForCausalLM.forward: logits = logits.float() returned in the output, then
    # the shifted copy; a loop that keeps the output keeps the fp32 logits through backward.
    "hf-fp32-logits": Loss({(False, False): (12, 14), (True, False): (14, 18), (False, True): (16, 22), (True, True): (16, 22)}, held=4),
    # gpudoctor train/loss.py: lm_head + upcast + cross-entropy over CHUNK_TOKENS label tokens at a time
    # under torch.utils.checkpoint, recomputed in backward: 2 + 4 + 4 forward, 4 + 4 + 4 backward per chunk logit.
    "chunked": Loss(_same(12, 18), chunk_tokens=1024),
    # TRL >= 1.7 loss_type="chunked_nll" (trl/trainer/sft_trainer.py, _chunked_cross_entropy_loss): 256
    # valid tokens a chunk, checkpointed; h.float() @ w.float().t() (an fp32 copy of lm_head), log_softmax,
    # argmax and the entropy's exp(log_p) * log_p, all in fp32.
    "trl-chunked": Loss(_same(18, 18), chunk_tokens=256, head_copy=4),
    # LitGPT (chunked_cross_entropy, bf16-true): lm_head in chunks of 128 positions whose 16-bit logits all
    # stay in a list, each chunk's 16-bit log-softmax saved (4 per logit of the whole sequence); a chunk's
    # backward adds its gradient and its input's (2 + 2). Every term is in the dtype of the logits the loss
    # gets: with Recipe.fp32_output (Lightning's convert_output) each doubles (litgpt_moments).
    "litgpt": Loss(_same(4, 9), chunk_tokens=128, whole=(4, 4), chunk_per_row=True),
    # torchtune 2024 recipes: logits = model(x) (.float() in TransformerDecoder), the shifted contiguous
    # copy kept in the loop's `logits` through backward, CrossEntropyLoss over (B, V, S).
    "torchtune": Loss({(False, True): (16, 22), (True, True): (16, 18), (False, False): (16, 22), (True, False): (16, 18)}, held=4),
    # Qwen-7B (modeling_qwen.py): CrossEntropyLoss over the contiguous 16-bit shifted logits; under
    # autocast cross_entropy runs in fp32 (a cast copy and an fp32 log-softmax).
    "hf-16bit-ce": Loss({(False, False): (12, 14), (True, False): (12, 16), (False, True): (14, 14), (True, True): (14, 16)}, held=2),
}


def hf_loss(transformers: str) -> str:
    """The LOSSES key of transformers' own causal-LM loss in this version."""
    if at_least(transformers, "4.49"):
        return "hf"
    return "hf-shift" if at_least(transformers, "4.46") else "hf-fp32-logits"


# ---------------------------------------------------------------------------------------------
# Recipes.


# bitsandbytes' MatMul4Bit.backward computes grad_A = grad_output @ dequantize_4bit(W).to(grad_output.dtype)
# (bitsandbytes/autograd/_functions.py, every version from 0.39 to today; before 0.45 the forward did the same):
# the whole weight exists in 16 bits while that matmul runs. dequantize_4bit returns quant_state.dtype, the
# dtype the weight was quantized from; transformers quantizes the loaded bf16/fp16 weight, so the cast is a no-op
# (2 bytes per weight). Lightning's BitsandbytesPrecision quantizes from fp16 (`weight.to(dtype=torch.half)` in
# _Linear4bit.quantize), so a bf16 run holds the fp16 copy and its bf16 cast at once (4 bytes per weight).
DEQUANT_BYTES = {"same": 2, "fp16-to-bf16": 4}


@dataclass(frozen=True)
class Recipe:
    """The dtypes and code paths of one training recipe that change bytes (sizes in bytes per value).

    norm/embed/lm_head: the dtype of those weights while training; adapter: the LoRA weights' dtype;
    autocast: forward under torch.autocast (mixed precision) rather than the model itself in 16 bits;
    holds_outputs: the loop keeps the model output (the logits) referenced through backward;
    norm_upcast: RMSNorm computes in fp32 and saves an fp32 copy of its input (LlamaRMSNorm);
    fused_qkv_lora: LoRA on a fused qkv projection with one dropout (LitGPT's LoRAQKVLinear);
    saves_4bit_input: the 4-bit matmul saves its input (bitsandbytes < 0.43.2);
    head_4bit: the lm_head is quantized too (Lightning's BitsandbytesPrecision replaces every nn.Linear);
    dequant: bytes per weight of the whole-weight copy a 4-bit matmul's backward makes (see DEQUANT_BYTES);
    keeps_previous_step: the loop still references the previous micro batch's graph (through its model
      output) while the next forward runs, so that output and what the graph's nodes hold outside
      save_for_backward (bitsandbytes < 0.43.2's 4-bit inputs) are alive at the next forward's end
      (LitGPT 2024's finetune/lora.py; see previous_step_bytes); modelled for the LitGPT loss;
    fp32_output: the model's output (the logits) is cast to fp32 before the loss (Lightning Fabric's
      _FabricModule.forward -> precision.convert_output, to torch.get_default_dtype()); modelled for
      the LitGPT loss, which then keeps fp32 logits and an fp32 log-softmax;
    fsdp_holds_layer_inputs: under FSDP with checkpointing, every decoder layer keeps its recomputed input
      and that input's gradient until backward ends (transformers 4.39-4.51's Trainer; see
      fsdp_held_input_grads)."""

    name: str
    loss: str
    norm: int = 2
    embed: int = 2
    lm_head: int = 2
    adapter: int = 4
    autocast: bool = True
    holds_outputs: bool = False
    norm_upcast: bool = True
    fused_qkv_lora: bool = False
    saves_4bit_input: bool = False
    head_4bit: bool = False
    dequant: int = DEQUANT_BYTES["same"]
    keeps_previous_step: bool = False
    fp32_output: bool = False
    fsdp_holds_layer_inputs: bool = False


def sharded(settings: Settings) -> bool:
    """FSDP over more than one process: the weights, gradients and optimizer states are split."""
    return settings.strategy == "fsdp" and settings.world_size > 1


def recipe_for(settings: Settings, versions: Versions = TODAY) -> Recipe:
    """The Recipe that settings.recipe names, resolved for these settings and library versions.

    gpudoctor: the launcher's lean recipe (gpudoctor/train): norms, embeddings and lm_head in the compute
      dtype, fp32 LoRA adapters, mixed precision, the chunked cross-entropy.
    trl: TRL's SFTTrainer. Before 0.26 it ran peft.prepare_model_for_kbit_training on a 4-bit model (every
      non-4-bit weight to fp32) and, with bf16, peft_module_casting_to_bf16 (embeddings and lm_head back to
      bf16, norms stay fp32); sharded QLoRA (FSDP/ZeRO-3) skipped both and kept bf16 adapters
      (trl/trainer/sft_trainer.py, v0.13-v0.25). From 0.26 it prepares nothing and casts QLoRA adapters
      to bf16; from 1.7 its default loss is chunked_nll.
    axolotl: prepare_model_for_kbit_training, then norms, embed_tokens and lm_head back to the torch dtype
      for any LoRA/QLoRA run (src/axolotl/loaders/model.py, _configure_embedding_dtypes and
      _convert_embedding_modules_dtype, commit 067b021c); QLoRA+FSDP skips the preparation.
    fsdp-qlora: Answer.AI's train.py: the model in bf16 throughout (quant_storage bf16, no autocast, no
      prepare), LoRA layers in the base dtype, the output held through backward.
    trl and axolotl train through transformers' Trainer: with transformers 4.39-4.51 under FSDP each
      decoder layer's input and its gradient live to the end of backward (fsdp_holds_layer_inputs)."""
    a = DTYPE_BYTES[settings.compute_dtype]
    kbit = settings.method == "qlora"
    old_bnb = kbit and not at_least(versions.bitsandbytes, "0.43.2")
    loss = hf_loss(versions.transformers)
    # peft 0.6-0.11 moved new adapters to the base weight's float dtype (a 4-bit weight is not float, so
    # those stayed fp32); 0.12 added get_peft_model(autocast_adapter_dtype=True), fp32 again.
    peft_adapter = 4 if (kbit or at_least(versions.peft, "0.12") or not at_least(versions.peft, "0.6")) else a
    common = {"norm": a, "embed": a, "lm_head": a, "saves_4bit_input": old_bnb}
    if settings.recipe == "gpudoctor":
        return Recipe("gpudoctor", "chunked", adapter=4, **common)
    if settings.recipe == "fsdp-qlora":
        return Recipe("fsdp-qlora", loss, adapter=a, autocast=False, holds_outputs=True, **common)
    trainer = {"fsdp_holds_layer_inputs": trainer_holds_fsdp_layer_inputs(versions)}
    if settings.recipe == "axolotl":
        return Recipe("axolotl", loss, adapter=peft_adapter, **common, **trainer)
    if at_least(versions.trl, "0.26"):
        trl_loss = "trl-chunked" if at_least(versions.trl, "1.7") else loss
        return Recipe("trl", trl_loss, adapter=a if kbit else peft_adapter, **common, **trainer)
    if kbit and not sharded(settings):
        head = a if settings.compute_dtype == "bf16" else 4  # peft_module_casting_to_bf16 only with bf16
        return Recipe("trl", loss, norm=4, embed=head, lm_head=head, adapter=peft_adapter, saves_4bit_input=old_bnb, **trainer)
    return Recipe("trl", loss, adapter=a if (kbit and sharded(settings)) else peft_adapter, **common, **trainer)


def trainer_holds_fsdp_layer_inputs(versions: Versions) -> bool:
    """Whether transformers' Trainer, under FSDP with gradient checkpointing, keeps every decoder layer's
    input and its gradient until backward ends (measured on the CPU: bench/fsdp_retention.py).

    From 4.39 the Trainer wraps a PEFT LoRA model with peft's fsdp_auto_wrap_policy (_fsdp_qlora_plugin_
    updates): the LoRA Linears are units of their own, so a decoder layer's flat parameter is frozen and
    FSDP reshards it from a multi-grad hook on the layer's inputs (torch _register_post_backward_reshard_
    only_hook, PR 101982). Before 4.52 the model's forward checkpoints around the FSDP unit with the
    reentrant checkpoint (the default until 5.0), so the unit's inputs are the recomputation's detached
    leaves: the hook's AccumulateGrad node keeps each leaf, and the gradient accumulated into its .grad,
    alive until FSDP's final callback drops the hook state. From 4.52 (GradientCheckpointingLayer) the
    checkpoint runs inside the unit, on the layer's real input, and nothing is kept."""
    return at_least(versions.transformers, "4.39") and not at_least(versions.transformers, "4.52")


def recipe_named(name: str) -> None:
    if name not in RECIPES:
        raise BadInput(f"--recipe: unknown recipe '{name}'; use one of {', '.join(RECIPES)}")


# ---------------------------------------------------------------------------------------------
# The model's shapes.


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
    if model.architecture == "qwen":  # Qwen (v1) modeling_qwen.py: fused c_attn (qkv), w1/w2, c_proj
        return [
            Linear("qkv_proj", h, q_out + 2 * kv_out),
            Linear("o_proj", q_out, h),
            Linear("gate_proj", h, inter),
            Linear("up_proj", h, inter),
            Linear("down_proj", inter, h),
        ]
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


# Which projections read the same tensor: the first norm's output, the attention output, the
# second norm's output, the MLP product (modeling_llama.py LlamaDecoderLayer / LlamaMLP).
INPUT_GROUPS = (("norm", ("q_proj", "k_proj", "v_proj", "qkv_proj")), ("attn", ("o_proj",)), ("norm", ("gate_proj", "up_proj", "gate_up_proj")), ("mlp", ("down_proj",)))


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
    """Parameters by storage class: the decoder projections (quantizable), embeddings and lm_head, the rest."""
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


def lora_params_per_layer(model: ModelSpec, settings: Settings) -> int:
    return sum(settings.lora_r * (lin.in_features + lin.out_features) for lin in targeted(model, settings.lora_targets))


def lora_params(model: ModelSpec, settings: Settings) -> int:
    """LoRA adds A (r x in) and B (out x r) to every targeted projection of every layer."""
    return lora_params_per_layer(model, settings) * model.num_hidden_layers


# ---------------------------------------------------------------------------------------------
# One decoder layer: which dtype each tensor has, and what autograd saves of it.


@dataclass(frozen=True)
class Flow:
    """Bytes per value of the tensors in one decoder layer under a recipe.

    input: the layer's input (the residual stream); norm: what the RMSNorms return (a 16-bit input times
    an fp32 weight is fp32: LlamaRMSNorm returns weight * x.to(input_dtype)); mlp: the projections'
    outputs (bitsandbytes' Linear4bit returns its input's dtype, an autocast nn.Linear the compute dtype);
    output: the layer's output (the residual adds promote)."""

    input: int
    norm: int
    mlp: int
    output: int


def layer_flow(settings: Settings, recipe: Recipe, residual: int) -> Flow:
    a = DTYPE_BYTES[settings.compute_dtype]
    norm = max(recipe.norm, residual)
    if settings.method == "qlora":
        mlp = norm  # bitsandbytes Linear4bit.forward: matmul_4bit(x.to(compute_dtype)).to(inp_dtype)
    else:
        mlp = a if recipe.autocast else norm
    return Flow(residual, norm, mlp, max(residual, mlp, a))


def flows(model: ModelSpec, settings: Settings, recipe: Recipe) -> list[Flow]:
    """The first layer's flow (its input is the embedding output) and the steady one after it."""
    embed = DTYPE_BYTES[settings.compute_dtype] if settings.method == "lora" else recipe.embed
    first = layer_flow(settings, recipe, embed)
    return [first, layer_flow(settings, recipe, first.output)]


def _group_width(model: ModelSpec, group: str) -> int:
    return {"norm": model.hidden_size, "attn": model.num_attention_heads * head_dim(model), "mlp": model.intermediate_size}[group]


def group_saved_bytes(width: int, dtype: int, members: int, wrapped: int, settings: Settings, recipe: Recipe, device: str, held: bool = False) -> float:
    """Bytes per token saved of one tensor x that `members` projections read, `wrapped` of them with LoRA
    (`held`: x itself is saved by another op already, as SDPA saves its output, o_proj's input).

    peft's LoRA runs lora_B(lora_A(dropout(x))) after casting x to the adapters' dtype: always in
    lora.Linear (tuners/lora/layer.py), and in the 4-bit bnb.Linear4bit only when autocast is off
    (tuners/lora/bnb.py checks torch.is_autocast_enabled(), CUDA's flag, so on the CPU it always casts).
    Under autocast lora_A then saves its own 16-bit cast of that; without autocast the cast itself. A
    projection that makes no copy saves x itself, one tensor for all projections reading it. A dropout
    gives every projection its own output and mask (CUDA: a bool; CPU: a noise tensor in its dtype).
    bitsandbytes before 0.43.2 saved each 4-bit matmul's input, x.to(compute_dtype) (MatMul4Bit)."""
    a = DTYPE_BYTES[settings.compute_dtype]
    dropout = settings.lora_dropout > 0
    shared = False  # LoRA saves x itself
    lora = 0.0
    if wrapped:
        convert = settings.method == "lora" or not recipe.autocast or device == "cpu"
        cast = recipe.adapter if convert else dtype
        saved = a if recipe.autocast else cast
        shared = cast == dtype and saved == dtype and not dropout
        mask = (1 if device != "cpu" else cast) if dropout else 0
        lora = (0 if held else dtype * width) if shared else wrapped * (saved + mask) * width
    quant = 0.0
    if settings.method == "qlora" and recipe.saves_4bit_input:
        quant = (0 if (shared or held) else a * width) if dtype == a else members * a * width
    return lora + quant


def layer_saved_bytes(model: ModelSpec, settings: Settings, recipe: Recipe, flow: Flow, device: str, input_held: bool) -> tuple[float, float]:
    """(bytes per token, bytes per layer) one decoder layer saves for backward (Korthikanti et al. 2022,
    "Reducing Activation Recomputation in Large Transformer Models", §4.1, redone for a Llama layer with
    frozen projections: those save no input; LoRA does). `input_held`: the layer's input is kept anyway
    (a gradient checkpoint), so an RMSNorm that saves the input itself adds nothing."""
    a = DTYPE_BYTES[settings.compute_dtype]
    h, inter, heads = model.hidden_size, model.intermediate_size, model.num_attention_heads
    q_out, kv_out = heads * head_dim(model), model.num_key_value_heads * head_dim(model)
    # RMSNorm saves the fp32 version of its input (LlamaRMSNorm upcasts; an fp32 input is saved itself)
    # and its fp32 rsqrt; LitGPT's normalises in the input's dtype and saves the input.
    norm_in = 4 if recipe.norm_upcast else flow.input
    first = 0 if (input_held and norm_in == flow.input) else norm_in * h
    total = first + (norms_per_layer(model) - 1) * (4 if recipe.norm_upcast else flow.output) * h + 4 * norms_per_layer(model)
    # Attention: SDPA/flash save q, k, v (16-bit: autocast casts an fp32 q) and the output, plus the
    # fp32 log-sum-exp per head; HF repeats grouped k/v heads for SDPA when a mask is passed. Eager
    # materialises softmax(QK^T) in fp32 and a 16-bit copy.
    total += a * (2 * q_out + 2 * kv_out) if settings.attn == "flash" else a * 4 * q_out
    total += 4 * heads if settings.attn != "eager" else (4 + a) * heads * settings.seq_len
    # SwiGLU MLP: the gate output (saved by SiLU), the SiLU output and the up output (saved by the product).
    total += 3 * flow.mlp * inter
    total += _projection_inputs(model, settings, recipe, flow, device)
    per_layer = 0.0
    if recipe.autocast and recipe.adapter > a:  # autocast's 16-bit copies of the fp32 adapters
        per_layer = a * lora_params_per_layer(model, settings)
    return total, per_layer


def _fused_qkv_lora_extra(model: ModelSpec, settings: Settings, names: set[str]) -> float:
    """LitGPT's LoRAQKVLinear (lit_gpt/lora.py): zero_pad's index_copy keeps lora_B's output (the enabled
    q/k/v widths), and with ungrouped heads v stays a view of the fused qkv output, so what SDPA saves of v
    keeps all of it (lit_gpt/model.py CausalSelfAttention: qkv.split, reshape without a copy)."""
    a = DTYPE_BYTES[settings.compute_dtype]
    widths = {lin.name: lin.out_features for lin in layer_linears(model)}
    extra = a * sum(widths[n] for n in ("q_proj", "k_proj", "v_proj") if n in names)
    if model.num_key_value_heads == model.num_attention_heads:
        extra += a * (widths["q_proj"] + widths["k_proj"])
    return extra


def _projection_inputs(model: ModelSpec, settings: Settings, recipe: Recipe, flow: Flow, device: str) -> float:
    """What the LoRA adapters (and an old 4-bit matmul) save of the projections' inputs, plus the r-wide
    lora_A outputs that lora_B saves."""
    a = DTYPE_BYTES[settings.compute_dtype]
    names = {lin.name for lin in targeted(model, settings.lora_targets)}
    present = set(linear_names(model))
    dtypes = {"norm": flow.norm, "attn": a, "mlp": flow.mlp}
    total, outputs = 0.0, 0
    for group, members in INPUT_GROUPS:
        members = [m for m in members if m in present]
        if not members:
            continue
        wrapped = sum(1 for m in members if m in names)
        outputs += wrapped
        if recipe.fused_qkv_lora and group == "norm" and "q_proj" in members and wrapped:
            total += _fused_qkv_lora_extra(model, settings, names)
            wrapped = 1
        held = group == "attn" and settings.attn != "eager"  # SDPA/flash save their output, o_proj's input
        total += group_saved_bytes(_group_width(model, group), dtypes[group], len(members), wrapped, settings, recipe, device, held)
    lora_out = a if recipe.autocast else recipe.adapter
    return total + lora_out * settings.lora_r * outputs


# ---------------------------------------------------------------------------------------------
# Static bytes and the step's phases.


def head_quantized(model: ModelSpec, settings: Settings, recipe: Recipe) -> bool:
    return settings.method == "qlora" and recipe.head_4bit and not model.tie_word_embeddings


def dequant_bytes(model: ModelSpec, settings: Settings, recipe: Recipe) -> tuple[float, float]:
    """(in a layer's backward, at the lm_head) the 16-bit copy of the whole weight a 4-bit matmul's backward
    dequantizes (DEQUANT_BYTES): the largest projection's, and the lm_head's where it is quantized."""
    if settings.method != "qlora":
        return 0.0, 0.0
    largest = max(lin.params for lin in layer_linears(model))
    head = model.vocab_size * model.hidden_size if head_quantized(model, settings, recipe) else 0
    return recipe.dequant * largest, recipe.dequant * head


def static_bytes(model: ModelSpec, settings: Settings, recipe: Recipe) -> dict[str, float]:
    """Weights, adapters, gradients and optimizer states per GPU: alive for the whole step."""
    a = DTYPE_BYTES[settings.compute_dtype]
    counts = param_counts(model)
    shards = settings.world_size if settings.strategy == "fsdp" else 1
    nf4 = NF4_DQ_BYTES if settings.double_quant else NF4_BYTES
    base = counts["linear"] * (nf4 if settings.method == "qlora" else a)  # 16-bit LoRA: the projections in the compute dtype
    table = model.vocab_size * model.hidden_size
    head = 0 if model.tie_word_embeddings else table * recipe.lm_head
    if head and head_quantized(model, settings, recipe):
        base, head = base + table * nf4, 0
    leftover = table * recipe.embed + head + counts["other"] * recipe.norm
    trainable = lora_params(model, settings)
    states = OPTIMIZER_STATES[settings.optimizer] * (recipe.adapter if settings.optimizer in PARAM_DTYPE_STATES else 1)
    breakdown: dict[str, float] = {
        "base_weights": base / shards,
        "base_16bit": leftover / shards,
        "lora_weights": trainable * recipe.adapter / shards,
        "lora_grads": trainable * recipe.adapter / shards,
        "optimizer": trainable * states / shards,
    }
    if settings.strategy == "ddp" and settings.world_size > 1:
        breakdown["ddp_buckets"] = trainable * recipe.adapter  # DDP's flat gradient buckets
    if sharded(settings):
        # FSDP gathers one layer's full weights and prefetches the next; the root unit (embeddings,
        # lm_head, final norm) is not resharded after forward (torch FSDP _post_forward frees the unsharded
        # flat parameter only for non-root handles), so it stays whole through the step.
        layer = (base + trainable * recipe.adapter) / model.num_hidden_layers
        breakdown["fsdp_gather"] = 2 * layer + _fsdp_root_extra(model, settings, recipe)
    return breakdown


@dataclass(frozen=True)
class Phases:
    """What a step holds on top of the static bytes, per phase (see the module docstring), and what the
    caching allocator holds free beside each phase's peak."""

    saved: float  # activations kept for backward: every layer's, or one checkpoint per layer
    loss: float  # the loss phase on top of `saved`: final norm and lm_head inputs, logits and loss
    layer: float  # the layer phase on top of `saved`: one layer recomputed + backward temporaries
    optimizer: float  # the optimizer step's temporaries
    loss_cached: float  # free blocks beside the loss phase's peak
    layer_cached: float  # free blocks beside the layer phase's peak


def retained_4bit_inputs(model: ModelSpec, settings: Settings, recipe: Recipe) -> float:
    """Bytes per token of the 4-bit matmuls' inputs a graph keeps after its backward: bitsandbytes 0.41.0-0.43.1
    MatMul4Bit.forward stores `ctx.tensors = (A, B)` as a plain attribute of the node, not through
    save_for_backward, so backward does not free A and it lives as long as the node does (bitsandbytes
    0.43.2, PR #1270, commit 9e753741, stores (None, B)). One tensor per input group of every layer (the
    projections reading one tensor share it), less layer 0's qkv input: the frozen embedding's output needs
    no grad, and MatMul4Bit then keeps (None, None); plus the final norm's output where the lm_head is 4-bit
    (its chunks are views of it)."""
    if settings.method != "qlora" or not recipe.saves_4bit_input:
        return 0.0
    present = set(linear_names(model))
    per_layer = sum(_group_width(model, group) for group, members in INPUT_GROUPS if present & set(members))
    total = model.num_hidden_layers * per_layer - model.hidden_size
    if head_quantized(model, settings, recipe):
        total += model.hidden_size
    return DTYPE_BYTES[settings.compute_dtype] * total


def output_bytes(settings: Settings, recipe: Recipe) -> int:
    """Bytes per logit of the model output the loss gets: fp32 where Recipe.fp32_output casts it, else the
    compute dtype."""
    return 4 if recipe.fp32_output else DTYPE_BYTES[settings.compute_dtype]


def previous_step_bytes(model: ModelSpec, settings: Settings, recipe: Recipe) -> float:
    """What the previous micro batch still holds while the next forward runs (Recipe.keeps_previous_step).
    LitGPT's finetune/lora.py (00af8b0d L304; the same at 4a9b7e62, 5895df10, f247be87, e5493986) runs
    `logits = model(input_ids, lm_head_chunk_size=128)` and at L320 rebinds `loss` to a float each step,
    so the last step's graph, referenced through `logits`' grad_fn, is freed only once the next forward
    has returned: until then its model output and its nodes' 4-bit inputs (retained_4bit_inputs) are alive."""
    if not recipe.keeps_previous_step:
        return 0.0
    tokens = settings.micro_batch * settings.seq_len
    return tokens * (output_bytes(settings, recipe) * model.vocab_size + retained_4bit_inputs(model, settings, recipe))


def litgpt_moments(model: ModelSpec, settings: Settings, recipe: Recipe) -> dict[str, float]:
    """LitGPT's lm_head over chunks of 128 positions and chunked_cross_entropy: what is alive beyond the head's
    input at each moment that can be the loss phase's peak (profiled on the CPU:
    tests/plan/test_memory.py::test_litgpt_fp32_logits_and_lm_head_moments_match_the_profile).

    With fp32_output, Lightning's _FabricModule.forward casts the returned chunks to fp32 (precision.
    convert_output to torch.get_default_dtype(): lightning 71aed751 (lit-gpt 8641822's pin) fabric/wrappers.py
    L116-123, 2.1.0 L116-124, 2.2.0 L134-142; BitsandbytesPrecision.convert_output, 7e87ce05
    bitsandbytes.py L155-156), so the loss keeps fp32 logits and saves an fp32 log-softmax: the LitGPT
    loss's terms double. forward_end: the 16-bit chunks and their fp32 copies; forward_head: the last
    chunk's matmul dequantizing a 4-bit lm_head beside the chunks before it; head_backward: the output the
    loop holds, every chunk's 16-bit gradient and the dequantized lm_head. The forward moments carry the
    previous micro batch (previous_step_bytes)."""
    a = DTYPE_BYTES[settings.compute_dtype]
    out = output_bytes(settings, recipe)
    loss = LOSSES[recipe.loss]
    logits = settings.micro_batch * settings.seq_len * model.vocab_size
    chunks = -(-settings.seq_len // loss.chunk_tokens)
    head_dequant = dequant_bytes(model, settings, recipe)[1]
    before = previous_step_bytes(model, settings, recipe)
    chunk = loss.chunk(settings.micro_batch, settings.seq_len) * model.vocab_size
    scale = out / a  # every term of the LitGPT loss is in the dtype of the logits it gets
    return {
        "forward_end": before + (a + (out if recipe.fp32_output else 0)) * logits,
        "forward_head": before + a * (1 - 1 / chunks) * logits + head_dequant,
        "loss": scale * (loss.whole[0] * logits + loss.peak(settings.micro_batch, recipe.holds_outputs)[0] * chunk),
        "head_backward": (out + a) * logits + head_dequant,
    }


def loss_bytes(model: ModelSpec, settings: Settings, recipe: Recipe) -> tuple[float, float]:
    """(allocated, cached beside it) of the loss phase without the saved activations: the final RMSNorm's
    and lm_head's saved inputs, an autocast copy of an fp32 lm_head, the logits and what the loss keeps, and
    the lm_head's dequantized copy where it is 4-bit; LitGPT's loss: its largest moment (litgpt_moments)."""
    a = DTYPE_BYTES[settings.compute_dtype]
    h, vocab = model.hidden_size, model.vocab_size
    tokens = settings.micro_batch * settings.seq_len
    last = flows(model, settings, recipe)[1].output
    name = recipe.loss
    if model.final_logit_softcapping and name == "chunked":
        name = hf_loss(TODAY.transformers)  # gpudoctor/train/loss.py keeps transformers' loss for soft-capped logits
    loss = LOSSES[name]
    final_norm = (4 if recipe.norm_upcast else last) * h
    head_input = (a if recipe.autocast else max(recipe.norm, last)) * h
    head_cast = vocab * h * a if (recipe.autocast and recipe.lm_head > a) else 0  # saved for its backward
    chunk = loss.chunk(settings.micro_batch, settings.seq_len)
    allocated, reserved = loss.peak(settings.micro_batch, recipe.holds_outputs)
    if model.final_logit_softcapping and not loss.chunk_tokens:
        allocated, reserved = allocated + 2 * a, reserved + 2 * a  # Gemma 2's tanh soft-cap: two more 16-bit copies
    logits = allocated * chunk * vocab + loss.whole[0] * tokens * vocab + loss.head_copy * vocab * h
    cached = (reserved - allocated) * chunk * vocab + (loss.whole[1] - loss.whole[0]) * tokens * vocab
    head = (final_norm + head_input) * tokens + head_cast
    if loss.chunk_per_row:
        scale = output_bytes(settings, recipe) / a  # the LitGPT loss's terms are in the output's dtype
        return head + max(litgpt_moments(model, settings, recipe).values()), scale * cached
    return head + logits + dequant_bytes(model, settings, recipe)[1], cached


def fsdp_held_input_grads(model: ModelSpec, settings: Settings, recipe: Recipe) -> float:
    """Bytes the layer phase holds at its peak when every decoder layer keeps its input and that input's
    gradient to the end of backward (Recipe.fsdp_holds_layer_inputs): the checkpoints are not freed as
    backward passes them, and at the first layer's backward the gradients of the other layers' inputs are
    all alive, one hidden state each in the residual stream's dtype. Profiled on the CPU under FSDP: the
    peak grows by two hidden states per layer instead of one (bench/fsdp_retention.py,
    tests/plan/test_fsdp_memory.py)."""
    if not (sharded(settings) and settings.grad_ckpt and recipe.fsdp_holds_layer_inputs):
        return 0.0
    steady = flows(model, settings, recipe)[1]
    return (model.num_hidden_layers - 1) * steady.input * model.hidden_size * settings.micro_batch * settings.seq_len


def phases(model: ModelSpec, settings: Settings, recipe: Recipe, device: str) -> Phases:
    """The dynamic memory of one micro batch: saved activations and each phase's temporaries."""
    a = DTYPE_BYTES[settings.compute_dtype]
    tokens = settings.micro_batch * settings.seq_len
    h, layers = model.hidden_size, model.num_hidden_layers
    first, steady = flows(model, settings, recipe)
    if settings.grad_ckpt:
        # Only each layer's input is kept (the embedding output, then each layer's output); backward
        # recomputes one layer at a time.
        saved = (first.input + (layers - 1) * steady.input) * h * tokens
        per_token, per_layer = layer_saved_bytes(model, settings, recipe, steady, device, input_held=True)
        recompute = per_token * tokens + per_layer
    else:
        one, fixed_one = layer_saved_bytes(model, settings, recipe, first, device, input_held=False)
        rest, fixed_rest = layer_saved_bytes(model, settings, recipe, steady, device, input_held=False)
        saved = (one + (layers - 1) * rest) * tokens + fixed_one + (layers - 1) * fixed_rest
        recompute = 0.0
    # One layer's backward at its peak (the MLP's): two MLP-wide gradients in the MLP's dtype in flight
    # while the saved tensors already used are freed, the incoming gradient of the hidden state, and the
    # 16-bit gradient a 4-bit matmul returns before it is cast to an fp32 MLP's dtype (profiled on the CPU:
    # tests/plan/test_memory.py::test_a_whole_training_step_allocates_and_reserves_what_the_estimate_says).
    inter = model.intermediate_size
    backward_temp = (2 * steady.mlp * inter + steady.output * h + (a * inter if steady.mlp > a else 0)) * tokens
    loss = LOSSES[recipe.loss]
    held = loss.held * tokens * model.vocab_size if (recipe.holds_outputs and not loss.chunk_tokens) else 0
    shards = settings.world_size if settings.strategy == "fsdp" else 1
    optimizer = lora_params(model, settings) * OPTIMIZER_STEP_TEMPS[settings.optimizer] * recipe.adapter / shards
    loss_phase, loss_cached = loss_bytes(model, settings, recipe)
    layer_dequant = dequant_bytes(model, settings, recipe)[0]
    backward_temp += layer_dequant  # FSDP gathers the whole weight before the matmul
    backward_temp += fsdp_held_input_grads(model, settings, recipe)
    # The layers' share of the cache: MLP-wide blocks of one layer freed in forward or backward that the
    # next, differently sized requests do not fit (LAYER_CACHED, replayed on the CPU).
    layer_cached = LAYER_CACHED * a * inter * tokens
    # The dequantized weight is allocated and freed at every 4-bit matmul: best fit puts it in one of those
    # free blocks when it fits, so beside the layer phase's peak that much less is free.
    beside_layer = max(0.0, layer_cached - layer_dequant)
    return Phases(saved, loss_phase, recompute + backward_temp + held, optimizer, loss_cached + layer_cached, beside_layer)


# ---------------------------------------------------------------------------------------------
# The caching allocator and the whole estimate.

# Free cached blocks left by the decoder layers' forward and backward, in 16-bit MLP-wide buffers (tokens x
# intermediate_size x 2 bytes): replaying CPU-profiled training steps of small Llama models through the CUDA
# caching allocator's block policy (tests/plan/caching_allocator.py) gives 2.2-5.2 such buffers across the
# recipes, checkpointing on and off; the middle is taken.
LAYER_CACHED = 3.7


def _fsdp_root_extra(model: ModelSpec, settings: Settings, recipe: Recipe) -> float:
    """The root unit (embeddings, lm_head) whole on every GPU, beyond its own shard."""
    table = model.vocab_size * model.hidden_size
    root = table * recipe.embed + (0 if model.tie_word_embeddings else table * recipe.lm_head)
    return root * (1 - 1 / settings.world_size)


def reserved_floor(model: ModelSpec, settings: Settings, recipe: Recipe, versions: Versions) -> float:
    """What loading leaves reserved, on top of nothing else: bytes at the loader's own peak, which the
    caching allocator keeps (torch.cuda.max_memory_reserved counts it) unless it empties its cache.

    peft.prepare_model_for_kbit_training (before peft 0.20, which empties the cache after it) casts each
    16-bit leftover to fp32 while the 16-bit one is still alive: at the last one every leftover is fp32
    and the largest is there in 16 bits too; TRL's peft_module_casting_to_bf16 casts embeddings and
    lm_head back, again with both alive."""
    if settings.method != "qlora" or recipe.norm == DTYPE_BYTES[settings.compute_dtype] == recipe.embed:
        return 0.0
    if at_least(versions.peft, "0.20"):
        return 0.0
    a = DTYPE_BYTES[settings.compute_dtype]
    counts = param_counts(model)
    table = model.vocab_size * model.hidden_size
    base = counts["linear"] * (NF4_DQ_BYTES if settings.double_quant else NF4_BYTES)
    return base + 4 * (counts["embeddings"] + counts["other"]) + a * table


def estimate(model: ModelSpec, settings: Settings, hardware: Hardware, versions: Versions | None = None, recipe: Recipe | None = None) -> MemoryEstimate:
    """Bytes per component per GPU at the peak of a training step (see the module docstring).

    `versions`: the libraries the run uses (default: today's, TODAY); `recipe`: a Recipe that replaces
    the one settings.recipe names (for a trainer outside the four). Pure arithmetic over settings the
    caller has checked (gpudoctor.settings.check_values: the CLI, run.yaml and the planner all do)."""
    versions = versions or TODAY
    recipe = recipe or recipe_for(settings, versions)
    breakdown = static_bytes(model, settings, recipe)
    static = sum(breakdown.values())
    step = phases(model, settings, recipe, hardware.device)
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
    # Reserved: the larger of each phase's peak with the blocks cached beside it, and the loader's floor.
    # FSDP all-gathers in its own stream, whose freed blocks the compute stream does not reuse.
    at_loss = static + step.saved + step.loss + step.loss_cached
    at_layer = static + step.saved + step.layer + step.layer_cached
    reserved = max(allocated, at_loss, at_layer, reserved_floor(model, settings, recipe, versions))
    if "fsdp_gather" in breakdown:
        layer_gathers = breakdown["fsdp_gather"] - _fsdp_root_extra(model, settings, recipe)
        reserved += layer_gathers
    if hardware.device == "cpu":
        reserved = allocated  # glibc returns freed large blocks (mmap threshold): no caching allocator
    breakdown["allocator_overhead"] = reserved - allocated
    breakdown["cuda_context"] = CPU_PROCESS_BYTES if hardware.device == "cpu" else GPU_CONTEXT_BYTES
    return MemoryEstimate(
        breakdown_bytes={key: int(value) for key, value in breakdown.items()},
        peak_allocated_bytes=int(allocated),
        peak_reserved_bytes=int(reserved),
        budget_bytes=hardware.budget_bytes,
    )


def device_used_bytes(estimate: MemoryEstimate) -> int:
    """What nvidia-smi / amd-smi show for the run (torch's reserved pool plus the CUDA/HIP context), or
    on the CPU the process's resident memory: the figure a plan must fit in its budget."""
    return estimate.peak_reserved_bytes + estimate.breakdown_bytes.get("cuda_context", 0)
