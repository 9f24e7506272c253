"""A Plan as the stable JSON document `gpudoctor plan --json` prints (sizes in GiB = 1024**3 bytes).

Keys: model, hardware, settings (with the recipe), memory {peak_allocated_gib (torch.cuda.max_memory_allocated),
peak_reserved_gib (torch.cuda.max_memory_reserved: the caching allocator, no CUDA context), device_used_gib
(what nvidia-smi / amd-smi show: reserved + context; on the CPU the process's resident memory), budget_gib,
usable_gib, percent_of_budget (of device_used), breakdown_gib}, fits, estimate {tokens_per_s, hours, ...},
data, notes, not_counted, suggestions. New keys may be added; none is renamed or removed.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from gpudoctor.plan.memory import device_used_bytes, total_params
from gpudoctor.plan.planner import HEADROOM_FRACTION
from gpudoctor.plan.types import Plan
from gpudoctor.types import GIB



def gib(value: float) -> float:
    return round(value / GIB, 2)


def plan_to_json(plan: Plan) -> dict[str, Any]:
    settings = dataclasses.asdict(plan.settings)
    memory = plan.memory
    used = device_used_bytes(memory)
    estimate = plan.estimate
    hardware = plan.hardware
    return {
        "model": {
            "name": plan.model.name,
            "hub_id": plan.model.hub_id,
            "licence": plan.model.licence,
            "params_billion": round(total_params(plan.model) / 1e9, 2),
        },
        "hardware": {
            "name": hardware.name,
            "device": hardware.device,
            "source": hardware.source,
            "budget_gib": gib(hardware.budget_bytes),
            "gpus_found": hardware.gpus,
            "bf16": hardware.bf16,
            "flash_attn": hardware.flash_attn,
            "peak_tflops": hardware.peak_tflops,
        },
        "settings": settings,  # every declared setting, in declaration order (gpudoctor/settings.py)
        "effective_batch": plan.settings.micro_batch * plan.settings.grad_accum * plan.settings.world_size,
        "memory": {
            "peak_allocated_gib": gib(memory.peak_allocated_bytes),
            "peak_reserved_gib": gib(memory.peak_reserved_bytes),
            "device_used_gib": gib(used),
            "budget_gib": gib(memory.budget_bytes),
            "usable_gib": gib(memory.budget_bytes * HEADROOM_FRACTION),
            "percent_of_budget": round(100 * used / memory.budget_bytes, 1) if memory.budget_bytes else None,
            "breakdown_gib": {key: gib(value) for key, value in memory.breakdown_bytes.items()},
        },
        "fits": plan.fits,
        "estimate": None
        if estimate is None
        else {
            "tokens_per_s": round(estimate.tokens_per_s, 1),
            "hours": round(estimate.hours, 2),
            "tokens_total": estimate.tokens_total,
            "tokens_basis": estimate.tokens_basis,
            "utilisation": round(estimate.utilisation, 3),
            "peak_tflops": hardware.peak_tflops,
        },
        "data": None if plan.coverage is None else dataclasses.asdict(plan.coverage),
        "notes": list(plan.notes),
        "not_counted": list(plan.not_counted),
        "suggestions": list(plan.suggestions),
    }
