"""Recorded machines for tests: each folder in tests/fixtures/machines/ is one box.

A machine is `root/` (the files the probe reads: etc/os-release, proc/…, sys/…, dev/…) and
`machine.json` (what NVML, amdsmi, commands, package metadata, the user's groups, disk usage
and the live torch check answered). `fixture_sources(name)` turns both into probe Sources;
`probe_fixture(name)` probes that machine, never touching this one (no real subprocess).

    from machines import MACHINES, probe_fixture   # tests/ is on sys.path under pytest

The test host: under pytest every probe that is given no Sources (`gpudoctor check`, `plan --gpu auto`,
train's preflight, in this process or in a gpudoctor process a test starts) reads recorded machine
$GPUDOCTOR_TEST_HOST (default "no-gpu") through `default_host_sources`, never the real machine;
tests/conftest.py sets that up, and its `host("name")` fixture switches machine for one test.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pynvml

from gpudoctor.probe import Sources, probe_system
from gpudoctor.probe.facts import LiveFacts, SystemFacts
from gpudoctor.probe.sources import PythonInfo

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "machines"
MACHINES: list[str] = sorted(p.name for p in FIXTURES.iterdir() if (p / "machine.json").is_file())

NOT_SUPPORTED = 3  # NVML_ERROR_NOT_SUPPORTED

TEST_HOST_VARIABLE = "GPUDOCTOR_TEST_HOST"
DEFAULT_TEST_HOST = "no-gpu"


def load_machine(name: str) -> dict[str, Any]:
    if name not in MACHINES:
        raise KeyError(f"no recorded machine {name!r}; known: {', '.join(MACHINES)}")
    return json.loads((FIXTURES / name / "machine.json").read_text(encoding="utf-8"))


class FakeNvml:
    """The pynvml functions the probe calls, answering from a recorded `nvml` block."""

    def __init__(self, recorded: dict[str, Any]):
        self.recorded = recorded
        self.devices = recorded.get("devices", [])

    @staticmethod
    def _fail(code: int) -> None:
        raise pynvml.NVMLError(code)

    def _field(self, handle: int, key: str) -> Any:
        device = self.devices[handle]
        if key not in device:
            self._fail(NOT_SUPPORTED)
        return device[key]

    def nvmlInit(self) -> None:
        if "init_error" in self.recorded:
            self._fail(self.recorded["init_error"])

    def nvmlShutdown(self) -> None:
        pass

    def nvmlDeviceGetCount(self) -> int:
        return len(self.devices)

    def nvmlSystemGetDriverVersion(self) -> str:
        return self.recorded["driver_version"]

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return self.recorded["cuda_driver_version"]

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        if "error" in self.devices[index]:
            self._fail(self.devices[index]["error"])
        return index

    def nvmlDeviceGetName(self, handle: int) -> str:
        return self._field(handle, "name")

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> Any:
        memory = self._field(handle, "memory")
        return type("Memory", (), dict(memory))()

    def nvmlDeviceGetCudaComputeCapability(self, handle: int) -> tuple[int, int]:
        return tuple(self._field(handle, "compute_capability"))

    def nvmlDeviceGetPciInfo(self, handle: int) -> Any:
        pci = self._field(handle, "pci")
        return type("Pci", (), {"busId": pci["busId"].encode(), "pciDeviceId": int(pci["pciDeviceId"], 16)})()

    def nvmlDeviceGetCurrPcieLinkGeneration(self, handle: int) -> int:
        return self._field(handle, "pcie")["curr_gen"]

    def nvmlDeviceGetMaxPcieLinkGeneration(self, handle: int) -> int:
        return self._field(handle, "pcie")["max_gen"]

    def nvmlDeviceGetCurrPcieLinkWidth(self, handle: int) -> int:
        return self._field(handle, "pcie")["curr_width"]

    def nvmlDeviceGetMaxPcieLinkWidth(self, handle: int) -> int:
        return self._field(handle, "pcie")["max_width"]

    def _processes(self, handle: int, kind: str) -> list[Any]:
        return [type("Process", (), {"pid": p["pid"], "usedGpuMemory": p.get("used")})()
                for p in self._field(handle, "processes") if p.get("kind", "compute") == kind]

    def nvmlDeviceGetComputeRunningProcesses(self, handle: int) -> list[Any]:
        return self._processes(handle, "compute")

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: int) -> list[Any]:
        return self._processes(handle, "graphics")

    def nvmlSystemGetProcessName(self, pid: int) -> str:
        for device in self.devices:
            for process in device.get("processes", []):
                if process["pid"] == pid and "name" in process:
                    return process["name"]
        self._fail(NOT_SUPPORTED)


class AmdSmiError(Exception):
    """Stands in for amdsmi.AmdSmiLibraryException."""


class FakeAmdSmi:
    """The amdsmi functions the probe calls, answering from a recorded `amdsmi` block."""

    def __init__(self, recorded: dict[str, Any]):
        self.recorded = recorded
        self.devices = recorded.get("devices", [])

    def amdsmi_init(self) -> None:
        if "init_error" in self.recorded:
            raise AmdSmiError(self.recorded["init_error"])

    def amdsmi_shut_down(self) -> None:
        pass

    def amdsmi_get_processor_handles(self) -> list[int]:
        return list(range(len(self.devices)))

    def _field(self, handle: int, key: str) -> Any:
        if key not in self.devices[handle]:
            raise AmdSmiError("AMDSMI_STATUS_NOT_SUPPORTED")
        return self.devices[handle][key]

    def amdsmi_get_gpu_asic_info(self, handle: int) -> dict[str, Any]:
        return dict(self._field(handle, "asic"))

    def amdsmi_get_gpu_vram_usage(self, handle: int) -> dict[str, Any]:
        return dict(self._field(handle, "vram"))

    def amdsmi_get_gpu_driver_info(self, handle: int) -> dict[str, Any]:
        return dict(self._field(handle, "driver"))

    def amdsmi_get_gpu_device_bdf(self, handle: int) -> str:
        return self._field(handle, "bdf")

    def amdsmi_get_gpu_process_list(self, handle: int) -> list[dict[str, Any]]:
        return list(self._field(handle, "processes"))


def _loader(recorded: dict[str, Any] | None, fake: type, module: str) -> Any:
    def load() -> Any:
        if recorded is None or "import_error" in (recorded or {}):
            raise ModuleNotFoundError((recorded or {}).get("import_error", f"No module named '{module}'"))
        return fake(recorded)

    return load


def _runner(commands: dict[str, dict[str, Any]]) -> Any:
    """Answers the recorded commands, keyed by the tool's base name and its arguments."""

    def run(argv: list[str], timeout: float) -> tuple[int, str, str]:
        key = " ".join([Path(argv[0]).name, *argv[1:]])
        if key not in commands:
            raise FileNotFoundError(f"{argv[0]}: command not found")
        answer = commands[key]
        if answer.get("timeout"):
            raise TimeoutError(f"{argv[0]} did not answer within {timeout:g} s")
        return answer.get("rc", 0), answer.get("stdout", ""), answer.get("stderr", "")

    return run


