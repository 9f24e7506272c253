"""Checks on the Python side: Python itself and where it installs (PEP 668), the torch build against the
GPU, bitsandbytes, the training libraries' versions against each other, and Triton's build tools.

The GPU these checks hold torch to is `selection.training_vendor`: the card training uses, or, when
no driver offers one, the card on the PCI bus. So a CUDA torch on a box whose NVIDIA card has no
working driver is never "fine": torch cannot use that card, and the PyTorch row says so.
Versions are compared only through gpudoctor.compat, so every check orders them the same way.
"""

from __future__ import annotations

import re
import shlex

from gpudoctor import compat
from gpudoctor.doctor import fixes
from gpudoctor.doctor.finding import Verdict, error, ok, warning
from gpudoctor.doctor.registry import REPORT_FIX, check
from gpudoctor.doctor.selection import training_gpu_name, training_gpus, training_vendor
from gpudoctor.doctor.torch_wheels import by_hand_install
from gpudoctor.doctor.torch_build import bitsandbytes_version, torch_build
from gpudoctor.doctor.live import crashed, peft_row, peft_too_new, shadowing, version_of
from gpudoctor.probe.facts import LiveFacts, PythonFacts, SystemFacts

MIN_PYTHON = "3.10"
VENDOR_BUILD = {"nvidia": "cuda", "amd": "rocm"}
BUILD_NAME = {"cuda": "CUDA", "rocm": "ROCm", "cpu": "CPU-only"}
BNB_BACKEND = {"nvidia": "cuda", "amd": "rocm"}
BACKEND_NAME = {"rocm": "ROCm", "cuda": "CUDA", "cpu": "the CPU"}
# Packages that JIT-compile Triton kernels on the first step (a C compiler and Python.h needed then).
TRITON_USERS = ("unsloth", "liger-kernel", "cut-cross-entropy")


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
    if build is None and facts.python.externally_managed:
        return error(
            f"PyTorch is not installed in {facts.python.executable or 'this Python'}, and pip cannot install into it",
            "It is the system's externally managed Python (PEP 668): pip refuses with 'externally-managed-environment'. "
            "Install into a virtual environment; never --break-system-packages.",
            make_venv(facts.python) + f"\n{fixes.INSTALL_TORCH}   # inside the venv",
        )
    if build is None:
        return error(
            f"PyTorch is not installed in {facts.python.executable or 'this Python'}",
            "gpudoctor install-torch picks the wheel that matches this machine's driver.",
            fixes.INSTALL_TORCH,
        )
    live = facts.python.live
    if live is not None and live.ran and live.torch_error and _library_path_set(facts, live.torch_error):
        return error(
            f"import torch fails: {live.torch_error}",
            f"torch {build.version} loads a shared library from LD_LIBRARY_PATH instead of its own: reinstalling "
            "torch does not help. The LD_LIBRARY_PATH finding says which folder to drop.",
            "unset LD_LIBRARY_PATH   # then run gpudoctor check again; if import torch still fails: gpudoctor install-torch",
        )
    if live is not None and live.ran and live.torch_error:
        return error(
            f"import torch fails: {live.torch_error}",
            f"torch {build.version} is installed but broken; reinstalling the matching wheel fixes most cases.",
            fixes.INSTALL_TORCH,
        )
    return ok(f"torch {build.version} is installed")


def _library_path_set(facts: SystemFacts, said: str) -> bool:
    """A shared-library failure ('undefined symbol', 'cannot open shared object') with LD_LIBRARY_PATH set."""
    library_error = "undefined symbol" in said or "cannot open shared object" in said
    return library_error and bool(facts.host.gpu_env.get("LD_LIBRARY_PATH"))


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
    old_driver = _driver_older_than_every_wheel(facts) if wanted == "cuda" else None
    if old_driver:
        return error(title, f"{old_driver}, so gpudoctor install-torch would stop; update the driver first.",
                     _old_driver_fix(facts))
    gpu = next((g for g in training_gpus(facts) if g.vendor == "nvidia"), None) if wanted == "cuda" else None
    by_hand = by_hand_install(facts.python.executable, gpu)
    return error(title, "gpudoctor install-torch replaces it with the wheel for this GPU and driver.",
                 fixes.INSTALL_TORCH + (f"\n{by_hand}" if by_hand else ""))


