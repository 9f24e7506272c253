"""Runs the checks and groups their findings per category, each with a one-line headline of the facts.

The headline is what flutter doctor prints beside [✓]: what was found, before any judgement. A
category's status is its worst finding's (ok < warning < crash < error). Only errors make a machine
not ready; a crashed check is counted apart, so `gpudoctor check` can say so and exit 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gpudoctor.doctor.finding import CATEGORIES, Finding, Status, worst
from gpudoctor.doctor.registry import Check, run_checks
from gpudoctor.doctor.selection import integrated_beside_discrete, pci_card_name, pci_cards, training_gpus
from gpudoctor.doctor.torch_build import bitsandbytes_version, torch_build
from gpudoctor.doctor.units import gib
from gpudoctor.probe.facts import GpuFacts, SystemFacts


@dataclass
class CategoryResult:
    name: str
    status: Status
    headline: str | None
    findings: list[Finding] = field(default_factory=list)

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.is_problem]


@dataclass
class Diagnosis:
    categories: list[CategoryResult]
    findings: list[Finding]

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.status == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.status == "warning"]

    @property
    def crashes(self) -> list[Finding]:
        """Checks that crashed: the doctor could not judge that part (a gpudoctor bug, never a blocker)."""
        return [f for f in self.findings if f.status == "crash"]

    @property
    def ready(self) -> bool:
        """Ready to train: no error-level finding (warnings and crashed checks do not block)."""
        return not self.errors


def diagnose(facts: SystemFacts, only: str | None = None, checks: list[Check] | None = None) -> Diagnosis:
    """Run the checks (all registered ones, or `checks`; just `only` if named) and group the findings."""
    findings = run_checks(facts, only=only, checks=checks)
    categories = []
    for name in CATEGORIES:
        mine = [f for f in findings if f.category == name]
        head = None if only else headline(name, facts)
        if head is None and not mine:
            continue
        categories.append(CategoryResult(name, worst([f.status for f in mine]), head, mine))
    return Diagnosis(categories, findings)


def headline(category: str, facts: SystemFacts) -> str | None:
    """One line of facts for `category`, or None when there is nothing to say."""
    return _HEADLINES[category](facts)


def gpu_line(gpu: GpuFacts) -> str:
    """'NVIDIA GeForce RTX 3090 Ti (24.0 GiB, driver 570.133.07, CUDA 12.8)'."""
    parts = []
    if gpu.total_bytes is not None:
        parts.append(gib(gpu.total_bytes))
    if gpu.vendor == "nvidia":
        if gpu.driver_version:
            parts.append(f"driver {gpu.driver_version}")
        if gpu.cuda_driver_version:
            parts.append(f"CUDA {gpu.cuda_driver_version}")
    else:
        if gpu.gfx_target:
            parts.append(gpu.gfx_target)
        if gpu.driver_version:
            parts.append(f"amdgpu {gpu.driver_version}")
    return f"{gpu.name} ({', '.join(parts)})" if parts else gpu.name


def _gpu_headline(facts: SystemFacts) -> str:
    if not facts.gpus:
        return "none found"
    line = "; ".join(gpu_line(g) for g in training_gpus(facts))
    aside = integrated_beside_discrete(facts)
    return line + (f" (+ integrated {', '.join(g.name for g in aside)}, not used)" if aside else "")


def _driver_headline(facts: SystemFacts) -> str | None:
    host = facts.host
    parts = []
    gpus = training_gpus(facts)
    vendors = {g.vendor for g in gpus}
    if "nvidia" in vendors:
        driver = next((g.driver_version for g in gpus if g.vendor == "nvidia" and g.driver_version), None)
        parts.append(f"NVIDIA {driver}" if driver else "NVIDIA")
        if host.cuda_toolkit_version:
            parts.append(f"CUDA toolkit {host.cuda_toolkit_version}")
    if "amd" in vendors:
        parts.append(f"amdgpu {host.amdgpu_version}" if host.amdgpu_version else "amdgpu")
        parts.append(f"ROCm {host.rocm_version}" if host.rocm_version else "no ROCm")
    if not vendors:
        parts.extend(f"{pci_card_name(card)} bound to {card.driver or 'no driver'}" for card in pci_cards(facts))
        if host.nvidia_module_version:
            parts.append(f"nvidia kernel module {host.nvidia_module_version} loaded")
    if not parts:
        return None
    if host.secure_boot is not None:
        parts.append(f"Secure Boot {'on' if host.secure_boot else 'off'}")
    return ", ".join(parts)


def _torch_headline(facts: SystemFacts) -> str:
    python = facts.python
    prefix = f"Python {python.version}{' (venv)' if python.in_venv else ''}, " if python.version else ""
    build = torch_build(facts)
    if build is None:
        return prefix + "torch not installed"
    kind = {"cuda": "CUDA", "rocm": "ROCm", "cpu": "CPU"}.get(build.kind or "", "unknown build")
    runtime = f" {build.runtime}" if build.runtime else ""
    line = f"{prefix}torch {build.version} ({kind}{runtime})"
    live = python.live
    if live is None or not live.ran:
        reason = live.skipped_reason if live and live.skipped_reason else "not run"
        return f"{line}, live check skipped ({reason})"
    if live.torch_error:
        return f"{line}, import fails"
    remembered = f" (live check remembered from {live.cached_at}; --refresh re-runs it)" if live.cached_at else ""
    return f"{line}, {'sees the GPU' if live.gpu_available else 'sees no GPU'}{remembered}"


def _bnb_headline(facts: SystemFacts) -> str:
    live = facts.python.live
    version = bitsandbytes_version(facts)
    if not version:
        return "not installed"
    tested = ", 4-bit matmul ran on the GPU" if live is not None and live.bnb_4bit_ok else ""
    return f"bitsandbytes {version}{tested}"


def _host_headline(facts: SystemFacts) -> str | None:
    host = facts.host
    parts = []
    os_name = host.os_pretty or " ".join(p for p in (host.os_id, host.os_version) if p)
    if os_name:
        parts.append(os_name + (" (WSL2)" if host.is_wsl else ""))
    if host.kernel:
        parts.append(f"kernel {host.kernel}")
    if host.ram_total_bytes is not None:
        parts.append(f"{gib(host.ram_total_bytes)} RAM")
    if host.cpu_count:
        parts.append(f"{host.cpu_count} CPUs")
    return ", ".join(parts) or None


def _disk_headline(facts: SystemFacts) -> str | None:
    parts = [
        f"{gib(d.free_bytes)} free at {d.path}" for d in facts.host.disks if d.free_bytes is not None
    ]
    return ", ".join(dict.fromkeys(parts)) or None


_HEADLINES = {
    "GPU": _gpu_headline,
    "Driver": _driver_headline,
    "PyTorch": _torch_headline,
    "bitsandbytes": _bnb_headline,
    "Host": _host_headline,
    "Disk": _disk_headline,
}
