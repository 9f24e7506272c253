"""AMD probe: amdsmi first, sysfs when it cannot answer, rocminfo for the ROCm runtime's view."""

from __future__ import annotations

import pathlib
import shutil

import pytest
from machines import fixture_sources

from gpudoctor.probe.amd import market_name, parse_rocminfo, probe_amd, rocminfo_error
from gpudoctor.probe.sources import Sources



def by_source(probes):
    return {probe.source: (probe.status, probe.error, probe.device_count) for probe in probes}


def test_sysfs_and_rocminfo_describe_an_rx_7900_xt_without_amdsmi():
    probes, (gpu,) = probe_amd(fixture_sources("rx-7900-xt"))
    assert by_source(probes) == {
        "amdsmi": ("absent", "amdsmi cannot be imported: No module named 'amdsmi'", 0),
        "sysfs": ("ok", None, 1),
        "rocminfo": ("ok", None, 1),
    }
    assert (gpu.name, gpu.source, gpu.gfx_target, gpu.pci_device_id) == ("AMD Radeon RX 7900 XT", "sysfs", "gfx1100", "0x744c")
    assert gpu.total_bytes == 20464 * 1024**2
    assert gpu.free_bytes == gpu.total_bytes - gpu.used_bytes
    assert (gpu.driver_version, gpu.pci_bus_id, gpu.pcie_gen, gpu.pcie_width) == ("6.12.12", "0000:03:00.0", 4, 16)


def test_amdsmi_answers_and_sysfs_fills_the_link():
    probes, (gpu,) = probe_amd(fixture_sources("radeon-pro-w7900"))
    assert by_source(probes) == {"amdsmi": ("ok", None, 1), "rocminfo": ("ok", None, 1)}
    assert (gpu.name, gpu.source, gpu.gfx_target) == ("AMD Radeon Pro W7900", "amdsmi", "gfx1100")
    assert gpu.total_bytes == 49136 * 1024**2  # amdsmi reports MiB
    assert (gpu.pcie_gen, gpu.pcie_max_width, gpu.driver_version) == (4, 16, "6.12.12")


@pytest.mark.parametrize("error", [OSError("libamd_smi.so: cannot open shared object file"), KeyError("ROCM_PATH")])
def test_amdsmi_import_raising_anything_is_an_error_and_sysfs_still_answers(error):
    sources = fixture_sources("radeon-pro-w7900")

    def broken():
        raise error

    sources.amdsmi = broken
    probes, (gpu,) = probe_amd(sources)
    status, message, _ = by_source(probes)["amdsmi"]
    assert status == "error" and message.startswith("importing amdsmi failed:")
    assert (gpu.source, gpu.name, gpu.total_bytes) == ("sysfs", "AMD Radeon Pro W7900", 49136 * 1024**2)


def test_amdsmi_init_failure_falls_back_to_sysfs():
    sources = fixture_sources("radeon-pro-w7900")
    from machines import FakeAmdSmi

    sources.amdsmi = lambda: FakeAmdSmi({"init_error": "AMDSMI_STATUS_DRM_ERROR"})
    probes, gpus = probe_amd(sources)
    assert by_source(probes)["amdsmi"] == ("error", "amdsmi_init failed: AMDSMI_STATUS_DRM_ERROR", 0)
    assert [gpu.source for gpu in gpus] == ["sysfs"]


def test_rocminfo_failure_names_the_device_node():
    probes, (gpu,) = probe_amd(fixture_sources("amd-no-render-group"))
    assert by_source(probes)["rocminfo"] == ("error", "Unable to open /dev/kfd read-write: Permission denied", 0)
    assert (gpu.name, gpu.gfx_target) == ("AMD Radeon RX 7900 XTX", "gfx1100")  # sysfs still knows the card


def test_unreadable_sysfs_is_an_error_not_a_crash(monkeypatch):
    real = pathlib.Path.read_text

    def guarded(self, *args, **kwargs):
        if "/sys/class/drm/" in str(self):
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "read_text", guarded)
    probes, gpus = probe_amd(fixture_sources("rx-7900-xt"))
    status, message, _ = by_source(probes)["sysfs"]
    assert status == "error" and "Permission denied" in message
    assert gpus == []