def _driver_older_than_every_wheel(facts: SystemFacts) -> str | None:
    """'driver 418.43 runs CUDA ≤ 10.1, and current torch wheels need CUDA 12 (driver ≥ 525.60.13)', or None."""
    gpu = next((g for g in training_gpus(facts) if g.vendor == "nvidia" and g.driver_version), None)
    minimum = compat.min_driver_for_cuda("12")
    if gpu is None or minimum is None or compat.version_at_least(gpu.driver_version or "0", minimum):
        return None
    runs = f" runs CUDA ≤ {gpu.cuda_driver_version}" if gpu.cuda_driver_version else ""
    return f"driver {gpu.driver_version}{runs}, and current torch wheels need CUDA 12 (driver ≥ {minimum})"


def _old_driver_fix(facts: SystemFacts) -> str:
    gpu = next(g for g in training_gpus(facts) if g.vendor == "nvidia" and g.driver_version)
    cuda = gpu.cuda_driver_version
    keep = (f"# or keep driver {gpu.driver_version}: a torch built for CUDA {cuda} or older (tag cu{cuda.replace('.', '')} or lower), "
            "from https://pytorch.org/get-started/previous-versions/") if cuda else ""
    return "\n".join(line for line in (fixes.INSTALL_NVIDIA_DRIVER, fixes.INSTALL_TORCH, keep) if line)


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
    if crashed(live):
        return None  # torch.live_crash says how it died
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
    if not compat.version_at_least(version, minimum) and not _built_from_source(version):
        where = BACKEND_NAME[backend]
        return error(
            f"bitsandbytes {version} is too old for {where} (needs ≥ {minimum})",
            f"Releases before {minimum} ship no native library for {where}.",
            install,
        )
    return _what_live_bitsandbytes_did(facts, version, minimum)


def _built_from_source(version: str) -> bool:
    """A development or local build ('0.47.0.dev0', '0.45.0+rocm'): the release minimums are for published wheels."""
    return compat.parse_version(version).is_devrelease or "+" in version


def _what_live_bitsandbytes_did(facts: SystemFacts, version: str, minimum: str) -> Verdict:
    """New enough: did its native library load, and did a 4-bit matmul run (when the live check ran)?"""
    live = facts.python.live
    ran = live is not None and live.ran
    reinstall = fixes.pip_install(facts.python.executable, f"bitsandbytes>={minimum}", reinstall=True)
    mismatch = _bnb_rocm_library_mismatch(facts, version, live.bnb_error) if ran and live.bnb_error else None
    if mismatch is not None:
        return mismatch
    if ran and live.bnb_error:
        return error(
            f"bitsandbytes {version} fails to load: {live.bnb_error}",
            "Its native library did not load; reinstalling the current wheel fixes most cases.",
            reinstall,
        )
    if ran and live.bnb_4bit_ok is False:
        override = _override_for_missing_code(facts)
        return error(
            f"a 4-bit (NF4) matmul with bitsandbytes {version} failed: {live.bnb_4bit_error or 'no reason given'}",
            "QLoRA runs exactly this operation on every step."
            + (" Its library has no code for this card's gfx target: ROCm has to run a sibling's." if override else ""),
            override or reinstall,
        )
    tested = " and a 4-bit matmul ran" if live is not None and live.bnb_4bit_ok else ""
    return ok(f"bitsandbytes {version} is installed{tested}")


