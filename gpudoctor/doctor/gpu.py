"""Checks on the GPUs themselves: is there one, is it big enough, is its memory free, is its link full."""

from __future__ import annotations

from gpudoctor.doctor import fixes
from gpudoctor.doctor.finding import Finding
from gpudoctor.doctor.registry import check
from gpudoctor.doctor.selection import integrated_beside_discrete, training_gpus
from gpudoctor.doctor.units import GIB, gib
from gpudoctor.probe.facts import GpuFacts, SystemFacts, VendorProbe

# QLoRA of a 7B model needs about 16 GB of VRAM; marketed "16 GB" cards report ~16 376 MiB, so the
# line sits at 16 GB (decimal) = 14.9 GiB and a 16 GB card passes.
MIN_VRAM_BYTES = 16 * 10**9
# Other programs holding more than this (the larger of 1 GiB and 10% of the card) shrink what training
# can use; an idle desktop's framebuffers and the driver's own reserve stay under it.
BUSY_VRAM_BYTES = 1 * GIB
BUSY_VRAM_SHARE = 0.10
# Display servers and compositors: the desktop needs them, so the fix never says to kill them.
DISPLAY_PROCESSES = ("xorg", "xwayland", "gnome-shell", "kwin_wayland", "kwin_x11", "plasmashell", "sway", "mutter")


@check("gpu.present", category="GPU")
def gpu_present(facts: SystemFacts) -> list[Finding]:
    """An NVIDIA or AMD GPU is visible to its driver (says why not, and what to install)."""
    if facts.gpus:
        chosen = training_gpus(facts)
        names = ", ".join(g.name for g in chosen)
        count = f"{len(chosen)} GPU" + ("s" if len(chosen) > 1 else "")
        aside = integrated_beside_discrete(facts)
        note = f" (integrated {', '.join(g.name for g in aside)} set aside)" if aside else ""
        return [Finding("gpu.present", "GPU", "ok", f"{count} found: {names}{note}")]
    reason = "; ".join(_probe_reason(p) for p in facts.probes) or "no GPU probe ran"
    cards = [c for c in facts.pci_gpus if c.vendor in ("nvidia", "amd")]
    card_list = ", ".join(f"{c.vendor} {c.device_id} at {c.bus_id} (driver: {c.driver or 'none'})" for c in cards)
    detail = f"What the probes saw: {reason}. On the PCI bus: {card_list or 'no NVIDIA or AMD display controller'}."
    nvidia_error = next((p for p in facts.probes if p.vendor == "nvidia" and p.status == "error"), None)
    nvidia_cards = [c for c in cards if c.vendor == "nvidia"]
    amd_cards = [c for c in cards if c.vendor == "amd"]
    host = facts.host

    if host.is_wsl:
        title, fix = "No GPU found inside WSL", fixes.WSL_DRIVER
    elif nvidia_error is not None and "mismatch" in (nvidia_error.error or "").lower():
        title = "No usable GPU: NVIDIA driver/library version mismatch"
        detail += " The driver was updated but the old kernel module is still loaded; a reboot loads the new one."
        fix = fixes.REBOOT
    elif any(c.driver == "nouveau" for c in nvidia_cards) or ("nouveau" in host.loaded_modules and nvidia_cards):
        title = "No usable GPU: the open-source nouveau driver holds the NVIDIA card"
        detail += " The Driver row has the fix."
        fix = None
    elif host.secure_boot and host.nvidia_module_signed is False:
        title = "No usable GPU: Secure Boot refuses the unsigned NVIDIA kernel module"
        detail += " The Driver row has the fix."
        fix = None
    elif nvidia_error is not None:
        title = f"No usable GPU: the NVIDIA driver answered '{nvidia_error.error or 'error'}'"
        fix = fixes.INSTALL_NVIDIA_DRIVER
    elif nvidia_cards:
        title = "No usable GPU: an NVIDIA card is on the PCI bus but the NVIDIA driver is not working"
        fix = fixes.INSTALL_NVIDIA_DRIVER
    elif amd_cards:
        title = "No usable GPU: an AMD card is on the PCI bus but amdgpu offers no compute device"
        fix = fixes.INSTALL_ROCM
    else:
        title = "No GPU found: no NVIDIA or AMD card on the PCI bus"
        detail += " Training still works on the CPU with a tiny demo model."
        fix = f"{fixes.CPU_DEMO}   # a tiny model trains on the CPU"
    return [Finding("gpu.present", "GPU", "error", title, detail, fix)]


