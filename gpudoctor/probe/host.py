"""The host around the GPU: OS, kernel, Secure Boot, kernel modules, device access, memory, disks.

Files are read under `Sources.root` (os-release, /proc, /sys, /dev, /opt/rocm), so a fixture
folder stands in for a whole machine; programs are looked up on $PATH under that root too (`which`).
A fact that cannot be read stays None and the reason is added to `HostFacts.errors`; nothing here
raises for a missing or unreadable file. The commands (modinfo, mokutil, dkms, nvcc) run side by
side in threads while the files are read, each under `Sources.command_timeout`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import stat
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from gpudoctor.probe.facts import DiskFacts, HostFacts
from gpudoctor.probe.pci import read_text
from gpudoctor.probe.sources import Sources
from gpudoctor.resources import hf_hub_cache

# EFI global variable GUID (UEFI spec); the file holds 4 attribute bytes then the 1-byte value.
SECURE_BOOT_VAR = "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"
GPU_MODULES = ("nvidia", "nvidia_uvm", "nvidia_drm", "nvidia_modeset", "nouveau", "amdgpu", "amdkfd")


Step = Callable[["Sources", HostFacts], None]


def probe_host(sources: Sources, output_dir: str | None = None) -> HostFacts:
    host = HostFacts()
    # Steps that run a program, each in its own thread (they write disjoint fields of `host`).
    commanded: list[Step] = [_secure_boot, _nvidia_signer, _mok, _dkms, _versions]
    read: list[Step] = [_os_release, _kernel, _modules, _user, _devices, _memory, _cpu, _gpu_env, _c_compiler]
    with ThreadPoolExecutor(max_workers=len(commanded), thread_name_prefix="gpudoctor-host") as pool:
        started = [pool.submit(_guarded, step.__name__.strip("_"), lambda step=step: step(sources, host)) for step in commanded]
        notes = [_guarded(step.__name__.strip("_"), lambda step=step: step(sources, host)) for step in read]
        notes.append(_guarded("disks", lambda: _disks(sources, host, output_dir)))
        notes = [job.result() for job in started] + notes
    host.errors.extend(note for note in notes if note)
    return host


def _guarded(what: str, step: Callable[[], None]) -> str | None:
    """Run one step; the note to keep when it failed, else None."""
    try:
        step()
    except OSError as err:
        return f"{what}: {err.strerror or err} ({err.filename or 'file'})"
    except Exception as err:  # a parser meeting a file shape we have not seen
        return f"{what}: {type(err).__name__}: {err}"
    return None


def _run(sources: Sources, argv: list[str]) -> tuple[int, str, str] | None:
    """A short command's (code, stdout, stderr); None when the tool is not installed or did not answer in time."""
    try:
        return sources.run(argv, sources.command_timeout)
    except (FileNotFoundError, TimeoutError):
        return None


DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def which(sources: Sources, name: str) -> str | None:
    """Where `name` would run from: a path containing '/' as given, else the first executable on $PATH (under the root)."""
    if "/" in name:
        candidates = [name]
    else:
        folders = (sources.environ.get("PATH") or DEFAULT_PATH).split(os.pathsep)
        candidates = [f"{folder.rstrip('/')}/{name}" for folder in folders if folder.startswith("/")]
    for candidate in candidates:
        path = sources.path(candidate)
        if path.is_file() and sources.access(str(path), os.X_OK):
            return candidate
    return None


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


# Variables that change which GPU the stack sees, which libraries and kernels it loads, or how the runtime
# moves memory: the facts `check` shows and the key under which a passing live check is remembered
# (live_cache.cache_key). BNB_CUDA_VERSION / BNB_ROCM_VERSION pick bitsandbytes' native library;
# CUDA_HOME / CUDA_PATH (torch.utils.cpp_extension, Triton, source builds) and ROCM_PATH / HIP_PATH
# (amdsmi, hipcc, bitsandbytes on ROCm) pick the toolkit; HSA_ENABLE_SDMA=0 turns off the ROCm
# runtime's DMA engines, the usual workaround for hangs and corrupt copies on some boards. Variables
# for debugging only (CUDA_LAUNCH_BLOCKING, AMD_LOG_LEVEL) do not change the answer and are left out.
GPU_ENV_VARIABLES = (
    "HSA_OVERRIDE_GFX_VERSION", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES", "PYTORCH_CUDA_ALLOC_CONF",
    "LD_LIBRARY_PATH", "BNB_CUDA_VERSION", "BNB_ROCM_VERSION", "CUDA_HOME", "CUDA_PATH", "ROCM_PATH", "HIP_PATH",
    "HSA_ENABLE_SDMA",
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
    answer = _run(sources, ["mokutil", "--sb-state"])
    if answer is None:
        return
    answer = (answer[1] + answer[2]).lower()
    if "secureboot enabled" in answer:
        host.secure_boot = True
    elif "secureboot disabled" in answer:
        host.secure_boot = False


def _nvidia_signer(sources: Sources, host: HostFacts) -> None:
    """`modinfo -F signer nvidia` prints the signing key's owner; empty when the module is unsigned."""
    answer = _run(sources, ["modinfo", "-F", "signer", "nvidia"])
    if answer is not None and answer[0] == 0:  # non-zero: no nvidia module installed for this kernel
        host.nvidia_module_signer = answer[1].strip() or None
        host.nvidia_module_signed = host.nvidia_module_signer is not None


def parse_mok_subjects(text: str) -> list[str]:
    """The subject CN of each key `mokutil --list-enrolled` / `--list-new` prints, in order.

    mokutil prints each key as "[key N]", its SHA1 fingerprint and the openssl-style certificate, whose
    "Subject: O=…, CN=…" line names it; a key whose subject has no CN is named by its whole subject.
    "MokNew is empty" / "MokListRT is empty" (or nothing at all) means no keys.
    """
    names = []
    for match in re.finditer(r"^\s*Subject:\s*(.+?)\s*$", text, re.MULTILINE):
        subject = match.group(1)
        common = re.search(r"(?:^|[,/]\s*)CN\s*=\s*([^,/]+)", subject)
        names.append(common.group(1).strip() if common else subject)
    return names


def _mok(sources: Sources, host: HostFacts) -> None:
    """Machine Owner Keys enrolled, and waiting to be enrolled at the next boot (only on an EFI machine)."""
    if not sources.path("/sys/firmware/efi").exists():
        return  # legacy BIOS: no MOK list; mokutil would only say "EFI variables are not supported"
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="gpudoctor-mok") as pool:
        enrolled, pending = pool.map(lambda flag: _run(sources, ["mokutil", flag]), ["--list-enrolled", "--list-new"])
    if enrolled is not None and enrolled[0] == 0:
        host.mok_enrolled = parse_mok_subjects(enrolled[1])
    if pending is not None:  # `--list-new` exits 1 with "MokNew is empty" when nothing waits
        host.mok_pending = parse_mok_subjects(pending[1])


