"""A fake Ubuntu box for the installer scripts: a root folder, a package state and stand-in commands.

The scripts run with PATH holding only the stand-ins (tests/install/standins/standin, linked under each
system command's name) and links to a few harmless text tools, and with GPUDOCTOR_ROOT pointing at a
temporary folder, so nothing can reach the real system: a command the box does not provide fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
INSTALL = REPO / "install"
STANDIN = Path(__file__).resolve().parent / "standins" / "standin"

SYSTEM_COMMANDS = (
    "apt-get", "dpkg", "dpkg-query", "lspci", "ubuntu-drivers", "mokutil", "amdgpu-install",
    "usermod", "id", "uname", "wget", "sudo", "update-initramfs",
)
TEXT_TOOLS = (
    "bash", "sed", "awk", "grep", "tr", "sort", "head", "tail", "cat", "mkdir", "mktemp", "chmod",
    "mv", "rm", "dirname", "basename", "env", "tee", "touch", "cut", "paste",
)
# Commands (by first words) that change a machine; everything else the scripts run only reads.
CHANGING = (
    "apt-get install", "apt-get update", "dpkg -i", "ubuntu-drivers install", "update-initramfs",
    "amdgpu-install", "usermod", "mokutil --import", "wget", "sudo",
)

UBUNTU_2404 = 'PRETTY_NAME="Ubuntu 24.04.1 LTS"\nID=ubuntu\nVERSION_ID="24.04"\n'
UBUNTU_2204 = 'PRETTY_NAME="Ubuntu 22.04.4 LTS"\nID=ubuntu\nVERSION_ID="22.04"\n'
RTX_4090 = '01:00.0 VGA compatible controller [0300]: NVIDIA Corporation AD102 [GeForce RTX 4090] [10de:2684] (rev a1)\n'
GTX_1080 = '01:00.0 VGA compatible controller [0300]: NVIDIA Corporation GP104 [GeForce GTX 1080] [10de:1b80] (rev a1)\n'
RX_7900_XTX = (
    "03:00.0 VGA compatible controller [0300]: Advanced Micro Devices, Inc. [AMD/ATI] Navi 31 "
    "[Radeon RX 7900 XT/7900 XTX] [1002:744c] (rev c8)\n"
)
INTEL_ONLY = "00:02.0 VGA compatible controller [0300]: Intel Corporation Raptor Lake-S GT1 [8086:a780] (rev 04)\n"
DRIVERS_LIST = (
    "nvidia-driver-570-open, (kernel modules provided by linux-modules-nvidia-570-open-generic-hwe-24.04)\n"
    "nvidia-driver-570, (kernel modules provided by linux-modules-nvidia-570-generic-hwe-24.04)\n"
    "nvidia-driver-550-open, (kernel modules provided by linux-modules-nvidia-550-open-generic-hwe-24.04)\n"
)
DRIVERS_LIST_DKMS = "nvidia-driver-570-open\nnvidia-driver-570\n"
DRIVERS_DEVICES = (
    "== /sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0 ==\n"
    "vendor   : NVIDIA Corporation\n"
    "driver   : nvidia-driver-570-open - distro non-free recommended\n"
    "driver   : nvidia-driver-570 - distro non-free\n"
    "driver   : xserver-xorg-video-nouveau - distro free builtin\n"
)


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    commands: list[str]

    @property
    def changes(self) -> list[str]:
        return [line for line in self.commands if line.startswith(CHANGING)]


@dataclass
class FakeBox:
    base: Path
    missing: set[str] = field(default_factory=set)
    user: str = "alice"  # who ran the script through sudo ($SUDO_USER)

    def __post_init__(self) -> None:
        self.root = self.base / "root"
        self.state = self.base / "state"
        self.bin = self.base / "bin"
        self.log = self.base / "commands.log"
        for folder in (self.root / "etc", self.root / "proc", self.state / "pkgs", self.bin):
            folder.mkdir(parents=True, exist_ok=True)
        self.os_release(UBUNTU_2404)
        self.modules()
        for tool in TEXT_TOOLS:
            real = shutil.which(tool)
            assert real, f"{tool} is needed by the installer tests"
            (self.bin / tool).symlink_to(real)
        for command in SYSTEM_COMMANDS:
            self.provide(command)
        self.log.write_text("")

    # --- the machine ---
    def os_release(self, text: str) -> None:
        (self.root / "etc" / "os-release").write_text(text)

    def modules(self, *names: str) -> None:
        (self.root / "proc" / "modules").write_text("".join(f"{n} 12345 0 - Live 0x0\n" for n in names))

    def lspci(self, text: str) -> None:
        (self.state / "lspci.txt").write_text(text)

    def installed(self, package: str, version: str = "1.0") -> None:
        (self.state / "pkgs" / package).write_text(version + "\n")

    def packages(self) -> set[str]:
        return {p.name for p in (self.state / "pkgs").iterdir()}

    def state_file(self, name: str, text: str) -> None:
        (self.state / name).parent.mkdir(parents=True, exist_ok=True)
        (self.state / name).write_text(text)

    def gfx(self, value: int) -> None:
        node = self.root / "sys/class/kfd/kfd/topology/nodes"
        (node / "0").mkdir(parents=True, exist_ok=True)
        (node / "0" / "properties").write_text("cpu_cores_count 16\ngfx_target_version 0\n")
        (node / "1").mkdir(parents=True, exist_ok=True)
        (node / "1" / "properties").write_text(f"simd_count 192\ngfx_target_version {value}\n")

    def provide(self, command: str) -> None:
        link = self.bin / command
        if not link.exists():
            link.symlink_to(STANDIN)

    def remove(self, command: str) -> None:
        (self.bin / command).unlink()

    def fail(self, command: str) -> None:
        (self.state / "fail").mkdir(exist_ok=True)
        (self.state / "fail" / command).touch()

    def files(self) -> set[str]:
        return {str(p.relative_to(self.root)) for p in self.root.rglob("*") if p.is_file()}

    # --- running ---
    def environment(self) -> dict[str, str]:
        """What the scripts run with on this box: only its commands on PATH, its root, state and log."""
        return {
            "PATH": str(self.bin),
            "GPUDOCTOR_ROOT": str(self.root),
            "FAKE_STATE": str(self.state),
            "FAKE_LOG": str(self.log),
            "HOME": str(self.base),
            "LANG": "C.UTF-8",
            "USER": "root",
            "SUDO_USER": self.user,
        }

    def logged(self) -> list[str]:
        """The commands the scripts ran on this box since it was made (or since the last run())."""
        return [line for line in self.log.read_text().splitlines() if line]

    def run(self, script: str, *args: str, env: dict[str, str] | None = None, stdin: str = "") -> Run:
        self.log.write_text("")
        environment = self.environment()
        environment.update(env or {})
        for key in [k for k, v in environment.items() if v is None]:
            del environment[key]
        done = subprocess.run(
            [str(self.bin / "bash"), str(INSTALL / script), *args],
            input=stdin, capture_output=True, text=True, env=environment, timeout=60,
        )
        return Run(done.returncode, done.stdout, done.stderr, self.logged())


def nvidia_box(base: Path) -> FakeBox:
    """A fresh Ubuntu 24.04 box with an RTX 4090 on nouveau, Secure Boot off."""
    box = FakeBox(base)
    box.lspci(RTX_4090)
    box.modules("nouveau", "snd_hda_intel")
    box.state_file("ubuntu-drivers-list.txt", DRIVERS_LIST)
    box.state_file("ubuntu-drivers-devices.txt", DRIVERS_DEVICES)
    return box


def amd_box(base: Path, gfx: int = 110000) -> FakeBox:
    """A fresh Ubuntu 24.04 box with an RX 7900 XTX (gfx1100) on the kernel's amdgpu driver."""
    box = FakeBox(base)
    box.lspci(RX_7900_XTX)
    box.modules("amdgpu")
    box.gfx(gfx)
    return box


