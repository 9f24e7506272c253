"""An adapter that did not move from its initial values is exit 1, not a success (gpudoctor/train/adapter_check.py):
a learning rate too small to move lora_B, or lora_alpha 0 (which zeroes the adapter's output and gradients).
The adapter and report.json are still written; report.json says status "unchanged"."""

from __future__ import annotations

import io
import json

import pytest
import torch
from rich.console import Console

from gpudoctor.errors import ProblemFound
from gpudoctor.train import adapter_check
from gpudoctor.train.report import TrainReport

TRAIN = ("--skip-check", "--max-steps", "3", "--seq-len", "256", "--micro-batch", "2", "--grad-accum", "1", "--lora-r", "8")


def test_a_tiny_learning_rate_is_exit_1_with_the_report_kept(cli, tiny_model, support_data, tmp_path):
    out = tmp_path / "out"
    result = cli("train", "--model", tiny_model, "--data", support_data, "--output", out, "--lr", "1e-12", *TRAIN)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert [line for line in lines if line.startswith("gpudoctor: error: ")] == lines[-1:] and "Traceback" not in result.stderr
    assert lines[-1].startswith(f"gpudoctor: error: {out}: the adapter did not change from its initial values")
    assert "the learning rate 1e-12 is too small" in lines[-1] and "--lr 1e-4" in lines[-1]
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "unchanged" and "did not change" in report["notes"][-1]
    assert (out / "adapter_model.safetensors").is_file()
    assert "adapter:" not in result.stdout  # no success summary


def test_lora_alpha_0_through_the_api_is_a_problem(tiny_model, support_data, tmp_path, tiny_config, tiny_settings):
    """lora_alpha 0 is refused as a setting; here it reaches the trainer directly (a config built in code)."""
    from gpudoctor.train.run import train

    config = tiny_config(tiny_model, support_data, tmp_path / "out", settings=tiny_settings(lora_alpha=0), max_steps=2)
    with pytest.raises(ProblemFound, match="lora_alpha 0 scales the adapter's output and its gradients to zero"):
        train(config, console=Console(file=io.StringIO(), width=100))
    assert json.loads((tmp_path / "out" / "report.json").read_text())["status"] == "unchanged"


class Adapter(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lora_A = torch.nn.Linear(4, 2, bias=False)
        self.lora_B = torch.nn.Linear(2, 4, bias=False)
        torch.nn.init.zeros_(self.lora_B.weight)


def _report(tmp_path, **changes) -> TrainReport:
    fields = dict(
        output=str(tmp_path), model="m", data="d", settings={"lora_alpha": 16}, training={"lr": 2e-4}, device="cpu", status="finished",
        steps=5, start_step=0, records=1, train_rows=1, eval_rows=0, packed=True, truncated=0, duration_s=1.0, tokens=1, tokens_per_s=None,
        planned_peak_bytes=None, measured_peak_allocated_bytes=None, measured_peak_reserved_bytes=None, measured_peak_rss_bytes=None,
        losses=[], eval_losses=[], final_eval_loss=None, oom_backoffs=[], notes=[], checkpoint=None, versions={},
    )  # fmt: skip
    fields.update(changes)
    known = set(TrainReport.__dataclass_fields__)
    return TrainReport(**{k: v for k, v in fields.items() if k in known})


def test_check_moved_passes_a_moved_adapter_and_refuses_a_still_one(tmp_path):
    model = Adapter()
    initial = adapter_check.snapshot(model)
    assert list(initial) == ["lora_B.weight"]
    with pytest.raises(ProblemFound, match="the gradients reached no adapter weight"):
        adapter_check.check_moved(initial, model, _report(tmp_path), tmp_path)
    assert json.loads((tmp_path / "report.json").read_text())["status"] == "unchanged"
    with torch.no_grad():
        model.lora_B.weight[0, 0] = 1e-4
    adapter_check.check_moved(initial, model, _report(tmp_path / "moved"), tmp_path / "moved")  # no error
    assert not (tmp_path / "moved").exists()


def test_no_lora_weights_means_nothing_to_judge(tmp_path):
    model = torch.nn.Linear(2, 2)
    adapter_check.check_moved(adapter_check.snapshot(model), model, _report(tmp_path), tmp_path)
    assert not (tmp_path / "report.json").exists()


@pytest.mark.parametrize(
    ("lr", "alpha", "steps", "needle"),
    [(2e-4, 16, 0, "no optimizer step ran"), (2e-4, 0, 5, "lora_alpha 0"), (1e-9, 16, 5, "learning rate 1e-09"), (2e-4, 16, 5, "--lora-targets")],
)
def test_the_likely_cause(lr, alpha, steps, needle):
    assert needle in adapter_check.likely_cause(lr, alpha, steps)