def test_missing_rocminfo_and_timeouts(tmp_path):
    sources = fixture_sources("rx-7900-xt")

    def missing(argv, timeout):
        raise FileNotFoundError(argv[0])

    sources.run = missing
    probes, _ = probe_amd(sources)
    assert by_source(probes)["rocminfo"] == ("absent", "rocminfo is not installed", 0)

    def slow(argv, timeout):
        raise TimeoutError(f"{argv[0]} did not answer within {timeout:g} s")

    sources.run = slow
    probes, _ = probe_amd(sources)
    assert by_source(probes)["rocminfo"] == ("error", "rocminfo did not answer within 3 s", 0)


def test_no_amd_card_means_no_rocminfo_call():
    calls = []
    sources = fixture_sources("rtx-3090-ti")
    sources.run = lambda argv, timeout: calls.append(argv) or (0, "", "")
    probes, gpus = probe_amd(sources)
    assert (gpus, calls) == ([], [])
    assert by_source(probes)["sysfs"] == ("absent", None, 0)


def test_parse_rocminfo_keeps_gpu_agents_only():
    text = (fixture_sources("rx-7900-xt").run(["rocminfo"], 1))[1]
    assert parse_rocminfo(text) == [("gfx1100", "0000:03:00.0")]
    assert parse_rocminfo("ROCk module is loaded\n") == []


def test_rocminfo_fills_an_unknown_card_by_bus_id(tmp_path):
    sources = fixture_sources("rx-7900-xt", tmp_path)
    for name in ("sys/class/drm/card1/device/device", "sys/bus/pci/devices/0000:03:00.0/uevent"):
        path = sources.root / name
        path.write_text(path.read_text().replace("744c", "7777").replace("744C", "7777"))
    _, (gpu,) = probe_amd(sources)
    assert (gpu.name, gpu.gfx_target) == ("AMD GPU 0x7777", "gfx1100")


def test_rocminfo_error_falls_back_to_the_hsa_line():
    text = "ROCk module is loaded\nhsa api call failure at: rocminfo.cc:1306\nCall returned HSA_STATUS_ERROR_OUT_OF_RESOURCES: x\n"
    assert rocminfo_error(text) == "Call returned HSA_STATUS_ERROR_OUT_OF_RESOURCES: x"
    assert rocminfo_error("") == "rocminfo failed with no output"


def test_market_names_by_revision_then_system_table(tmp_path):
    sources = Sources(root=tmp_path)
    assert market_name(sources, "0x744c", "0xc8") == "AMD Radeon RX 7900 XTX"
    assert market_name(sources, "0x744c", "0xcc") == "AMD Radeon RX 7900 XT"
    assert market_name(sources, "0x744c", "0x01") == "AMD Radeon RX 7900 series"
    assert market_name(sources, "0x1234", None) == "AMD GPU 0x1234"
    ids = tmp_path / "usr/share/libdrm/amdgpu.ids"
    ids.parent.mkdir(parents=True)
    ids.write_text("# List of AMDGPU IDs\n1.0.0\n73A3,\t00,\tAMD Radeon Pro W6800\n1234,\tC1,\tAMD Radeon Future\n")
    assert market_name(sources, "0x1234", "0xc1") == "AMD Radeon Future"
    assert market_name(sources, "0x1234", "0x00") == "AMD Radeon Future"


def test_a_card_with_no_vram_files_still_shows(tmp_path):
    sources = fixture_sources("rx-7900-xt", tmp_path)
    device = sources.path("/sys/class/drm/card1/device")
    (device / "mem_info_vram_total").unlink()
    shutil.rmtree(sources.path("/sys/bus/pci"))
    _, (gpu,) = probe_amd(sources)
    assert (gpu.name, gpu.total_bytes, gpu.free_bytes) == ("AMD Radeon RX 7900 XT", None, None)
