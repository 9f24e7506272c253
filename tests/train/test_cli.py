"""`gpudoctor train` / `chat` through the CLI: bad input is one line and exit 2 with nothing written, a real run, light imports."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from gpudoctor.plan.runconfig import write_run_config
from gpudoctor.train.callbacks import Faults

TRAIN = ("--skip-check", "--max-steps", "2", "--seq-len", "256", "--micro-batch", "2", "--grad-accum", "1", "--lora-r", "8")


def one_error_line(result) -> str:
    """The error is the last line of stderr, the only one of its kind, with no traceback (the plan may precede it)."""
    lines = result.stderr.strip().splitlines()
    assert [line for line in lines if line.startswith("gpudoctor: error: ")] == lines[-1:], result.stderr
    assert "Traceback" not in result.stderr
    return lines[-1]


@pytest.mark.parametrize(
    ("name", "content", "needle"),
    [
        ("broken.json", b'[{"instruction": "a", "output": "b"},', "broken.json"),
        ("keys.json", b'[{"question": "a", "answer": "b"}]', "keys.json"),
        ("empty.json", b"", "empty.json"),
        ("latin1.json", '[{"instruction": "caf\xe9", "output": "x"}]'.encode("latin-1"), "latin1.json"),
        ("long.json", json.dumps([{"instruction": "hi", "output": "ok"}, {"instruction": "word " * 400, "output": "ok"}]).encode(), "record 2 is"),
    ],
)
def test_bad_data_is_one_line_exit_2_and_nothing_written(cli, tiny_model, tmp_path, name, content, needle):
    data = tmp_path / name
    data.write_bytes(content)
    result = cli("train", "--model", tiny_model, "--data", data, "--output", tmp_path / "out", *TRAIN)
    assert result.exit_code == 2
    assert needle in one_error_line(result)
    assert not (tmp_path / "out").exists()


def test_output_holding_a_different_run_is_refused_untouched(cli, tiny_model, support_data, tmp_path, tiny_config):
    out = tmp_path / "out"
    write_run_config(tiny_config(tiny_model, support_data, out, lr=1e-4), out / "run.yaml")
    before = (out / "run.yaml").read_bytes()
    result = cli("train", "--model", tiny_model, "--data", support_data, "--output", out, *TRAIN)
    assert result.exit_code == 2
    assert "holds a different run" in one_error_line(result)
    assert sorted(p.name for p in out.iterdir()) == ["run.yaml"] and (out / "run.yaml").read_bytes() == before


def test_big_model_on_cpu_needs_force(cli, support_data, tmp_path):
    model = tmp_path / "big"
    model.mkdir()
    config = dict(model_type="mistral", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                  num_key_value_heads=8, vocab_size=32768, max_position_embeddings=32768, tie_word_embeddings=False)  # fmt: skip
    (model / "config.json").write_text(json.dumps(config))
    (model / "model.safetensors").write_bytes(b"")
    result = cli("train", "--model", model, "--data", support_data, "--output", tmp_path / "out", "--skip-check", "--gpu", "cpu")
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "7.2B parameters" in line and "--force" in line
    assert not (tmp_path / "out").exists()


def test_missing_settings_and_conflicts_are_usage_errors(cli, tmp_path):
    result = cli("train", "--model", "x", "--skip-check")
    assert result.exit_code == 2 and "--data" in one_error_line(result)
    result = cli("train", "--demo", "--model", "x")
    assert result.exit_code == 2 and "--demo" in one_error_line(result)


def test_chat_without_a_finished_run_is_bad_input(cli, tmp_path):
    result = cli("chat", "--adapter", tmp_path, "--prompt", "hi")
    assert result.exit_code == 2 and "adapter_model.safetensors" in one_error_line(result)


@pytest.mark.slow
def test_train_interrupt_resume_chat_through_the_cli(cli, tiny_model, support_data, tmp_path, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setenv("GPUDOCTOR_INJECT_INTERRUPT_AT_STEP", "1")
    result = cli("train", "--model", tiny_model, "--data", support_data, "--output", out, *TRAIN)
    assert result.exit_code == 130
    assert "interrupted at step 1" in one_error_line(result) and (out / "checkpoints" / "checkpoint-1").is_dir()
    monkeypatch.delenv("GPUDOCTOR_INJECT_INTERRUPT_AT_STEP")
    result = cli("train", "--model", tiny_model, "--data", support_data, "--output", out, "--resume", *TRAIN)
    assert result.exit_code == 0, result.stderr
    assert "trained 2 steps" in result.stdout and (out / "adapter_model.safetensors").is_file()
    assert json.loads((out / "report.json").read_text())["start_step"] == 1
    again = cli("train", "--model", tiny_model, "--data", support_data, "--output", out, *TRAIN)
    assert again.exit_code == 2 and "already holds a finished run" in one_error_line(again)
    answer = cli("chat", "--adapter", out, "--prompt", "My lamp is broken.", "--max-new-tokens", "4")
    assert answer.exit_code == 0 and answer.stdout.strip()
    stdin = io.StringIO("My lamp is broken.\nIt hums.\n\nnot read\n")
    monkeypatch.setattr("sys.stdin", stdin)
    session = cli("generate", "--adapter", out, "--max-new-tokens", "4")
    assert session.exit_code == 0 and session.stdout.strip() and stdin.read() == "not read\n"  # an empty line ends it


def test_commands_do_not_import_the_training_stack_until_they_train():
    code = (
        "import sys\n"
        "from gpudoctor.cli.main import run\n"
        "for args in (['train', '--help'], ['chat', '--help']):\n"
        "    assert run(args) == 0\n"
        "import gpudoctor.train.run, gpudoctor.train.preflight, gpudoctor.train.distributed, gpudoctor.train.outputdir\n"
        "heavy = {'torch', 'transformers', 'peft', 'bitsandbytes', 'accelerate', 'datasets'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_faults_come_from_the_environment():
    faults = Faults.from_env({"GPUDOCTOR_INJECT_OOM_AT_STEP": "3", "GPUDOCTOR_INJECT_NAN_AT_STEP": "x"})
    assert faults == Faults(oom_at_step=3, nan_at_step=None, interrupt_at_step=None)


@pytest.mark.slow
def test_run_yaml_with_command_line_overrides(cli, tiny_model, support_data, tmp_path, tiny_config):
    from gpudoctor.plan.runconfig import read_run_config

    run_yaml = write_run_config(tiny_config(tiny_model, support_data, tmp_path / "out", max_steps=4), tmp_path / "run.yaml")
    result = cli("train", run_yaml, "--lr", "0.001", "--max-steps", "1", "--skip-check")
    assert result.exit_code == 0, result.stderr
    used = read_run_config(tmp_path / "out" / "run.yaml")
    assert used.training.lr == 0.001 and used.training.max_steps == 1 and used.settings.lora_r == 8
    assert json.loads((tmp_path / "out" / "report.json").read_text())["steps"] == 1


@pytest.mark.slow
def test_demo_trains_the_shipped_model_and_data(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    result = cli("train", "--demo", "--output", tmp_path / "demo", "--max-steps", "2", "--val-size", "0")
    assert result.exit_code == 0, result.stderr
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert report["steps"] == 2 and report["records"] == 160 and report["packed"]
    assert (tmp_path / "cache" / "gpudoctor" / "demo-model" / "model.safetensors").is_file()
    config = json.loads((tmp_path / "cache" / "gpudoctor" / "demo-model" / "config.json").read_text())
    assert config["model_type"] == "mistral" and config["num_key_value_heads"] < config["num_attention_heads"]


def test_unreadable_weights_are_one_line(cli, support_data, tmp_path, tiny_model):
    import shutil

    model = tmp_path / "broken"
    shutil.copytree(tiny_model, model)
    (model / "model.safetensors").write_bytes(b"not a safetensors file")
    result = cli("train", "--model", model, "--data", support_data, "--output", tmp_path / "out", *TRAIN)
    assert result.exit_code == 2 and "cannot load the weights" in one_error_line(result)
    assert not (tmp_path / "out").exists()


def test_vram_budget_on_a_machine_without_a_gpu_is_refused(cli, tmp_path, monkeypatch):
    from gpudoctor.probe.facts import SystemFacts

    monkeypatch.setattr("gpudoctor.plan.hardware.probed_hardware", lambda: __import__("gpudoctor.plan.hardware", fromlist=["x"]).hardware_from_facts(SystemFacts()))
    data = tmp_path / "d.json"
    data.write_text('[{"instruction": "hi", "output": "hello"}]')
    result = cli("train", "--model", "mistral-7b", "--data", data, "--output", tmp_path / "out", "--vram-gib", "24", "--skip-check")
    assert result.exit_code == 2
    assert "--vram-gib: no GPU was found here" in result.stderr
    assert not (tmp_path / "out").exists()
