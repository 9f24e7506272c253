"""Write a plan as a config another tool runs: gpudoctor's run.yaml, or an equivalent Axolotl config."""

from __future__ import annotations

from typing import Any

import yaml

from gpudoctor.plan.runconfig import dump_run_config
from gpudoctor.plan.types import Plan

# The decoder layer class FSDP wraps, per model_type (transformers' modeling_<type>.py).
from gpudoctor.settings import RunConfig, TrainingOptions

# The decoder layer class FSDP wraps, per model_type (transformers' modeling_<type>.py).
from gpudoctor.types import GIB

# The decoder layer class FSDP wraps, per model_type (transformers' modeling_<type>.py).
DECODER_LAYER = {
    "llama": "LlamaDecoderLayer",
    "mistral": "MistralDecoderLayer",
    "qwen2": "Qwen2DecoderLayer",
    "phi3": "Phi3DecoderLayer",
    "gemma2": "Gemma2DecoderLayer",
}


def _model_ref(plan: Plan) -> str:
    return plan.model.local_path or plan.model.name


def _summary(plan: Plan) -> str:
    memory = plan.memory
    return (
        f"planned by gpudoctor for {plan.hardware.name}: peak {memory.peak_reserved_bytes / GIB:.1f} GiB "
        f"of {memory.budget_bytes / GIB:.1f} GiB"
    )


def emit_gpudoctor(plan: Plan, data: str | None, output: str | None, training: TrainingOptions | None = None) -> str:
    """run.yaml text for `gpudoctor train run.yaml`."""
    config = RunConfig(model=_model_ref(plan), data=data, output=output, settings=plan.settings, training=training or TrainingOptions())
    header = f"# gpudoctor run config, {_summary(plan)}\n# train with: gpudoctor train run.yaml\n"
    return header + dump_run_config(config)


def emit_axolotl(plan: Plan, data: str, data_format: str, output: str | None, training: TrainingOptions | None = None) -> str:
    """An Axolotl config with the same model, adapter, batch shape, memory savers and schedule."""
    training = training or TrainingOptions()
    s = plan.settings
    config: dict[str, Any] = {"base_model": plan.model.local_path or plan.model.hub_id or plan.model.name}
    if s.method == "qlora":
        config.update(adapter="qlora", load_in_4bit=True)
        config["bnb_config_kwargs"] = {"bnb_4bit_quant_type": s.quant or "nf4", "bnb_4bit_use_double_quant": s.double_quant}
    else:
        config["adapter"] = "lora"
    config.update(lora_r=s.lora_r, lora_alpha=s.lora_alpha, lora_dropout=s.lora_dropout)
    if s.lora_targets == ["all-linear"]:
        config["lora_target_linear"] = True
    else:
        config["lora_target_modules"] = list(s.lora_targets)
    config["datasets"] = [_axolotl_dataset(data, data_format)]
    config["val_set_size"] = training.val_size
    config["output_dir"] = output or "./outputs/axolotl"
    config.update(
        sequence_len=s.seq_len,
        sample_packing=s.packing,
        pad_to_sequence_len=s.packing,
        micro_batch_size=s.micro_batch,
        gradient_accumulation_steps=s.grad_accum,
        num_epochs=training.epochs,
        optimizer=s.optimizer,
        learning_rate=training.lr,
        lr_scheduler=training.lr_scheduler,
        warmup_ratio=training.warmup_ratio,
        gradient_checkpointing=s.grad_ckpt,
        bf16=s.compute_dtype == "bf16",
        fp16=s.compute_dtype == "fp16",
        tf32=False,
        seed=training.seed,
        save_steps=training.save_steps,
        logging_steps=training.logging_steps,
    )
    if training.max_steps is not None:
        config["max_steps"] = training.max_steps
    if s.attn == "flash":
        config["flash_attention"] = True
    elif s.attn == "sdpa":
        config["sdp_attention"] = True
    else:
        config["eager_attention"] = True
    if s.strategy == "fsdp":
        config["fsdp"] = ["full_shard", "auto_wrap"]
        config["fsdp_config"] = {
            "fsdp_offload_params": False,
            "fsdp_cpu_ram_efficient_loading": True,
            "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
            "fsdp_transformer_layer_cls_to_wrap": DECODER_LAYER.get(plan.model.architecture, "LlamaDecoderLayer"),
            "fsdp_state_dict_type": "FULL_STATE_DICT",
            "fsdp_sharding_strategy": "FULL_SHARD",
        }
    header = f"# Axolotl config, {_summary(plan)}\n# train with: axolotl train axolotl.yaml (on {s.gpus} GPU{'s' if s.gpus > 1 else ''})\n"
    return header + yaml.safe_dump(config, sort_keys=False, allow_unicode=True)


def _axolotl_dataset(path: str, data_format: str) -> dict[str, Any]:
    """Axolotl's dataset entry: alpaca files as such, chat files through the chat template."""
    if data_format == "alpaca":
        return {"path": path, "ds_type": "json", "type": "alpaca"}
    if data_format == "sharegpt":
        return {
            "path": path,
            "ds_type": "json",
            "type": "chat_template",
            "field_messages": "conversations",
            "message_property_mappings": {"role": "from", "content": "value"},
        }
    return {"path": path, "ds_type": "json", "type": "chat_template", "field_messages": "messages"}
