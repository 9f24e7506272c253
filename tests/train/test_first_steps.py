"""The first optimizer steps measure the plan on this machine: the heaviest rows come first (the rest in
the Trainer's seeded order), step 1's peak is compared with the memory model's figures, a footprint over
the budget re-plans before step 2 (smaller micro batch, more accumulation, same effective batch), and the
measurement is recorded as a correction later plans use. GPU readings are fakes; the run is on the CPU.
`plan --verify` runs a few steps with random weights of the tiny model's architecture."""

from __future__ import annotations

import io
import json

import pytest

from gpudoctor.plan import corrections
from gpudoctor.plan.request import plan_for
from gpudoctor.plan.types import Hardware
from gpudoctor.train import measure
from gpudoctor.train.packing import HeaviestFirst, heaviest_first
from gpudoctor.types import GIB

pytestmark = pytest.mark.slow

CARD = Hardware("cuda", "NVIDIA GeForce RTX 4090", 8 * GIB, bf16=True, flash_attn=True, peak_tflops=165.0, source="probe")


def quiet_console():
    from rich.console import Console

    return Console(file=io.StringIO(), width=200)


def test_heaviest_rows_come_first_and_the_rest_keep_the_seeded_shuffle():
    from accelerate.data_loader import SeedableRandomSampler

    lengths = [5, 90, 17, 90, 3, 64, 88, 12, 40, 77, 90, 1]
    assert heaviest_first([3, 1, 0, 2], [4, 9, 9, 1], 2) == [1, 2, 3, 0]  # ties keep the given order
    reference = SeedableRandomSampler(range(len(lengths)), data_seed=7)
    ours = HeaviestFirst(lengths, front=4, seed=7)
    for epoch in (0, 1, 2):
        reference.set_epoch(epoch)
        ours.set_epoch(epoch)
        trainer_order, order = list(reference), list(ours)
        if epoch == 0:
            front = order[:4]
            assert [lengths[i] for i in front] == [90, 90, 90, 88]
            assert order[4:] == [i for i in trainer_order if i not in front]
        else:
            assert order == trainer_order  # later epochs: the Trainer's order exactly
    assert list(HeaviestFirst(lengths, front=4, seed=7)) == list(HeaviestFirst(lengths, front=4, seed=7))  # a resumed run sees the same


def _prepared(tiny_model, tiny_config, data, folder, **changes):
    from gpudoctor.train.run import prepare

    return prepare(tiny_config(tiny_model, data, folder, **changes))


def test_the_first_micro_batch_is_the_longest_rows_full(tiny_model, tiny_config, support_data, tmp_path):
    from gpudoctor.train.callbacks import Faults, RunLog
    from gpudoctor.train.packing import TokenCounter
    from gpudoctor.train.run import build_model, make_trainer
    from gpudoctor.train.trainer import Batching

    prepared = _prepared(tiny_model, tiny_config, support_data, tmp_path / "out")
    model = build_model(prepared)
    trainer, _ = make_trainer(prepared, model, Batching(2, 2), RunLog(), TokenCounter(), quiet_console(), Faults())
    first = next(iter(trainer.get_train_dataloader()))
    lengths = [row.real_tokens for row in prepared.train_rows]
    longest = sorted(lengths, reverse=True)
    assert tuple(first["input_ids"].shape) == (2, longest[0])  # a full micro batch, as wide as the longest row
    order = list(trainer._get_train_sampler())
    assert [lengths[i] for i in order[:4]] == longest[:4]  # the first optimizer step (2 x 2 rows): the four longest
    assert sorted(order) == list(range(len(lengths)))


class FakeGpu:
    """torch.cuda's peaks and NVML's figure as a GPU would report them: one reading per first-step check."""

    def __init__(self, readings: list[dict[str, int]]):
        self.readings, self.calls = readings, 0

    def peaks(self) -> dict[str, int]:
        reading = self.readings[min(self.calls, len(self.readings) - 1)]
        self.calls += 1
        return {"allocated": reading["allocated"], "reserved": reading["reserved"]}

    def used(self) -> int:
        return self.readings[min(self.calls - 1, len(self.readings) - 1)]["device"]


