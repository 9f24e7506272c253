"""The run's report: report.json (settings, planned vs measured memory, tokens/s, losses) and loss.png.

Both hold the whole run across --resume (history.py): losses once per step, the resume points
(report.json's "resumes", a dashed line each in loss.png), tokens and train seconds summed over the
segments. duration_s and start_step are this invocation's."""

from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpudoctor.atomic import write_bytes, write_json


@dataclass
class TrainReport:
    output: str
    model: str
    data: str
    settings: dict[str, Any]
    training: dict[str, Any]
    device: str
    status: str  # "finished" | "interrupted" | "nan"
    steps: int
    start_step: int
    records: int
    train_rows: int
    eval_rows: int
    packed: bool
    truncated: int
    duration_s: float
    tokens: int  # real (non-padding) training tokens of the whole run (every segment up to its checkpoint)
    tokens_per_s: float | None  # tokens / train_seconds
    planned_peak_bytes: int | None
    measured_peak_allocated_bytes: int | None
    measured_peak_reserved_bytes: int | None
    measured_peak_rss_bytes: int | None
    losses: list[list[float]] = field(default_factory=list)  # [step, loss]
    eval_losses: list[list[float]] = field(default_factory=list)
    final_eval_loss: float | None = None
    oom_backoffs: list[dict[str, int]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checkpoint: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    train_seconds: float | None = None  # seconds spent in training steps, whole run
    resumes: list[dict[str, Any]] = field(default_factory=list)  # {at_step, from_checkpoint, time} per --resume
    world_size: int = 1  # processes that trained this run (accelerate launch's WORLD_SIZE)
    strategy: str = "single"  # single | ddp | fsdp
    rank_peak_bytes: list[int] | None = None  # several processes: each rank's peak (GPU reserved, else process RSS), by rank

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("gpudoctor", "torch", "transformers", "peft", "bitsandbytes", "accelerate"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def write_report(report: TrainReport, folder: Path) -> None:
    write_json(folder / "report.json", report.to_dict())


def write_loss_plot(report: TrainReport, path: Path) -> bool:
    """A loss-over-steps PNG (matplotlib, Agg); False when there is nothing to draw."""
    figure = loss_figure(report)
    if figure is None:
        return False
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    write_bytes(path, buffer.getvalue())
    return True


def loss_figure(report: TrainReport) -> Any:
    """The loss-over-steps figure: training and eval losses of the whole run, a dashed line at each resume."""
    if not report.losses:
        return None
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4), dpi=110)
    axes = figure.subplots()
    axes.plot([s for s, _ in report.losses], [v for _, v in report.losses], label="training loss", color="#1f77b4")
    if report.eval_losses:
        axes.plot([s for s, _ in report.eval_losses], [v for _, v in report.eval_losses], "o-", label="eval loss", color="#d62728")
    for n, resume in enumerate(report.resumes):
        axes.axvline(resume["at_step"], linestyle="--", color="#7f7f7f", linewidth=1, label="resumed" if n == 0 else None)
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("loss (response tokens)")
    axes.set_title(f"{Path(report.model).name} on {Path(report.data).name}")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    return figure
