"""Memory corrections (gpudoctor.plan.corrections): the key, the file, the correction of an estimate,
plans through plan_for that fit with a measurement and say so, and `plan --verify`'s refusals, which
come before torch is imported. No torch here: the measuring half is tests/train/test_first_steps.py."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from gpudoctor.plan import corrections
from gpudoctor.plan.corrections import Measurement
from gpudoctor.plan.hardware import hardware_from_gpu, reference_gpu
from gpudoctor.plan.memory import estimate
from gpudoctor.plan.request import plan_for
from gpudoctor.plan.types import Hardware
from gpudoctor.profiles import load_gpu, load_model
from gpudoctor.settings import Settings
from gpudoctor.types import GIB

MISTRAL = load_model("mistral-7b")
CARD = Hardware("cuda", "NVIDIA GeForce RTX 4090", 24 * GIB, bf16=True, flash_attn=True, peak_tflops=165.0, source="probe")
FIXED = {"seq_len": 1024, "micro_batch": 2, "grad_accum": 8, "grad_ckpt": True, "optimizer": "paged_adamw_8bit", "compute_dtype": "bf16", "attn": "sdpa"}


def settings(**changes) -> Settings:
    from gpudoctor.settings import settings_from

    return settings_from({**FIXED, **changes})


def measured(figures: dict[str, list[int]], shape: dict[str, int] | None = None, date: str = "2025-06-01") -> Measurement:
    return Measurement(date, "train", shape or {"seq_len": 1024, "micro_batch": 2, "grad_accum": 8}, figures)


def record_for(path, model, chosen: Settings, hardware: Hardware, scale: float) -> Measurement:
    """Record a measurement that found `scale` x the model's figures for `chosen` on `hardware`."""
    predicted = corrections.predicted_figures(estimate(model, chosen, hardware), hardware.device)
    measurement = measured({name: [int(value * scale), value] for name, value in predicted.items()}, {k: getattr(chosen, k) for k in corrections.SPAN})
    corrections.record(corrections.correction_key(model, chosen, hardware), measurement, path)
    return measurement


def test_the_key_spans_seq_len_and_batch_but_not_what_changes_bytes():
    key = corrections.correction_key(MISTRAL, settings(), CARD)
    assert key == corrections.correction_key(MISTRAL, settings(seq_len=4096, micro_batch=8, grad_accum=2, lora_alpha=64), CARD)
    for change in ({"grad_ckpt": False}, {"compute_dtype": "fp16"}, {"method": "lora"}, {"attn": "flash"}, {"lora_r": 64}, {"optimizer": "adamw_torch"}):
        assert corrections.correction_key(MISTRAL, settings(**change), CARD) != key, change
    assert corrections.correction_key(load_model("llama-2-7b"), settings(), CARD) != key
    assert corrections.correction_key(MISTRAL, settings(), dataclasses.replace(CARD, name="NVIDIA GeForce RTX 3090")) != key
    assert set(key) == {"device", "versions", "model", "settings"} and set(key["versions"]) == {"torch", "transformers", "peft", "bitsandbytes"}
    assert "name" not in key["model"] and key["model"]["architecture"] == "mistral" and key["model"]["head_dim"] == 128
    assert corrections.correction_key(MISTRAL, settings(), reference_gpu(24)) is None  # no card here to have measured


def test_the_driver_is_read_from_this_machine(host):
    host("rtx-4090-ubuntu")
    driver = corrections.driver_version("cuda")
    assert driver.startswith("nvidia ") and driver != "nvidia "
    assert corrections.correction_key(MISTRAL, settings(), CARD)["device"]["driver"] == driver
    host("no-gpu")
    assert corrections.driver_version("cuda") == "" and corrections.driver_version("cpu") == ""


def test_the_file_keeps_one_measurement_per_shape_and_is_written_whole(tmp_path):
    path = tmp_path / "cache" / corrections.FILE_NAME
    key = corrections.correction_key(MISTRAL, settings(), CARD)
    corrections.record(key, measured({"device": [10 * GIB, 9 * GIB]}), path)
    corrections.record(key, measured({"device": [11 * GIB, 9 * GIB]}), path)  # the same shape again: replaces
    corrections.record(key, measured({"device": [5 * GIB, 5 * GIB]}, {"seq_len": 512, "micro_batch": 1, "grad_accum": 16}), path)
    entry = corrections.load(path)[corrections.key_id(key)]
    assert [m.figures["device"][0] for m in entry.measurements] == [11 * GIB, 5 * GIB]
    assert entry.worst().figures["device"][0] == 11 * GIB  # the one that found the most beyond the model counts
    assert json.loads(path.read_text())["format"] == corrections.FORMAT
    assert sorted(p.name for p in path.parent.iterdir()) == [corrections.FILE_NAME]  # no temporary file left
    path.write_text("{ not json")
    assert corrections.load(path) == {}  # an unreadable file is no correction, not an error
    assert corrections.load(tmp_path / "missing.json") == {}


