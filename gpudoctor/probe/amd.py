"""AMD GPUs: amdsmi when it imports, else sysfs (amdgpu's own files); rocminfo for the ROCm view.

sysfs works without ROCm installed, so a fresh box still shows its card, VRAM and gfx target;
rocminfo tells whether the ROCm runtime can open the card (it fails without /dev/kfd access).
amdsmi is imported and called inside `quiet_stdout()`: its wheel prints "Unable to find libamd_smi.so"
on a box without ROCm, and that text must not land in `check --json`; it becomes the probe's reason.
"""

from __future__ import annotations

import re
from typing import Any

from gpudoctor.probe.facts import GpuFacts, GpuProcess, VendorProbe
from gpudoctor.probe.pci import parse_uevent, read_text
from gpudoctor.probe.quiet import quiet_stdout
from gpudoctor.probe.sources import Sources

AMD_VENDOR_ID = "0x1002"
MIB = 1024**2

# device id -> (gfx target, name when the revision is not listed below).
# Names and revisions from libdrm's data/amdgpu.ids; gfx targets from the LLVM AMDGPU
# processor table (Navi 31 = gfx1100, Navi 32 = gfx1101, Navi 33 = gfx1102, Navi 21 = gfx1030,
# Navi 48 = gfx1201, MI300X = gfx942).
DEVICES: dict[str, tuple[str, str]] = {
    "0x744c": ("gfx1100", "AMD Radeon RX 7900 series"),
    "0x7448": ("gfx1100", "AMD Radeon Pro W7900"),
    "0x7449": ("gfx1100", "AMD Radeon Pro W7800 48GB"),
    "0x744a": ("gfx1100", "AMD Radeon Pro W7900 Dual Slot"),
    "0x745e": ("gfx1100", "AMD Radeon Pro W7800"),
    "0x7470": ("gfx1101", "AMD Radeon Pro W7700"),
    "0x747e": ("gfx1101", "AMD Radeon RX 7800 series"),
    "0x7480": ("gfx1102", "AMD Radeon RX 7600 series"),
    "0x73bf": ("gfx1030", "AMD Radeon RX 6800/6900 series"),
    "0x73a3": ("gfx1030", "AMD Radeon Pro W6800"),
    "0x7550": ("gfx1201", "AMD Radeon RX 9070 series"),
    "0x74a1": ("gfx942", "AMD Instinct MI300X"),
}
# (device id, revision) -> market name, where one device id covers several cards.
REVISIONS: dict[tuple[str, str], str] = {
    ("0x744c", "0xc8"): "AMD Radeon RX 7900 XTX",
    ("0x744c", "0xcc"): "AMD Radeon RX 7900 XT",
    ("0x744c", "0xce"): "AMD Radeon RX 7900 GRE",
    ("0x744c", "0xcf"): "AMD Radeon RX 7900M",
    ("0x747e", "0xc8"): "AMD Radeon RX 7800 XT",
    ("0x747e", "0xff"): "AMD Radeon RX 7700 XT",
    ("0x73bf", "0xc0"): "AMD Radeon RX 6900 XT",
    ("0x73bf", "0xc1"): "AMD Radeon RX 6800 XT",
    ("0x73bf", "0xc3"): "AMD Radeon RX 6800",
}


def market_name(sources: Sources, device_id: str, revision: str | None) -> str:
    """Our table first, then the system's libdrm amdgpu.ids, then the bare PCI id."""
    if revision and (device_id, revision) in REVISIONS:
        return REVISIONS[(device_id, revision)]
    from_ids = _amdgpu_ids_name(sources, device_id, revision)
    if from_ids:
        return from_ids
    if device_id in DEVICES:
        return DEVICES[device_id][1]
    return f"AMD GPU {device_id}"


def _amdgpu_ids_name(sources: Sources, device_id: str, revision: str | None) -> str | None:
    try:
        text = read_text(sources, "/usr/share/libdrm/amdgpu.ids")
    except OSError:
        return None
    if not text:
        return None
    want_device = device_id.removeprefix("0x").upper()
    want_revision = (revision or "").removeprefix("0x").upper()
    fallback = None
    for line in text.splitlines():
        parts = [part.strip() for part in line.split(",", 2)]
        if len(parts) == 3 and parts[0].upper() == want_device:
            if parts[1].upper() == want_revision:
                return parts[2]
            fallback = fallback or parts[2]
    return fallback


