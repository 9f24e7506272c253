"""Checks on the GPUs themselves: is there one, is it big enough, is its memory free, is its link full."""

from __future__ import annotations

from gpudoctor.doctor import fixes
from gpudoctor.doctor.finding import Verdict, error, ok, warning
from gpudoctor.doctor.nvidia import (
    module_not_built_for_kernel,
    open_driver_holding_card,
    nvidia_probe_error,
    nvml_version_mismatch,
    secure_boot_refuses_module,
    signing_key_not_enrolled,
)
from gpudoctor.doctor.registry import check
from gpudoctor.doctor.selection import integrated_beside_discrete, pci_cards, training_gpus
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
# When another row names the cause and its fix, gpu.present points there instead of repeating it.
SEE_DRIVER_ROW = " The Driver row has the fix."
# The driver's libraries answer but its kernel module is not loaded, for no cause the checks recognise:
# loading it by hand either works or prints the reason.
LOAD_NVIDIA_MODULE = (
    "sudo modprobe nvidia   # loads it, or says why not: 'Key was rejected by service' is Secure Boot, "
    "'not found' means no module for this kernel\n"
    "sudo dmesg | grep -iE 'nvidia|nvrm' | tail -n 20   # the kernel's own reason\n"
    "sudo reboot   # if the driver was installed since the last boot"
)


@check("gpu.present", category="GPU")
def gpu_present(facts: SystemFacts) -> Verdict:
    """An NVIDIA or AMD GPU is visible to its driver (says why not, and what to install)."""
    if facts.gpus:
        return ok(_found_line(facts))
    title, more, fix = _why_no_usable_gpu(facts)
    return error(title, _what_the_probes_saw(facts) + more, fix)


def _found_line(facts: SystemFacts) -> str:
    """'1 GPU found: NVIDIA GeForce RTX 4090 (integrated AMD Radeon Graphics set aside)'."""
    chosen = training_gpus(facts)
    count = f"{len(chosen)} GPU" + ("s" if len(chosen) > 1 else "")
    aside = integrated_beside_discrete(facts)
    note = f" (integrated {', '.join(g.name for g in aside)} set aside)" if aside else ""
    return f"{count} found: {', '.join(g.name for g in chosen)}{note}"


def _what_the_probes_saw(facts: SystemFacts) -> str:
    reason = "; ".join(_probe_reason(p) for p in facts.probes) or "no GPU probe ran"
    card_list = ", ".join(f"{c.vendor} {c.device_id} at {c.bus_id} (driver: {c.driver or 'none'})" for c in pci_cards(facts))
    return f"What the probes saw: {reason}. On the PCI bus: {card_list or 'no NVIDIA or AMD display controller'}."


def _why_no_usable_gpu(facts: SystemFacts) -> tuple[str, str, str | None]:
    """(title, a sentence for the detail, fix) for a machine whose probes found no GPU, most specific cause first."""
    vendors = {c.vendor for c in pci_cards(facts)}
    nvidia_error = nvidia_probe_error(facts)
    if facts.host.is_wsl:
        return "No GPU found inside WSL", "", fixes.WSL_DRIVER
    if nvml_version_mismatch(facts):
        return "No usable GPU: NVIDIA driver/library version mismatch", SEE_DRIVER_ROW, None
    if holder := open_driver_holding_card(facts):
        return f"No usable GPU: the open-source {holder} driver holds the NVIDIA card", SEE_DRIVER_ROW, None
    if module_not_built_for_kernel(facts):
        return "No usable GPU: the NVIDIA kernel module is not built for the running kernel", SEE_DRIVER_ROW, None
    if signing_key_not_enrolled(facts):
        return "No usable GPU: Secure Boot refuses the NVIDIA kernel module (its signing key is not enrolled)", SEE_DRIVER_ROW, None
    if secure_boot_refuses_module(facts):
        return "No usable GPU: Secure Boot refuses the unsigned NVIDIA kernel module", SEE_DRIVER_ROW, None
    if nvidia_error is not None:  # the libraries are installed: reinstalling them is not the fix, the module's load error is
        return f"No usable GPU: the NVIDIA driver answered '{nvidia_error.error or 'error'}'", "", LOAD_NVIDIA_MODULE
    if "nvidia" in vendors:
        return "No usable GPU: an NVIDIA card is on the PCI bus but the NVIDIA driver is not working", "", fixes.INSTALL_NVIDIA_DRIVER
    if "amd" in vendors:
        return "No usable GPU: an AMD card is on the PCI bus but amdgpu offers no compute device", "", fixes.INSTALL_ROCM
    return (
        "No GPU found: no NVIDIA or AMD card on the PCI bus",
        " Training still works on the CPU with a tiny demo model.",
        f"{fixes.CPU_DEMO}   # a tiny model trains on the CPU",
    )


