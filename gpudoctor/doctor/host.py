"""Checks on the host: free disk for a model download, /dev/shm, RAM, and facts the probe could not read."""

from __future__ import annotations

from gpudoctor.doctor import fixes
from gpudoctor.doctor.finding import Verdict, ok, warning
from gpudoctor.doctor.registry import REPORT_FIX, check
from gpudoctor.doctor.units import GIB, gib
from gpudoctor.probe.facts import DiskFacts, SystemFacts

# A 7B model in bf16 safetensors is ~15 GB, its checkpoints and merged copy as much again.
MIN_DISK_BYTES = 30 * GIB
# Data-loader workers pass tensors through /dev/shm; Docker's default 64 MiB makes them crash.
MIN_SHM_BYTES = 1 * GIB
# Loading a 7B checkpoint and quantizing it to 4-bit passes shards through RAM.
MIN_RAM_BYTES = 16 * GIB
DISK_PURPOSE = {"hf_cache": "the model cache", "output": "the output folder"}
DISK_FIX = {
    "hf_cache": "export HF_HOME=/path/with/room/huggingface   # models download there from now on",
    "output": "gpudoctor check --output-dir /path/with/room   # then train with that output folder",
}


@check("disk.free", category="Disk")
def disk_free(facts: SystemFacts) -> list[Verdict]:
    """The model cache and the output folder have room for a 7B download (30 GiB)."""
    return [_disk_verdict(disk) for disk in facts.host.disks]


def _disk_verdict(disk: DiskFacts) -> Verdict:
    purpose = DISK_PURPOSE.get(disk.purpose, disk.purpose)
    if disk.free_bytes is None:
        return warning(
            f"free space for {purpose} ({disk.path}) could not be read: {disk.error or 'unknown reason'}",
            "",
            f"mkdir -p {disk.path}   # if the folder does not exist yet",
        )
    if disk.free_bytes < MIN_DISK_BYTES:
        return warning(
            f"only {gib(disk.free_bytes)} free for {purpose} ({disk.path}); a 7B model needs about 30 GiB",
            "A 7B model's weights are ~15 GB; checkpoints and a merged copy need as much again.",
            DISK_FIX.get(disk.purpose),
        )
    return ok(f"{gib(disk.free_bytes)} free for {purpose} ({disk.path})")


@check("host.shm", category="Host")
def shared_memory(facts: SystemFacts) -> Verdict | None:
    """/dev/shm is at least 1 GiB (data-loader workers share tensors through it)."""
    size = facts.host.shm_total_bytes
    if size is None:
        return None
    if size >= MIN_SHM_BYTES:
        return ok(f"/dev/shm is {gib(size)}")
    return warning(
        f"/dev/shm is only {gib(size)}: data-loader workers crash with 'bus error'",
        "Containers get 64 MiB unless told otherwise.",
        "sudo mount -o remount,size=16G /dev/shm   # in Docker: docker run --shm-size=16g …",
    )


@check("host.ram", category="Host")
def system_ram(facts: SystemFacts) -> Verdict | None:
    """The machine has at least 16 GiB of RAM (loading a 7B checkpoint passes it through RAM)."""
    total = facts.host.ram_total_bytes
    if total is None:
        return None
    if total >= MIN_RAM_BYTES:
        return ok(f"{gib(total)} of RAM")
    swap = facts.host.swap_total_bytes
    return warning(
        f"only {gib(total)} of RAM: loading a 7B checkpoint may swap or be killed",
        f"Swap: {gib(swap) if swap is not None else 'unknown'}. Smaller models load fine.",
        "sudo fallocate -l 16G /swapfile && sudo chmod 600 /swapfile && sudo mkswap /swapfile && sudo swapon /swapfile",
    )


SUPPORTED_OS = ("ubuntu", "24.04")


@check("host.os", category="Host")
def operating_system(facts: SystemFacts) -> Verdict | None:
    """The host is Ubuntu 24.04, the system gpudoctor's installers and fix commands are written for."""
    host = facts.host
    if host.os_id is None:
        return None
    if (host.os_id, host.os_version) == SUPPORTED_OS:
        return ok(f"{host.os_pretty or 'Ubuntu 24.04'}: the installers and fixes apply as written")
    name = host.os_pretty or f"{host.os_id} {host.os_version or ''}".strip()
    return warning(
        f"{name} is not Ubuntu 24.04: check, plan and train work, but install-cuda/install-rocm refuse without --force",
        "The driver, CUDA and ROCm commands in the fixes are Ubuntu 24.04's; other systems name packages differently.",
    )


@check("host.wsl", category="Host")
def wsl(facts: SystemFacts) -> Verdict | None:
    """Under WSL2 the GPU driver lives on Windows (never install a Linux GPU driver inside WSL)."""
    if not facts.host.is_wsl:
        return None
    return warning(
        "running under WSL2: GPU drivers come from Windows, and some checks do not apply",
        "Installing a Linux NVIDIA driver inside WSL breaks GPU access; ROCm on WSL supports only some cards.",
        fixes.WSL_DRIVER,
    )


@check("host.probe_errors", category="Host")
def probe_errors(facts: SystemFacts) -> Verdict | None:
    """Every fact the doctor needs could be read (a probe that failed is reported, not hidden)."""
    problems = [*facts.errors, *facts.host.errors]
    if not problems:
        return None
    return warning(
        f"{len(problems)} fact(s) could not be read, so some checks may be missing: {problems[0]}",
        "\n".join(problems),
        REPORT_FIX,
    )