PCI_VENDORS = {"10de": "NVIDIA Corporation", "1002": "Advanced Micro Devices, Inc. [AMD/ATI]", "8086": "Intel Corporation"}
PCI_CLASSES = {"0300": "VGA compatible controller", "0302": "3D controller", "0380": "Display controller", "0403": "Audio device"}


def lspci_lines(root: Path) -> str:
    """What `lspci -nn` prints for the PCI devices under root/sys/bus/pci/devices (sysfs is what lspci
    reads): slot, class, vendor and [vendor:device] ids, revision; device names stay generic."""
    lines = []
    for device in sorted((root / "sys" / "bus" / "pci" / "devices").glob("*")):
        uevent = dict(line.split("=", 1) for line in (device / "uevent").read_text().splitlines() if "=" in line)
        vendor, product = uevent["PCI_ID"].lower().split(":")
        pci_class = f"{int(uevent['PCI_CLASS'], 16) >> 8:04x}"
        revision = (device / "revision").read_text().strip().removeprefix("0x") if (device / "revision").is_file() else ""
        lines.append(
            f"{device.name.split(':', 1)[1]} {PCI_CLASSES.get(pci_class, 'Class ' + pci_class)} [{pci_class}]: "
            f"{PCI_VENDORS.get(vendor, 'Vendor ' + vendor)} Device [{vendor}:{product}]" + (f" (rev {revision})" if revision else "")
        )
    return "".join(line + "\n" for line in lines)


def machine_box(base: Path, name: str) -> FakeBox:
    """A box that is recorded machine `name` (tests/fixtures/machines) to the installers: its root tree
    (os-release, /proc/modules, sysfs, /opt/rocm …), lspci lines from its PCI devices, its `debs` as the
    installed packages, its Secure Boot state (recorded `mokutil --sb-state`), its user and groups."""
    from machines import FIXTURES, load_machine

    recorded = load_machine(name)
    box = FakeBox(base, user=recorded.get("user") or "alice")
    shutil.copytree(FIXTURES / name / "root", box.root, symlinks=True, dirs_exist_ok=True)
    box.lspci(lspci_lines(box.root))
    for package, version in recorded.get("debs", {}).items():
        box.installed(package, version)
    secure_boot = recorded.get("commands", {}).get("mokutil --sb-state")
    if secure_boot is not None:
        box.state_file("sb-state", secure_boot["stdout"])
    others = [group for group in recorded.get("groups", []) if group != box.user]
    box.state_file(f"groups/{box.user}", "".join(f" {group}" for group in others))
    return box


def relative(box: FakeBox, line: str) -> str:
    """A logged command with the fake root folder shown as it would be on a real machine."""
    return line.replace(str(box.root), "")


def changes(box: FakeBox, run) -> list[str]:
    """The changing commands a run issued, with the box's root folder taken out of paths."""
    return [relative(box, line) for line in run.changes]


def os_environ_without(*names: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in names}
