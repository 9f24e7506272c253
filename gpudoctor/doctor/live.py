"""Checks on what the live torch check saw: kernels for this GPU, the training libraries importing, a child killed by a signal.

Kernels: torch.cuda.get_arch_list() names what the build carries. A GPU of compute capability X.Y
runs an sm_XY binary, or one built for a lower minor of the same major (SASS is compatible within a
major: sm_80 code runs on sm_86, never on sm_90 or sm_120), or PTX for compute_AB with AB <= XY,
which the driver compiles for any newer GPU. Anything else is "no kernel image is available".
The tables of which wheel index carries which kernels, and of library versions that fit together,
are in profiles/compat.yaml with their sources.
"""

from __future__ import annotations

import re
import shlex

from gpudoctor import compat
from gpudoctor.doctor import amd, fixes
from gpudoctor.doctor.finding import Verdict, error, ok, warning
from gpudoctor.doctor.registry import REPORT_FIX, check
from gpudoctor.doctor.selection import training_gpus
from gpudoctor.doctor.torch_build import TorchBuild, torch_build
from gpudoctor.doctor.torch_wheels import arch_entry, current_index, first_cuda, index_runs, keep_release_line, serves, sm_of
from gpudoctor.probe.facts import GpuFacts, LiveFacts, SystemFacts

# What torch prints when the build has no kernel for the card (its own warning, and the CUDA error).
NOT_COMPATIBLE = re.compile(r"CUDA capability (sm_\d+) is not compatible")
NO_KERNEL_IMAGE = "no kernel image is available"
# Packages whose wheels must match torch: replaced together with it.
TORCH_COMPANIONS = ("torchvision", "torchaudio")
TAIL_LINES = 3  # of the child's stderr, in a finding's detail (--report shows the whole tail)


def live_result(facts: SystemFacts) -> LiveFacts | None:
    """The live check's result when it ran and imported torch; None when there is none to go by."""
    live = facts.python.live
    return live if live is not None and live.ran and not live.torch_error else None


# --- kernels for the GPU ---------------------------------------------------------------------------


def carried(arch_list: list[str] | None) -> list[str]:
    return [a for a in arch_list or [] if arch_entry(a)]


@check("torch.kernels", category="PyTorch")
def torch_kernels(facts: SystemFacts) -> list[Verdict] | None:
    """torch carries kernels for each NVIDIA GPU's compute capability (its sm_XY, an older sm of the same major, or PTX)."""
    build = torch_build(facts)
    live = live_result(facts)
    if build is None or build.kind != "cuda" or live is None:
        return None
    gpus = [g for g in training_gpus(facts) if g.vendor == "nvidia"]
    arch = carried(live.arch_list)
    verdicts = []
    for position, gpu in enumerate(gpus):
        device = sm_of(gpu.compute_capability) or (live.device_arch if position == 0 else None)
        if device is None:
            continue
        ptx_only = not any(serves(entry, device) for entry in arch if entry.startswith("sm_"))
        if arch and any(serves(entry, device) for entry in arch) and not (ptx_only and _ptx_not_enough(build, device, live)):
            how = " (as PTX: the driver compiles it at the first run)" if ptx_only else ""
            verdicts.append(ok(f"torch {build.version} has kernels for GPU {gpu.index} ({device}){how}"))
        elif arch or _said_incompatible(live, device):
            verdicts.append(_no_kernels(facts, build, gpu, device, arch))
    return verdicts or None


def _ptx_not_enough(build: TorchBuild, device: str, live: LiveFacts) -> bool:
    """Only PTX serves the card, and it does not run: torch itself said 'not compatible' (it counts SASS of the
    card's major only, torch/cuda/__init__.py _check_cubins), or the build's CUDA predates the card, so the CUDA
    libraries inside the wheel (cuBLAS, cuDNN) carry no code for it (sm_86 on cu102, CorentinJ/Real-Time-Voice-Cloning#584)."""
    if _said_incompatible(live, device):
        return True
    need = first_cuda(device)
    return bool(need and build.runtime and not compat.version_at_least(build.runtime, need))


def _said_incompatible(live: LiveFacts, device: str) -> bool:
    """torch itself said so, where the arch list is missing: its 'sm_XY is not compatible' warning, or the CUDA error."""
    texts = [live.gpu_error, live.error, live.stderr_tail, live.bnb_4bit_error]
    said = [m.group(1) for text in texts if text for m in NOT_COMPATIBLE.finditer(text)]
    return device in said or any(NO_KERNEL_IMAGE in (text or "") for text in texts)


