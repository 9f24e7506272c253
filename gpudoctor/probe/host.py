"""The host around the GPU: OS, kernel, Secure Boot, kernel modules, device access, memory, disks.

Files are read under `Sources.root` (os-release, /proc, /sys, /dev, /opt/rocm), so a fixture
folder stands in for a whole machine. A fact that cannot be read stays None and the reason is
added to `HostFacts.errors`; nothing here raises for a missing or unreadable file.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gpudoctor.probe.facts import DiskFacts, HostFacts
from gpudoctor.probe.pci import read_text
from gpudoctor.probe.sources import Sources
from gpudoctor.resources import hf_hub_cache

# EFI global variable GUID (UEFI spec); the file holds 4 attribute bytes then the 1-byte value.
SECURE_BOOT_VAR = "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"
GPU_MODULES = ("nvidia", "nvidia_uvm", "nvidia_drm", "nvidia_modeset", "nouveau", "amdgpu", "amdkfd")


def probe_host(sources: Sources, output_dir: str | None = None) -> HostFacts:
    host = HostFacts()
    steps: list[Callable[[Sources, HostFacts], None]] = [
        _os_release, _kernel, _modules, _secure_boot, _nvidia_signer, _versions,
        _user, _devices, _memory, _cpu, _gpu_env,
    ]
    for step in steps:
        _guarded(step.__name__.strip("_"), lambda step=step: step(sources, host), host)
    _guarded("disks", lambda: _disks(sources, host, output_dir), host)
    return host


def _guarded(what: str, step: Callable[[], None], host: HostFacts) -> None:
    try:
        step()
    except OSError as err:
        host.errors.append(f"{what}: {err.strerror or err} ({err.filename or 'file'})")
    except Exception as err:  # a parser meeting a file shape we have not seen
        host.errors.append(f"{what}: {type(err).__name__}: {err}")


def parse_os_release(text: str) -> dict[str, str]:
    """KEY="value" lines of /etc/os-release (shell quoting rules)."""
    values = {}
    for line in text.splitlines():
        key, sep, raw = line.partition("=")
        if sep and key.strip() and not key.startswith("#"):
            try:
                parts = shlex.split(raw, posix=True)
            except ValueError:  # an unclosed quote: keep the text without its quote marks
                parts = [raw.strip().strip("'\"")]
            values[key.strip()] = parts[0] if parts else ""
    return values


# Variables that change which GPU the stack sees or which kernels it uses.
GPU_ENV_VARIABLES = (
    "HSA_OVERRIDE_GFX_VERSION", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES", "PYTORCH_CUDA_ALLOC_CONF",
    "LD_LIBRARY_PATH",
)


def _gpu_env(sources: Sources, host: HostFacts) -> None:
    host.gpu_env = {name: sources.environ[name] for name in GPU_ENV_VARIABLES if name in sources.environ}


def _os_release(sources: Sources, host: HostFacts) -> None:
    text = read_text(sources, "/etc/os-release") or read_text(sources, "/usr/lib/os-release")
    if text is None:
        return
    values = parse_os_release(text)
    host.os_id = values.get("ID")
    host.os_version = values.get("VERSION_ID")
    host.os_pretty = values.get("PRETTY_NAME")


def _kernel(sources: Sources, host: HostFacts) -> None:
    host.kernel = read_text(sources, "/proc/sys/kernel/osrelease")
    if host.kernel:
        host.kernel_headers = sources.path(f"/lib/modules/{host.kernel}/build").exists()
    version = read_text(sources, "/proc/version") or ""
    host.is_wsl = "microsoft" in version.lower() or (host.kernel or "").lower().endswith("-wsl2")


def _modules(sources: Sources, host: HostFacts) -> None:
    text = read_text(sources, "/proc/modules") or ""
    loaded = {line.split(" ", 1)[0] for line in text.splitlines() if line.strip()}
    host.loaded_modules = [name for name in GPU_MODULES if name in loaded]


def _secure_boot(sources: Sources, host: HostFacts) -> None:
    try:
        raw = sources.path(SECURE_BOOT_VAR).read_bytes()
        if len(raw) >= 5:
            host.secure_boot = raw[4] == 1
            return
    except FileNotFoundError:
        if not sources.path("/sys/firmware/efi").exists():
            host.secure_boot = False  # booted by legacy BIOS: Secure Boot cannot be on
            return
    except PermissionError:
        pass
    try:
        _, stdout, stderr = sources.run(["mokutil", "--sb-state"], sources.command_timeout)
    except (FileNotFoundError, TimeoutError):
        return
    answer = (stdout + stderr).lower()
    if "secureboot enabled" in answer:
        host.secure_boot = True
    elif "secureboot disabled" in answer:
        host.secure_boot = False


def _nvidia_signer(sources: Sources, host: HostFacts) -> None:
    """`modinfo -F signer nvidia` prints the signing key's owner; empty when the module is unsigned."""
    try:
        code, stdout, _ = sources.run(["modinfo", "-F", "signer", "nvidia"], sources.command_timeout)
    except (FileNotFoundError, TimeoutError):
        return
    if code == 0:  # non-zero: no nvidia module installed for this kernel
        host.nvidia_module_signed = bool(stdout.strip())


