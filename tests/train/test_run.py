"""End-to-end training of a tiny NF4 model on the CPU: outputs, peft loading, resume, OOM back-off, NaN stop."""

from __future__ import annotations

import json
import math

import pytest

from gpudoctor.errors import EXIT_INTERRUPTED, GpudoctorError, ProblemFound
from gpudoctor.train.callbacks import Faults
from gpudoctor.train.run import train

pytestmark = pytest.mark.slow


def quiet_console():
    import io

    from rich.console import Console

    return Console(file=io.StringIO(), width=100)


def losses_by_step(report) -> dict[int, float]:
    return {int(step): loss for step, loss in report.losses}


@pytest.fixture(scope="module")
def reference(tiny_model, tiny_config, support_records, tmp_path_factory):
    """One uninterrupted run: 6 steps, checkpoints every 2, 4 records held out for eval."""
    folder = tmp_path_factory.mktemp("reference")
    data = folder / "support.json"
    data.write_text(json.dumps(support_records), encoding="utf-8")
    config = tiny_config(tiny_model, data, folder / "run", val_size=4)
    return config, train(config, console=quiet_console())


def test_run_folder_has_every_output(reference):
    config, report = reference
    folder = __import__("pathlib").Path(config.output)
    for name in ("adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "tokenizer_config.json", "run.yaml", "report.json", "loss.png"):
        assert (folder / name).is_file(), name
    assert (folder / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == ["checkpoint-2", "checkpoint-4", "checkpoint-6"]
    assert any((folder / "tb").iterdir())
    saved = json.loads((folder / "report.json").read_text())
    assert saved["status"] == "finished" and saved["steps"] == 6 and len(saved["losses"]) == 6
    assert saved["eval_rows"] >= 1 and math.isfinite(saved["final_eval_loss"])
    assert [step for step, _ in saved["eval_losses"]] == [2, 4, 6]  # every save_steps, the last one not repeated
    assert saved["tokens"] > 0 and saved["tokens_per_s"] > 0 and saved["measured_peak_rss_bytes"] > 0
    assert report.losses[-1][1] < report.losses[0][1]  # it learns


def test_adapter_loads_with_plain_peft(reference, tiny_model):
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    config, _ = reference
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model), dtype=torch.float32)
    model = PeftModel.from_pretrained(base, config.output)
    saved = load_file(f"{config.output}/adapter_model.safetensors")
    b_weights = [v for k, v in saved.items() if "lora_B" in k]
    assert b_weights and any(v.abs().sum() > 0 for v in b_weights)  # trained, not the zero init
    output = model.generate(torch.tensor([[5, 6, 7]]), max_new_tokens=3, do_sample=False)
    assert output.shape == (1, 6)


def test_interrupt_then_resume_continues_at_the_same_step_and_data_order(reference, tiny_model, tiny_config, tmp_path):
    config, full = reference
    resumed_config = tiny_config(tiny_model, config.data, tmp_path / "run", val_size=4)
    with pytest.raises(GpudoctorError) as err:
        train(resumed_config, console=quiet_console(), faults=Faults(interrupt_at_step=3))
    assert err.value.exit_code == EXIT_INTERRUPTED and "at step 3" in str(err.value) and "--resume" in str(err.value)
    assert (tmp_path / "run" / "checkpoints" / "checkpoint-3").is_dir()
    assert not (tmp_path / "run" / "adapter_model.safetensors").exists()
    report = train(resumed_config, resume=True, console=quiet_console())
    assert report.start_step == 3 and report.steps == 6
    assert any(note.startswith("tokens from cache") for note in report.notes)
    after = losses_by_step(report)
    assert sorted(after) == [1, 2, 3, 4, 5, 6]  # the whole run, across the resume (test_report_history.py)
    for step in (4, 5, 6):  # same weights, same batches → the same losses as the uninterrupted run
        assert after[step] == pytest.approx(losses_by_step(full)[step], rel=1e-4)


def test_out_of_memory_halves_micro_batch_and_continues(reference, tiny_model, tiny_config, tmp_path):
    config, full = reference
    oom_config = tiny_config(tiny_model, config.data, tmp_path / "run", val_size=4)
    report = train(oom_config, console=quiet_console(), faults=Faults(oom_at_step=4))
    assert report.oom_backoffs == [{"step": 4, "micro_batch": 1, "grad_accum": 2}]
    assert report.settings["micro_batch"] == 1 and report.settings["grad_accum"] == 2
    assert report.status == "finished" and report.steps == 6
    after = losses_by_step(report)
    for step in (5, 6):  # resumed from checkpoint-2 with half batches: same samples per step
        assert after[step] == pytest.approx(losses_by_step(full)[step], rel=1e-3)


def test_nan_loss_stops_and_keeps_the_last_good_weights(tiny_model, tiny_config, support_data, tmp_path):
    import torch
    from safetensors.torch import load_file

    config = tiny_config(tiny_model, support_data, tmp_path / "run")
    with pytest.raises(ProblemFound) as err:
        train(config, console=quiet_console(), faults=Faults(nan_at_step=3))
    # Step 3's loss is NaN; the newest weights known to give a finite loss (step 2's) are those after step 1.
    assert "NaN at step 3" in str(err.value) and "last-good-step-1" in str(err.value)
    weights = load_file(str(tmp_path / "run" / "last-good-step-1" / "adapter_model.safetensors"))
    assert weights and all(torch.isfinite(v).all() for v in weights.values())
    assert json.loads((tmp_path / "run" / "report.json").read_text())["status"] == "nan"


def test_unpacked_rows_train_too(tiny_model, tiny_config, tiny_settings, support_data, tmp_path):
    config = tiny_config(tiny_model, support_data, tmp_path / "run", settings=tiny_settings(packing=False), max_steps=2)
    report = train(config, console=quiet_console())
    assert report.status == "finished" and not report.packed and report.train_rows == 48