def gfx_target(device_id: str | None) -> str | None:
    return DEVICES[device_id][0] if device_id in DEVICES else None


def probe_amd(sources: Sources) -> tuple[list[VendorProbe], list[GpuFacts]]:
    """amdsmi, else sysfs; then rocminfo when an AMD card is present. Never raises for their errors."""
    probes = []
    smi_probe, gpus = _probe_amdsmi(sources)
    probes.append(smi_probe)
    sysfs_probe, sysfs_gpus = _probe_sysfs(sources)
    if smi_probe.status != "ok" or not gpus:
        probes.append(sysfs_probe)
        gpus = sysfs_gpus
    else:
        _fill_from_sysfs(gpus, sysfs_gpus)
    if gpus or _amd_on_pci(sources):
        rocminfo_probe, agents = _probe_rocminfo(sources)
        probes.append(rocminfo_probe)
        by_bus = {bus: target for target, bus in agents if bus}
        for position, gpu in enumerate(gpus):
            target = by_bus.get(gpu.pci_bus_id or "")
            if target is None and len(agents) == len(gpus):
                target = agents[position][0]
            gpu.gfx_target = gpu.gfx_target or target
    return probes, gpus


def _fill_from_sysfs(gpus: list[GpuFacts], sysfs_gpus: list[GpuFacts]) -> None:
    """amdsmi leaves out the PCIe link; take it (and anything else missing) from the same card's sysfs."""
    by_bus = {gpu.pci_bus_id: gpu for gpu in sysfs_gpus if gpu.pci_bus_id}
    for gpu in gpus:
        twin = by_bus.get(gpu.pci_bus_id)
        if twin is None:
            continue
        for name in ("total_bytes", "used_bytes", "free_bytes", "driver_version", "gfx_target",
                     "pcie_gen", "pcie_width", "pcie_max_gen", "pcie_max_width"):
            if getattr(gpu, name) is None:
                setattr(gpu, name, getattr(twin, name))


def _amd_on_pci(sources: Sources) -> bool:
    from gpudoctor.probe.pci import scan_pci

    try:
        return any(card.vendor == "amd" for card in scan_pci(sources))
    except OSError:
        return False


# --- amdsmi -------------------------------------------------------------------------------


# amdsmi's Python wheel loads this library from $ROCM_PATH/lib, the loader path or /opt/rocm/lib.
_SMI_LIBRARY = "libamd_smi.so"


def _probe_amdsmi(sources: Sources) -> tuple[VendorProbe, list[GpuFacts]]:
    with quiet_stdout() as caught:
        probe, gpus = _read_amdsmi(sources)
    said = caught.last_line()  # a failing library's own words, kept as part of the reason
    if probe.status == "error" and said and said not in (probe.error or ""):
        probe.error = f"{probe.error} ({said})" if probe.error else said
    return probe, gpus


def _read_amdsmi(sources: Sources) -> tuple[VendorProbe, list[GpuFacts]]:
    try:
        smi = sources.amdsmi()
    except ImportError as err:
        return VendorProbe("amd", "amdsmi", "absent", error=f"amdsmi cannot be imported: {err}"), []
    except KeyError as err:  # the wheel without ROCm: its library table has no libamd_smi.so
        if _SMI_LIBRARY in str(err):
            return VendorProbe("amd", "amdsmi", "absent", error=f"amdsmi is installed but {_SMI_LIBRARY} (ROCm's amd-smi-lib) is not"), []
        return VendorProbe("amd", "amdsmi", "error", error=f"importing amdsmi failed: {_oneline(err)}"), []
    except Exception as err:  # a broken install: bad ROCm path, a library that does not load
        return VendorProbe("amd", "amdsmi", "error", error=f"importing amdsmi failed: {_oneline(err)}"), []
    try:
        smi.amdsmi_init()
    except Exception as err:
        return VendorProbe("amd", "amdsmi", "error", error=f"amdsmi_init failed: {_oneline(err)}"), []
    try:
        handles = list(smi.amdsmi_get_processor_handles())
        gpus = [_amdsmi_device(sources, smi, index, handle) for index, handle in enumerate(handles)]
        return VendorProbe("amd", "amdsmi", "ok", device_count=len(gpus)), gpus
    except Exception as err:
        return VendorProbe("amd", "amdsmi", "error", error=_oneline(err)), []
    finally:
        try:
            smi.amdsmi_shut_down()
        except Exception:
            pass


