"""Merge a trained LoRA adapter into its base and write one model plain transformers loads.

A QLoRA adapter was trained against the NF4-quantized base, not the original 16/32-bit weights, so
the faithful merge (`into="nf4"`, the default) loads the base in 4-bit exactly as training did,
dequantizes every bitsandbytes Linear4bit to a dense Linear in the output dtype (transformers'
`dequantize()`, which also drops `quantization_config`), applies the adapter and merges it
(peft's `merge_and_unload`). `into="original"` merges into the original weights instead, which
changes the model's answers (the adapter corrected for quantization error that is not there).

Before anything loads: free disk at OUT's folder and free RAM against the merged size (parameters
from config.json × the dtype's bytes, counted as the planner counts them). The merge is written
into a temp folder beside OUT (sharded safetensors, tokenizer with a chat template that renders
the prompt exactly as gpudoctor formats it, gpudoctor_merge.json), reloaded with plain
`AutoModelForCausalLM` and compared on a few prompts with what `gpudoctor chat` computes (base
4-bit + adapter), then renamed into place. The reference runs bitsandbytes' exact NF4 path: on a
CPU with AVX512-BF16, bitsandbytes' inference shortcut repacks 4-bit weights into a bf16 kernel,
whose own error (~3e-3 on the tiny model) would hide the merge's.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpudoctor.atomic import new_dir_mode, safetensors_follow_umask, write_json
from gpudoctor.errors import BadInput, ProblemFound

INTO = ("nf4", "original")
DTYPE_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}
PROMPTS = (
    "How do I reset my password?",
    "My order arrived damaged. What should I do?",
    "Can I change the delivery address after ordering?",
)
# The faithful merge in fp32 must reproduce chat to well within this (measured on the tiny model: ~4e-7).
FP32_TOLERANCE = 1e-3
MANIFEST = "gpudoctor_merge.json"
SHARD_SIZE = "5GB"


@dataclass
class MergeRequest:
    adapter: Path
    output: Path
    into: str = "nf4"
    dtype: str | None = None  # default: the run's compute dtype
    force: bool = False
    base: str | None = None  # chat's --base
    trust_remote_code: bool = False
    shard_size: str | int = SHARD_SIZE


@dataclass
class Room:
    """Free disk at OUT's folder and free RAM, in bytes; None: measure them here."""

    disk: int | None = None
    ram: int | None = None


@dataclass
class Verification:
    max_abs_diff: float
    top1_agreement: float
    positions: int
    prompts: list[str] = field(default_factory=list)
    template_matches: bool = True


def _gib(n: float) -> str:
    if n >= 2**28:
        return f"{n / 2**30:.2f} GiB"
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{int(n)} bytes"


def check_request(request: MergeRequest) -> None:
    """--into, --dtype and OUT, before anything is read (BadInput, nothing written)."""
    if request.into not in INTO:
        raise BadInput(f"--into {request.into}: use nf4 (faithful: the dequantized 4-bit base the adapter was trained on) or original")
    if request.dtype is not None and request.dtype not in DTYPE_BYTES:
        raise BadInput(f"--dtype {request.dtype}: use bf16, fp16 or fp32")
    out = request.output
    if out.exists() and not out.is_dir():
        raise BadInput(f"-o {out}: is a file; give a folder to write the merged model into")
    if out.is_dir() and any(out.iterdir()) and not request.force:
        raise BadInput(f"-o {out}: exists and is not empty; choose a new folder or pass --force to replace it")
    parent = _existing_parent(out)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ProblemFound(f"-o {out}: cannot write in {parent}; choose a folder you can write to")


def _existing_parent(path: Path) -> Path:
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    return parent


def merged_size(base_dir: Path, dtype: str) -> tuple[int, int]:
    """(merged model bytes, one decoder layer's bytes) from config.json, counted as the planner counts."""
    from gpudoctor.plan.memory import layer_linears, total_params
    from gpudoctor.profiles import model_from_config

    spec = model_from_config(base_dir / "config.json")
    layer = sum(linear.params for linear in layer_linears(spec))
    return total_params(spec) * DTYPE_BYTES[dtype], layer * DTYPE_BYTES[dtype]


def check_room(out: Path, size: int, layer: int, room: Room | None = None) -> None:
    """Free disk at OUT's folder ≥ the merged size; free RAM ≥ merged size + a layer (ProblemFound, one line each)."""
    room = room or Room()
    parent = _existing_parent(out)
    disk = room.disk if room.disk is not None else shutil.disk_usage(parent).free
    if disk < size:
        raise ProblemFound(
            f"-o {out}: {_gib(disk)} free on {parent}, the merged model needs {_gib(size)}; free {_gib(size - disk)} or write elsewhere"
        )
    if room.ram is None:
        import psutil

        ram = psutil.virtual_memory().available
    else:
        ram = room.ram
    need = size + layer
    if ram < need:
        raise ProblemFound(
            f"merge: {_gib(ram)} of RAM free, the merge needs about {_gib(need)} (the merged model plus a layer); "
            "close other programs or merge on a machine with more memory"
        )


