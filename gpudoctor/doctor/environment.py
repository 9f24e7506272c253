"""Checks on the variables and paths that steer the GPU stack: *_VISIBLE_DEVICES, LD_LIBRARY_PATH, BNB_*_VERSION, the CUDA toolkit.

Each of these is set by a person (or a script, or ~/.bashrc) and silently changes what torch or
bitsandbytes loads; the fix is to change the variable, never to reinstall what it misleads.
The predicates (`hidden_gpus`, `ld_library_path_shadows`, `bnb_override`) let other checks step
aside when the environment is the cause, so they do not print a reinstall that would not help.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from gpudoctor import compat
from gpudoctor.doctor import fixes
from gpudoctor.doctor.finding import Verdict, error, ok, warning
from gpudoctor.doctor.registry import check
from gpudoctor.doctor.torch_build import torch_build
from gpudoctor.doctor.torch_wheels import release_has_tag, same_release_command
from gpudoctor.probe.facts import SystemFacts

# Where an `export` line that keeps coming back lives.
STARTUP_FILES = "~/.bashrc ~/.profile /etc/environment"
# NVIDIA device UUIDs as CUDA_VISIBLE_DEVICES accepts them; the probe records no UUIDs to check them against.
UUID_PREFIXES = ("gpu-", "mig-")
# The dynamic loader's complaints when an older copy of a CUDA library was found first.
SHADOW_ERRORS = ("undefined symbol", "version `", "symbol lookup error")
# PyTorch CUDA wheel indexes that exist (download.pytorch.org/whl/<tag>), for "torch built for your toolkit".
TORCH_CUDA_TAGS = ("cu118", "cu121", "cu124", "cu126", "cu128", "cu129", "cu130")
# NVIDIA's Ubuntu 24.04 CUDA repository (what install-cuda --toolkit uses) starts at CUDA 12.5.
OLDEST_NOBLE_TOOLKIT = "12.5"


def torch_cuda_version(facts: SystemFacts) -> str | None:
    """torch's CUDA as major.minor ("12.8"): from its build, else what the live check's torch.version.cuda said."""
    build = torch_build(facts)
    if build is None or build.kind != "cuda":
        return None
    if build.runtime:
        return build.runtime
    live = facts.python.live
    cuda = live.cuda_version if live is not None and live.ran else None
    return _major_minor(cuda) if cuda else None


def _torch_hip_version(facts: SystemFacts) -> str | None:
    build = torch_build(facts)
    return build.runtime if build is not None and build.kind == "rocm" else None


def _major_minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def _remove_export(variable: str) -> str:
    return f"# set in a start-up file? grep -n {variable} {STARTUP_FILES}   # delete that export line, then open a new shell"


# --- *_VISIBLE_DEVICES -------------------------------------------------------------------------


@dataclass(frozen=True)
class Visibility:
    """What one *_VISIBLE_DEVICES value leaves visible out of `total` GPUs."""

    variable: str
    value: str
    total: int
    visible: int | None  # None: a UUID the doctor cannot check
    bad: str | None  # the first entry that names no GPU (the runtime stops reading there)


def _visibility(variable: str, value: str, total: int) -> Visibility:
    visible = 0
    for entry in (e.strip() for e in value.split(",")):
        if entry.lower().startswith(UUID_PREFIXES):
            return Visibility(variable, value, total, None, None)
        if not re.fullmatch(r"\d+", entry) or int(entry) >= total:
            return Visibility(variable, value, total, visible, entry)
        visible += 1
    return Visibility(variable, value, total, visible, None)


def visibility_chain(facts: SystemFacts) -> list[Visibility]:
    """The *_VISIBLE_DEVICES that apply to the training vendor's GPUs, in the order the runtime applies them.

    NVIDIA: CUDA_VISIBLE_DEVICES. AMD: ROCR_VISIBLE_DEVICES filters first, then HIP_VISIBLE_DEVICES
    (or CUDA_VISIBLE_DEVICES, which HIP also reads) counts only the GPUs ROCR left.
    """
    env = facts.host.gpu_env
    vendors = [g.vendor for g in facts.gpus]
    chain: list[Visibility] = []
    if "nvidia" in vendors and "CUDA_VISIBLE_DEVICES" in env:
        chain.append(_visibility("CUDA_VISIBLE_DEVICES", env["CUDA_VISIBLE_DEVICES"], vendors.count("nvidia")))
    if "amd" in vendors and "nvidia" not in vendors:
        total = vendors.count("amd")
        if "ROCR_VISIBLE_DEVICES" in env:
            chain.append(_visibility("ROCR_VISIBLE_DEVICES", env["ROCR_VISIBLE_DEVICES"], total))
            total = chain[-1].visible if chain[-1].visible is not None else total
        hip = next((v for v in ("HIP_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES") if v in env), None)
        if hip is not None:
            chain.append(_visibility(hip, env[hip], total))
    return chain


def hidden_gpus(facts: SystemFacts) -> bool:
    """A *_VISIBLE_DEVICES variable leaves torch no GPU at all."""
    return any(v.visible == 0 for v in visibility_chain(facts))


@check("env.visible_devices", category="GPU")
def visible_devices(facts: SystemFacts) -> list[Verdict]:
    """CUDA_VISIBLE_DEVICES / HIP_VISIBLE_DEVICES / ROCR_VISIBLE_DEVICES name GPUs that exist (empty hides them all)."""
    chain = visibility_chain(facts)
    return [_visibility_verdict(v, chain[0] if i else None) for i, v in enumerate(chain)]


def _visibility_verdict(v: Visibility, before: Visibility | None) -> Verdict:
    shown = f"{v.variable}={v.value!r}" if not v.value.strip() else f"{v.variable}={v.value}"
    counted = f"the {v.total} GPU(s) {before.variable} left" if before else f"this machine's {v.total} GPU(s)"
    if v.visible is None:
        return ok(f"{shown}: a GPU UUID (not checked against the GPUs)")
    if v.bad is None:
        return ok(f"{shown}: torch sees {v.visible} of {counted}")
    named = "is empty, which" if not v.value.strip() else f"names GPU {v.bad!r}, which does not exist among {counted}; it"
    detail = (
        f"The runtime reads the list up to the first entry that names no GPU, so {v.visible} GPU(s) stay visible. "
        "A script or a start-up file may set it (os.environ inside a program counts only before torch starts)."
    )
    fix = _visibility_fix(v, before)
    if v.visible == 0:
        return error(f"{shown} {named} hides every GPU from torch", detail, fix)
    return warning(f"{shown} {named} hides the GPUs listed after it", detail, fix)


def _visibility_fix(v: Visibility, before: Visibility | None) -> str:
    if before is not None:  # both ROCR_ and HIP_ set: HIP counts only what ROCR left
        return (
            f"unset {before.variable}   # keep one of the two: {v.variable} alone picks from every GPU\n"
            f"{_remove_export(before.variable)}"
        )
    last = max(v.total - 1, 0)
    return (
        f"unset {v.variable}   # torch then sees every GPU\n"
        f"# or name GPUs that exist: export {v.variable}=0   (0 … {last})\n"
        f"{_remove_export(v.variable)}"
    )


# --- LD_LIBRARY_PATH ---------------------------------------------------------------------------


def ld_library_path_shadows(facts: SystemFacts) -> list[str]:
    """LD_LIBRARY_PATH folders holding another copy of CUDA's libraries, found before torch's own (pip CUDA torch only)."""
    build = torch_build(facts)
    value = facts.host.gpu_env.get("LD_LIBRARY_PATH")
    if build is None or build.kind != "cuda" or not value:
        return []
    own = _own_env_lib(facts)
    return [folder for folder in value.split(":") if folder and _holds_cuda_libraries(folder, own)]


def _own_env_lib(facts: SystemFacts) -> str | None:
    """The lib folder of the interpreter's own conda environment (conda's torch is linked against it)."""
    executable = facts.python.executable or ""
    if facts.python.env_kind != "conda" or "/bin/" not in executable:
        return None
    return executable.rsplit("/bin/", 1)[0] + "/lib"


def _holds_cuda_libraries(folder: str, own_lib: str | None) -> bool:
    path = folder.rstrip("/").lower()
    if own_lib is not None and path == own_lib.rstrip("/").lower():
        return False
    if "/cuda" in path or "/site-packages/nvidia/" in path:  # /usr/local/cuda-12.4/lib64, …/targets/x86_64-linux/lib
        return True
    return bool(re.search(r"(conda|mamba|miniforge)[^:]*/lib$", path))  # a conda env's lib: cudatoolkit, cudnn


def _loader_errors(facts: SystemFacts) -> str | None:
    """The first thing the live check saw fail with a dynamic-loader complaint ('undefined symbol …')."""
    live = facts.python.live
    if live is None or not live.ran:
        return None
    said = [live.torch_error, live.gpu_error, live.error, live.bnb_error, *live.import_errors.values()]
    return next((s for s in said if s and any(e in s.lower() for e in SHADOW_ERRORS)), None)


@check("env.ld_library_path", category="PyTorch")
def ld_library_path(facts: SystemFacts) -> Verdict | None:
    """LD_LIBRARY_PATH does not put a CUDA toolkit's or conda's CUDA libraries ahead of the ones torch's wheel brings."""
    shadows = ld_library_path_shadows(facts)
    if not shadows:
        return None
    folders = ", ".join(shadows)
    failure = _loader_errors(facts)
    live = facts.python.live
    if failure is None and live is not None and live.ran and not live.torch_error and live.gpu_available:
        return ok(f"LD_LIBRARY_PATH has {folders}, but torch loaded its own CUDA libraries")
    detail = (
        "torch's pip wheel brings its own CUDA libraries (nvidia-cusparse, nvidia-nvjitlink, nvidia-cudnn …); the loader "
        "takes LD_LIBRARY_PATH first, so an older copy there wins and torch fails with 'undefined symbol'. "
        "Reinstalling torch or another toolkit does not help; taking the folder out does. A toolkit is needed only "
        "to compile CUDA code, through CUDA_HOME and PATH."
    )
    fix = f"{_ld_path_without(facts, shadows)}\n{_remove_export('LD_LIBRARY_PATH')}"
    first = _own_library_first(failure)
    if first:
        fix += "\n" + first
    if failure:
        return error(f"LD_LIBRARY_PATH puts {folders} ahead of torch's own CUDA libraries: {failure}", detail, fix)
    return warning(f"LD_LIBRARY_PATH puts {folders} ahead of torch's own CUDA libraries", detail, fix)


