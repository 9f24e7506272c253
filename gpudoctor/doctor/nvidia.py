"""Checks for NVIDIA machines: the driver is new enough for torch's CUDA, and nothing stops it loading.

The predicates below (`nvml_version_mismatch`, `nouveau_holds_card`, `secure_boot_refuses_module`)
are also what gpu.present asks when it explains why no GPU is usable; the fix is said here, once.
"""

from __future__ import annotations

from gpudoctor import compat
from gpudoctor.doctor import fixes
from gpudoctor.doctor.finding import Verdict, error, ok, warning
from gpudoctor.doctor.registry import check
from gpudoctor.doctor.selection import pci_cards, training_gpus
from gpudoctor.doctor.torch_build import torch_build
from gpudoctor.probe.facts import SystemFacts, VendorProbe


def nvidia_probe_error(facts: SystemFacts) -> VendorProbe | None:
    """The NVIDIA probe that found the driver but failed (NVML init error), if any."""
    return next((p for p in facts.probes if p.vendor == "nvidia" and p.status == "error"), None)


def nvml_version_mismatch(facts: SystemFacts) -> bool:
    """NVML answered 'Driver/library version mismatch': the driver was updated without a reboot."""
    failed = nvidia_probe_error(facts)
    return failed is not None and "mismatch" in (failed.error or "").lower()


def nouveau_holds_card(facts: SystemFacts) -> bool:
    """An NVIDIA card is bound to nouveau (or nouveau is loaded beside one)."""
    nvidia_cards = [c for c in pci_cards(facts) if c.vendor == "nvidia"]
    return any(c.driver == "nouveau" for c in nvidia_cards) or ("nouveau" in facts.host.loaded_modules and bool(nvidia_cards))


def secure_boot_refuses_module(facts: SystemFacts) -> bool:
    """Secure Boot is on and the NVIDIA kernel module is unsigned, so the kernel will not load it."""
    return bool(facts.host.secure_boot) and facts.host.nvidia_module_signed is False


@check("nvidia.driver_vs_torch", category="Driver")
def driver_vs_torch(facts: SystemFacts) -> Verdict | None:
    """The NVIDIA driver is new enough for the CUDA runtime inside the installed torch wheel."""
    build = torch_build(facts)
    drivers = list({g.driver_version for g in training_gpus(facts) if g.vendor == "nvidia" and g.driver_version})
    if build is None or build.kind != "cuda" or build.runtime is None or not drivers:
        return None
    minimum = compat.min_driver_for_cuda(build.runtime)
    if minimum is None:
        return warning(
            f"torch {build.version} is built for CUDA {build.runtime}, which gpudoctor has no driver minimum for",
            "profiles/compat.yaml lists the CUDA major versions it knows.",
            fixes.INSTALL_TORCH,
        )
    driver = min(drivers, key=compat.parse_version)
    if compat.version_at_least(driver, minimum):
        return ok(f"driver {driver} runs torch's CUDA {build.runtime} (needs ≥ {minimum})")
    return error(
        f"driver {driver} is too old for torch {build.version} (CUDA {build.runtime} needs driver ≥ {minimum})",
        "Either install a newer driver, or install the torch wheel built for the CUDA this driver runs.",
        f"{fixes.INSTALL_NVIDIA_DRIVER}   # a newer driver\n{fixes.INSTALL_TORCH}   # or: torch for this driver",
    )


@check("nvidia.library_mismatch", category="Driver")
def library_mismatch(facts: SystemFacts) -> Verdict | None:
    """The loaded NVIDIA kernel module matches the installed driver libraries (no reboot pending after an update)."""
    if not nvml_version_mismatch(facts):
        return None
    module = facts.host.nvidia_module_version
    loaded = f"the NVIDIA kernel module {module}" if module else "the NVIDIA kernel module"
    return error(
        f"{loaded} is still loaded, but the driver libraries are another version: NVML and CUDA refuse to start",
        "The driver was updated but the old kernel module is still loaded; a reboot loads the new one.",
        fixes.REBOOT,
    )


@check("nvidia.nouveau", category="Driver")
def nouveau_loaded(facts: SystemFacts) -> Verdict | None:
    """The open-source nouveau driver is not loaded (it keeps NVIDIA's driver off the card)."""
    if "nouveau" not in facts.host.loaded_modules:
        return None
    driver_missing = any(p.vendor == "nvidia" and p.status == "absent" for p in facts.probes)
    fix = f"{fixes.INSTALL_CUDA}   # installs the signed driver and blacklists nouveau" if driver_missing else fixes.BLACKLIST_NOUVEAU
    return error(
        "the nouveau kernel module is loaded: NVIDIA's driver cannot use the card, and nouveau has no CUDA",
        "Install NVIDIA's driver if it is missing, blacklist nouveau, rebuild the initramfs and reboot.",
        fix,
    )


@check("nvidia.secure_boot", category="Driver")
def secure_boot_unsigned(facts: SystemFacts) -> Verdict | None:
    """With Secure Boot on, the NVIDIA kernel module is signed by an enrolled key."""
    if not secure_boot_refuses_module(facts):
        return None
    return error(
        "Secure Boot is on and the NVIDIA kernel module is not signed: the kernel refuses to load it",
        "Enroll the key DKMS signs modules with (a Machine Owner Key), or turn Secure Boot off in the firmware.",
        fixes.ENROLL_MOK,
    )
