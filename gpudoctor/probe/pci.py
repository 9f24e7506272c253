"""Display controllers on the PCI bus, read from sysfs whatever driver claims them.

This is how the probe knows an NVIDIA card is present when NVML is not (nouveau, no driver,
a driver that failed to load), and which kernel driver owns each card.
"""

from __future__ import annotations

from gpudoctor.probe.facts import PciGpu
from gpudoctor.probe.sources import Sources

VENDORS = {"10de": "nvidia", "1002": "amd", "8086": "intel"}
_DISPLAY_CLASS = 0x03  # PCI base class 03: display controller (VGA 0x0300, 3D 0x0302)


def read_text(sources: Sources, absolute: str) -> str | None:
    """A small sysfs/proc/etc file's stripped text, None when it does not exist.

    Other OS errors (permission denied, I/O error) propagate: the caller records them.
    """
    try:
        return sources.path(absolute).read_text(encoding="utf-8", errors="replace").strip()
    except (FileNotFoundError, NotADirectoryError):
        return None


def parse_uevent(text: str) -> dict[str, str]:
    """KEY=VALUE lines of a sysfs uevent file."""
    pairs = (line.partition("=") for line in text.splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, _, value in pairs}


def scan_pci(sources: Sources) -> list[PciGpu]:
    """Every display-class PCI device, in bus order."""
    base = sources.path("/sys/bus/pci/devices")
    if not base.is_dir():
        return []
    found = []
    for device in sorted(base.iterdir()):
        uevent = read_text(sources, f"/sys/bus/pci/devices/{device.name}/uevent")
        if not uevent:
            continue
        fields = parse_uevent(uevent)
        pci_class = int(fields.get("PCI_CLASS", "0"), 16)
        if pci_class >> 16 != _DISPLAY_CLASS:
            continue
        vendor_id, _, device_id = fields.get("PCI_ID", ":").lower().partition(":")
        revision = read_text(sources, f"/sys/bus/pci/devices/{device.name}/revision")
        found.append(
            PciGpu(
                bus_id=fields.get("PCI_SLOT_NAME", device.name).lower(),
                vendor=VENDORS.get(vendor_id, "other"),
                vendor_id=f"0x{vendor_id}",
                device_id=f"0x{device_id}",
                revision=revision.lower() if revision else None,
                driver=fields.get("DRIVER"),
            )
        )
    return found
