"""Answer a prompt with a trained adapter: base model (from the run folder) + LoRA adapter, greedy decoding.

The prompt is formatted exactly as in training: the chat template when the tokenizer has one,
else the Alpaca prompt.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpudoctor.errors import BadInput
from gpudoctor.settings import Settings
from gpudoctor.train.formatting import alpaca_prompt


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
        import torch

        text = self.prompt_text(prompt)
        use_template = bool(getattr(self.tokenizer, "chat_template", None))
        inputs = self.tokenizer(text, return_tensors="pt", add_special_tokens=not use_template).to(self.model.device)
        with torch.no_grad():
            output = self.model.generate(
                **inputs, max_new_tokens=max_new_tokens, do_sample=False, repetition_penalty=1.1,
                eos_token_id=self.tokenizer.eos_token_id, pad_token_id=self.tokenizer.pad_token_id,
            )
        return self.tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()


def _run_settings(adapter_dir: Path) -> Settings:
    from gpudoctor.plan.runconfig import read_run_config

    run_yaml = adapter_dir / "run.yaml"
    return read_run_config(run_yaml).settings if run_yaml.is_file() else Settings(compute_dtype="fp32")


def base_model_dir(adapter_dir: Path) -> Path:
    """The base the adapter was trained on: adapter_config.json's base_model_name_or_path."""
    try:
        config = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInput(f"--adapter {adapter_dir}: no adapter_config.json (is it a finished `gpudoctor train` output?)") from None
    except ValueError:
        raise BadInput(f"{adapter_dir / 'adapter_config.json'}: not valid JSON") from None
    from gpudoctor.train.model import resolve_model_dir

    return resolve_model_dir(str(config.get("base_model_name_or_path") or ""))


def load_chatbot(adapter_dir: str | Path, *, trust_remote_code: bool = False) -> Chatbot:
    from gpudoctor.train.quiet import quiet_libraries

    quiet_libraries()
    from peft import PeftModel

    from gpudoctor.train.model import device_map, load_base, load_tokenizer

    folder = Path(adapter_dir)
    if not (folder / "adapter_model.safetensors").is_file():
        raise BadInput(f"--adapter {folder}: no adapter_model.safetensors (is it a finished `gpudoctor train` output?)")
    base_dir = base_model_dir(folder)
    settings = _run_settings(folder)
    import torch

    if not torch.cuda.is_available():
        settings.compute_dtype = "fp32"  # bf16 matmuls are far slower on most CPUs
    base = load_base(base_dir, settings, trust_remote_code=trust_remote_code)
    base.config.use_cache = True
    model = PeftModel.from_pretrained(base, str(folder), device_map=device_map())
    model.eval()
    tokenizer_dir = folder if (folder / "tokenizer_config.json").is_file() else base_dir
    return Chatbot(model, load_tokenizer(tokenizer_dir, trust_remote_code=trust_remote_code))


def generate(adapter_dir: str | Path, prompt: str, max_new_tokens: int = 96) -> str:
    """Load base + adapter from a run folder and answer `prompt` (greedy)."""
    return load_chatbot(adapter_dir).answer(prompt, max_new_tokens)
