"""`gpudoctor plan` end to end: full output at 100 columns, JSON keys, exit codes, emitted configs, no torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gpudoctor.plan.runconfig import read_run_config

EXPECTED = Path(__file__).parent / "expected"
HEAVY = ("torch", "transformers", "peft", "bitsandbytes", "accelerate", "datasets")


def test_full_output_for_mistral_on_a_4090(cli):
    result = cli("plan", "--model", "mistral-7b", "--gpu", "rtx-4090")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (EXPECTED / "plan_mistral-7b_rtx-4090.txt").read_text(encoding="utf-8")


def test_full_output_when_it_does_not_fit(cli):
    result = cli("plan", "--model", "llama-3.1-70b", "--gpu", "rtx-4090")
    assert result.exit_code == 1
    assert result.stdout == (EXPECTED / "plan_llama-3.1-70b_rtx-4090.txt").read_text(encoding="utf-8")


def test_json_has_the_stable_keys(cli):
    result = cli("plan", "--model", "mistral-7b", "--gpu", "rtx-4090", "--json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert {"method", "quant", "double_quant", "compute_dtype", "lora_r", "lora_alpha", "lora_targets", "seq_len", "micro_batch",
            "grad_accum", "grad_ckpt", "optimizer", "attn", "packing", "gpus", "strategy"} <= set(doc["settings"])  # fmt: skip
    assert {"peak_allocated_gib", "peak_reserved_gib", "device_used_gib", "budget_gib", "breakdown_gib"} <= set(doc["memory"])
    assert {"base_weights", "base_16bit", "lora_weights", "lora_grads", "optimizer", "activations", "cuda_context"} <= set(doc["memory"]["breakdown_gib"])
    assert doc["fits"] is True and doc["estimate"]["tokens_per_s"] > 0 and doc["estimate"]["hours"] > 0
    assert doc["memory"]["peak_reserved_gib"] <= doc["memory"]["budget_gib"]


def test_every_setting_can_be_fixed_on_the_command_line(cli):
    result = cli(
        "plan", "--model", "llama-2-7b", "--gpu", "rtx-a6000", "--json", "--method", "lora", "--lora-r", "8",
        "--lora-targets", "q_proj,v_proj", "--seq-len", "512", "--micro-batch", "2", "--grad-accum", "4",
        "--no-grad-ckpt", "--optimizer", "paged_adamw_32bit", "--attn", "eager", "--no-double-quant",
        "--gpus", "2", "--strategy", "ddp", "--vram-gib", "40", "--packing", "--recipe", "axolotl",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    s = json.loads(result.stdout)["settings"]
    assert (s["method"], s["quant"], s["lora_r"], s["lora_targets"], s["seq_len"], s["micro_batch"], s["grad_accum"]) == ("lora", None, 8, ["q_proj", "v_proj"], 512, 2, 4)
    assert (s["grad_ckpt"], s["optimizer"], s["attn"], s["double_quant"], s["gpus"], s["strategy"], s["packing"]) == (False, "paged_adamw_32bit", "eager", False, 2, "ddp", True)
    assert json.loads(result.stdout)["memory"]["budget_gib"] == 40
    assert s["recipe"] == "axolotl"


def test_the_recipe_changes_the_memory_and_is_checked(cli):
    """--recipe comes from the setting's declaration: the trainer decides dtypes, loss and so the peak."""
    docs = {}
    for recipe in ("gpudoctor", "trl", "axolotl", "fsdp-qlora"):
        result = cli("plan", "--model", "llama-3.1-8b", "--gpu", "rtx-4090", "--seq-len", "4096", "--micro-batch", "1", "--grad-accum", "16", "--recipe", recipe, "--json")
        assert result.exit_code == 0, result.stderr
        docs[recipe] = json.loads(result.stdout)
        assert docs[recipe]["settings"]["recipe"] == recipe
    # the lean recipe's chunked loss never holds the 128k-vocabulary logits of 4096 tokens at once
    assert docs["gpudoctor"]["memory"]["device_used_gib"] < docs["axolotl"]["memory"]["device_used_gib"]
    bad = cli("plan", "--model", "mistral-7b", "--recipe", "unsloth")
    assert bad.exit_code == 2 and "--recipe" in bad.stderr


def test_bad_input_exits_2_with_one_line(cli):
    for args in (["--model", "gpt-5"], ["--model", "mistral-7b", "--gpu", "rtx-9999"], ["--model", "mistral-7b", "--attn", "fast"], ["--model", "mistral-7b", "--emit", "deepspeed"]):
        result = cli("plan", *args)
        assert result.exit_code == 2, args
        assert result.stderr.startswith("gpudoctor: error: ") and result.stderr.count("\n") == 1


