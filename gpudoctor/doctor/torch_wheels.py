"""The pip command for a torch build that suits this card and driver, as the doctor's fixes print it.

Two questions the kernel, driver and CPU-build checks share: which current wheel index install-torch
would use (and the pip line it runs), and — for a project that pins its torch — which CUDA build of
that same torch release carries the card's kernels and runs on the installed driver
(profiles/compat.yaml torch_release_cuda_tags, from PyTorch's previous-versions page).
"""

from __future__ import annotations

import re
import shlex

from gpudoctor import compat
from gpudoctor.probe.facts import GpuFacts

# Before torch 2.0 the CUDA builds were pinned as torch==1.10.1+cu111 from this page.
STABLE_PAGE = "https://download.pytorch.org/whl/torch_stable.html"
# CUDA 12.8 dropped compute capability < 7.0 from the wheels, CUDA 13 < 7.5 (pytorch/pytorch#157517).
LOWEST_ARCH = {"12.8": 70, "12.9": 70, "13.0": 75}


def sm_of(capability: str | None) -> str | None:
    """'8.6' -> 'sm_86', '12.0' -> 'sm_120'; None when unknown or malformed."""
    match = re.fullmatch(r"(\d+)\.(\d)", (capability or "").strip())
    return f"sm_{match.group(1)}{match.group(2)}" if match else None


def arch_entry(name: str) -> tuple[str, int, str] | None:
    """'sm_86' -> ('sm', 86, ''), 'compute_90a' -> ('compute', 90, 'a'); None for anything else."""
    match = re.fullmatch(r"(sm|compute)_(\d+)([a-z]?)", name.strip())
    return (match.group(1), int(match.group(2)), match.group(3)) if match else None


def serves(entry: str, device: str) -> bool:
    """Whether the build entry `entry` ('sm_80', 'compute_90') runs on a GPU whose own arch is `device` ('sm_86')."""
    have, want = arch_entry(entry), arch_entry(device)
    if have is None or want is None:
        return False
    kind, number, suffix = have
    if suffix:  # sm_90a / compute_90a: arch-specific features, that exact GPU only
        return number == want[1]
    if kind == "sm":  # SASS: same major, same or lower minor
        return number // 10 == want[1] // 10 and number <= want[1]
    return number <= want[1]  # PTX: JIT-compiled by the driver for any newer GPU


def tag_cuda(tag: str) -> str:
    """'cu111' → '11.1', 'cu92' → '9.2'."""
    digits = tag[2:]
    return f"{digits[:-1]}.{digits[-1]}"


def arch_number(device: str | None) -> int | None:
    """'sm_86' → 86; None when it is not an sm_ name."""
    entry = arch_entry(device or "")
    return entry[1] if entry and entry[0] == "sm" else None


def first_cuda(device: str) -> str | None:
    """The first CUDA release that compiles for `device` (compat.yaml cuda_arch_first_cuda), if listed."""
    number = arch_entry(device)
    capability = f"{number[1] // 10}.{number[1] % 10}" if number else ""
    return compat.table().get("cuda_arch_first_cuda", {}).get(capability)


def tag_serves(tag: str, device: str | None) -> bool:
    """Whether wheels built with this CUDA carry code for `device` (unknown device: assume yes)."""
    number = arch_number(device)
    if number is None:
        return True
    cuda = tag_cuda(tag)
    first = first_cuda(device or "")
    floors = sorted(LOWEST_ARCH.items(), key=lambda item: compat.parse_version(item[0]), reverse=True)
    lowest = next((v for k, v in floors if compat.version_at_least(cuda, k)), 0)
    return number >= lowest and (first is None or compat.version_at_least(cuda, first))


def driver_runs_cuda(gpu: GpuFacts | None, cuda: str) -> bool:
    """The driver runs this CUDA natively; True when nothing is known about the driver."""
    if gpu is None:
        return True
    if gpu.cuda_driver_version:
        return compat.driver_cuda_runs(gpu.cuda_driver_version, cuda)
    minimum = compat.min_driver_for_cuda(cuda)
    if gpu.driver_version and minimum:
        return compat.version_at_least(gpu.driver_version, minimum)
    return True


