"""Answer a prompt with a trained adapter: base model (from the run folder) + LoRA adapter, greedy decoding.

The prompt is formatted exactly as in training: the chat template when the tokenizer has one,
else the Alpaca prompt.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpudoctor.errors import BadInput
from gpudoctor.settings import Settings
from gpudoctor.train.formatting import alpaca_prompt

REPETITION_PENALTY = 1.1


@dataclass
class Chatbot:
    model: Any
    tokenizer: Any

    def prompt_text(self, prompt: str) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
        return alpaca_prompt(prompt)

    def answer(self, prompt: str, max_new_tokens: int = 96) -> str:
        return self.complete(self.prompt_text(prompt), max_new_tokens)

    def complete(self, text: str, max_new_tokens: int = 96) -> str:
        """The reply to `text`, a prompt already formatted as training formats it (greedy)."""
        import torch

        use_template = bool(getattr(self.tokenizer, "chat_template", None))
        inputs = self.tokenizer(text, return_tensors="pt", add_special_tokens=not use_template).to(self.model.device)
        with torch.no_grad():
            output = self.model.generate(
                **inputs, max_new_tokens=max_new_tokens, do_sample=False, repetition_penalty=REPETITION_PENALTY,
                eos_token_id=self.tokenizer.eos_token_id, pad_token_id=self.tokenizer.pad_token_id,
            )
        return self.tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()


def run_settings(adapter_dir: Path) -> Settings:
    from gpudoctor.plan.runconfig import read_run_config

    run_yaml = adapter_dir / "run.yaml"
    return read_run_config(run_yaml).settings if run_yaml.is_file() else Settings(compute_dtype="fp32")


def adapter_config(adapter_dir: Path) -> dict[str, Any]:
    """adapter_config.json as a dict (BadInput naming the file when it is missing or damaged)."""
    path = adapter_dir / "adapter_config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInput(f"--adapter {adapter_dir}: no adapter_config.json (is it a finished `gpudoctor train` output?)") from None
    except (OSError, UnicodeDecodeError, ValueError):
        raise BadInput(f"{path}: damaged (not valid JSON); copy adapter_config.json from the newest checkpoints/checkpoint-N, or train again") from None
    if not isinstance(config, dict):
        raise BadInput(f"{path}: damaged (expected a JSON object, got {type(config).__name__}); copy it from the newest checkpoints/checkpoint-N")
    return config


def base_model_dir(adapter_dir: Path, base: str | None = None) -> Path:
    """The base to load: `base` (chat's --base) when given, else adapter_config.json's base_model_name_or_path."""
    from gpudoctor.train.model import looks_like_path, resolve_model_dir

    if base:
        return resolve_model_dir(base, f"--base {base}")
    name = str(adapter_config(adapter_dir).get("base_model_name_or_path") or "")
    if not name:
        raise BadInput(f"{adapter_dir / 'adapter_config.json'}: names no base model (base_model_name_or_path); pass --base with the model folder it was trained on")
    if looks_like_path(name) and not Path(name).expanduser().is_dir():
        raise BadInput(
            f"--adapter {adapter_dir}: its base model folder {name} (adapter_config.json's base_model_name_or_path) is gone; "
            "pass --base with the folder it was trained on (or edit that path in adapter_config.json)"
        )
    return resolve_model_dir(name, f"--adapter {adapter_dir}: its base {name}")


def check_adapter_file(folder: Path) -> Path:
    """The adapter's weights file, whole (its safetensors header and size agree)."""
    from gpudoctor.train.model import safetensors_problem

    if not folder.is_dir():
        raise BadInput(f"--adapter {folder}: {'not a folder' if folder.exists() else 'no such folder'}; give a `gpudoctor train` output folder")
    weights = folder / "adapter_model.safetensors"
    if not weights.is_file():
        raise BadInput(f"--adapter {folder}: no adapter_model.safetensors (is it a finished `gpudoctor train` output?)")
    problem = safetensors_problem(weights)
    if problem:
        raise BadInput(f"{weights}: {problem}; copy adapter_model.safetensors from the newest checkpoints/checkpoint-N, or train again")
    return weights


def trained_on(folder: Path) -> str:
    """The base the adapter was trained on, as its run recorded it (report.json, else adapter_config.json)."""
    try:
        model = json.loads((folder / "report.json").read_text(encoding="utf-8")).get("model")
        if model:
            return str(model)
    except (OSError, ValueError, AttributeError):
        pass
    try:
        return str(adapter_config(folder).get("base_model_name_or_path") or "an unrecorded base")
    except BadInput:
        return "an unrecorded base"


def uncovered_modules(base: Any, folder: Path) -> list[str]:
    """Modules of the base of a kind the adapter targets by full path (peft saves all-linear so) that no
    target names: a base deeper or otherwise shaped than the one it was trained on (empty: none)."""
    targets = adapter_config(folder).get("target_modules")
    if not isinstance(targets, list) or not targets or not all(isinstance(t, str) and "." in t for t in targets):
        return []
    named, kinds = set(targets), {t.rsplit(".", 1)[1] for t in targets}
    return [name for name, _ in base.named_modules() if name.rsplit(".", 1)[-1] in kinds and name not in named]


def _size_mismatch(err: BaseException) -> str:
    """`lora_A ... [8, 64] in the adapter, [8, 128] in the base` from torch's load_state_dict message."""
    found = re.search(r"size mismatch for (\S+): copying a param with shape torch\.Size\((\[[^\]]*\])\) from checkpoint, the shape in current model is torch\.Size\((\[[^\]]*\])\)", str(err))
    if not found:
        return "size mismatch"
    return f"{found.group(1).removeprefix('base_model.model.')} is {found.group(2)} in the adapter, {found.group(3)} in the base"


def attach_adapter(base: Any, folder: Path, base_dir: Path) -> Any:
    """PeftModel over `base` with the adapter in `folder`; BadInput when it does not fit this base or cannot be read."""
    from peft import PeftModel, get_peft_model_state_dict
    from safetensors import SafetensorError, safe_open

    from gpudoctor.train.model import device_map

    mismatch = f"--adapter {folder}: it does not fit the base {base_dir}"
    advice = f"it was trained on {trained_on(folder)}; pass --base with that model"
    uncovered = uncovered_modules(base, folder)
    if uncovered:
        raise BadInput(f"{mismatch} ({len(uncovered)} of the base's modules of the kinds it adapts have no adapter weights, first {uncovered[0]}); {advice}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # peft's and transformers' warnings are not for chat's user
            model = PeftModel.from_pretrained(base, str(folder), device_map=device_map())
    except RuntimeError as err:
        if "size mismatch" not in str(err):
            raise
        raise BadInput(f"{mismatch} ({_size_mismatch(err)}); {advice}") from None
    except (ValueError, KeyError, TypeError, OSError, SafetensorError) as err:
        raise BadInput(f"--adapter {folder}: cannot load the adapter onto {base_dir} ({_first_line(err)}); {advice}") from None
    with safe_open(str(folder / "adapter_model.safetensors"), framework="pt") as handle:
        saved = set(handle.keys())
    wanted = set(get_peft_model_state_dict(model))
    if saved != wanted:
        only = sorted(saved ^ wanted)[0].removeprefix("base_model.model.")
        raise BadInput(
            f"{mismatch} or its adapter_config.json ({len(saved)} adapter tensors saved, {len(wanted)} wanted; {only} is in only one); {advice}"
        )
    return model


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__


def load_chatbot(adapter_dir: str | Path, *, base: str | None = None, trust_remote_code: bool = False) -> Chatbot:
    """Base (`base`, else the one adapter_config.json names) + the adapter in `adapter_dir`, and the tokenizer.
    Every problem with either is a one-line BadInput before or while loading."""
    from gpudoctor.train.quiet import quiet_libraries

    quiet_libraries()
    from gpudoctor.train.model import load_base, load_tokenizer

    folder = Path(adapter_dir)
    check_adapter_file(folder)
    base_dir = base_model_dir(folder, base)
    settings = run_settings(folder)
    import torch

    if not torch.cuda.is_available():
        settings.compute_dtype = "fp32"  # bf16 matmuls are far slower on most CPUs
    model = load_base(base_dir, settings, trust_remote_code=trust_remote_code, what=f"base {base_dir}")
    model.config.use_cache = True
    model = attach_adapter(model, folder, base_dir)
    model.eval()
    tokenizer_dir = folder if (folder / "tokenizer_config.json").is_file() else base_dir
    return Chatbot(model, load_tokenizer(tokenizer_dir, trust_remote_code=trust_remote_code))


def generate(adapter_dir: str | Path, prompt: str, max_new_tokens: int = 96) -> str:
    """Load base + adapter from a run folder and answer `prompt` (greedy)."""
    return load_chatbot(adapter_dir).answer(prompt, max_new_tokens)