def _bnb_rocm_library_mismatch(facts: SystemFacts, version: str, said: str) -> Verdict | None:
    """bitsandbytes looks for the library named after torch's ROCm (libbitsandbytes_rocm63.so) but has another one."""
    looked = re.search(r"libbitsandbytes_rocm(\d)(\d+)\.so", said)
    system = facts.host.rocm_version
    if looked is None or not system:
        return None
    torch_rocm, system_rocm = f"{looked.group(1)}.{looked.group(2)}", ".".join(system.split(".")[:2])
    if torch_rocm == system_rocm:
        return None
    return error(
        f"bitsandbytes {version} looks for its ROCm {torch_rocm} library (torch's ROCm), but this machine's ROCm is {system_rocm}",
        f"It names its native library after torch.version.hip ({torch_rocm}); one built here against /opt/rocm is the "
        f"{system_rocm} one, so it never loads. Make the two agree.",
        f"export BNB_ROCM_VERSION={system_rocm.replace('.', '')}   # load libbitsandbytes_rocm{system_rocm.replace('.', '')}.so "
        "(bitsandbytes with BNB_ROCM_VERSION support)\n"
        f"# or: {fixes.INSTALL_TORCH}   # torch for ROCm {system_rocm} (the rocm{system_rocm} index), matching /opt/rocm",
    )


def _override_for_missing_code(facts: SystemFacts) -> str | None:
    """The HSA_OVERRIDE_GFX_VERSION export for an AMD card whose code the live check missed, when one is known to work."""
    from gpudoctor.doctor import amd

    live = facts.python.live
    if training_vendor(facts) != "amd" or live is None or amd.no_code_evidence(live) is None:
        return None
    if facts.host.gpu_env.get(amd.OVERRIDE):
        return None  # set already: amd.gfx_target judges the value
    for gpu in training_gpus(facts):
        target = amd.native_target(gpu)
        route = amd.override_route(target) if target else None
        if route and target != amd.target_of(route):
            return amd.export_override(route)
    return None


@check("python.environment", category="PyTorch")
def python_environment(facts: SystemFacts) -> Verdict | None:
    """Packages can be installed where training runs: not an externally managed system Python (PEP 668)."""
    python = facts.python
    if not python.externally_managed or torch_build(facts) is None:
        return None  # torch missing there: torch.installed says so, with the same venv fix
    return warning(
        f"{python.executable or 'this Python'} is the system's externally managed Python: pip cannot install or upgrade packages in it",
        "Ubuntu 24.04 marks its Python as externally managed (PEP 668): pip stops with 'externally-managed-environment'. "
        "Training libraries belong in a virtual environment; --break-system-packages can break apt's own tools.",
        make_venv(python) + f"\n{fixes.INSTALL_TORCH}   # inside the venv",
    )


def make_venv(python: PythonFacts) -> str:
    """Make and enter a venv on Ubuntu (python3.12-venv gives ensurepip), then bring gpudoctor into it."""
    version = ".".join((python.version or "").split(".")[:2]) or "3"
    return (f"sudo apt install python{version}-venv && python{version} -m venv ~/venvs/ft && . ~/venvs/ft/bin/activate\n"
            "pip install gpudoctor   # again, inside the venv (or pip install -e <its folder>)")


@check("python.libraries", category="PyTorch")
def python_libraries(facts: SystemFacts) -> list[Verdict] | None:
    """The training libraries fit together: accelerate new enough for transformers' Trainer, peft not newer than transformers supports, no fork over transformers."""
    verdicts = [_accelerate_for_trainer(facts), _peft_for_transformers(facts), _transformers_overwritten(facts)]
    return [v for v in verdicts if v is not None] or None