@check("gpu.vram", category="GPU")
def gpu_vram(facts: SystemFacts) -> list[Verdict]:
    """Each GPU has at least 16 GB of memory (enough for QLoRA of a 7B model)."""
    return [_vram_verdict(gpu) for gpu in training_gpus(facts) if gpu.total_bytes is not None]


def _vram_verdict(gpu: GpuFacts) -> Verdict:
    total = gpu.total_bytes or 0
    if total >= MIN_VRAM_BYTES:
        return ok(f"GPU {gpu.index} has {gib(total)} of memory")
    return warning(
        f"GPU {gpu.index} has {gib(total)} of memory, under the 16 GB a 7B QLoRA run needs",
        "Smaller models (1–3B) still fit; the planner picks settings that fit this card.",
        "gpudoctor plan --model <model>   # shows what fits and how",
    )


@check("gpu.vram_in_use", category="GPU")
def gpu_vram_in_use(facts: SystemFacts) -> list[Verdict]:
    """No other program holds a large share of a GPU's memory."""
    return [_vram_use_verdict(gpu, used) for gpu in training_gpus(facts) if (used := _used_bytes(gpu)) is not None]


def _vram_use_verdict(gpu: GpuFacts, used: int) -> Verdict:
    if used < max(BUSY_VRAM_BYTES, BUSY_VRAM_SHARE * (gpu.total_bytes or 0)):
        return ok(f"GPU {gpu.index}: {gib(used)} already in use")
    holders = sorted(gpu.processes, key=lambda p: p.used_bytes or 0, reverse=True)
    listed = ", ".join(f"{p.name or '?'} (pid {p.pid}, {gib(p.used_bytes or 0)})" for p in holders[:4])
    detail = f"Held by: {listed}." if listed else "The driver does not say which processes hold it."
    killable = [p for p in holders if not _is_display(p.name)]
    fix = f"kill {' '.join(str(p.pid) for p in killable[:4])}   # or close those programs" if killable else None
    return warning(
        f"GPU {gpu.index}: {gib(used)} of {gib(gpu.total_bytes or used)} is held by other programs",
        detail + " Training can only use the free memory; the planner counts it.",
        fix,
    )


@check("gpu.pcie_link", category="GPU")
def gpu_pcie_link(facts: SystemFacts) -> list[Verdict]:
    """Each GPU's PCIe link runs at its full width (an idle card may lower its speed; that is normal)."""
    return [
        warning(
            f"GPU {gpu.index} runs at PCIe x{gpu.pcie_width} of x{gpu.pcie_max_width}",
            "Loading weights and any CPU offload are slower. The slot may share lanes with an M.2 drive "
            "(see the board manual) or be a narrower slot.",
            "Move the card to the first full-length x16 slot, or free the lanes it shares in the BIOS.",
        )
        for gpu in training_gpus(facts)
        if gpu.pcie_width and gpu.pcie_max_width and gpu.pcie_width < gpu.pcie_max_width
    ]


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
