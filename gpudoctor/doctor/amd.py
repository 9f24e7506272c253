"""Checks for AMD machines: the user may open the GPU, the card's gfx target has code in the torch build
(or poses as one that has, through HSA_OVERRIDE_GFX_VERSION, set right), an APU's iGPU stays out of the way.

A card's gfx target is judged against the live check's arch list (torch.cuda.get_arch_list() on ROCm
names the gfx targets the build carries) and, without it, against ROCm's support list in compat.yaml.
Evidence from the live check (HIP's "no binary for GPU", an abort) turns a guess into an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gpudoctor import compat
from gpudoctor.doctor import fixes
from gpudoctor.doctor.finding import Verdict, error, ok, warning
from gpudoctor.doctor.registry import check
from gpudoctor.doctor.selection import cards_without_driver, integrated_beside_discrete, training_gpus
from gpudoctor.doctor.torch_build import torch_build
from gpudoctor.probe.amd import gfx_target as probe_gfx_target
from gpudoctor.probe.facts import GpuFacts, HostFacts, LiveFacts, SystemFacts

GPU_GROUPS = ("render", "video")  # ROCm's install guide adds the user to both
OVERRIDE = "HSA_OVERRIDE_GFX_VERSION"
UNSET_OVERRIDE = f"unset {OVERRIDE}   # and delete the line that sets it from ~/.bashrc, ~/.profile or /etc/environment"
# Variables that choose which GPUs HIP offers (HIP also honours CUDA_VISIBLE_DEVICES).
VISIBILITY_VARIABLES = ("HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES")
# What HIP, the HSA runtime and torch print when a kernel has no code object for the card.
NO_CODE_SIGNS = (
    "hipErrorNoBinaryForGpu", "Unable to find code object", "HSA_STATUS_ERROR_INVALID_ISA",
    "invalid device function", "no kernel image is available",
)
# Cards (PCI device id) whose own target an HSA_OVERRIDE_GFX_VERSION hides: rocminfo then reports the
# override's. Names from libdrm's amdgpu.ids; targets from the LLVM AMDGPU processor table (Navi 10 =
# gfx1010, Navi 22 = gfx1031, Navi 23 = gfx1032, Navi 24 = gfx1034, MI100 = gfx908, MI200 = gfx90a).
# gpudoctor.probe.amd's table covers the others.
NATIVE_TARGETS = {
    "0x731f": "gfx1010",  # RX 5700 / 5700 XT / 5600 XT
    "0x73df": "gfx1031",  # RX 6700 XT / 6750 XT / 6700M
    "0x73ff": "gfx1032",  # RX 6600 / 6600 XT / 6600M
    "0x73ef": "gfx1032",  # RX 6650 XT / 6700S / 6800S
    "0x743f": "gfx1034",  # RX 6500 XT / 6400
    "0x738c": "gfx908",  # Instinct MI100
    "0x7408": "gfx90a",  # Instinct MI250X
    "0x740c": "gfx90a",  # Instinct MI250X / MI250
    "0x740f": "gfx90a",  # Instinct MI210
}
# torch built for a target no wheel carries (PyTorch's "Install from source" for ROCm).
BUILD_TORCH_FOR = (
    "git clone --recursive https://github.com/pytorch/pytorch && cd pytorch && pip install -r requirements.txt\n"
    "python tools/amd_build/build_amd.py\n"
    "PYTORCH_ROCM_ARCH={target} python setup.py develop   # builds torch with {target} code (hours)"
)


def _amd_gpus(facts: SystemFacts) -> list[GpuFacts]:
    return [g for g in training_gpus(facts) if g.vendor == "amd"]


def _amd_present(facts: SystemFacts) -> bool:
    """An AMD card training would use, or one amdgpu drives whose compute the probes could not open."""
    return bool(_amd_gpus(facts)) or any(c.vendor == "amd" and c.driver == "amdgpu" for c in cards_without_driver(facts))


@check("amd.groups", category="Driver")
def user_groups(facts: SystemFacts) -> Verdict | None:
    """The user is in the render and video groups that own /dev/kfd and /dev/dri/renderD*."""
    host = facts.host
    if not _amd_present(facts) or not host.user_groups:
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
    """Each AMD GPU's gfx target has code in the torch build, or a working HSA_OVERRIDE_GFX_VERSION; none is set wrongly."""
    judge = GfxJudge.for_facts(facts)
    return [judge.verdict(gpu, target) for gpu in _amd_gpus(facts) if (target := native_target(gpu))]


def native_target(gpu: GpuFacts) -> str | None:
    """The card's own gfx target: from its PCI id when known (rocminfo reports an override's target), else as probed."""
    by_id = NATIVE_TARGETS.get(gpu.pci_device_id or "") or probe_gfx_target(gpu.pci_device_id)
    return by_id or gpu.gfx_target


def gfx_version(target: str) -> str:
    """The HSA_OVERRIDE_GFX_VERSION that names `target`: 'gfx1100' -> '11.0.0', 'gfx90a' -> '9.0.10'."""
    digits = target.removeprefix("gfx")
    return f"{int(digits[:-2])}.{int(digits[-2], 16)}.{int(digits[-1], 16)}"


