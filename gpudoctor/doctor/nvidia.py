"""Checks for NVIDIA machines: the driver is new enough for torch's CUDA, and nothing stops it loading."""

from __future__ import annotations

from gpudoctor import compat
from gpudoctor.doctor import fixes
from gpudoctor.doctor.finding import Finding
from gpudoctor.doctor.registry import check
from gpudoctor.doctor.selection import training_gpus
from gpudoctor.doctor.torch_build import torch_build
from gpudoctor.probe.facts import SystemFacts


@check("nvidia.driver_vs_torch", category="Driver")
def driver_vs_torch(facts: SystemFacts) -> list[Finding]:
    """The NVIDIA driver is new enough for the CUDA runtime inside the installed torch wheel."""
    build = torch_build(facts)
    drivers = list({g.driver_version for g in training_gpus(facts) if g.vendor == "nvidia" and g.driver_version})
    if build is None or build.kind != "cuda" or build.runtime is None or not drivers:
        return []
    minimum = compat.min_driver_for_cuda(build.runtime)
    if minimum is None:
        return [
            Finding(
                "nvidia.driver_vs_torch",
                "Driver",
                "warning",
                f"torch {build.version} is built for CUDA {build.runtime}, which gpudoctor has no driver minimum for",
                "profiles/compat.yaml lists the CUDA major versions it knows.",
                fixes.INSTALL_TORCH,
            )
        ]
    driver = min(drivers, key=compat.version_tuple)
    if compat.version_tuple(driver) >= compat.version_tuple(minimum):
        return [
            Finding(
                "nvidia.driver_vs_torch",
                "Driver",
                "ok",
                f"driver {driver} runs torch's CUDA {build.runtime} (needs ≥ {minimum})",
            )
        ]
    return [
        Finding(
            "nvidia.driver_vs_torch",
            "Driver",
            "error",
            f"driver {driver} is too old for torch {build.version} (CUDA {build.runtime} needs driver ≥ {minimum})",
            "Either install a newer driver, or install the torch wheel built for the CUDA this driver runs.",
            f"{fixes.INSTALL_NVIDIA_DRIVER}   # a newer driver\n{fixes.INSTALL_TORCH}   # or: torch for this driver",
        )
    ]


@check("nvidia.nouveau", category="Driver")
def nouveau_loaded(facts: SystemFacts) -> list[Finding]:
    """The open-source nouveau driver is not loaded (it keeps NVIDIA's driver off the card)."""
    if "nouveau" not in facts.host.loaded_modules:
        return []
    driver_missing = any(p.vendor == "nvidia" and p.status == "absent" for p in facts.probes)
    fix = f"{fixes.INSTALL_CUDA}   # installs the signed driver and blacklists nouveau" if driver_missing else fixes.BLACKLIST_NOUVEAU
    return [
        Finding(
            "nvidia.nouveau",
            "Driver",
            "error",
            "the nouveau kernel module is loaded: NVIDIA's driver cannot use the card, and nouveau has no CUDA",
            "Install NVIDIA's driver if it is missing, blacklist nouveau, rebuild the initramfs and reboot.",
            fix,
        )
    ]


@check("nvidia.secure_boot", category="Driver")
def secure_boot_unsigned(facts: SystemFacts) -> list[Finding]:
    """With Secure Boot on, the NVIDIA kernel module is signed by an enrolled key."""
    host = facts.host
    if not host.secure_boot or host.nvidia_module_signed is not False:
        return []
    return [
        Finding(
            "nvidia.secure_boot",
            "Driver",
            "error",
            "Secure Boot is on and the NVIDIA kernel module is not signed: the kernel refuses to load it",
            "Enroll the key DKMS signs modules with (a Machine Owner Key), or turn Secure Boot off in the firmware.",
            fixes.ENROLL_MOK,
        )
    ]