def _no_kernels(facts: SystemFacts, build: TorchBuild, gpu: GpuFacts, device: str, arch: list[str]) -> Verdict:
    has = f"it carries {' '.join(arch)}" if arch else "torch says it is not compatible"
    title = f"torch {build.version} has no kernels for the {gpu.name} ({device}): {has}"
    need = first_cuda(device)
    detail = (
        f"Every CUDA operation fails with 'no kernel image is available for execution on the device'. "
        + (f"{device} needs a torch built with CUDA ≥ {need}." if need else f"Current wheels for {device} are named below.")
    )
    fix = _kernels_fix(facts, gpu, device, need)
    keep = keep_release_line(facts.python.executable, build.version, gpu, device, f"a project pins it; its {build.runtime or 'current'} build lacks {device}")
    if keep and f"torch=={compat.parse_version(build.version).base_version}" not in fix:
        fix += "\n" + keep
    return error(title, detail, fix)


def _kernels_fix(facts: SystemFacts, gpu: GpuFacts, device: str, need: str | None) -> str:
    """install-torch with the index that carries `device`, the pip commands it runs, or the last wheels that did."""
    python = shlex.quote(facts.python.executable or "python3")
    companions = [name for name in TORCH_COMPANIONS if (p := facts.python.packages.get(name)) and p.version]
    names = " ".join(["torch", *companions])
    index = current_index(gpu, device)
    why = f"   # {device} needs CUDA ≥ {need} (cu{need.replace('.', '')} or newer)" if need else ""
    if index is not None:
        url = compat.table()["torch_index_url"].format(tag=index["tag"])
        lines = [f"{fixes.INSTALL_TORCH} --index {index['tag']}{why}",
                 f"# or by hand: {python} -m pip uninstall -y {names} && {python} -m pip install {names} --index-url {url}"]
        if not index_runs(gpu, index):
            lines.insert(0, f"{fixes.INSTALL_CUDA}   # first: driver {gpu.driver_version} is too old for CUDA {index['cuda']}")
        return "\n".join(lines)
    older = _older_index_for(device)
    if older is not None:
        url = compat.table()["torch_index_url"].format(tag=older["tag"])
        wanted = " ".join([shlex.quote(older["torch"]), *companions])
        return (f"{python} -m pip uninstall -y {names} && {python} -m pip install {wanted} --index-url {url}"
                f"   # the last wheels with {device} kernels")
    return (f"# no PyTorch wheel carries {device} kernels any more: build torch from source with\n"
            f"TORCH_CUDA_ARCH_LIST={device[3:-1]}.{device[-1]} python setup.py develop   # in a clone of https://github.com/pytorch/pytorch")


def _older_index_for(device: str) -> dict | None:
    older = compat.table().get("torch_cuda_older_indexes", [])
    return next((i for i in older if any(serves(e, device) for e in i.get("arch_list", []))), None)


# --- a live check that died ------------------------------------------------------------------------


def crashed(live: LiveFacts | None) -> bool:
    """The child was killed by a signal, or the GPU runtime aborted it for want of code for the card."""
    if live is None or not live.ran:
        return False
    return bool(live.signal) or bool(live.error and amd.no_code_evidence(live))


@check("torch.live_crash", category="PyTorch")
def live_crash(facts: SystemFacts) -> Verdict | None:
    """The live torch check ran to its end: no signal killed it and the GPU runtime did not abort it."""
    live = facts.python.live
    if not crashed(live):
        return None
    assert live is not None
    generic = re.sub(r"^the live check crashed(?: \(killed by signal \d+\))?:?\s*", "", _last_line(live.error) or "")
    reason = amd.no_code_evidence(live) or _last_line(live.stderr_tail) or generic
    how = f"was killed by {live.signal}" if live.signal else "was aborted by the GPU runtime"
    title = f"the live torch check {how}" + (f": {reason}" if reason else "")
    tail = [line for line in (live.stderr_tail or "").splitlines() if line.strip()][-TAIL_LINES:]
    detail = "Training would die the same way at its first GPU call, so this machine is not ready."
    if tail:
        detail += " Its stderr ended: " + " | ".join(line.strip() for line in tail) + " (check --report shows it all)."
    answered = _answered_elsewhere(facts)
    if answered:
        return error(title, f"{detail} The {answered} row says why and how to fix it.", None)
    if amd.no_code_evidence(live) and any(g.vendor == "amd" for g in training_gpus(facts)):
        return error(title, detail + " HIP found no code for the card in this build.", amd.no_code_fix(facts))
    return error(title, detail, REPORT_FIX)