def _amdsmi_device(sources: Sources, smi: Any, index: int, handle: Any) -> GpuFacts:
    asic = _optional(lambda: smi.amdsmi_get_gpu_asic_info(handle)) or {}
    device_id = _hex_id(asic.get("device_id"))
    revision = f"0x{asic['rev_id']:02x}" if isinstance(asic.get("rev_id"), int) else None
    name = asic.get("market_name") or (market_name(sources, device_id, revision) if device_id else "AMD GPU")
    gpu = GpuFacts(index=index, vendor="amd", name=str(name), source="amdsmi", pci_device_id=device_id)
    target = asic.get("target_graphics_version")
    gpu.gfx_target = str(target) if target and target != "N/A" else gfx_target(device_id)
    vram = _optional(lambda: smi.amdsmi_get_gpu_vram_usage(handle)) or {}
    if isinstance(vram.get("vram_total"), (int, float)):
        gpu.total_bytes = int(vram["vram_total"]) * MIB  # amdsmi reports MiB
        if isinstance(vram.get("vram_used"), (int, float)):
            gpu.used_bytes = int(vram["vram_used"]) * MIB
            gpu.free_bytes = gpu.total_bytes - gpu.used_bytes
    driver = _optional(lambda: smi.amdsmi_get_gpu_driver_info(handle)) or {}
    if driver.get("driver_version") not in (None, "N/A"):
        gpu.driver_version = str(driver["driver_version"])
    bdf = _optional(lambda: smi.amdsmi_get_gpu_device_bdf(handle))
    gpu.pci_bus_id = str(bdf).lower() if bdf else None
    for process in _optional(lambda: smi.amdsmi_get_gpu_process_list(handle)) or []:
        if isinstance(process, dict) and "pid" in process:
            used = (process.get("memory_usage") or {}).get("vram_mem")
            gpu.processes.append(GpuProcess(pid=int(process["pid"]), name=process.get("name"), used_bytes=used))
    return gpu


def _hex_id(value: Any) -> str | None:
    if isinstance(value, int):
        return f"0x{value:04x}"
    if isinstance(value, str) and value not in ("", "N/A"):
        return f"0x{int(value, 16):04x}"
    return None


# --- sysfs --------------------------------------------------------------------------------


def _probe_sysfs(sources: Sources) -> tuple[VendorProbe, list[GpuFacts]]:
    drm = sources.path("/sys/class/drm")
    try:
        cards = sorted(
            (entry for entry in drm.iterdir() if re.fullmatch(r"card\d+", entry.name)),
            key=lambda entry: int(entry.name[4:]),
        ) if drm.is_dir() else []
        gpus = []
        for card in cards:
            gpu = _sysfs_card(sources, card.name, len(gpus))
            if gpu is not None:
                gpus.append(gpu)
    except OSError as err:
        return VendorProbe("amd", "sysfs", "error", error=f"reading /sys/class/drm failed: {_oneline(err)}"), []
    status = "ok" if gpus else "absent"
    return VendorProbe("amd", "sysfs", status, device_count=len(gpus)), gpus