def _exact_nf4(model: Any) -> None:
    """Keep bitsandbytes on its exact NF4 path (dequantize, then matmul in the compute dtype) on CPUs
    where it would repack the weights for its bf16 inference kernel."""
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def alpaca_chat_template(tokenizer: Any) -> str:
    """A Jinja chat template rendering messages as formatting.alpaca_segments joins them (the Alpaca
    prompt; each reply ends with EOS), BOS first when the tokenizer adds one, so that
    apply_chat_template(..., add_generation_prompt=True) is the text `gpudoctor chat` feeds the model."""
    from gpudoctor.train.formatting import ALPACA_PREAMBLE

    with_bos = tokenizer("a")["input_ids"]
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    bos = "{{- bos_token -}}" if len(with_bos) > len(plain) and with_bos[0] == tokenizer.bos_token_id else ""
    return (
        "{%- set ns = namespace(first=true, system='') -%}" + bos
        + "{%- for m in messages if m['role'] == 'system' -%}{%- if loop.first -%}{%- set ns.system = m['content'] -%}{%- endif -%}{%- endfor -%}"
        "{%- for m in messages -%}"
        "{%- if m['role'] == 'assistant' -%}{{- m['content'] + eos_token -}}"
        "{%- elif m['role'] != 'system' -%}"
        "{%- if ns.first -%}{{- (ns.system or " + json.dumps(ALPACA_PREAMBLE) + ") + '\\n\\n' -}}{%- set ns.first = false -%}"
        "{%- else -%}{{- '\\n\\n' -}}{%- endif -%}"
        "{{- '### ' + ('Instruction' if m['role'] == 'user' else 'Tool output') + ':\\n' + m['content'] + '\\n\\n### Response:\\n' -}}"
        "{%- endif -%}"
        "{%- endfor -%}"
    )  # fmt: skip


def _prompt_ids(bot: Any, prompts: tuple[str, ...]) -> list[Any]:
    """The token ids `gpudoctor chat` feeds the model for each prompt (Chatbot.answer's encoding)."""
    use_template = bool(getattr(bot.tokenizer, "chat_template", None))
    return [bot.tokenizer(bot.prompt_text(p), return_tensors="pt", add_special_tokens=not use_template)["input_ids"] for p in prompts]


def _logits(model: Any, ids: list[Any]) -> list[Any]:
    import torch

    with torch.no_grad():
        return [model(input_ids=i.to(model.device)).logits.float().cpu() for i in ids]


def reference(request: MergeRequest, prompts: tuple[str, ...]) -> tuple[list[Any], list[Any], Any, list[str]]:
    """(prompt ids, chat's logits, chat's tokenizer, chat's prompt texts): `gpudoctor chat`'s base 4-bit + adapter,
    on bitsandbytes' exact NF4 path; the model is freed before the merge loads."""
    from gpudoctor.train.generate import load_chatbot

    bot = load_chatbot(request.adapter, base=request.base, trust_remote_code=request.trust_remote_code)
    _exact_nf4(bot.model)
    ids = _prompt_ids(bot, prompts)
    logits = _logits(bot.model, ids)
    tokenizer, texts = bot.tokenizer, [bot.prompt_text(p) for p in prompts]
    del bot
    _free()
    return ids, logits, tokenizer, texts


def _free() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def merged_model(request: MergeRequest, base_dir: Path, dtype: str) -> tuple[Any, str]:
    """(base with the adapter merged in, in `dtype`, the base it went into: 'nf4' or 'original')."""
    import torch

    from gpudoctor.train.generate import run_settings, attach_adapter
    from gpudoctor.train.model import DTYPES, load_base

    settings = run_settings(request.adapter)
    quantized = settings.method == "qlora" or bool(settings.quant)
    into = request.into if quantized else "original"  # a plain-LoRA run trained on the original weights
    if into == "nf4":
        settings = dataclasses.replace(settings, compute_dtype=dtype)
    else:
        settings = dataclasses.replace(settings, method="lora", quant=None, compute_dtype=dtype)
    torch_dtype = getattr(torch, DTYPES[dtype])
    model = load_base(base_dir, settings, trust_remote_code=request.trust_remote_code, what=f"base {base_dir}")
    if into == "nf4":
        model = model.dequantize(dtype=torch_dtype)  # every Linear4bit -> nn.Linear; drops quantization_config
    model = attach_adapter(model, request.adapter, base_dir).merge_and_unload()
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    model = model.to(torch_dtype)
    model.config.use_cache = True
    model.config.dtype = torch_dtype
    return model.eval(), into


def _staging(out: Path) -> Path:
    """An empty folder beside OUT with the mode a plain mkdir would give it (mkdtemp's is 0700)."""
    parent = out.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.merging-", dir=parent))
    staging.chmod(new_dir_mode())
    return staging


def save_merged(model: Any, tokenizer: Any, folder: Path, shard_size: str | int) -> None:
    """Sharded safetensors and the tokenizer, with gpudoctor's Alpaca prompt as its chat template when it has none."""
    safetensors_follow_umask()  # the shards would be 0600 (safetensors#782)
    model.save_pretrained(str(folder), max_shard_size=shard_size)
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = alpaca_chat_template(tokenizer)
    tokenizer.save_pretrained(str(folder))


