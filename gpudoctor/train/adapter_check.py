"""After training: did the adapter move? A LoRA adapter starts as a no-op (peft's default lora_B is
zero), so one whose lora_B weights still equal their initial values changes nothing, whatever the
loss curve says. That is an error (exit 1), not a success: the adapter and report.json are kept
(report.json's status says "unchanged") and the line says what probably caused it.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from gpudoctor.errors import ProblemFound

# Adam's steps are about lr in size, so even lr 1e-6 moves lora_B by 1e-6 a step; below this it did not move.
EPSILON = 1e-8


def snapshot(model: Any) -> dict[str, Any]:
    """The adapter's lora_B weights as built (copies on the CPU; small: r x out per target)."""
    return {name: p.detach().to("cpu", copy=True) for name, p in model.named_parameters() if "lora_B" in name}


def largest_change(initial: dict[str, Any], model: Any) -> float | None:
    """The largest absolute change of any lora_B weight since `initial`; None when there is none to compare."""
    now = {name: p for name, p in model.named_parameters() if name in initial}
    if not now:
        return None
    return max(float((p.detach().to("cpu").float() - initial[name].float()).abs().max()) for name, p in now.items())


def likely_cause(lr: float, lora_alpha: float, steps: int) -> str:
    """What most often leaves an adapter where it started, for these settings."""
    if steps <= 0:
        return "no optimizer step ran; check --max-steps and --epochs"
    if lora_alpha <= 0:
        return f"lora_alpha {lora_alpha:g} scales the adapter's output and its gradients to zero; use --lora-alpha 2x --lora-r"
    if lr < 1e-6:
        return f"the learning rate {lr:g} is too small to move it in {steps} steps; use --lr 1e-4 to 2e-4"
    return f"the gradients reached no adapter weight (lr {lr:g}, lora_alpha {lora_alpha:g}); check --lora-targets and the data's labels"


def check_moved(initial: dict[str, Any], model: Any, report: Any, output: Path) -> None:
    """ProblemFound (exit 1) when no lora_B weight moved more than EPSILON; report.json is rewritten first
    with status "unchanged" and a note, so the run's record says so too."""
    change = largest_change(initial, model)
    if change is None or change > EPSILON:
        return
    from gpudoctor.train.report import write_report

    settings, training = report.settings, report.training
    cause = likely_cause(float(training["lr"]), float(settings["lora_alpha"]), int(report.steps))
    note = f"the adapter did not change from its initial values (largest lora_B change {change:.1e}): {cause}"
    write_report(replace(report, status="unchanged", notes=[*report.notes, note]), output)
    raise ProblemFound(f"{output}: {note}; the adapter there changes nothing, train again")