def test_emit_gpudoctor_is_a_run_yaml_train_reads(cli, tmp_path, shipped_datasets):
    data = shipped_datasets / "alpaca_en_demo.json"
    result = cli("plan", "--model", "mistral-7b", "--gpu", "rtx-3090", "--data", data, "--emit", "gpudoctor", "--output", "runs/a", "--epochs", "2")
    assert result.exit_code == 0, result.stderr
    path = tmp_path / "run.yaml"
    path.write_text(result.stdout)
    config = read_run_config(path)
    assert (config.model, config.data, config.output, config.training.epochs) == ("mistral-7b", str(data), "runs/a", 2.0)
    assert config.settings.seq_len == 640  # 99% of the demo records fit in 593 approximate tokens


def test_emit_axolotl(cli, shipped_datasets):
    result = cli("plan", "--model", "qwen2.5-7b", "--gpu", "rtx-4090", "--data", shipped_datasets / "glaive_toolcall_en_demo.json", "--emit", "axolotl")
    assert result.exit_code == 0, result.stderr
    doc = yaml.safe_load(result.stdout)
    assert (doc["base_model"], doc["adapter"], doc["load_in_4bit"], doc["lora_target_linear"]) == ("Qwen/Qwen2.5-7B", "qlora", True, True)
    assert doc["datasets"][0]["type"] == "chat_template" and doc["datasets"][0]["field_messages"] == "conversations"
    assert doc["micro_batch_size"] * doc["gradient_accumulation_steps"] == 16


def test_emit_refuses_a_plan_that_does_not_fit(cli):
    result = cli("plan", "--model", "llama-3.1-70b", "--gpu", "rtx-4090", "--emit", "gpudoctor")
    assert result.exit_code == 1 and result.stdout == "" and "does not fit" in result.stderr


def test_data_shows_coverage(cli, shipped_datasets):
    result = cli("plan", "--model", "mistral-7b", "--gpu", "rtx-4090", "--data", shipped_datasets / "alpaca_en_demo.json", "--json")
    doc = json.loads(result.stdout)
    assert doc["data"]["records"] == 205 and doc["data"]["cut_records"] == 2 and doc["estimate"]["tokens_basis"] == "data"


