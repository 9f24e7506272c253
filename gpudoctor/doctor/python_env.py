"""Checks on the Python side: Python itself, the torch build against the GPU, and bitsandbytes.

The GPU these checks hold torch to is `selection.training_vendor`: the card training uses, or, when
no driver offers one, the card on the PCI bus. So a CUDA torch on a box whose NVIDIA card has no
working driver is never "fine": torch cannot use that card, and the PyTorch row says so.
Versions are compared only through gpudoctor.compat, so every check orders them the same way.
"""

from __future__ import annotations

from gpudoctor import compat
from gpudoctor.doctor import fixes
from gpudoctor.doctor.finding import Verdict, error, ok, warning
from gpudoctor.doctor.registry import REPORT_FIX, check
from gpudoctor.doctor.selection import training_gpu_name, training_gpus, training_vendor
from gpudoctor.doctor.torch_build import bitsandbytes_version, torch_build
from gpudoctor.probe.facts import LiveFacts, SystemFacts

MIN_PYTHON = "3.10"
VENDOR_BUILD = {"nvidia": "cuda", "amd": "rocm"}
BUILD_NAME = {"cuda": "CUDA", "rocm": "ROCm", "cpu": "CPU-only"}
BNB_BACKEND = {"nvidia": "cuda", "amd": "rocm"}
BACKEND_NAME = {"rocm": "ROCm", "cuda": "CUDA", "cpu": "the CPU"}


@check("python.version", category="PyTorch")
def python_version(facts: SystemFacts) -> Verdict | None:
    """Python is 3.10 or newer (what current torch and transformers wheels need)."""
    version = facts.python.version
    if not version:
        return None
    if compat.version_at_least(version, MIN_PYTHON):
        return ok(f"Python {version}")
    return error(
        f"Python {version} is too old: torch and transformers need Python ≥ {MIN_PYTHON}",
        f"The interpreter is {facts.python.executable or 'unknown'}.",
        "sudo apt install python3.12-venv && python3.12 -m venv .venv   # then reinstall gpudoctor in it",
    )


@check("torch.installed", category="PyTorch")
def torch_installed(facts: SystemFacts) -> Verdict:
    """PyTorch is installed and imports."""
    build = torch_build(facts)
    if build is None:
        return error(
            f"PyTorch is not installed in {facts.python.executable or 'this Python'}",
            "gpudoctor install-torch picks the wheel that matches this machine's driver.",
            fixes.INSTALL_TORCH,
        )
    live = facts.python.live
    if live is not None and live.ran and live.torch_error:
        return error(
            f"import torch fails: {live.torch_error}",
            f"torch {build.version} is installed but broken; reinstalling the matching wheel fixes most cases.",
            fixes.INSTALL_TORCH,
        )
    return ok(f"torch {build.version} is installed")


@check("torch.build_vs_gpu", category="PyTorch")
def torch_build_vs_gpu(facts: SystemFacts) -> Verdict | None:
    """The torch build (CUDA / ROCm / CPU) matches the GPU's vendor."""
    build = torch_build(facts)
    vendor = training_vendor(facts)
    if build is None or build.kind is None or vendor is None:
        return None
    wanted = VENDOR_BUILD[vendor]
    gpu_name = training_gpu_name(facts)
    if build.kind == wanted:
        runtime = f" {build.runtime}" if build.runtime else ""
        return ok(f"torch is a {BUILD_NAME[wanted]}{runtime} build, as the {gpu_name} needs")
    if build.kind == "cpu":
        title = f"torch {build.version} is a CPU-only build: it cannot use the {gpu_name}"
    else:
        title = f"torch {build.version} is a {BUILD_NAME[build.kind]} build, but the {gpu_name} needs a {BUILD_NAME[wanted]} build"
    return error(title, "gpudoctor install-torch replaces it with the wheel for this GPU and driver.", fixes.INSTALL_TORCH)


@check("torch.sees_gpu", category="PyTorch")
def torch_sees_gpu(facts: SystemFacts) -> Verdict | None:
    """torch can use the GPU: a live `import torch` sees it (skipped with --fast), never while its card has no driver."""
    build = torch_build(facts)
    vendor = training_vendor(facts)
    if build is None or vendor is None or build.kind != VENDOR_BUILD[vendor]:
        return None  # torch.installed and torch.build_vs_gpu already say why
    live = _live_torch(facts.python.live)
    if not training_gpus(facts):
        return _card_without_driver(facts, live)
    return None if live is None else _what_live_torch_saw(facts, live)