def fixture_sources(name: str, tmp_path: Path | None = None) -> Sources:
    """Probe Sources that answer as recorded machine `name`.

    With `tmp_path`, its root tree is copied there first, so a test may change files freely.
    """
    recorded = load_machine(name)
    root = FIXTURES / name / "root"
    if tmp_path is not None:
        root = Path(shutil.copytree(root, Path(tmp_path) / f"{name}-root", symlinks=True))
    disks = recorded.get("disks", {})
    access = recorded.get("access", {})
    packages = recorded.get("packages", {})
    requires = recorded.get("requires", {})
    python = recorded["python"]

    def logical(path: str) -> str:
        relative = Path(path).relative_to(root) if Path(path).is_relative_to(root) else Path(path)
        return "/" + str(relative).lstrip("/") if str(relative) != "." else "/"

    def disk_usage(path: str) -> tuple[int, int]:
        where = logical(path)
        best = max((key for key in disks if where == key or where.startswith(key.rstrip("/") + "/")), key=len)
        return tuple(disks[best])

    def live(environ: Any, timeout: float) -> LiveFacts:
        return LiveFacts(**{"ran": True, **recorded["live"]})

    return Sources(
        nvml=_loader(recorded.get("nvml"), FakeNvml, "pynvml"),
        amdsmi=_loader(recorded.get("amdsmi"), FakeAmdSmi, "amdsmi"),
        root=root,
        run=_runner(recorded.get("commands", {})),
        environ=dict(recorded.get("environ", {})),
        package_version=lambda package: packages.get(package),
        package_requires=lambda package: requires.get(package, []) if package in packages else None,
        live=live,
        user=lambda: recorded.get("user"),
        groups=lambda: list(recorded.get("groups", [])),
        disk_usage=disk_usage,
        access=lambda path, mode: bool(access.get(logical(path), True)),
        python=lambda: PythonInfo(**python),
        cwd=lambda: recorded.get("cwd", "/"),
    )


def probe_fixture(name: str, *, live: bool = True, output_dir: str | None = None) -> SystemFacts:
    """The SystemFacts recorded machine `name` gives (the live result comes from its machine.json)."""
    return probe_system(fixture_sources(name), live=live, output_dir=output_dir)


def current_host() -> str:
    """The recorded machine that stands for "this machine" in the test suite ($GPUDOCTOR_TEST_HOST)."""
    name = os.environ.get(TEST_HOST_VARIABLE) or DEFAULT_TEST_HOST
    load_machine(name)  # an unknown name fails loudly, never falling back to the real machine
    return name


def default_host_sources() -> Sources:
    """What gpudoctor.probe.default_sources() returns under the test suite (GPUDOCTOR_PROBE_SOURCES)."""
    return fixture_sources(current_host())


def host_sources_with_real_amdsmi() -> Sources:
    """The test host, but amdsmi really imported (`import amdsmi`, whatever is on the path): for child
    processes that check what an installed `gpudoctor[amd]` does to their output. NVML stays recorded."""
    from gpudoctor.probe.sources import import_module

    return replace(default_host_sources(), amdsmi=import_module("amdsmi"))