def _modules_after(args: list[str]) -> list[str]:
    code = (
        "import sys\nfrom gpudoctor.cli.main import run\n"
        f"code = run({args!r})\n"
        f"print(code, [m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    return done.stdout.strip().splitlines()[-1]


def test_plan_never_imports_the_training_stack(shipped_datasets):
    assert _modules_after(["plan", "--gpu", "rtx-4090", "--model", "mistral-7b", "--json"]) == "0 []"
    assert _modules_after(["plan", "--model", "mistral-7b", "--data", str(shipped_datasets / "alpaca_en_demo.json")]).endswith(" []")


def _probe_returns(monkeypatch, facts):
    import gpudoctor.probe

    monkeypatch.setattr(gpudoctor.probe, "probe_system", lambda *a, **k: facts)


def test_gpu_auto_plans_for_the_probed_card(cli, monkeypatch):
    from gpudoctor.probe.facts import GpuFacts, SystemFacts

    cards = [GpuFacts(index=i, vendor="amd", name="AMD Radeon RX 7900 XTX", source="amdsmi", total_bytes=24 * 1024**3, free_bytes=23 * 1024**3) for i in range(2)]
    _probe_returns(monkeypatch, SystemFacts(gpus=cards))
    doc = json.loads(cli("plan", "--model", "mistral-7b", "--json").stdout)
    assert (doc["hardware"]["name"], doc["hardware"]["source"], doc["hardware"]["budget_gib"], doc["hardware"]["device"]) == ("AMD Radeon RX 7900 XTX", "probe", 23.0, "rocm")
    assert doc["settings"]["attn"] == "sdpa" and doc["settings"]["gpus"] == 1
    assert doc["notes"][0] == "2 GPUs of this kind were found; --gpus 2 plans for all of them"


def test_gpu_auto_without_a_gpu_plans_for_the_cpu_and_says_so(cli, monkeypatch):
    from gpudoctor.probe.facts import SystemFacts

    _probe_returns(monkeypatch, SystemFacts())
    monkeypatch.setattr("gpudoctor.probe.cpu.native_bf16_flag", lambda root=None: None)
    doc = json.loads(cli("plan", "--model", "phi-3-mini", "--json").stdout)
    assert doc["hardware"]["device"] == "cpu" and doc["settings"]["compute_dtype"] == "fp32"
    assert doc["notes"][0].startswith("no GPU was found")


def test_a_cpu_with_native_bf16_computes_in_bf16(cli, monkeypatch):
    monkeypatch.setattr("gpudoctor.probe.cpu.native_bf16_flag", lambda root=None: "avx512_bf16")
    doc = json.loads(cli("plan", "--model", "phi-3-mini", "--gpu", "cpu", "--json").stdout)
    assert doc["hardware"]["name"].endswith("avx512_bf16)") and doc["hardware"]["bf16"] is True
    assert (doc["settings"]["compute_dtype"], doc["settings"]["optimizer"]) == ("bf16", "adamw_torch")
    assert any(note.startswith("compute dtype bf16:") for note in doc["notes"])


def test_a_local_model_folder_counts_tokens_with_its_tokenizer(cli, tmp_path, shipped_datasets):
    demo = Path(__file__).resolve().parents[2] / "gpudoctor" / "demo"
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (tmp_path / name).write_bytes((demo / name).read_bytes())
    config = {"model_type": "llama", "hidden_size": 512, "intermediate_size": 1408, "num_hidden_layers": 8, "num_attention_heads": 8,
              "num_key_value_heads": 4, "vocab_size": 32000, "max_position_embeddings": 2048, "tie_word_embeddings": False}  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(config))
    result = cli("plan", "--model", tmp_path, "--gpu", "rtx-4080", "--data", shipped_datasets / "identity.json", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["model"]["name"] == str(tmp_path)
    assert "approximation" not in doc["data"]["tokenizer"] and doc["data"]["records"] == 91


def test_list_shows_every_profile(cli):
    from gpudoctor.profiles import list_gpus, list_models

    result = cli("plan", "--list")
    assert result.exit_code == 0
    for name in list_models() + list_gpus():
        assert f" {name} " in result.stdout


def test_model_is_required_unless_listing(cli):
    result = cli("plan")
    assert result.exit_code == 2 and "--model" in result.stderr and "--list" in result.stderr


@pytest.mark.parametrize("budget", [16, 20, 24, 48])
def test_vram_budget_without_a_gpu_plans_for_a_gpu_of_that_size(cli, monkeypatch, budget):
    """The issue's bar: mistral-7b fits 16/20/24/48 GiB using 75–92 % of it, seq_len ≥ 2048 at 24 GiB."""
    from gpudoctor.probe.facts import SystemFacts

    _probe_returns(monkeypatch, SystemFacts())
    result = cli("plan", "--model", "mistral-7b", "--vram-gib", str(budget), "--json")
    doc = json.loads(result.stdout)
    assert result.exit_code == 0 and doc["fits"] is True
    assert (doc["hardware"]["device"], doc["hardware"]["source"]) == ("cuda", "reference")
    assert doc["notes"][0].startswith("no GPU was found, so --vram-gib plans for a GPU")
    used = doc["memory"]["device_used_gib"] / doc["memory"]["budget_gib"]
    assert 0.75 <= used <= 0.92
    assert doc["memory"]["peak_allocated_gib"] <= doc["memory"]["peak_reserved_gib"] < doc["memory"]["device_used_gib"]
    assert doc["memory"]["budget_gib"] == budget
    if budget == 24:
        assert doc["settings"]["seq_len"] >= 2048


def test_lora_dropout_defaults_to_zero_and_can_be_fixed(cli):
    default = json.loads(cli("plan", "--model", "mistral-7b", "--gpu", "rtx-4090", "--json").stdout)
    assert default["settings"]["lora_dropout"] == 0.0
    assert any(note.startswith("LoRA dropout 0:") for note in default["notes"])
    fixed = json.loads(cli("plan", "--model", "mistral-7b", "--gpu", "rtx-4090", "--lora-dropout", "0.1", "--json").stdout)
    assert fixed["settings"]["lora_dropout"] == 0.1
    assert fixed["memory"]["breakdown_gib"] != default["memory"]["breakdown_gib"] or fixed["settings"] != default["settings"]
    bad = cli("plan", "--model", "mistral-7b", "--gpu", "rtx-4090", "--lora-dropout", "1.5")
    assert bad.exit_code == 2 and "--lora-dropout: must be at least 0 and below 1" in bad.stderr
