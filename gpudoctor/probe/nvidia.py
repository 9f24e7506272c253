"""NVIDIA GPUs through NVML (the library nvidia-smi uses): what each card is, holds and runs.

Every NVML failure becomes a fact: a missing library is status "absent", a driver that is not
loaded or does not match the library is status "error" with a readable reason. The import and every
NVML call run inside `quiet_stdout()`: nothing the native library prints reaches standard output.
"""

from __future__ import annotations

from typing import Any

from gpudoctor.probe.facts import GpuFacts, GpuProcess, VendorProbe
from gpudoctor.probe.quiet import quiet_stdout
from gpudoctor.probe.sources import Sources

# NVML return codes (nvml.h, NVML_ERROR_*) and the words nvidia-smi uses for them.
_LIBRARY_NOT_FOUND = 12
_READABLE = {
    2: "Invalid argument",
    3: "Not supported",
    4: "Insufficient permissions",
    9: "Driver not loaded",
    12: "NVML shared library (libnvidia-ml.so.1) not found",
    15: "GPU is lost",
    17: "The operating system has blocked the request",
    18: "Driver/library version mismatch",
    999: "Unknown error",
}


def nvml_message(err: BaseException) -> str:
    """A readable reason for an NVML exception (pynvml's own text for code 18 is cryptic)."""
    code = getattr(err, "value", None)
    if isinstance(code, int) and code in _READABLE:
        return _READABLE[code]
    return str(err) or type(err).__name__


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def cuda_version_string(value: int) -> str:
    """NVML encodes CUDA 12.8 as 12080 (1000 * major + 10 * minor)."""
    return f"{value // 1000}.{(value % 1000) // 10}"


def probe_nvidia(sources: Sources) -> tuple[VendorProbe, list[GpuFacts]]:
    """Ask NVML for every NVIDIA device; never raises for NVML's own errors, never prints."""
    with quiet_stdout():
        return _probe_nvml(sources)


def _probe_nvml(sources: Sources) -> tuple[VendorProbe, list[GpuFacts]]:
    try:
        nvml = sources.nvml()
    except (ImportError, OSError) as err:
        return VendorProbe("nvidia", "nvml", "absent", error=f"pynvml cannot be imported: {err}"), []
    try:
        nvml.nvmlInit()
    except Exception as err:  # NVMLError subclasses; plain Exception for a broken stand-in
        status = "absent" if getattr(err, "value", None) == _LIBRARY_NOT_FOUND else "error"
        return VendorProbe("nvidia", "nvml", status, error=nvml_message(err)), []
    try:
        return _read_devices(nvml)
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:  # shutting down a half-working library tells us nothing new
            pass


def _read_devices(nvml: Any) -> tuple[VendorProbe, list[GpuFacts]]:
    try:
        count = int(nvml.nvmlDeviceGetCount())
    except Exception as err:
        return VendorProbe("nvidia", "nvml", "error", error=nvml_message(err)), []
    driver = _optional(lambda: _text(nvml.nvmlSystemGetDriverVersion()))
    cuda = _optional(lambda: cuda_version_string(int(nvml.nvmlSystemGetCudaDriverVersion())))
    gpus: list[GpuFacts] = []
    errors: list[str] = []
    for index in range(count):
        try:
            gpus.append(_read_device(nvml, index, driver, cuda))
        except Exception as err:
            errors.append(f"GPU {index}: {nvml_message(err)}")
    status = "error" if errors else "ok"
    return VendorProbe("nvidia", "nvml", status, error="; ".join(errors) or None, device_count=count), gpus


def _read_device(nvml: Any, index: int, driver: str | None, cuda: str | None) -> GpuFacts:
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    gpu = GpuFacts(
        index=index, vendor="nvidia", name=_text(nvml.nvmlDeviceGetName(handle)), source="nvml",
        driver_version=driver, cuda_driver_version=cuda,
    )
    memory = _optional(lambda: nvml.nvmlDeviceGetMemoryInfo(handle))
    if memory is not None:
        gpu.total_bytes, gpu.used_bytes, gpu.free_bytes = int(memory.total), int(memory.used), int(memory.free)
    capability = _optional(lambda: nvml.nvmlDeviceGetCudaComputeCapability(handle))
    if capability is not None:
        gpu.compute_capability = f"{capability[0]}.{capability[1]}"
    pci = _optional(lambda: nvml.nvmlDeviceGetPciInfo(handle))
    if pci is not None:
        gpu.pci_bus_id = _normal_bus_id(_text(pci.busId))
        gpu.pci_device_id = f"0x{(int(pci.pciDeviceId) >> 16) & 0xFFFF:04x}"  # high 16 bits: device id
    gpu.pcie_gen = _optional(lambda: int(nvml.nvmlDeviceGetCurrPcieLinkGeneration(handle)))
    gpu.pcie_max_gen = _optional(lambda: int(nvml.nvmlDeviceGetMaxPcieLinkGeneration(handle)))
    gpu.pcie_width = _optional(lambda: int(nvml.nvmlDeviceGetCurrPcieLinkWidth(handle)))
    gpu.pcie_max_width = _optional(lambda: int(nvml.nvmlDeviceGetMaxPcieLinkWidth(handle)))
    gpu.processes = _processes(nvml, handle)
    return gpu


def _processes(nvml: Any, handle: Any) -> list[GpuProcess]:
    """Compute processes, then graphics ones (a desktop's Xorg holds VRAM too); one row per pid."""
    found: dict[int, GpuProcess] = {}
    for kind, query in (("compute", "nvmlDeviceGetComputeRunningProcesses"),
                        ("graphics", "nvmlDeviceGetGraphicsRunningProcesses")):
        for process in _optional(lambda query=query: getattr(nvml, query)(handle)) or []:
            pid = int(process.pid)
            if pid in found:
                continue
            used = getattr(process, "usedGpuMemory", None)
            name = _optional(lambda pid=pid: _text(nvml.nvmlSystemGetProcessName(pid)))
            found[pid] = GpuProcess(pid=pid, name=name, used_bytes=int(used) if used is not None else None, kind=kind)
    return list(found.values())


def _normal_bus_id(bus_id: str) -> str:
    """NVML says "00000000:01:00.0"; sysfs and lspci say "0000:01:00.0"."""
    domain, _, rest = bus_id.partition(":")
    return f"{domain[-4:]}:{rest}".lower() if rest else bus_id.lower()


def _optional(read: Any) -> Any:
    """One NVML query that a card may not support ("Not supported"): its value or None."""
    try:
        return read()
    except Exception:
        return None
