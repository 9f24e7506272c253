"""Checks on the Python side: Python itself, the torch build against the GPU, and bitsandbytes."""

from __future__ import annotations

from gpudoctor import compat
from gpudoctor.doctor import fixes
from gpudoctor.doctor.finding import Finding
from gpudoctor.doctor.registry import REPORT_FIX, check
from gpudoctor.doctor.selection import training_gpus
from gpudoctor.doctor.torch_build import torch_build
from gpudoctor.probe.facts import SystemFacts

MIN_PYTHON = (3, 10)
VENDOR_BUILD = {"nvidia": "cuda", "amd": "rocm"}
BUILD_NAME = {"cuda": "CUDA", "rocm": "ROCm", "cpu": "CPU-only"}


def gpu_vendor(facts: SystemFacts) -> str | None:
    """'nvidia' or 'amd' for the first GPU training would use, None without one."""
    gpus = training_gpus(facts)
    return gpus[0].vendor if gpus else None


@check("python.version", category="PyTorch")
def python_version(facts: SystemFacts) -> list[Finding]:
    """Python is 3.10 or newer (what current torch and transformers wheels need)."""
    version = facts.python.version
    if not version:
        return []
    if compat.version_tuple(version)[:2] >= MIN_PYTHON:
        return [Finding("python.version", "PyTorch", "ok", f"Python {version}")]
    return [
        Finding(
            "python.version",
            "PyTorch",
            "error",
            f"Python {version} is too old: torch and transformers need Python ≥ 3.10",
            f"The interpreter is {facts.python.executable or 'unknown'}.",
            "sudo apt install python3.12-venv && python3.12 -m venv .venv   # then reinstall gpudoctor in it",
        )
    ]


@check("torch.installed", category="PyTorch")
def torch_installed(facts: SystemFacts) -> list[Finding]:
    """PyTorch is installed and imports."""
    build = torch_build(facts)
    if build is None:
        return [
            Finding(
                "torch.installed",
                "PyTorch",
                "error",
                f"PyTorch is not installed in {facts.python.executable or 'this Python'}",
                "gpudoctor install-torch picks the wheel that matches this machine's driver.",
                fixes.INSTALL_TORCH,
            )
        ]
    live = facts.python.live
    if live is not None and live.ran and live.torch_error:
        return [
            Finding(
                "torch.installed",
                "PyTorch",
                "error",
                f"import torch fails: {live.torch_error}",
                f"torch {build.version} is installed but broken; reinstalling the matching wheel fixes most cases.",
                fixes.INSTALL_TORCH,
            )
        ]
    return [Finding("torch.installed", "PyTorch", "ok", f"torch {build.version} is installed")]


@check("torch.build_vs_gpu", category="PyTorch")
def torch_build_vs_gpu(facts: SystemFacts) -> list[Finding]:
    """The torch build (CUDA / ROCm / CPU) matches the GPU's vendor."""
    build = torch_build(facts)
    vendor = gpu_vendor(facts)
    if build is None or build.kind is None or vendor is None:
        return []
    wanted = VENDOR_BUILD[vendor]
    gpu_name = training_gpus(facts)[0].name
    if build.kind == wanted:
        runtime = f" {build.runtime}" if build.runtime else ""
        return [Finding("torch.build_vs_gpu", "PyTorch", "ok", f"torch is a {BUILD_NAME[wanted]}{runtime} build, as the {gpu_name} needs")]
    if build.kind == "cpu":
        title = f"torch {build.version} is a CPU-only build: it cannot use the {gpu_name}"
    else:
        title = f"torch {build.version} is a {BUILD_NAME[build.kind]} build, but the {gpu_name} needs a {BUILD_NAME[wanted]} build"
    return [
        Finding(
            "torch.build_vs_gpu",
            "PyTorch",
            "error",
            title,
            "gpudoctor install-torch replaces it with the wheel for this GPU and driver.",
            fixes.INSTALL_TORCH,
        )
    ]