def _answered_elsewhere(facts: SystemFacts) -> str | None:
    """The row whose finding explains the crash (a gfx target without code, a wrong override, missing kernels)."""
    if any(v.status != "ok" for v in amd.gfx_target(facts)):
        return "GPU"
    if any(v.status != "ok" for v in torch_kernels(facts) or []):
        return "PyTorch"
    return None


def _last_line(text: str | None) -> str | None:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else None


# --- the training libraries import ------------------------------------------------------------------

CANNOT_IMPORT = re.compile(r"cannot import name '(\w+)' from '([\w.]+)'")
NO_MODULE = re.compile(r"No module named '([\w.]+)'")
DISTRIBUTION = {"flash_attn": "flash-attn"}  # import name -> the pip name, where they differ
# A fork that installs into transformers' own folder: its older files replace parts of transformers.
SHADOWS = {"transformers": "adapter-transformers"}


def version_of(facts: SystemFacts, name: str) -> str | None:
    package = facts.python.packages.get(name)
    return package.version if package else None


def minor_of(version: str) -> str:
    """'2.3.0' -> '2.3', '0.14.0' -> '0.14' (local tag and anything past the minor dropped)."""
    return ".".join(str(compat.parse_version(version)).split(".")[:2])


def shadowing(facts: SystemFacts, name: str) -> str | None:
    """The installed fork that overwrites `name`'s files ('adapter-transformers' for transformers), or None."""
    fork = SHADOWS.get(name)
    return fork if fork and version_of(facts, fork) else None


@check("python.imports", category="PyTorch")
def library_imports(facts: SystemFacts) -> list[Verdict] | None:
    """transformers, peft, accelerate, trl and flash-attn, where installed, import in the live check."""
    live = live_result(facts)
    if live is None or not live.import_errors:
        return None
    verdicts = [_import_verdict(facts, name, message) for name, message in sorted(live.import_errors.items())]
    return [v for v in verdicts if v is not None] or None


def _import_verdict(facts: SystemFacts, name: str, message: str) -> Verdict | None:
    python = facts.python.executable
    dist = DISTRIBUTION.get(name, name)
    first = message.strip().splitlines()[0] if message.strip() else "(no message)"
    if name == "flash_attn" and "undefined symbol" in message:
        return flash_attn_mismatch(facts, first)
    wanted = CANNOT_IMPORT.search(message)
    if wanted and wanted.group(2).split(".")[0] == name:
        if shadowing(facts, name):
            return None  # python.libraries names the fork that overwrote it, with the fix
        return error(
            f"import {name} fails: {first}",
            f"{dist}'s own files do not fit together (a half-finished upgrade, or another package wrote into its folder).",
            fixes.pip_install(python, f"{dist}=={version_of(facts, dist)}" if version_of(facts, dist) else dist, reinstall=True),
        )
    if wanted:
        return _needs_newer(facts, name, first, wanted.group(2).split(".")[0])
    missing = NO_MODULE.search(message)
    if missing:
        module = missing.group(1).split(".")[0]
        return error(f"import {name} fails: {first}", f"{dist} needs {module}, which is not installed.",
                     fixes.pip_install(python, DISTRIBUTION.get(module, module)))
    return error(f"import {name} fails: {first}", f"{dist} is installed but does not import.",
                 f"{shlex.quote(python or 'python3')} -c 'import {name}'   # shows the whole error\n{REPORT_FIX}")


def _needs_newer(facts: SystemFacts, name: str, first: str, needed: str) -> Verdict:
    """`name` imports something its installed dependency `needed` does not have yet: one of the two must move."""
    if name == "peft" and needed == "transformers":
        return peft_too_new(facts, first)
    python = facts.python.executable
    have, need_have = version_of(facts, DISTRIBUTION.get(name, name)), version_of(facts, needed)
    older = f"{name}<{minor_of(have)}" if have else None
    return error(
        f"{name} {have or ''} needs a newer {needed} than {need_have or 'the installed one'}: {first}".replace("  ", " "),
        f"This {name} was released after the {needed} installed here and imports names it does not have yet.",
        fixes.pip_install(python, needed) + (f"\n# or keep {needed}: {fixes.pip_install(python, older)}" if older else ""),
    )