# The nvidia-* wheel folder under site-packages/nvidia/ that holds each library torch's pip wheel loads.
WHEEL_FOLDER = {"cublaslt": "cublas", "cudart": "cuda_runtime", "nvrtc": "cuda_nvrtc", "cupti": "cuda_cupti"}


def _own_library_first(failure: str | None) -> str | None:
    """Where the error names the library a symbol should come from ('version libnvJitLink.so.12') and torch's
    site-packages: the export that puts torch's own copy of it first, for those who must keep LD_LIBRARY_PATH."""
    site = re.search(r"(/\S*?/(?:site|dist)-packages)/", failure or "")
    library = re.search(r"version (lib\w+)\.so", failure or "")
    if not site or not library:
        return None
    name = library.group(1)[3:].lower()
    folder = f"{site.group(1)}/nvidia/{WHEEL_FOLDER.get(name, name)}/lib"
    return f"# or keep LD_LIBRARY_PATH and load torch's own {library.group(1)} first: export LD_LIBRARY_PATH={folder}:$LD_LIBRARY_PATH"


def _ld_path_without(facts: SystemFacts, shadows: list[str]) -> str:
    kept = [f for f in facts.host.gpu_env.get("LD_LIBRARY_PATH", "").split(":") if f and f not in shadows]
    if not kept:
        return "unset LD_LIBRARY_PATH   # torch finds its own CUDA libraries"
    return f"export LD_LIBRARY_PATH={shlex.quote(':'.join(kept))}   # the same without {', '.join(shadows)}"