@check("gpu.vram", category="GPU")
def gpu_vram(facts: SystemFacts) -> list[Finding]:
    """Each GPU has at least 16 GB of memory (enough for QLoRA of a 7B model)."""
    findings = []
    for gpu in training_gpus(facts):
        if gpu.total_bytes is None:
            continue
        if gpu.total_bytes < MIN_VRAM_BYTES:
            findings.append(
                Finding(
                    "gpu.vram",
                    "GPU",
                    "warning",
                    f"GPU {gpu.index} has {gib(gpu.total_bytes)} of memory, under the 16 GB a 7B QLoRA run needs",
                    "Smaller models (1–3B) still fit; the planner picks settings that fit this card.",
                    "gpudoctor plan --model <model>   # shows what fits and how",
                )
            )
        else:
            findings.append(Finding("gpu.vram", "GPU", "ok", f"GPU {gpu.index} has {gib(gpu.total_bytes)} of memory"))
    return findings


@check("gpu.vram_in_use", category="GPU")
def gpu_vram_in_use(facts: SystemFacts) -> list[Finding]:
    """No other program holds a large share of a GPU's memory."""
    findings = []
    for gpu in training_gpus(facts):
        used = _used_bytes(gpu)
        if used is None:
            continue
        if used < max(BUSY_VRAM_BYTES, BUSY_VRAM_SHARE * (gpu.total_bytes or 0)):
            findings.append(Finding("gpu.vram_in_use", "GPU", "ok", f"GPU {gpu.index}: {gib(used)} already in use"))
            continue
        holders = sorted(gpu.processes, key=lambda p: p.used_bytes or 0, reverse=True)
        listed = ", ".join(f"{p.name or '?'} (pid {p.pid}, {gib(p.used_bytes or 0)})" for p in holders[:4])
        detail = f"Held by: {listed}." if listed else "The driver does not say which processes hold it."
        detail += " Training can only use the free memory; the planner counts it."
        killable = [p for p in holders if not _is_display(p.name)]
        fix = f"kill {' '.join(str(p.pid) for p in killable[:4])}   # or close those programs" if killable else None
        findings.append(
            Finding(
                "gpu.vram_in_use",
                "GPU",
                "warning",
                f"GPU {gpu.index}: {gib(used)} of {gib(gpu.total_bytes or used)} is held by other programs",
                detail,
                fix,
            )
        )
    return findings


@check("gpu.pcie_link", category="GPU")
def gpu_pcie_link(facts: SystemFacts) -> list[Finding]:
    """Each GPU's PCIe link runs at its full width (an idle card may lower its speed; that is normal)."""
    findings = []
    for gpu in training_gpus(facts):
        if not gpu.pcie_width or not gpu.pcie_max_width or gpu.pcie_width >= gpu.pcie_max_width:
            continue
        findings.append(
            Finding(
                "gpu.pcie_link",
                "GPU",
                "warning",
                f"GPU {gpu.index} runs at PCIe x{gpu.pcie_width} of x{gpu.pcie_max_width}",
                "Loading weights and any CPU offload are slower. The slot may share lanes with an M.2 drive "
                "(see the board manual) or be a narrower slot.",
                "Move the card to the first full-length x16 slot, or free the lanes it shares in the BIOS.",
            )
        )
    return findings


def _probe_reason(probe: VendorProbe) -> str:
    if probe.status == "ok":
        return f"{probe.vendor} via {probe.source}: {probe.device_count} device(s)"
    return f"{probe.vendor} via {probe.source}: {probe.error or ('no device' if probe.status == 'absent' else probe.status)}"


def _used_bytes(gpu: GpuFacts) -> int | None:
    if gpu.used_bytes is not None:
        return gpu.used_bytes
    if gpu.processes and all(p.used_bytes is not None for p in gpu.processes):
        return sum(p.used_bytes or 0 for p in gpu.processes)
    return None


def _is_display(name: str | None) -> bool:
    base = (name or "").rsplit("/", 1)[-1].lower()
    return any(base.startswith(d) for d in DISPLAY_PROCESSES)
