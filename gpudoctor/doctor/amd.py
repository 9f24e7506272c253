"""Checks for AMD machines: the user may open the GPU, the card is a ROCm target (or can pose as one)."""

from __future__ import annotations

from gpudoctor import compat
from gpudoctor.doctor import fixes
from gpudoctor.doctor.finding import Verdict, error, ok, warning
from gpudoctor.doctor.registry import check
from gpudoctor.doctor.selection import training_gpus
from gpudoctor.probe.facts import GpuFacts, HostFacts, SystemFacts

GPU_GROUPS = ("render", "video")  # ROCm's install guide adds the user to both
OVERRIDE = "HSA_OVERRIDE_GFX_VERSION"


def _amd_gpus(facts: SystemFacts) -> list[GpuFacts]:
    return [g for g in training_gpus(facts) if g.vendor == "amd"]


@check("amd.groups", category="Driver")
def user_groups(facts: SystemFacts) -> Verdict | None:
    """The user is in the render and video groups that own /dev/kfd and /dev/dri/renderD*."""
    host = facts.host
    if not _amd_gpus(facts) or not host.user_groups:
        return None
    missing = [g for g in GPU_GROUPS if g not in host.user_groups]
    who = host.user or "this user"
    if not missing:
        return ok(f"{who} is in the render and video groups")
    groups = " and ".join(missing) + (" groups" if len(missing) > 1 else " group")
    if all(g in host.user_groups_pending for g in missing):
        return _groups_pending(host, who, groups)
    return _groups_missing(host, who, groups)


def _groups_pending(host: HostFacts, who: str, groups: str) -> Verdict:
    """The user was added to the groups, but this login predates it."""
    judge = error if host.kfd_accessible is False else warning
    return judge(
        f"{who} was added to the {groups}, but this login session predates it",
        "Group changes apply to new logins only.",
        "log out and back in (or reboot); for this shell only: newgrp render",
    )


def _groups_missing(host: HostFacts, who: str, groups: str) -> Verdict:
    """Not in the groups: an error when the GPU cannot be opened, else a warning (the desktop session lets it in)."""
    if host.kfd_accessible is False or host.render_accessible is False:
        return error(
            f"{who} is not in the {groups}, so ROCm cannot open the GPU",
            "/dev/kfd and /dev/dri/renderD* belong to those groups; without them torch sees no GPU.",
            fixes.ADD_GPU_GROUPS,
        )
    return warning(
        f"{who} is not in the {groups}",
        "The GPU opens now through the desktop session's access rules, but not over ssh or from services.",
        fixes.ADD_GPU_GROUPS,
    )


@check("amd.kfd", category="Driver")
def kfd_present(facts: SystemFacts) -> Verdict | None:
    """/dev/kfd exists: the amdgpu kernel driver offers compute (ROCm needs it)."""
    if not _amd_gpus(facts) or facts.host.kfd_exists:
        return None
    return error(
        "/dev/kfd is missing: the amdgpu kernel driver offers no compute to ROCm",
        "The card works for display, but ROCm and torch cannot use it until amdgpu loads with KFD.",
        fixes.INSTALL_ROCM,
    )


@check("amd.gfx_target", category="GPU")
def gfx_target(facts: SystemFacts) -> list[Verdict]:
    """Each AMD GPU is a gfx target ROCm supports, or gets the HSA_OVERRIDE_GFX_VERSION hint."""
    table = compat.table()
    supported = set(table.get("rocm_supported_gfx", []))
    overrides: dict[str, str] = table.get("hsa_override_gfx_version", {})
    already = facts.host.gpu_env.get(OVERRIDE)
    return [
        _gfx_verdict(gpu, gpu.gfx_target, supported, _override_for(gpu.gfx_target, overrides), already)
        for gpu in _amd_gpus(facts)
        if gpu.gfx_target
    ]


def _override_for(target: str | None, overrides: dict[str, str]) -> str | None:
    """The HSA_OVERRIDE_GFX_VERSION value for `target` ('gfx1102' -> '11.0.0'), None when no prefix covers it."""
    return next((value for prefix, value in overrides.items() if (target or "").startswith(prefix)), None)


def _gfx_verdict(gpu: GpuFacts, target: str, supported: set[str], override: str | None, already: str | None) -> Verdict:
    if target in supported:
        return ok(f"GPU {gpu.index} is {target}, a ROCm-supported target")
    if already:
        return _override_already_set(gpu, target, override, already)
    if override is None:
        return warning(
            f"GPU {gpu.index} ({gpu.name}) is {target}, which ROCm does not support and no override covers",
            "PyTorch's ROCm wheels may carry no kernels for it; expect 'invalid device function' errors.",
            fixes.ROCM_MATRIX,
        )
    return warning(
        f"GPU {gpu.index} ({gpu.name}) is {target}, not on ROCm's supported list",
        f"Without an override torch fails with 'invalid device function'; {OVERRIDE}={override} "
        "makes ROCm use the kernels of a supported sibling. It usually works, but AMD does not support it.",
        f"export {OVERRIDE}={override}   # add it to ~/.bashrc to keep it",
    )


def _override_already_set(gpu: GpuFacts, target: str, override: str | None, already: str) -> Verdict:
    """The user set HSA_OVERRIDE_GFX_VERSION: acknowledged when it is the usual value, corrected otherwise."""
    title = f"GPU {gpu.index} is {target}; {OVERRIDE}={already} is set"
    if already == override:
        return ok(title)
    return warning(
        title,
        f"For {target} the usual value is {override or 'unknown'}; a wrong one makes kernels fail to load.",
        None if override is None else f"export {OVERRIDE}={override}",
    )


@check("amd.rocm", category="Driver")
def rocm_installed(facts: SystemFacts) -> Verdict | None:
    """The ROCm user space is installed (/opt/rocm) on a machine with an AMD GPU."""
    if not _amd_gpus(facts):
        return None
    version = facts.host.rocm_version
    if version:
        return ok(f"ROCm {version} is installed")
    return warning(
        "ROCm is not installed (no /opt/rocm/.info/version)",
        "PyTorch's ROCm wheels bring their own runtime, but amd-smi, rocminfo and some libraries expect it.",
        fixes.INSTALL_ROCM,
    )