@check("torch.sees_gpu", category="PyTorch")
def torch_sees_gpu(facts: SystemFacts) -> list[Finding]:
    """A live `import torch` sees the GPU the probe found (skipped with --fast)."""
    live = facts.python.live
    build = torch_build(facts)
    vendor = gpu_vendor(facts)
    if live is None or not live.ran or live.torch_error or vendor is None or build is None:
        return []
    if build.kind != VENDOR_BUILD[vendor]:
        return []  # torch.build_vs_gpu already says why
    if live.error:
        return [
            Finding(
                "torch.sees_gpu",
                "PyTorch",
                "warning",
                f"the live torch check could not finish: {live.error}",
                "The other checks still ran; this one tells whether torch really reaches the GPU.",
                REPORT_FIX,
            )
        ]
    if live.timed_out:
        return [
            Finding(
                "torch.sees_gpu",
                "PyTorch",
                "warning",
                "the live torch check timed out",
                "import torch or the first CUDA/HIP call took too long; the GPU may be busy or the driver stuck.",
                "gpudoctor check -v   # run again; if it persists, run: python -c 'import torch; print(torch.cuda.is_available())'",
            )
        ]
    if live.gpu_available:
        name = live.device_name or training_gpus(facts)[0].name
        return [Finding("torch.sees_gpu", "PyTorch", "ok", f"torch sees {live.device_count or 1} GPU ({name})")]
    return [
        Finding(
            "torch.sees_gpu",
            "PyTorch",
            "error",
            "torch cannot use the GPU: torch.cuda.is_available() is False",
            (f"torch said: {live.gpu_error}. " if live.gpu_error else "")
            + "The driver found the card but torch did not; the Driver and GPU rows usually say why "
            "(driver too old, missing groups, an unsupported gfx target).",
            None,
        )
    ]


@check("bnb.installed", category="bitsandbytes")
def bnb_installed(facts: SystemFacts) -> list[Finding]:
    """bitsandbytes is installed, new enough for this GPU, and its native library loads."""
    backend = {"nvidia": "cuda", "amd": "rocm"}.get(gpu_vendor(facts) or "", "cpu")
    minimum = compat.min_bitsandbytes(backend) or "0"
    requirement = f"bitsandbytes>={minimum}"
    python = facts.python.executable
    package = facts.python.packages.get("bitsandbytes")
    live = facts.python.live
    version = (package.version if package else None) or (live.bnb_version if live else None)
    if version is None:
        return [
            Finding(
                "bnb.installed",
                "bitsandbytes",
                "error",
                "bitsandbytes is not installed: QLoRA needs it for 4-bit weights",
                "",
                fixes.pip_install(python, requirement),
            )
        ]
    if compat.version_tuple(version) < compat.version_tuple(minimum):
        where = {"rocm": "ROCm", "cuda": "CUDA", "cpu": "the CPU"}[backend]
        return [
            Finding(
                "bnb.installed",
                "bitsandbytes",
                "error",
                f"bitsandbytes {version} is too old for {where} (needs ≥ {minimum})",
                f"Releases before {minimum} ship no native library for {where}.",
                fixes.pip_install(python, requirement),
            )
        ]
    if live is not None and live.ran and live.bnb_error:
        return [
            Finding(
                "bnb.installed",
                "bitsandbytes",
                "error",
                f"bitsandbytes {version} fails to load: {live.bnb_error}",
                "Its native library did not load; reinstalling the current wheel fixes most cases.",
                fixes.pip_install(python, requirement, reinstall=True),
            )
        ]
    if live is not None and live.ran and live.bnb_4bit_ok is False:
        return [
            Finding(
                "bnb.installed",
                "bitsandbytes",
                "error",
                f"a 4-bit (NF4) matmul with bitsandbytes {version} failed: {live.bnb_4bit_error or 'no reason given'}",
                "QLoRA runs exactly this operation on every step.",
                fixes.pip_install(python, requirement, reinstall=True),
            )
        ]
    tested = " and a 4-bit matmul ran" if live is not None and live.bnb_4bit_ok else ""
    return [Finding("bnb.installed", "bitsandbytes", "ok", f"bitsandbytes {version} is installed{tested}")]