def test_a_measurement_scales_each_figure_upwards_only():
    chosen = settings()
    found = estimate(MISTRAL, chosen, CARD)
    whole = corrections.device_figure(found)
    context = found.breakdown_bytes["cuda_context"]
    up = corrections.corrected(found, measured({"allocated": [found.peak_allocated_bytes * 2, found.peak_allocated_bytes], "device": [int(whole * 1.2), whole]}))
    assert up.peak_allocated_bytes == pytest.approx(found.peak_allocated_bytes * 2, rel=1e-6)
    # allocation doubled: the footprint grows by at least as much (the reserve never falls below it)
    assert corrections.device_figure(up) >= whole + found.peak_allocated_bytes - 1
    assert up.breakdown_bytes["measured_correction"] == corrections.device_figure(up) - whole
    torch_only = corrections.corrected(found, measured({"reserved": [int((whole - context) * 1.5), whole - context]}))
    assert corrections.device_figure(torch_only) == pytest.approx(context + (whole - context) * 1.5, rel=1e-6)  # the context is not scaled
    down = measured({"device": [whole // 2, whole]})
    assert corrections.corrected(found, down) is found


def test_plan_for_fits_with_the_correction_and_says_so(tmp_path):
    path = tmp_path / corrections.FILE_NAME
    fixed = {**FIXED, "grad_ckpt": True}
    before, _ = plan_for("mistral-7b", fixed, hardware=CARD, corrections_file=path)
    assert before.fits and not any("measurement" in note for note in before.notes)
    measurement = record_for(path, MISTRAL, before.settings, CARD, 1.3)
    after, _ = plan_for("mistral-7b", fixed, hardware=CARD, corrections_file=path)
    assert corrections.device_figure(after.memory) == pytest.approx(corrections.device_figure(before.memory) * 1.3, rel=1e-3)
    measured_gib, predicted_gib = (value / GIB for value in measurement.figures["device"])
    assert after.notes[0].startswith(f"corrected by a measurement on this card on 2025-06-01: measured {measured_gib:.2f} GiB where {predicted_gib:.2f} GiB was predicted")
    # The same recipe at another micro batch and seq_len is scaled too; a plan of another recipe is not.
    longer, _ = plan_for("mistral-7b", {**fixed, "seq_len": 2048, "micro_batch": 1, "grad_accum": 16}, hardware=CARD, corrections_file=path)
    assert longer.notes[0].startswith("corrected by a measurement") and longer.memory.breakdown_bytes["measured_correction"] > 0
    other, _ = plan_for("mistral-7b", {**fixed, "grad_ckpt": False}, hardware=CARD, corrections_file=path)
    assert "measured_correction" not in other.memory.breakdown_bytes and not other.notes[0].startswith("corrected")


def test_a_correction_moves_the_planner_to_what_fits(tmp_path):
    path = tmp_path / corrections.FILE_NAME
    open_batch = {k: v for k, v in FIXED.items() if k not in ("micro_batch", "grad_accum")}
    first, _ = plan_for("mistral-7b", open_batch, hardware=CARD, corrections_file=path)
    record_for(path, MISTRAL, first.settings, CARD, 1.6)  # this card holds 60% more than the model said
    second, _ = plan_for("mistral-7b", open_batch, hardware=CARD, corrections_file=path)
    assert second.fits and second.settings.micro_batch < first.settings.micro_batch
    assert second.settings.micro_batch * second.settings.grad_accum == first.settings.micro_batch * first.settings.grad_accum
    assert corrections.device_figure(second.memory) <= CARD.budget_bytes * 0.9
    pinned, _ = plan_for("mistral-7b", {**open_batch, "micro_batch": first.settings.micro_batch}, hardware=CARD, corrections_file=path)
    assert not pinned.fits  # the measured batch itself no longer fits


def test_a_lower_measurement_is_said_but_keeps_the_margin(tmp_path):
    path = tmp_path / corrections.FILE_NAME
    plan, _ = plan_for("mistral-7b", FIXED, hardware=CARD, corrections_file=path)
    record_for(path, MISTRAL, plan.settings, CARD, 0.8)
    again, _ = plan_for("mistral-7b", FIXED, hardware=CARD, corrections_file=path)
    assert again.memory == plan.memory
    assert again.notes[0].startswith("a measurement on this card on 2025-06-01: measured") and "keeps the memory model's larger figure" in again.notes[0]


def test_a_profile_card_on_another_machine_is_not_corrected_by_this_one(tmp_path):
    path = tmp_path / corrections.FILE_NAME
    record_for(path, MISTRAL, settings(), CARD, 1.5)
    other = hardware_from_gpu(load_gpu("rtx-3090"))
    plan, _ = plan_for("mistral-7b", FIXED, hardware=other, corrections_file=path)
    assert "measured_correction" not in plan.memory.breakdown_bytes


def test_verify_is_refused_in_one_line_before_torch_is_imported(tmp_path):
    code = (
        "import sys\nfrom gpudoctor.cli.main import run\n"
        "codes = [run(['plan', '--model', 'mistral-7b', '--gpu', 'cpu', '--verify']),\n"
        "         run(['plan', '--model', 'mistral-7b', '--gpu', 'rtx-4090', '--verify']),\n"
        "         run(['plan', '--model', 'mistral-7b', '--vram-gib', '24', '--verify']),\n"
        "         run(['plan', '--model', 'mistral-7b', '--verify', '--emit', 'gpudoctor'])]\n"
        "print(codes, [m for m in ('torch', 'transformers', 'peft', 'bitsandbytes', 'accelerate') if m in sys.modules])\n"
    )
    env = {**__import__("os").environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "COLUMNS": "400"}
    env["GPUDOCTOR_TEST_HOST"] = "no-gpu"  # the child probes "this machine": one without a GPU (tests/conftest.py)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert done.stdout.strip().splitlines()[-1] == "[1, 2, 2, 2] []", done.stderr
    errors = done.stderr.strip().splitlines()
    assert len(errors) == 4
    assert "7.2B parameters" in errors[0] and "run `gpudoctor plan --model mistral-7b --verify` where the GPU you will train on is" in errors[0]
    assert "drop --gpu" in errors[1] and "drop --vram-gib" in errors[2] and "then --emit plans with it" in errors[3]
    assert not (tmp_path / "cache").exists()