def _live_torch(live: LiveFacts | None) -> LiveFacts | None:
    """The live result when the subprocess ran and imported torch; None when there is none to go by."""
    return live if live is not None and live.ran and not live.torch_error else None


def _what_live_torch_saw(facts: SystemFacts, live: LiveFacts) -> Verdict:
    if live.error:
        return warning(
            f"the live torch check could not finish: {live.error}",
            "The other checks still ran; this one tells whether torch really reaches the GPU.",
            REPORT_FIX,
        )
    if live.timed_out:
        return warning(
            "the live torch check timed out",
            "import torch or the first CUDA/HIP call took too long; the GPU may be busy or the driver stuck.",
            "gpudoctor check -v   # run again; if it persists, run: python -c 'import torch; print(torch.cuda.is_available())'",
        )
    if live.gpu_available:
        return ok(f"torch sees {live.device_count or 1} GPU ({live.device_name or training_gpu_name(facts)})")
    return error(
        "torch cannot use the GPU: torch.cuda.is_available() is False",
        (f"torch said: {live.gpu_error}. " if live.gpu_error else "")
        + "The driver found the card but torch did not; the Driver and GPU rows usually say why "
        "(driver too old, missing groups, an unsupported gfx target).",
        None,
    )


def _card_without_driver(facts: SystemFacts, live: LiveFacts | None) -> Verdict:
    """A card is on the PCI bus but no driver offers it: torch cannot use it, whatever the live check could say."""
    if live is not None and live.gpu_available:
        return _what_live_torch_saw(facts, live)  # torch reached a card the probes could not: believe torch
    card = training_gpu_name(facts)
    said = f"torch said: {live.gpu_error}. " if live is not None and live.gpu_error else ""
    title = (
        "torch cannot use the GPU: torch.cuda.is_available() is False"
        if live is not None and live.gpu_available is False
        else f"torch cannot use the {card} until its driver works"
    )
    return error(title, said + f"The {card} is on the PCI bus, but no driver offers it; the GPU and Driver rows say why and how to fix it.")


@check("bnb.installed", category="bitsandbytes")
def bnb_installed(facts: SystemFacts) -> Verdict:
    """bitsandbytes is installed, new enough for this GPU, and its native library loads."""
    backend = BNB_BACKEND.get(training_vendor(facts) or "", "cpu")
    minimum = compat.min_bitsandbytes(backend) or "0"
    install = fixes.pip_install(facts.python.executable, f"bitsandbytes>={minimum}")
    version = bitsandbytes_version(facts)
    if version is None:
        return error("bitsandbytes is not installed: QLoRA needs it for 4-bit weights", "", install)
    if not compat.version_at_least(version, minimum):
        where = BACKEND_NAME[backend]
        return error(
            f"bitsandbytes {version} is too old for {where} (needs ≥ {minimum})",
            f"Releases before {minimum} ship no native library for {where}.",
            install,
        )
    return _what_live_bitsandbytes_did(facts, version, minimum)


def _what_live_bitsandbytes_did(facts: SystemFacts, version: str, minimum: str) -> Verdict:
    """New enough: did its native library load, and did a 4-bit matmul run (when the live check ran)?"""
    live = facts.python.live
    ran = live is not None and live.ran
    reinstall = fixes.pip_install(facts.python.executable, f"bitsandbytes>={minimum}", reinstall=True)
    if ran and live.bnb_error:
        return error(
            f"bitsandbytes {version} fails to load: {live.bnb_error}",
            "Its native library did not load; reinstalling the current wheel fixes most cases.",
            reinstall,
        )
    if ran and live.bnb_4bit_ok is False:
        return error(
            f"a 4-bit (NF4) matmul with bitsandbytes {version} failed: {live.bnb_4bit_error or 'no reason given'}",
            "QLoRA runs exactly this operation on every step.",
            reinstall,
        )
    tested = " and a 4-bit matmul ran" if live is not None and live.bnb_4bit_ok else ""
    return ok(f"bitsandbytes {version} is installed{tested}")