def verify(folder: Path, dtype: str, ids: list[Any], expected: list[Any], texts: list[str], prompts: tuple[str, ...]) -> Verification:
    """Reload `folder` with plain transformers (no peft, no gpudoctor) and compare with chat's logits
    and prompt texts: max |Δlogit| and the share of positions whose top token agrees."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from gpudoctor.train.model import DTYPES, device_map

    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=getattr(torch, DTYPES[dtype]), device_map=device_map())
    got = _logits(model.eval(), ids)
    del model
    _free()
    diff = max(float((a - b).abs().max()) for a, b in zip(got, expected))
    same = sum(int((a.argmax(-1) == b.argmax(-1)).sum()) for a, b in zip(got, expected))
    positions = sum(int(b.shape[1]) for b in expected)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    rendered = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True) for p in prompts]
    return Verification(diff, same / positions, positions, list(prompts), rendered == texts)


def _manifest(request: MergeRequest, base_dir: Path, into: str, dtype: str, check: Verification) -> dict[str, Any]:
    return {
        "mode": into,
        "merged_into": "the dequantized NF4 base the adapter was trained against (faithful)" if into == "nf4" else "the original base weights",
        "base": str(base_dir),
        "adapter": str(request.adapter.resolve()),
        "dtype": dtype,
        "verification": {
            "against": "gpudoctor chat: base loaded in 4-bit + adapter (bitsandbytes' exact NF4 path)",
            "max_abs_logit_diff": check.max_abs_diff,
            "top1_agreement": check.top1_agreement,
            "positions": check.positions,
            "prompts": check.prompts,
            "chat_template_reproduces_prompt": check.template_matches,
        },
    }


def _place(staging: Path, out: Path) -> None:
    """Rename the finished folder into place; an existing OUT (--force) is moved aside first, then removed."""
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.replaced-{os.getpid()}"
        out.rename(old)
    staging.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def merge(request: MergeRequest, *, say: Any = print, room: Room | None = None, prompts: tuple[str, ...] = PROMPTS) -> dict[str, Any]:
    """Check, merge, write, verify, rename into place; returns what gpudoctor_merge.json says.
    Every problem is one line (BadInput / ProblemFound) and leaves no OUT behind."""
    from gpudoctor.train.generate import run_settings, base_model_dir, check_adapter_file
    from gpudoctor.train.quiet import quiet_libraries

    check_request(request)
    check_adapter_file(request.adapter)
    base_dir = base_model_dir(request.adapter, request.base)
    dtype = request.dtype or run_settings(request.adapter).compute_dtype
    size, layer = merged_size(base_dir, dtype)
    check_room(request.output, size, layer, room)
    say(f"merge: {request.adapter} into {'the dequantized NF4 base (faithful)' if request.into == 'nf4' else 'the original base weights'} {base_dir}, {dtype}, {_gib(size)}")
    quiet_libraries()
    ids, expected, tokenizer, texts = reference(request, prompts)
    staging = _staging(request.output)
    try:
        model, into = merged_model(request, base_dir, dtype)
        if into != request.into:
            say("merge: the run trained on the unquantized base (method lora), so the faithful merge is into the original weights")
        save_merged(model, tokenizer, staging, request.shard_size)
        del model
        _free()
        check = verify(staging, dtype, ids, expected, texts, prompts)
        _judge(check, into, dtype)
        manifest = _manifest(request, base_dir, into, dtype, check)
        write_json(staging / MANIFEST, manifest)
        _place(staging, request.output)
    except OSError as err:
        raise ProblemFound(f"-o {request.output}: writing the merged model failed ({err.strerror or err}); nothing was written") from None
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    say(
        f"verify: max |logit difference| {check.max_abs_diff:.2g}, top token agrees at {check.top1_agreement:.1%} of "
        f"{check.positions} positions ({len(prompts)} prompts) vs gpudoctor chat (base 4-bit + adapter)"
        + ("" if dtype == "fp32" else f"; this includes rounding the weights to {dtype} (--dtype fp32 shows the merge alone)")
    )
    say(f"wrote {request.output} (merged into {'the dequantized NF4 base' if into == 'nf4' else 'the original weights'}; see {MANIFEST})")
    return manifest


def _judge(check: Verification, into: str, dtype: str) -> None:
    """The faithful fp32 merge must reproduce chat; the chat template must reproduce gpudoctor's prompt."""
    if not check.template_matches:
        raise ProblemFound("merge: the merged tokenizer's chat template does not reproduce gpudoctor's prompt text; nothing was written")
    if into == "nf4" and dtype == "fp32" and check.max_abs_diff > FP32_TOLERANCE:
        raise ProblemFound(
            f"merge: the merged model's logits differ from gpudoctor chat's by up to {check.max_abs_diff:.3g} "
            f"(more than {FP32_TOLERANCE:g}); nothing was written"
        )