# --- the CUDA toolkit --------------------------------------------------------------------------


@check("env.cuda_toolkit", category="Driver")
def cuda_toolkit(facts: SystemFacts) -> Verdict | None:
    """The CUDA toolkit (nvcc) has torch's CUDA major version, so CUDA extensions (flash-attn, deepspeed) build."""
    toolkit = facts.host.cuda_toolkit_version
    runtime = torch_cuda_version(facts)
    if not toolkit or runtime is None:
        return None
    where = f" at {facts.host.cuda_toolkit_path}" if facts.host.cuda_toolkit_path else ""
    if compat.parse_version(toolkit).major == compat.parse_version(runtime).major:
        return ok(f"CUDA toolkit {toolkit}{where} matches torch's CUDA {runtime} (same major version)")
    return warning(
        f"CUDA toolkit {toolkit}{where} differs from torch's CUDA {runtime}: building CUDA extensions fails",
        "Training with prebuilt wheels works; compiling does not. torch.utils.cpp_extension (flash-attn, deepspeed, "
        f"bitsandbytes from source) refuses it: 'The detected CUDA version ({_major_minor(toolkit)}) mismatches the "
        f"version that was used to compile PyTorch ({runtime})'. Make the two agree, or install a prebuilt wheel.",
        _toolkit_fix(facts, _major_minor(toolkit), runtime),
    )