def target_of(version: str | None) -> str | None:
    """The gfx target an HSA_OVERRIDE_GFX_VERSION value stands for ('10.3.0' -> 'gfx1030'); None when malformed."""
    match = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", (version or "").strip())
    if not match or int(match.group(2)) > 15 or int(match.group(3)) > 15:
        return None
    return f"gfx{int(match.group(1))}{int(match.group(2)):x}{int(match.group(3)):x}"


def _family(target: str | None) -> str | None:
    """'gfx1032' -> 'gfx103': targets that differ only in the last digit (a stepping) share an instruction set."""
    return target[:-1] if target else None


def no_code_evidence(live: LiveFacts | None) -> str | None:
    """The line in which the live check's GPU runtime said it has no code for the card, or None."""
    if live is None or not live.ran:
        return None
    texts = [live.stderr_tail, live.gpu_error, live.bnb_4bit_error, live.bnb_error, live.error]
    for line in (line for text in texts if text for line in text.splitlines()):
        if any(sign.lower() in line.lower() for sign in NO_CODE_SIGNS):
            return line.strip()
    return None


def override_route(target: str) -> str | None:
    """The override value known to work for `target` ('gfx1102' -> '11.0.0'), None when no prefix covers it."""
    overrides: dict[str, str] = compat.table().get("hsa_override_gfx_version", {})
    return next((value for prefix, value in overrides.items() if target.startswith(prefix)), None)


def export_override(value: str) -> str:
    return f"export {OVERRIDE}={value}   # add it to ~/.bashrc to keep it (fish: set -Ux {OVERRIDE} {value})"


@dataclass(frozen=True)
class GfxJudge:
    """What one machine offers its AMD cards' gfx targets: the torch build's code, the override set, live evidence."""

    supported: frozenset[str]  # ROCm's support list (compat.yaml): the guess while the build's own list is unknown
    carried: frozenset[str] | None  # gfx targets the torch build has code for (the live arch list); None: unknown
    already: str | None  # HSA_OVERRIDE_GFX_VERSION as set in the environment
    evidence: str | None  # the runtime's words that code was missing, or the signal that killed the live check
    torch: str  # "torch 2.7.1+rocm6.4", for titles

    @classmethod
    def for_facts(cls, facts: SystemFacts) -> GfxJudge:
        live = facts.python.live if facts.python.live is not None and facts.python.live.ran else None
        arch = [a.split(":")[0] for a in (live.arch_list or []) if a.startswith("gfx")] if live else []
        killed = f"the live check was killed by {live.signal}" if live and live.signal else None
        build = torch_build(facts)
        return cls(
            supported=frozenset(compat.table().get("rocm_supported_gfx", [])),
            carried=frozenset(arch) if arch else None,
            already=(facts.host.gpu_env.get(OVERRIDE) or "").strip() or None,
            evidence=no_code_evidence(live) or killed,
            torch=f"torch {build.version}" if build else "torch",
        )

    def has_code(self, target: str | None) -> bool:
        if target is None:
            return False
        return target in self.carried if self.carried is not None else target in self.supported

    def verdict(self, gpu: GpuFacts, target: str) -> Verdict:
        if self.already is not None:
            return self._override_set(gpu, target, self.already)
        if self.has_code(target):
            where = f", and {self.torch} carries code for it" if self.carried is not None else ", a ROCm-supported target"
            return ok(f"GPU {gpu.index} is {target}{where}")
        return self._no_code(gpu, target)

    def _lacks(self, target: str) -> str:
        return f"{self.torch} carries no code for it" if self.carried is not None else "not on ROCm's supported list"

    def _said(self) -> str:
        return f" The live check saw it: {self.evidence}." if self.evidence else ""

    def _no_code(self, gpu: GpuFacts, target: str) -> Verdict:
        """No override set and no code for the card: the override that works, a newer build, or a build of one's own."""
        sure = self.carried is not None or self.evidence is not None
        judge = error if sure else warning
        title = f"GPU {gpu.index} ({gpu.name}) is {target}, {self._lacks(target)}"
        route = override_route(target)
        if route and (self.carried is None or self.has_code(target_of(route))):
            return judge(
                title,
                f"Without an override every kernel fails ('invalid device function', 'hipErrorNoBinaryForGpu'); "
                f"{OVERRIDE}={route} makes ROCm run the code built for {target_of(route)}, the nearest sibling. "
                f"It usually works, but AMD does not support it.{self._said()}",
                export_override(route),
            )
        if target in self.supported:
            return judge(
                title, f"ROCm supports {target}, but this torch build was made without it; newer ROCm wheels carry it.{self._said()}",
                fixes.INSTALL_TORCH + "   # then: python -c 'import torch; print(torch.cuda.get_arch_list())'",
            )
        if not sure:
            return warning(
                f"GPU {gpu.index} ({gpu.name}) is {target}, which ROCm does not support and no override covers",
                "PyTorch's ROCm wheels may carry no kernels for it; expect 'invalid device function' errors.",
                fixes.ROCM_MATRIX,
            )
        return error(
            title,
            f"No released torch wheel has code for {target} and no override is known to work for it: "
            f"torch has to be built for it (hours; needs the ROCm SDK).{self._said()}",
            BUILD_TORCH_FOR.format(target=target),
        )

    def _override_set(self, gpu: GpuFacts, target: str, value: str) -> Verdict:
        """HSA_OVERRIDE_GFX_VERSION is set: fine when it is the card's own or its working route, else wrong."""
        runs = target_of(value)
        title = f"GPU {gpu.index} is {target}; {OVERRIDE}={value} is set"
        if runs == target:
            return ok(title + " (the card's own version: it changes nothing)")
        fits = value == override_route(target) or (runs is not None and _family(runs) == _family(target))
        if self.has_code(target):
            if fits:
                return warning(
                    title + f", but {target} needs none",
                    f"The build has code for {target}; the override makes ROCm run {runs}'s instead, on every AMD GPU here.",
                    UNSET_OVERRIDE,
                )
            return error(
                title + f": ROCm loads {runs or 'no valid'} code on a {target} card",
                f"{target} needs no override; one from another generation makes kernels crash ('Memory access fault', "
                f"HSA_STATUS_ERROR_INVALID_ISA).{self._said()}",
                UNSET_OVERRIDE,
            )
        if fits and (self.carried is None or self.has_code(runs)):
            return ok(title)
        return self._override_wrong(title, target, runs, fits)

    def _override_wrong(self, title: str, target: str, runs: str | None, fits: bool) -> Verdict:
        route = override_route(target)
        if fits:  # the right family, but the build has no code for the target the override names either
            detail = f"{self.torch} has no code for {runs} either, so the override cannot help."
            return error(title + f", but {self.torch} has no code for {runs}", detail + self._said(),
                         fixes.INSTALL_TORCH if target in self.supported else BUILD_TORCH_FOR.format(target=target))
        return error(
            title + f": that is another generation's code ({runs or 'not a valid version'})",
            f"For {target} the value that works is {route or 'none known'}; a wrong one makes kernels fail to load "
            f"or crash.{self._said()}",
            f"export {OVERRIDE}={route}" if route else UNSET_OVERRIDE,
        )


