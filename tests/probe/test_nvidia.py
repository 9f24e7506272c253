"""NVML probe against a recorded NVML stand-in: devices become facts, NVML errors become statuses."""

from __future__ import annotations

import copy

import pynvml
import pytest
from machines import FakeNvml, load_machine

from gpudoctor.probe import Sources
from gpudoctor.probe.nvidia import cuda_version_string, probe_nvidia


def nvml_sources(recorded: dict) -> Sources:
    return Sources(nvml=lambda: FakeNvml(recorded))


def recorded_3090ti() -> dict:
    return copy.deepcopy(load_machine("rtx-3090-ti")["nvml"])


def test_reads_every_fact_of_a_healthy_card():
    probe, gpus = probe_nvidia(nvml_sources(recorded_3090ti()))
    assert (probe.status, probe.error, probe.device_count) == ("ok", None, 1)
    (gpu,) = gpus
    assert gpu.name == "NVIDIA GeForce RTX 3090 Ti"
    assert gpu.total_bytes == 24564 * 1024**2
    assert gpu.free_bytes == gpu.total_bytes - gpu.used_bytes
    assert (gpu.driver_version, gpu.cuda_driver_version, gpu.compute_capability) == ("570.133.07", "12.8", "8.6")
    assert (gpu.pci_bus_id, gpu.pci_device_id) == ("0000:01:00.0", "0x2203")
    assert (gpu.pcie_gen, gpu.pcie_max_gen, gpu.pcie_width, gpu.pcie_max_width) == (1, 4, 16, 16)
    assert [(p.pid, p.name, p.used_bytes, p.kind) for p in gpu.processes] == [
        (2143, "/usr/lib/xorg/Xorg", 262144000, "graphics"),
        (2398, "/usr/bin/gnome-shell", 98566144, "graphics"),
    ]


def test_a_process_in_both_lists_is_listed_once_as_compute():
    recorded = recorded_3090ti()
    recorded["devices"][0]["processes"].append({"pid": 2143, "used": 1024, "kind": "compute"})
    _, (gpu,) = probe_nvidia(nvml_sources(recorded))
    assert [(p.pid, p.kind) for p in gpu.processes] == [(2143, "compute"), (2398, "graphics")]


def test_pynvml_missing_is_absent():
    def missing():
        raise ModuleNotFoundError("No module named 'pynvml'")

    probe, gpus = probe_nvidia(Sources(nvml=missing))
    assert (probe.status, gpus) == ("absent", [])
    assert "pynvml" in probe.error


@pytest.mark.parametrize(
    ("code", "status", "error"),
    [
        (pynvml.NVML_ERROR_LIBRARY_NOT_FOUND, "absent", "NVML shared library (libnvidia-ml.so.1) not found"),
        (pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH, "error", "Driver/library version mismatch"),
        (pynvml.NVML_ERROR_DRIVER_NOT_LOADED, "error", "Driver not loaded"),
        (pynvml.NVML_ERROR_NO_PERMISSION, "error", "Insufficient permissions"),
    ],
)
def test_init_failures_become_statuses(code, status, error):
    probe, gpus = probe_nvidia(nvml_sources({"init_error": code}))
    assert (probe.vendor, probe.source, probe.status, probe.error, gpus) == ("nvidia", "nvml", status, error, [])


def test_a_lost_card_is_an_error_but_the_others_still_report():
    recorded = recorded_3090ti()
    recorded["devices"].append({"error": pynvml.NVML_ERROR_GPU_IS_LOST})
    probe, gpus = probe_nvidia(nvml_sources(recorded))
    assert (probe.status, probe.error, probe.device_count) == ("error", "GPU 1: GPU is lost", 2)
    assert [gpu.name for gpu in gpus] == ["NVIDIA GeForce RTX 3090 Ti"]


def test_unsupported_queries_leave_fields_empty():
    recorded = recorded_3090ti()
    for key in ("pcie", "processes", "compute_capability", "memory"):
        del recorded["devices"][0][key]
    _, (gpu,) = probe_nvidia(nvml_sources(recorded))
    assert (gpu.pcie_gen, gpu.compute_capability, gpu.total_bytes, gpu.processes) == (None, None, None, [])


def test_a_broken_stand_in_raising_plain_errors_is_an_error():
    class Broken:
        def nvmlInit(self):
            raise RuntimeError("segfault-ish")

    probe, _ = probe_nvidia(Sources(nvml=Broken))
    assert (probe.status, probe.error) == ("error", "segfault-ish")


@pytest.mark.parametrize(("encoded", "text"), [(12080, "12.8"), (12020, "12.2"), (11040, "11.4"), (13000, "13.0")])
def test_cuda_version_decoding(encoded, text):
    assert cuda_version_string(encoded) == text