def _sysfs_card(sources: Sources, card: str, index: int) -> GpuFacts | None:
    device = f"/sys/class/drm/{card}/device"
    if (read_text(sources, f"{device}/vendor") or "").lower() != AMD_VENDOR_ID:
        return None
    device_id = (read_text(sources, f"{device}/device") or "").lower() or None
    revision = (read_text(sources, f"{device}/revision") or "").lower() or None
    name = market_name(sources, device_id, revision) if device_id else "AMD GPU"
    gpu = GpuFacts(index=index, vendor="amd", name=name, source="sysfs", pci_device_id=device_id)
    gpu.gfx_target = gfx_target(device_id)
    gpu.total_bytes = _int_or_none(read_text(sources, f"{device}/mem_info_vram_total"))
    gpu.used_bytes = _int_or_none(read_text(sources, f"{device}/mem_info_vram_used"))
    if gpu.total_bytes is not None and gpu.used_bytes is not None:
        gpu.free_bytes = gpu.total_bytes - gpu.used_bytes
    gpu.driver_version = read_text(sources, "/sys/module/amdgpu/version") or None
    uevent = parse_uevent(read_text(sources, f"{device}/uevent") or "")
    gpu.pci_bus_id = uevent.get("PCI_SLOT_NAME", "").lower() or None
    gpu.pcie_gen, gpu.pcie_width = _link(sources, device, "current")
    gpu.pcie_max_gen, gpu.pcie_max_width = _link(sources, device, "max")
    return gpu


# PCIe transfer rate per lane -> generation (PCI Express base spec: 2.5, 5, 8, 16, 32, 64 GT/s).
_GEN_BY_RATE = {"2.5": 1, "5.0": 2, "8.0": 3, "16.0": 4, "32.0": 5, "64.0": 6}


def _link(sources: Sources, device: str, which: str) -> tuple[int | None, int | None]:
    speed = read_text(sources, f"{device}/{which}_link_speed") or ""  # "16.0 GT/s PCIe"
    width = read_text(sources, f"{device}/{which}_link_width")
    gen = _GEN_BY_RATE.get(speed.split(" ")[0]) if speed else None
    return gen, _int_or_none(width)


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text else None
    except ValueError:
        return None


# --- rocminfo -----------------------------------------------------------------------------


def _probe_rocminfo(sources: Sources) -> tuple[VendorProbe, list[tuple[str, str | None]]]:
    """(gfx target, PCI bus id) of each GPU agent the ROCm runtime sees, in its order."""
    output = None
    for argv in (["rocminfo"], [str(sources.path("/opt/rocm/bin/rocminfo"))]):
        try:
            output = sources.run(argv, sources.command_timeout)
            break
        except FileNotFoundError:
            continue
        except TimeoutError as err:
            return VendorProbe("amd", "rocminfo", "error", error=str(err)), []
    if output is None:
        return VendorProbe("amd", "rocminfo", "absent", error="rocminfo is not installed"), []
    code, stdout, stderr = output
    agents = parse_rocminfo(stdout)
    if code != 0:
        return VendorProbe("amd", "rocminfo", "error", error=rocminfo_error(stdout + "\n" + stderr)), agents
    return VendorProbe("amd", "rocminfo", "ok", device_count=len(agents)), agents


def parse_rocminfo(text: str) -> list[tuple[str, str | None]]:
    """(gfx name, PCI bus id) of each agent whose Device Type is GPU ("Name: gfx1100", "BDFID: 768")."""
    agents = []
    for block in re.split(r"\n\*{5,}\s*\n", text):
        if re.search(r"^\s*Device Type:\s*GPU\s*$", block, re.MULTILINE):
            name = re.search(r"^\s*Name:\s*(gfx[0-9a-z]+)\s*$", block, re.MULTILINE)
            bdfid = re.search(r"^\s*BDFID:\s*(\d+)\s*$", block, re.MULTILINE)
            if name:
                agents.append((name.group(1), _bus_id(int(bdfid.group(1))) if bdfid else None))
    return agents


def _bus_id(bdfid: int) -> str:
    """rocminfo's BDFID packs bus << 8 | device << 3 | function (domain 0 assumed)."""
    return f"0000:{bdfid >> 8:02x}:{(bdfid >> 3) & 0x1F:02x}.{bdfid & 0x7}"


def rocminfo_error(text: str) -> str:
    """The line of a failed rocminfo run that says why (e.g. "Unable to open /dev/kfd read-write: Permission denied")."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        if "Unable to open" in line or "Permission denied" in line:
            return line
    failing = [line for line in lines if "HSA_STATUS" in line or "failure" in line.lower()]
    return (failing or lines or ["rocminfo failed with no output"])[-1]


def _optional(read: Any) -> Any:
    try:
        return read()
    except Exception:
        return None


def _oneline(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__

