"""The memory model against published measurements of real runs (tests/plan/measurements.yaml)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gpudoctor.plan.memory import estimate
from gpudoctor.plan.types import Hardware
from gpudoctor.settings import Settings
from gpudoctor.types import GIB, ModelSpec
from gpudoctor.profiles import load_model

TABLE = yaml.safe_load((Path(__file__).parent / "measurements.yaml").read_text(encoding="utf-8"))
SETTING_KEYS = {"method", "double_quant", "lora_r", "lora_targets", "lora_dropout", "seq_len", "micro_batch", "grad_ckpt", "optimizer", "attn"}


def predicted_gib(row: dict) -> float:
    model = ModelSpec(**TABLE["models"][row["model"]]) if row["model"] in TABLE["models"] else load_model(row["model"])
    settings = Settings(**{k: v for k, v in row.items() if k in SETTING_KEYS})
    if settings.method == "lora":
        settings.quant = None
    result = estimate(model, settings, Hardware(device="cuda", name="measured", budget_bytes=200 * GIB))
    return result.peak_reserved_bytes / GIB


def relative_errors() -> list[tuple[dict, float, float]]:
    rows = []
    for row in TABLE["measurements"]:
        predicted = predicted_gib(row)
        rows.append((row, predicted, (predicted - row["measured_gib"]) / row["measured_gib"]))
    return rows


def test_every_row_names_its_source_and_kind():
    for row in TABLE["measurements"]:
        assert row["source"].startswith("http")
        assert row["kind"] in ("reserved", "capacity")


def test_mean_absolute_error_at_most_ten_percent():
    rows = relative_errors()
    mae = sum(abs(err) for _, _, err in rows) / len(rows)
    table = "\n".join(f"{r['model']:>14} seq {r['seq_len']:>6} measured {r['measured_gib']:6.1f} predicted {p:6.1f} ({e:+.0%})" for r, p, e in rows)
    assert mae <= 0.10, f"MAE {mae:.1%}\n{table}"


@pytest.mark.parametrize("row", TABLE["measurements"], ids=lambda r: f"{r['model']}-{r['seq_len']}")
def test_no_single_row_is_off_by_more_than_a_quarter(row):
    predicted = predicted_gib(row)
    assert abs(predicted - row["measured_gib"]) / row["measured_gib"] <= 0.25