def no_code_fix(facts: SystemFacts) -> str:
    """What to do when the runtime found no code for a card the probe could not name: find its target, then override."""
    by_value: dict[str, list[str]] = {}
    for prefix, value in compat.table().get("hsa_override_gfx_version", {}).items():
        by_value.setdefault(value, []).append(prefix if prefix.startswith("gfx9") else f"{prefix}x")  # gfx9 names are whole targets
    routes = "\n".join(f"# {', '.join(prefixes)}: export {OVERRIDE}={value}" for value, prefixes in by_value.items())
    return ("rocminfo | grep -m1 -o 'gfx[0-9a-f]*'   # the card's gfx target; then the line for it (add it to ~/.bashrc):\n"
            + routes + "\n# any other target: a torch built for it (PYTORCH_ROCM_ARCH=<target>), see " + fixes.ROCM_MATRIX)


@check("amd.igpu_visible", category="GPU")
def integrated_gpu_visible(facts: SystemFacts) -> Verdict | None:
    """ROCm does not offer torch an APU's integrated GPU beside the discrete card (HIP_VISIBLE_DEVICES names the card)."""
    chosen = _amd_gpus(facts)
    aside = [g for g in integrated_beside_discrete(facts) if g.vendor == "amd"]
    if not chosen or not aside or any(facts.host.gpu_env.get(name) for name in VISIBILITY_VARIABLES):
        return None
    live = facts.python.live
    if live is not None and live.ran and live.device_count is not None and live.device_count <= len(chosen):
        return None  # torch counted only the discrete cards: the iGPU is not offered
    amd = sorted((g for g in facts.gpus if g.vendor == "amd"), key=lambda g: g.index)
    numbers = ",".join(str(amd.index(g)) for g in chosen)
    names = ", ".join(f"{g.name} ({g.gfx_target or 'gfx?'})" for g in aside)
    # torch counted the iGPU too, and the build has no code for it: HIP fails on the whole process.
    judge = GfxJudge.for_facts(facts)
    seen = live is not None and live.ran and (live.device_count or 0) > len(chosen)
    fatal = seen and any(g.gfx_target and not judge.has_code(g.gfx_target) for g in aside)
    return (error if fatal else warning)(
        f"ROCm also offers torch the integrated {names} beside the {chosen[0].name}",
        "HIP numbers every AMD GPU it sees, the APU's too: torch may run on it, or fail on the whole machine with "
        "'Module not initialized' or 'hipErrorNoBinaryForGpu' when the build has no code for the iGPU"
        + (f" (torch counted {live.device_count} GPUs, and {judge.torch} has no code for the iGPU)" if fatal and live else "")
        + ". Export the variable in the shell: setting os.environ inside the script comes too late.",
        f"export HIP_VISIBLE_DEVICES={numbers}   # the discrete card(s), as rocminfo numbers GPU agents; add it to ~/.bashrc",
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
