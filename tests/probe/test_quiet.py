"""quiet_stdout keeps what native libraries print off descriptor 1, and the probes that load them use it."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import threading

from machines import FakeAmdSmi, FakeNvml, fixture_sources, load_machine

from gpudoctor.probe import Sources
from gpudoctor.probe.amd import probe_amd
from gpudoctor.probe.nvidia import probe_nvidia
from gpudoctor.probe.quiet import quiet_stdout


def test_descriptor_python_and_c_writes_are_caught(capfd):
    with quiet_stdout() as caught:
        os.write(1, b"from the descriptor\n")
        print("from python")
        ctypes.CDLL(None).printf(b"from C stdio\n")
    out, _ = capfd.readouterr()
    assert out == ""
    assert sorted(caught.text.splitlines()) == ["from C stdio", "from python", "from the descriptor"]
    assert caught.last_line() in ("from C stdio", "from the descriptor")


def test_the_document_around_a_quiet_section_stays_whole_and_in_order():
    """In a real process whose stdout is a pipe (fully buffered): text printed before, unflushed, is not
    caught, and nothing caught (a C library's buffered printf included) leaks out at exit."""
    script = (
        "import ctypes, os, sys\n"
        "from gpudoctor.probe.quiet import quiet_stdout\n"
        "print('{\"document\": ', end='')\n"
        "with quiet_stdout() as caught:\n"
        "    os.write(1, b'native noise\\n'); print('python noise'); ctypes.CDLL(None).printf(b'C noise\\n')\n"
        "print('1}')\n"
        "sys.stderr.write(repr(sorted(caught.text.splitlines())))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout == '{"document": 1}\n'
    assert done.stderr == repr(["C noise", "native noise", "python noise"])


def test_sections_in_threads_each_catch_their_own(capfd):
    results = {}

    def section(name):
        with quiet_stdout() as caught:
            for _ in range(50):
                os.write(1, f"{name}\n".encode())
        results[name] = set(caught.text.split())

    threads = [threading.Thread(target=section, args=(f"t{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert capfd.readouterr().out == ""
    assert results == {f"t{n}": {f"t{n}"} for n in range(4)}


class NoisyNvml(FakeNvml):
    def nvmlInit(self):
        os.write(1, b"NVML: libnvidia-ml.so.1 chatter\n")
        print("pynvml chatter")
        super().nvmlInit()


def test_nvml_chatter_stays_off_stdout(capfd):
    probe, gpus = probe_nvidia(Sources(nvml=lambda: NoisyNvml(load_machine("rtx-4090-ubuntu")["nvml"])))
    assert probe.status == "ok" and gpus[0].name == "NVIDIA GeForce RTX 4090"
    assert capfd.readouterr().out == ""


def test_the_amdsmi_wheel_without_rocm_is_absent_and_quiet(capfd):
    """What the real wheel does on import without ROCm: print twice, then fail on its library table."""

    def import_amdsmi():
        print("/opt/rocm/lib/libamd_smi.so: cannot open shared object file: No such file or directory")
        print("Unable to find libamd_smi.so library try installing amd-smi-lib from your package manager")
        raise KeyError("libamd_smi.so")

    sources = fixture_sources("rtx-4090-ubuntu")
    sources.amdsmi = import_amdsmi
    probes, _ = probe_amd(sources)
    assert (probes[0].source, probes[0].status) == ("amdsmi", "absent")
    assert probes[0].error == "amdsmi is installed but libamd_smi.so (ROCm's amd-smi-lib) is not"
    assert capfd.readouterr().out == ""


class NoisyAmdSmi(FakeAmdSmi):
    def amdsmi_init(self):
        os.write(1, b"amd_smi: DRM open failed for /dev/dri/card1\n")
        raise RuntimeError("AMDSMI_STATUS_DRM_ERROR")


def test_a_failing_amdsmi_keeps_its_own_last_words_in_the_reason(capfd):
    sources = fixture_sources("radeon-pro-w7900")
    sources.amdsmi = lambda: NoisyAmdSmi(load_machine("radeon-pro-w7900")["amdsmi"])
    probes, gpus = probe_amd(sources)
    assert probes[0].status == "error"
    assert probes[0].error == "amdsmi_init failed: AMDSMI_STATUS_DRM_ERROR (amd_smi: DRM open failed for /dev/dri/card1)"
    assert gpus and gpus[0].source == "sysfs"  # sysfs still shows the card
    assert capfd.readouterr().out == ""