def _accelerate_for_trainer(facts: SystemFacts) -> Verdict | None:
    """transformers' Trainer raises ImportError without accelerate >= its minimum (compat.yaml)."""
    transformers = version_of(facts, "transformers")
    record = facts.python.packages.get("accelerate")
    if not transformers or record is None:
        return None  # accelerate's absence is known only where the probe looked for it
    rows = compat.table().get("transformers_accelerate_minimum", [])
    need = next((str(r["accelerate"]) for r in rows if compat.version_at_least(transformers, str(r["transformers"]))), None)
    have = record.version
    if need is None or (have and compat.version_at_least(have, need)):
        return None
    wanted = "accelerate" if need == "0" else f"accelerate>={need}"
    state = "it is not installed" if not have else f"accelerate {have} is installed"
    return error(
        f"transformers {transformers}'s Trainer needs {wanted.replace('>=', ' ≥ ')}: {state}",
        "Trainer and TrainingArguments raise ImportError before the first step. Restart Python afterwards (in a "
        "notebook, the kernel): an accelerate imported before the upgrade stays loaded.",
        fixes.pip_install(facts.python.executable, wanted),
    )


def _peft_for_transformers(facts: SystemFacts) -> Verdict | None:
    """peft newer than the installed transformers (compat.yaml peft_transformers_minimum), from versions alone."""
    live = facts.python.live
    if live is not None and live.ran and "peft" in live.import_errors:
        return None  # python.imports reports what the import said
    peft, transformers = version_of(facts, "peft"), version_of(facts, "transformers")
    row = peft_row(peft) if peft and transformers else None
    if row is None or compat.version_at_least(transformers or "0", str(row["transformers"])):
        return None
    return peft_too_new(facts)


def _transformers_overwritten(facts: SystemFacts) -> Verdict | None:
    fork = shadowing(facts, "transformers")
    if fork is None:
        return None
    python = shlex.quote(facts.python.executable or "python3")
    return error(
        f"{fork} {version_of(facts, fork)} is installed beside transformers {version_of(facts, 'transformers') or ''}: "
        "it overwrites transformers' own files",
        f"{fork} is a fork that installs into the same transformers folder; its older files replace parts of "
        "transformers, so newer names go missing ('cannot import name … from transformers.utils'). "
        "Reinstalling transformers alone does not help while it stays.",
        f"{python} -m pip uninstall -y {fork} transformers && {python} -m pip install -U transformers"
        "   # for adapter methods use the separate 'adapters' package",
    )


@check("python.build_tools", category="Host")
def build_tools(facts: SystemFacts) -> Verdict | None:
    """A C compiler and Python's headers are there for Triton, which compiles kernels at the first step (torch.compile, Liger, Unsloth)."""
    build = torch_build(facts)
    if build is None or build.kind not in ("cuda", "rocm") or training_vendor(facts) is None:
        return None
    users = [name for name in TRITON_USERS if version_of(facts, name)]
    headers = facts.python.python_headers
    # No compiler is judged where it surely matters (a Triton-built package), or beside a headers answer
    # from the same probe: facts saved before the probe looked have neither.
    no_compiler = facts.host.c_compiler is None and (bool(users) or headers is not None)
    if not no_compiler and headers is not False:
        return None
    version = ".".join((facts.python.version or "").split(".")[:2]) or "3"
    missing = [*(["no C compiler"] if no_compiler else []), *(["no Python headers (Python.h)"] if headers is False else [])]
    packages = [*(["build-essential"] if no_compiler else []), *([f"python{version}-dev"] if headers is False else [])]
    who = ", ".join(users) if users else "torch.compile, Liger and Unsloth"
    return warning(
        f"{' and '.join(missing)}: Triton cannot build the kernels {who} need",
        "Triton compiles a small C launcher against Python.h when a kernel first runs; without them it stops with "
        "'Failed to find C compiler' or 'Python.h: No such file or directory'. A venv uses its base Python's headers, "
        "so they are installed system-wide.",
        "sudo apt install " + " ".join(packages) + "   # " + " and ".join(
            [*(["gcc, the C compiler"] if no_compiler else []), *(["Python.h"] if headers is False else [])]) + " Triton builds with",
    )