def _versions(sources: Sources, host: HostFacts) -> None:
    host.amdgpu_version = read_text(sources, "/sys/module/amdgpu/version") or None
    host.nvidia_module_version = read_text(sources, "/sys/module/nvidia/version") or None
    host.rocm_version = read_text(sources, "/opt/rocm/.info/version") or None
    host.cuda_toolkit_version = _cuda_toolkit(sources)


def _cuda_toolkit(sources: Sources) -> str | None:
    """The toolkit /usr/local/cuda points at (version.json since CUDA 11.1, version.txt before)."""
    import json

    text = read_text(sources, "/usr/local/cuda/version.json")
    if text:
        return json.loads(text).get("cuda", {}).get("version")
    text = read_text(sources, "/usr/local/cuda/version.txt") or ""
    match = re.search(r"CUDA Version (\S+)", text)
    return match.group(1) if match else None


def _user(sources: Sources, host: HostFacts) -> None:
    host.user = sources.user()
    host.user_groups = sorted(sources.groups())
    text = read_text(sources, "/etc/group") or ""
    configured = set()
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) >= 4 and host.user and host.user in fields[3].split(","):
            configured.add(fields[0])
    host.user_groups_pending = sorted(configured - set(host.user_groups))


def _devices(sources: Sources, host: HostFacts) -> None:
    read_write = os.R_OK | os.W_OK
    kfd = sources.path("/dev/kfd")
    host.kfd_exists = kfd.exists()
    host.kfd_accessible = sources.access(str(kfd), read_write) if host.kfd_exists else None
    dri = sources.path("/dev/dri")
    nodes = sorted(dri.glob("renderD*")) if dri.is_dir() else []
    host.render_nodes = [f"/dev/dri/{node.name}" for node in nodes]
    host.render_accessible = all(sources.access(str(node), read_write) for node in nodes) if nodes else None


def parse_meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo as bytes ("MemTotal: 24684092 kB" -> 25276510208)."""
    values = {}
    for line in text.splitlines():
        match = re.match(r"(\w+):\s+(\d+)(?:\s+kB)?", line)
        if match:
            values[match.group(1)] = int(match.group(2)) * (1024 if line.rstrip().endswith("kB") else 1)
    return values


def _memory(sources: Sources, host: HostFacts) -> None:
    # /proc/meminfo is the same source psutil.virtual_memory() reads on Linux.
    values = parse_meminfo(read_text(sources, "/proc/meminfo") or "")
    host.ram_total_bytes = values.get("MemTotal")
    host.ram_available_bytes = values.get("MemAvailable")
    host.swap_total_bytes = values.get("SwapTotal")


def _cpu(sources: Sources, host: HostFacts) -> None:
    text = read_text(sources, "/proc/cpuinfo") or ""
    names = re.findall(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    host.cpu_model = names[0].strip() if names else None
    processors = len(re.findall(r"^processor\s*:", text, re.MULTILINE))
    host.cpu_count = processors or None


def _disks(sources: Sources, host: HostFacts, output_dir: str | None) -> None:
    cache = str(hf_hub_cache(sources.environ))
    output = output_dir or sources.cwd()
    host.disks = [_disk(sources, "hf_cache", cache), _disk(sources, "output", os.path.abspath(output))]
    shm = sources.path("/dev/shm")
    if shm.is_dir():
        host.shm_total_bytes = sources.disk_usage(str(shm))[0]


def _disk(sources: Sources, purpose: str, path: str) -> DiskFacts:
    """Free space where `path` will live: the nearest folder that exists on the way up."""
    disk = DiskFacts(purpose=purpose, path=path)
    probe = sources.path(path)
    while not probe.exists() and probe != probe.parent and probe != sources.root:
        probe = probe.parent
    try:
        disk.total_bytes, disk.free_bytes = sources.disk_usage(str(probe))
    except OSError as err:
        disk.error = f"{err.strerror or err}: {probe}"
    return disk