def release_tags(torch_version: str) -> list[str]:
    """The CUDA builds PyTorch published for this release ('2.3.1' → cu118, cu121), oldest first."""
    minor = ".".join(compat.parse_version(torch_version).base_version.split(".")[:2])
    return list(compat.table().get("torch_release_cuda_tags", {}).get(minor, []))


def release_has_tag(torch_version: str, tag: str) -> bool:
    return tag in release_tags(torch_version)


def same_release_tag(torch_version: str, gpu: GpuFacts | None, device: str | None) -> str | None:
    """The CUDA build of this torch release to use: the newest the driver runs that carries `device`;
    with the driver unknown, the oldest that carries it (it asks the least of the driver)."""
    tags = [t for t in release_tags(torch_version) if tag_serves(t, device)]
    known = gpu is not None and (gpu.cuda_driver_version or gpu.driver_version)
    runnable = [t for t in tags if driver_runs_cuda(gpu, tag_cuda(t))]
    if known:
        return runnable[-1] if runnable else None
    return tags[0] if tags else None


def same_release_command(python: str | None, torch_version: str, tag: str) -> str:
    """The pip line that swaps torch's CUDA build and keeps its version."""
    quoted = shlex.quote(python or "python3")
    version = compat.parse_version(torch_version).base_version
    if compat.version_at_least(version, "2.0"):
        url = compat.table()["torch_index_url"].format(tag=tag)
        return f"{quoted} -m pip install --force-reinstall torch=={version} --index-url {url}"
    return (f"{quoted} -m pip install --force-reinstall torch=={version}+{tag} -f {STABLE_PAGE}"
            f"   # torchvision/torchaudio: their +{tag} builds of the matching release")


def keep_release_line(python: str | None, torch_version: str, gpu: GpuFacts | None, device: str | None, why: str) -> str | None:
    """'# or keep torch X (…): <pip line>' where that release has a suitable CUDA build, else None."""
    tag = same_release_tag(torch_version, gpu, device)
    if tag is None:
        return None
    version = compat.parse_version(torch_version).base_version
    return f"# or keep torch {version} ({why}): its {tag} build\n{same_release_command(python, torch_version, tag)}"


def current_index(gpu: GpuFacts, device: str) -> dict | None:
    """The current wheel index to use: the newest that carries `device` and the driver runs; with the driver
    unknown (or too old for all), the one with the oldest CUDA (it asks the least of the driver)."""
    table = compat.table()
    lists: dict[str, list[str]] = table.get("torch_cuda_index_arch_lists", {})
    serving = [i for i in table.get("torch_cuda_indexes", []) if any(serves(e, device) for e in lists.get(i["tag"], []))]
    if not serving:
        return None
    runnable = [i for i in serving if index_runs(gpu, i)]
    known = gpu.cuda_driver_version or gpu.driver_version
    return runnable[0] if known and runnable else serving[-1]


def index_runs(gpu: GpuFacts, index: dict) -> bool:
    """The driver natively runs the index's CUDA (as install-torch chooses); True when the driver is unknown."""
    if gpu.cuda_driver_version:
        return compat.version_at_least(gpu.cuda_driver_version, str(index["cuda"]))
    if gpu.driver_version:
        return compat.version_at_least(gpu.driver_version, str(index["min_driver"]))
    return True


def by_hand_install(python: str | None, gpu: GpuFacts | None) -> str | None:
    """'# or by hand: <python> -m pip install …' — the torch line install-torch runs for this card, or None."""
    device = sm_of(gpu.compute_capability) if gpu else None
    if gpu is None:
        return None
    index = current_index(gpu, device) if device else compat.table()["torch_cuda_indexes"][0]
    if index is None:
        return None
    url = compat.table()["torch_index_url"].format(tag=index["tag"])
    quoted = shlex.quote(python or "python3")
    return f"# or by hand: {quoted} -m pip install --force-reinstall torch --index-url {url}"
