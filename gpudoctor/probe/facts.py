"""Plain, typed facts about the machine: what the probe gathers and the doctor judges.

No judgement lives here and nothing is printed. Every field may be None where the fact
could not be read; why it could not is kept beside it (`*_error`, `VendorProbe.error`).
`to_dict` / `from_dict` give the stable JSON form used by `check --json`, `check --facts` and
test fixtures (read through gpudoctor.convert, like every other file gpudoctor reads).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from gpudoctor.convert import from_dict


@dataclass
class GpuProcess:
    pid: int
    name: str | None = None
    used_bytes: int | None = None
    kind: str | None = None  # "compute" | "graphics" (a desktop session's Xorg, gnome-shell)


@dataclass
class GpuFacts:
    index: int
    vendor: str  # "nvidia" | "amd"
    name: str
    source: str  # "nvml" | "amdsmi" | "sysfs" | "rocminfo"
    total_bytes: int | None = None
    used_bytes: int | None = None
    free_bytes: int | None = None
    driver_version: str | None = None  # NVIDIA "570.133.07"; AMD amdgpu module version
    cuda_driver_version: str | None = None  # highest CUDA the NVIDIA driver supports, "12.8"
    compute_capability: str | None = None  # NVIDIA "8.6"
    gfx_target: str | None = None  # AMD "gfx1100"
    pci_bus_id: str | None = None
    pci_device_id: str | None = None  # "0x744c"
    pcie_gen: int | None = None
    pcie_width: int | None = None
    pcie_max_gen: int | None = None
    pcie_max_width: int | None = None
    processes: list[GpuProcess] = field(default_factory=list)


@dataclass
class PciGpu:
    """A display controller on the PCI bus, seen whatever driver (if any) claims it."""

    bus_id: str  # "0000:01:00.0"
    vendor: str  # "nvidia" | "amd" | "intel" | "other"
    vendor_id: str  # "0x10de"
    device_id: str  # "0x2203"
    revision: str | None = None  # "0xc8" (tells an RX 7900 XTX from an XT)
    driver: str | None = None  # kernel driver bound to it: "nvidia" | "nouveau" | "amdgpu" | None


@dataclass
class VendorProbe:
    """How one GPU source answered: the reason behind 'no GPU found' lives here."""

    vendor: str  # "nvidia" | "amd"
    source: str  # "nvml" | "amdsmi" | "sysfs" | "rocminfo" | "lspci"
    status: str  # "ok" | "absent" (library/tool not installed) | "error" (present but failed)
    error: str | None = None  # e.g. "Driver/library version mismatch"
    device_count: int = 0


@dataclass
class DiskFacts:
    purpose: str  # "hf_cache" | "output"
    path: str
    free_bytes: int | None = None
    total_bytes: int | None = None
    error: str | None = None


@dataclass
class HostFacts:
    os_id: str | None = None  # "ubuntu"
    os_version: str | None = None  # "24.04"
    os_pretty: str | None = None
    kernel: str | None = None
    is_wsl: bool = False
    secure_boot: bool | None = None  # None: unknown (no mokutil / no EFI vars)
    loaded_modules: list[str] = field(default_factory=list)
    nvidia_module_signed: bool | None = None
    # `modinfo -F signer nvidia`: who signed the module on disk ("DKMS module signing key",
    # "Canonical Ltd. Kernel Module Signing"); None: unsigned, or modinfo could not tell
    nvidia_module_signer: str | None = None
    # MOK keys (`mokutil --list-enrolled` / `--list-new`, subject CNs): a DKMS key waiting in
    # `pending` is enrolled only at the next boot's blue MOK Manager screen
    mok_enrolled: list[str] = field(default_factory=list)
    mok_pending: list[str] = field(default_factory=list)
    # `dkms status` lines ("nvidia/570.133.07, 6.8.0-60-generic, x86_64: installed"): which kernels
    # a driver module was built for
    dkms_status: list[str] = field(default_factory=list)  # with its error lines ("Error! Could not locate dkms.conf")
    dkms_nvidia_sources: list[str] = field(default_factory=list)  # /usr/src/nvidia-<version>: driver sources DKMS can build
    device_nodes: list[str] = field(default_factory=list)  # /dev/nvidia* present: nvidia0, nvidiactl, nvidia-uvm, …
    # nvidia-modprobe: "setuid" (CUDA loads nvidia_uvm through it on first use), "not-setuid", "missing"; None: not looked
    nvidia_modprobe: str | None = None
    nvidia_module_version: str | None = None  # /sys/module/nvidia/version: the driver the kernel runs
    amdgpu_version: str | None = None  # /sys/module/amdgpu/version
    rocm_version: str | None = None  # /opt/rocm/.info/version
    kernel_headers: bool | None = None  # /lib/modules/<kernel>/build exists: DKMS can build driver modules
    cuda_toolkit_version: str | None = None  # nvcc / /usr/local/cuda/version.json
    cuda_toolkit_path: str | None = None  # the toolkit that version came from (CUDA_HOME, nvcc on PATH, /usr/local/cuda)
    c_compiler: str | None = None  # the C compiler Triton and source builds would use (CC, cc, gcc); None: none found
    user: str | None = None
    user_groups: list[str] = field(default_factory=list)
    # Groups /etc/group gives the user that this login session does not have yet (log out and in).
    user_groups_pending: list[str] = field(default_factory=list)
    kfd_exists: bool = False
    kfd_accessible: bool | None = None
    render_nodes: list[str] = field(default_factory=list)
    render_accessible: bool | None = None
    ram_total_bytes: int | None = None
    ram_available_bytes: int | None = None
    swap_total_bytes: int | None = None
    shm_total_bytes: int | None = None
    cpu_model: str | None = None
    cpu_count: int | None = None
    disks: list[DiskFacts] = field(default_factory=list)
    gpu_env: dict[str, str] = field(default_factory=dict)  # set variables that steer the GPU stack (HSA_OVERRIDE_GFX_VERSION …)
    errors: list[str] = field(default_factory=list)


@dataclass
class PackageFacts:
    name: str
    version: str | None = None  # None: not installed
    flavour: str | None = None  # torch: "cu128" | "rocm6.4" | "cpu" | None (no local tag)
    error: str | None = None  # metadata unreadable


@dataclass
class LiveFacts:
    """What a subprocess that really imports torch and bitsandbytes saw."""

    ran: bool
    skipped_reason: str | None = None
    timed_out: bool = False
    duration_s: float | None = None
    torch_version: str | None = None
    torch_error: str | None = None  # import torch raised
    cuda_version: str | None = None  # torch.version.cuda
    hip_version: str | None = None  # torch.version.hip
    gpu_available: bool | None = None  # torch.cuda.is_available()
    device_count: int | None = None
    device_name: str | None = None
    bf16_supported: bool | None = None
    bnb_version: str | None = None
    bnb_error: str | None = None  # import bitsandbytes / native library failed
    bnb_4bit_ok: bool | None = None  # a tiny NF4 matmul ran on the GPU
    bnb_4bit_error: str | None = None
    cached_at: str | None = None  # set when this pass was remembered from an earlier check (local time)
    gpu_error: str | None = None  # why torch.cuda could not use the GPU (its warning or exception)
    arch_list: list[str] | None = None  # torch.cuda.get_arch_list(): the kernels the build carries ("sm_86", "gfx1100")
    device_arch: str | None = None  # the device's own: "sm_86" from its capability, or ROCm's gcnArchName base "gfx1100"
    # transformers, peft, accelerate, trl, flash_attn imported in the child: name -> first line of
    # the error, only for those that failed (installed but broken: undefined symbol, too old a pin)
    import_errors: dict[str, str] = field(default_factory=dict)
    signal: str | None = None  # the child was killed by this signal ("SIGABRT", "SIGSEGV")
    stderr_tail: str | None = None  # the child's last stderr lines when it died (HSA_STATUS_ERROR_INVALID_ISA …)
    error: str | None = None  # the check itself failed: crashed, printed no result, could not start


@dataclass
class PythonFacts:
    executable: str | None = None
    version: str | None = None
    in_venv: bool = False
    env_kind: str | None = None  # "venv" | "conda" | "system"
    externally_managed: bool | None = None  # PEP 668: pip refuses to install here (Ubuntu's system Python)
    python_headers: bool | None = None  # Python.h where sysconfig says (Triton and source builds compile against it)
    packages: dict[str, PackageFacts] = field(default_factory=dict)
    live: LiveFacts | None = None


@dataclass
class SystemFacts:
    gpus: list[GpuFacts] = field(default_factory=list)
    probes: list[VendorProbe] = field(default_factory=list)
    host: HostFacts = field(default_factory=HostFacts)
    python: PythonFacts = field(default_factory=PythonFacts)
    errors: list[str] = field(default_factory=list)  # a whole probe that crashed
    pci_gpus: list[PciGpu] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "facts") -> SystemFacts:
        """Facts from their `to_dict` form; an unknown key or a wrong type is a BadInput naming `source`."""
        return from_dict(cls, data, source)