def test_a_first_step_over_the_budget_re_plans_before_step_2_and_corrects_later_plans(
    tiny_model, tiny_config, support_data, tmp_path, monkeypatch
):
    from gpudoctor.train import run

    fake = FakeGpu([
        {"allocated": int(6.5 * GIB), "reserved": int(7.0 * GIB), "device": int(7.6 * GIB)},  # micro batch 2: over 90% of 8 GiB
        {"allocated": int(2.5 * GIB), "reserved": int(2.8 * GIB), "device": int(3.3 * GIB)},  # micro batch 1: fits
    ])  # fmt: skip
    monkeypatch.setattr(run, "device_name", lambda: "cuda")  # the run trains on the CPU; its readings are the fake card's
    monkeypatch.setattr(measure, "reset_gpu_peaks", lambda: None)
    monkeypatch.setattr(measure, "gpu_peaks", fake.peaks)
    monkeypatch.setattr(measure, "device_used", fake.used)
    store = tmp_path / "cache" / corrections.FILE_NAME
    console = quiet_console()
    config = tiny_config(tiny_model, support_data, tmp_path / "run", max_steps=3)
    report = run.train(config, console=console, hardware=CARD, corrections_file=store)

    assert fake.calls == 2  # step 1 of each attempt, nothing after
    assert report.status == "finished" and report.steps == 3 and report.oom_backoffs == []
    assert (report.settings["micro_batch"], report.settings["grad_accum"]) == (1, 2)  # the same 2 rows per optimizer step
    assert [step for step, _ in report.losses] == [1, 2, 3]  # step 1 ran again with the new batching, once in the log
    said = console.file.getvalue()
    assert "step 1 peaked at 7.60 GiB, over the 7.20 GiB a run may use (90% of 8.00 GiB): micro batch → 1, gradient accumulation → 2" in said
    assert "continuing from the start" in said
    assert any(note.startswith("step 1 (the longest rows, micro batch 2, seq_len 256): torch allocated 6.50 GiB where") for note in report.notes)
    assert any(note.startswith("step 1 measured over the budget 1×: re-planned before step 2") for note in report.notes)

    entries = corrections.load(store)
    assert len(entries) == 1
    (entry,) = entries.values()
    assert entry.key["device"]["name"] == CARD.name and entry.key["model"]["hidden_size"] == 64
    assert sorted(m.shape["micro_batch"] for m in entry.measurements) == [1, 2]
    fixed = {k: v for k, v in config.settings.__dict__.items()}
    plan, _ = plan_for(str(tiny_model), fixed, hardware=CARD, corrections_file=store)
    assert corrections.device_figure(plan.memory) == pytest.approx(7.6 * GIB, rel=1e-3)  # the measured batch: what was measured
    assert not plan.fits
    predicted = entry.worst().figures["device"][1] / GIB
    assert plan.notes[0].startswith(f"corrected by a measurement on this card on {corrections.today()}: measured 7.60 GiB where {predicted:.2f} GiB was predicted")


def test_a_first_step_within_the_budget_is_recorded_and_goes_on(tiny_model, tiny_config, support_data, tmp_path):
    from gpudoctor.train.run import train

    store = tmp_path / "cache" / corrections.FILE_NAME
    cpu = Hardware("cpu", "CPU (test)", 64 * GIB, source="cpu")
    report = train(tiny_config(tiny_model, support_data, tmp_path / "run", max_steps=2), console=quiet_console(), hardware=cpu, corrections_file=store)
    assert report.status == "finished" and report.settings["micro_batch"] == 2
    assert any(note.startswith("step 1 (the longest rows, micro batch 2, seq_len 256): process RSS ") for note in report.notes)
    (entry,) = corrections.load(store).values()
    (measurement,) = entry.measurements
    assert measurement.source == "train" and measurement.shape == {"seq_len": 256, "micro_batch": 2, "grad_accum": 1}
    rss, predicted = measurement.figures["rss"]
    from gpudoctor.plan.memory import estimate
    from gpudoctor.profiles import load_model

    settings = tiny_config(tiny_model, support_data, tmp_path).settings
    assert 0 < rss <= report.measured_peak_rss_bytes
    assert predicted == corrections.device_figure(estimate(load_model(str(tiny_model)), settings, cpu))


def test_plan_verify_measures_the_tiny_model_on_the_cpu(cli, tiny_model):
    args = ["plan", "--model", tiny_model, "--gpu", "cpu", "--seq-len", "128", "--micro-batch", "2"]
    result = cli(*args, "--verify")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "Verified here (cpu): 3 optimizer steps with random weights, seq_len 128, micro batch 2" in out
    row = next(line for line in out.splitlines() if line.strip().startswith("process RSS"))
    measured_gib, predicted_gib, ratio = (float(x) for x in row.split()[-3:])
    assert measured_gib > 0.1 and predicted_gib > 0.1 and ratio == pytest.approx(measured_gib / predicted_gib, abs=0.02)
    store = corrections.default_file()
    assert f"recorded in {store}" in out and store.is_file()
    (entry,) = corrections.load(store).values()
    assert entry.measurements[0].source == "verify"
    again = json.loads(cli(*args, "--json").stdout)
    assert "measurement on this machine on" in again["notes"][0] and "verify" in again["notes"][0]


def test_plan_verify_json_has_the_figures(cli, tiny_model, monkeypatch):
    from gpudoctor.plan.corrections import Measurement

    def fake_verify(plan, **kwargs):
        judged = measure.Judged(plan.settings, plan.memory, Measurement("2025-06-01", "verify", {"seq_len": 128, "micro_batch": 2, "grad_accum": 1}, {"rss": [GIB, 2 * GIB]}), GIB, 10 * GIB)
        return measure.Verified(judged, "cpu", 3)

    monkeypatch.setattr(measure, "verify", fake_verify)
    result = cli("plan", "--model", tiny_model, "--gpu", "cpu", "--seq-len", "128", "--verify", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)["verify"]
    assert doc["figures"] == {"rss": {"measured_gib": 1.0, "predicted_gib": 2.0, "ratio": 0.5}} and doc["over_budget"] is False
    assert doc["settings"]["micro_batch"] == 2 and doc["steps"] == 3