def _toolkit_fix(facts: SystemFacts, toolkit: str, runtime: str) -> str:
    """nvcc of torch's CUDA (the toolkit follows torch), or torch — the same release where it can — for the toolkit's CUDA."""
    python = shlex.quote(facts.python.executable or "python3")
    home = f"export CUDA_HOME=/usr/local/cuda-{runtime} PATH=/usr/local/cuda-{runtime}/bin:$PATH   # builds use this nvcc"
    if compat.version_at_least(runtime, OLDEST_NOBLE_TOOLKIT):
        lines = [f"{fixes.INSTALL_CUDA} --toolkit {runtime}   # nvcc {runtime}: NVIDIA's cuda-toolkit-{runtime.replace('.', '-')}, beside the driver", home]
    else:
        lines = [f"# nvcc {runtime} to match torch: NVIDIA's CUDA {runtime} runfile (https://developer.nvidia.com/cuda-toolkit-archive, "
                 f"--toolkit only), or in a conda env: conda install -c nvidia cuda-nvcc={runtime}", home]
    tag = "cu" + toolkit.replace(".", "")
    build = torch_build(facts)
    if build is not None and release_has_tag(build.version, tag):
        lines.append("# or torch for nvcc " + toolkit + ": " + same_release_command(facts.python.executable, build.version, tag))
    elif tag in TORCH_CUDA_TAGS:
        index = compat.table()["torch_index_url"].format(tag=tag)
        lines.append(f"# or: {python} -m pip install -U torch --index-url {index}   # torch built for the toolkit's CUDA {toolkit}")
    lines.append(f"# then build against this torch: {python} -m pip install flash-attn --no-build-isolation")
    return "\n".join(lines)


# --- BNB_CUDA_VERSION / BNB_ROCM_VERSION ------------------------------------------------------


def bnb_override(facts: SystemFacts) -> str | None:
    """The BNB_CUDA_VERSION / BNB_ROCM_VERSION that is set (non-empty), making bitsandbytes pick its library by it."""
    env = facts.host.gpu_env
    return next((v for v in ("BNB_CUDA_VERSION", "BNB_ROCM_VERSION") if env.get(v, "").strip()), None)


@check("env.bnb_version", category="bitsandbytes")
def bnb_version_override(facts: SystemFacts) -> Verdict | None:
    """BNB_CUDA_VERSION / BNB_ROCM_VERSION, when set, do not make bitsandbytes load a library that fails."""
    variable = bnb_override(facts)
    if variable is None:
        return None
    value = facts.host.gpu_env[variable].strip()
    backend, runtime = ("cuda", torch_cuda_version(facts)) if variable == "BNB_CUDA_VERSION" else ("rocm", _torch_hip_version(facts))
    name = "CUDA" if backend == "cuda" else "ROCm"
    library = f"libbitsandbytes_{backend}{value.replace('.', '')}.so"
    agrees = runtime is not None and value.replace(".", "") == runtime.replace(".", "")
    torch_has = f"torch's {name} {runtime}" if runtime else f"torch's {name} (unknown)"
    failed = _bnb_failure(facts)
    fix = f"unset {variable}   # bitsandbytes then loads the library for {torch_has}\n{_remove_export(variable)}"
    if failed:
        why = (
            f"It names {torch_has} already, so it is not needed; with it set, bitsandbytes 0.43.x builds a wrong library "
            "name (…_nocublaslt…) on GPUs below compute capability 7.5."
            if agrees
            else f"It overrides {torch_has} with {name} {value}'s library."
        )
        return error(
            f"{variable}={value} makes bitsandbytes load {library}, and it fails: {failed}",
            why + " Reinstalling or recompiling bitsandbytes with it still set does not help.",
            fix,
        )
    if agrees:
        return ok(f"{variable}={value} names {torch_has}, so it changes nothing")
    if _bnb_worked(facts):
        return ok(f"{variable}={value} overrides {torch_has}, and bitsandbytes' 4-bit test ran")
    return warning(
        f"{variable}={value} makes bitsandbytes load {library}, not the library for {torch_has}",
        f"A library built for another {name} than torch's can fail to load or crash at the first 4-bit matmul; "
        "set it only to match a bitsandbytes you compiled yourself.",
        fix,
    )


def _bnb_failure(facts: SystemFacts) -> str | None:
    live = facts.python.live
    if live is None or not live.ran:
        return None
    if live.bnb_error:
        return live.bnb_error
    return (live.bnb_4bit_error or "the 4-bit matmul failed") if live.bnb_4bit_ok is False else None


def _bnb_worked(facts: SystemFacts) -> bool:
    live = facts.python.live
    return live is not None and live.ran and bool(live.bnb_4bit_ok)