def _dkms(sources: Sources, host: HostFacts) -> None:
    """`dkms status` lines: which driver modules DKMS built, for which kernels (only where DKMS keeps a tree)."""
    if not sources.path("/var/lib/dkms").is_dir():
        return
    answer = _run(sources, ["dkms", "status"])
    if answer is not None:  # a failing status still says why (a stale tree's "Error!" lines, on either stream)
        host.dkms_status = [line.strip() for line in (answer[1] + "\n" + answer[2]).splitlines() if line.strip()]
    src = sources.path("/usr/src")
    if src.is_dir():
        host.dkms_nvidia_sources = sorted(p.name[len("nvidia-"):] for p in src.glob("nvidia-*") if p.is_dir())


def _versions(sources: Sources, host: HostFacts) -> None:
    host.amdgpu_version = read_text(sources, "/sys/module/amdgpu/version") or None
    host.nvidia_module_version = read_text(sources, "/sys/module/nvidia/version") or None
    host.rocm_version = read_text(sources, "/opt/rocm/.info/version") or None
    host.cuda_toolkit_path, host.cuda_toolkit_version = _cuda_toolkit(sources)


def _cuda_toolkit(sources: Sources) -> tuple[str | None, str | None]:
    """(folder, version) of the CUDA toolkit a build would use, looked for as torch.utils.cpp_extension
    looks (_find_cuda_home): $CUDA_HOME, $CUDA_PATH, the nvcc on $PATH (its folder's parent), /usr/local/cuda."""
    candidates = [sources.environ.get("CUDA_HOME"), sources.environ.get("CUDA_PATH")]
    nvcc = which(sources, "nvcc")
    if nvcc:
        candidates.append(os.path.dirname(os.path.dirname(nvcc)) or "/")
    candidates.append("/usr/local/cuda")
    for folder in (c.rstrip("/") or "/" for c in candidates if c):
        if sources.path(folder).is_dir():
            return folder, _toolkit_version(sources, folder)
    return None, None


def _toolkit_version(sources: Sources, folder: str) -> str | None:
    """version.json (CUDA >= 11.1), version.txt before it, else what that toolkit's nvcc says."""
    text = read_text(sources, f"{folder}/version.json")
    if text:
        return json.loads(text).get("cuda", {}).get("version")
    match = re.search(r"CUDA Version (\S+)", read_text(sources, f"{folder}/version.txt") or "")
    if match:
        return match.group(1)
    nvcc = f"{folder}/bin/nvcc"
    if not sources.path(nvcc).is_file():  # Ubuntu's nvidia-cuda-toolkit keeps no version file
        return None
    answer = _run(sources, [nvcc, "--version"])
    # "Cuda compilation tools, release 12.0, V12.0.140"
    match = re.search(r"release [\d.]+, V(\d[\w.]*)", answer[1]) if answer is not None else None
    return match.group(1) if match else None


def _c_compiler(sources: Sources, host: HostFacts) -> None:
    """The compiler Triton and source builds would call: $CC (its first word), else cc, gcc, clang on $PATH."""
    wanted = (sources.environ.get("CC") or "").split()
    for name in wanted[:1] + ["cc", "gcc", "clang"]:
        found = which(sources, name)
        if found:
            host.c_compiler = found
            return


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
    dev = sources.path("/dev")
    nvidia = [entry.name for entry in dev.glob("nvidia*")] if dev.is_dir() else []
    host.device_nodes = sorted(nvidia, key=_natural)
    host.nvidia_modprobe = _nvidia_modprobe(sources)


def _nvidia_modprobe(sources: Sources) -> str:
    """'setuid' when nvidia-modprobe is installed setuid root (CUDA calls it to load nvidia_uvm and make
    /dev/nvidia-uvm on first use), 'not-setuid' when it is there but cannot do that, else 'missing'."""
    found = which(sources, "nvidia-modprobe")
    if found is None:
        return "missing"
    info = sources.path(found).stat()
    return "setuid" if info.st_mode & stat.S_ISUID and info.st_uid == 0 else "not-setuid"


def _natural(name: str) -> list[Any]:
    """nvidia2 before nvidia10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


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