def peft_too_new(facts: SystemFacts, said: str | None = None) -> Verdict:
    """peft newer than the installed transformers supports: pin the last peft before it, or upgrade transformers."""
    python = facts.python.executable
    peft, transformers = version_of(facts, "peft") or "?", version_of(facts, "transformers") or "?"
    row = peft_row(peft)
    title = f"peft {peft} needs a newer transformers than {transformers}" + (f": {said}" if said else "")
    if row is None:
        return error(title, "peft imports names from transformers that this transformers does not have.",
                     fixes.pip_install(python, f"peft<{minor_of(peft)}") + f"\n# or: {fixes.pip_install(python, 'transformers')}")
    return error(
        title,
        f"peft {row['peft']} and later import names that transformers has only from {row['transformers']} on; "
        f"peft {row['before']} is the last release before it.",
        fixes.pip_install(python, f"peft=={row['before']}")
        + f"\n# or, where the project allows a newer transformers: {fixes.pip_install(python, 'transformers>=' + row['transformers'])}",
    )


def peft_row(peft: str) -> dict | None:
    """The newest compat.yaml peft_transformers_minimum row at or below this peft version."""
    rows = compat.table().get("peft_transformers_minimum", [])
    return next((r for r in rows if peft != "?" and compat.version_at_least(peft, str(r["peft"]))), None)


def flash_attn_mismatch(facts: SystemFacts, said: str) -> Verdict:
    """flash-attn's extension was built against another torch (an undefined c10 symbol): a wheel for this torch."""
    python = facts.python.executable
    quoted = shlex.quote(python or "python3")
    build = torch_build(facts)
    torch = build.version if build else "?"
    minor, cuda = minor_of(torch) if build else "?", _cuda_major(build)
    wheels = compat.table().get("flash_attn_wheels", {}).get(minor, {}).get(cuda)
    remove = f"{quoted} -m pip uninstall -y flash-attn"
    installed = version_of(facts, "flash-attn")
    if wheels:
        first, last = wheels
        pick = _flash_attn_release(installed, first, last)
        why = (f"the release before {installed}, whose wheel fails on this torch" if pick != last
               else f"flash-attn {first} … {last} ship a prebuilt wheel for torch {minor} with CUDA {cuda}")
        install = (f"{quoted} -m pip install --no-build-isolation 'flash-attn=={pick}'   # {why}"
                   + (f"\n# or rebuild {installed} against your torch: FLASH_ATTENTION_FORCE_BUILD=TRUE MAX_JOBS=4 "
                      f"{quoted} -m pip install --no-build-isolation --no-cache-dir 'flash-attn=={installed}'" if pick != last else ""))
    else:
        install = (f"MAX_JOBS=4 {quoted} -m pip install --no-build-isolation flash-attn"
                   f"   # no prebuilt wheel for torch {minor}: this compiles it against your torch (needs nvcc and build-essential)")
    return warning(
        f"flash-attn {version_of(facts, 'flash-attn') or ''} was built for another torch than torch {torch}: {said}".replace("  ", " "),
        "Its compiled extension links against torch's C++ symbols, which change between torch releases; "
        "training that asks for flash-attention fails. Reinstalling the same versions does not help.",
        f"{remove}\n{install}",
    )


def _flash_attn_release(installed: str | None, first: str, last: str) -> str:
    """The release to pin: `last` unless the installed one is within [first, last] (its wheel for this torch
    exists yet fails), then the release before it."""
    if not installed or not (compat.version_at_least(installed, first) and compat.version_at_least(last, installed)):
        return last
    base = compat.parse_version(compat.parse_version(installed).base_version)
    earlier = [r for r in compat.table().get("flash_attn_releases", [])
               if compat.parse_version(r) < base and compat.version_at_least(r, first)]
    return earlier[-1] if earlier else last


def _cuda_major(build: TorchBuild | None) -> str:
    """The CUDA major torch was built for; PyPI's untagged wheels are CUDA 12 builds from torch 2.1 on (11 before)."""
    if build is not None and build.runtime:
        return build.runtime.split(".")[0]
    return "12" if build is None or compat.version_at_least(build.version, "2.1") else "11"
