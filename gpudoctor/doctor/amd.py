"""Checks for AMD machines: the user may open the GPU, the card is a ROCm target (or can pose as one)."""

from __future__ import annotations

from gpudoctor import compat
from gpudoctor.doctor import fixes
from gpudoctor.doctor.finding import Finding
from gpudoctor.doctor.registry import check
from gpudoctor.doctor.selection import training_gpus
from gpudoctor.probe.facts import GpuFacts, SystemFacts

GPU_GROUPS = ("render", "video")  # ROCm's install guide adds the user to both


def _amd_gpus(facts: SystemFacts) -> list[GpuFacts]:
    return [g for g in training_gpus(facts) if g.vendor == "amd"]


@check("amd.groups", category="Driver")
def user_groups(facts: SystemFacts) -> list[Finding]:
    """The user is in the render and video groups that own /dev/kfd and /dev/dri/renderD*."""
    host = facts.host
    if not _amd_gpus(facts) or not host.user_groups:
        return []
    missing = [g for g in GPU_GROUPS if g not in host.user_groups]
    who = host.user or "this user"
    groups = " and ".join(missing) + (" groups" if len(missing) > 1 else " group")
    pending = [g for g in missing if g in host.user_groups_pending]
    if missing and pending == missing:
        return [
            Finding(
                "amd.groups",
                "Driver",
                "warning" if host.kfd_accessible is not False else "error",
                f"{who} was added to the {groups}, but this login session predates it",
                "Group changes apply to new logins only.",
                "log out and back in (or reboot); for this shell only: newgrp render",
            )
        ]
    if not missing:
        return [Finding("amd.groups", "Driver", "ok", f"{who} is in the render and video groups")]
    blocked = host.kfd_accessible is False or host.render_accessible is False
    if blocked:
        return [
            Finding(
                "amd.groups",
                "Driver",
                "error",
                f"{who} is not in the {groups}, so ROCm cannot open the GPU",
                "/dev/kfd and /dev/dri/renderD* belong to those groups; without them torch sees no GPU.",
                fixes.ADD_GPU_GROUPS,
            )
        ]
    return [
        Finding(
            "amd.groups",
            "Driver",
            "warning",
            f"{who} is not in the {groups}",
            "The GPU opens now through the desktop session's access rules, but not over ssh or from services.",
            fixes.ADD_GPU_GROUPS,
        )
    ]


@check("amd.kfd", category="Driver")
def kfd_present(facts: SystemFacts) -> list[Finding]:
    """/dev/kfd exists: the amdgpu kernel driver offers compute (ROCm needs it)."""
    if not _amd_gpus(facts) or facts.host.kfd_exists:
        return []
    return [
        Finding(
            "amd.kfd",
            "Driver",
            "error",
            "/dev/kfd is missing: the amdgpu kernel driver offers no compute to ROCm",
            "The card works for display, but ROCm and torch cannot use it until amdgpu loads with KFD.",
            fixes.INSTALL_ROCM,
        )
    ]


@check("amd.gfx_target", category="GPU")
def gfx_target(facts: SystemFacts) -> list[Finding]:
    """Each AMD GPU is a gfx target ROCm supports, or gets the HSA_OVERRIDE_GFX_VERSION hint."""
    table = compat.table()
    supported = set(table.get("rocm_supported_gfx", []))
    overrides: dict[str, str] = table.get("hsa_override_gfx_version", {})
    findings = []
    for gpu in _amd_gpus(facts):
        target = gpu.gfx_target
        if not target:
            continue
        if target in supported:
            findings.append(Finding("amd.gfx_target", "GPU", "ok", f"GPU {gpu.index} is {target}, a ROCm-supported target"))
            continue
        override = next((value for prefix, value in overrides.items() if target.startswith(prefix)), None)
        already = facts.host.gpu_env.get("HSA_OVERRIDE_GFX_VERSION")
        if already:
            status = "ok" if already == override else "warning"
            detail = "" if status == "ok" else f"For {target} the usual value is {override or 'unknown'}; a wrong one makes kernels fail to load."
            findings.append(
                Finding("amd.gfx_target", "GPU", status, f"GPU {gpu.index} is {target}; HSA_OVERRIDE_GFX_VERSION={already} is set", detail,
                        None if status == "ok" or override is None else f"export HSA_OVERRIDE_GFX_VERSION={override}")
            )
            continue
        if override is None:
            findings.append(
                Finding(
                    "amd.gfx_target",
                    "GPU",
                    "warning",
                    f"GPU {gpu.index} ({gpu.name}) is {target}, which ROCm does not support and no override covers",
                    "PyTorch's ROCm wheels may carry no kernels for it; expect 'invalid device function' errors.",
                    fixes.ROCM_MATRIX,
                )
            )
            continue
        findings.append(
            Finding(
                "amd.gfx_target",
                "GPU",
                "warning",
                f"GPU {gpu.index} ({gpu.name}) is {target}, not on ROCm's supported list",
                f"Without an override torch fails with 'invalid device function'; HSA_OVERRIDE_GFX_VERSION={override} "
                "makes ROCm use the kernels of a supported sibling. It usually works, but AMD does not support it.",
                f"export HSA_OVERRIDE_GFX_VERSION={override}   # add it to ~/.bashrc to keep it",
            )
        )
    return findings


@check("amd.rocm", category="Driver")
def rocm_installed(facts: SystemFacts) -> list[Finding]:
    """The ROCm user space is installed (/opt/rocm) on a machine with an AMD GPU."""
    if not _amd_gpus(facts):
        return []
    version = facts.host.rocm_version
    if version:
        return [Finding("amd.rocm", "Driver", "ok", f"ROCm {version} is installed")]
    return [
        Finding(
            "amd.rocm",
            "Driver",
            "warning",
            "ROCm is not installed (no /opt/rocm/.info/version)",
            "PyTorch's ROCm wheels bring their own runtime, but amd-smi, rocminfo and some libraries expect it.",
            fixes.INSTALL_ROCM,
        )
    ]
