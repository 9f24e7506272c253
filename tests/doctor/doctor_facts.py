"""SystemFacts built in code for the doctor's tests: a healthy NVIDIA box, a healthy AMD box, no GPU."""

from __future__ import annotations

from gpudoctor.probe.facts import (
    DiskFacts,
    GpuFacts,
    GpuProcess,
    HostFacts,
    LiveFacts,
    PackageFacts,
    PciGpu,
    PythonFacts,
    SystemFacts,
    VendorProbe,
)

GIB = 1024**3
PYTHON = "/home/ada/.venv/bin/python"


def host(**overrides) -> HostFacts:
    values = dict(
        os_id="ubuntu",
        os_version="24.04",
        os_pretty="Ubuntu 24.04.2 LTS",
        kernel="6.8.0-60-generic",
        secure_boot=False,
        loaded_modules=["nvidia", "nvidia_uvm"],
        user="ada",
        user_groups=["ada", "sudo", "render", "video"],
        ram_total_bytes=64 * GIB,
        swap_total_bytes=8 * GIB,
        shm_total_bytes=32 * GIB,
        cpu_model="AMD Ryzen 9 7950X",
        cpu_count=32,
        disks=[
            DiskFacts("hf_cache", "/home/ada/.cache/huggingface/hub", 400 * GIB, 1000 * GIB),
            DiskFacts("output", "/home/ada/work", 400 * GIB, 1000 * GIB),
        ],
    )
    values.update(overrides)
    return HostFacts(**values)


def python(torch: str | None = "2.7.1+cu128", bnb: str | None = "0.46.0", live: LiveFacts | None = None) -> PythonFacts:
    packages = {}
    if torch:
        flavour = torch.split("+", 1)[1] if "+" in torch else None
        packages["torch"] = PackageFacts("torch", torch, flavour)
    if bnb:
        packages["bitsandbytes"] = PackageFacts("bitsandbytes", bnb)
    return PythonFacts(executable=PYTHON, version="3.12.3", in_venv=True, packages=packages, live=live)


def rtx_4090(**overrides) -> GpuFacts:
    values = dict(
        index=0,
        vendor="nvidia",
        name="NVIDIA GeForce RTX 4090",
        source="nvml",
        total_bytes=24 * GIB,
        used_bytes=400 * 1024**2,
        free_bytes=24 * GIB - 400 * 1024**2,
        driver_version="570.133.07",
        cuda_driver_version="12.8",
        compute_capability="8.9",
        pci_bus_id="0000:01:00.0",
        pcie_gen=4,
        pcie_width=16,
        pcie_max_gen=4,
        pcie_max_width=16,
    )
    values.update(overrides)
    return GpuFacts(**values)


def rx_7900_xtx(**overrides) -> GpuFacts:
    values = dict(
        index=0,
        vendor="amd",
        name="AMD Radeon RX 7900 XTX",
        source="amdsmi",
        total_bytes=24 * GIB,
        used_bytes=300 * 1024**2,
        driver_version="6.10.5",
        gfx_target="gfx1100",
        pci_bus_id="0000:03:00.0",
    )
    values.update(overrides)
    return GpuFacts(**values)


def nvidia_box(**host_overrides) -> SystemFacts:
    """A healthy RTX 4090 workstation: driver 570, torch cu128, bitsandbytes 0.46."""
    return SystemFacts(
        gpus=[rtx_4090()],
        probes=[VendorProbe("nvidia", "nvml", "ok", device_count=1)],
        host=host(**host_overrides),
        python=python(),
        pci_gpus=[PciGpu("0000:01:00.0", "nvidia", "0x10de", "0x2684", driver="nvidia")],
    )


def amd_box(**host_overrides) -> SystemFacts:
    """A healthy RX 7900 XTX workstation: ROCm 6.4, torch rocm6.4, bitsandbytes 0.50."""
    values = dict(loaded_modules=["amdgpu"], amdgpu_version="6.10.5", rocm_version="6.4.1", kfd_exists=True,
                  kfd_accessible=True, render_nodes=["/dev/dri/renderD128"], render_accessible=True)
    values.update(host_overrides)
    return SystemFacts(
        gpus=[rx_7900_xtx()],
        probes=[VendorProbe("amd", "amdsmi", "ok", device_count=1)],
        host=host(**values),
        python=python(torch="2.7.1+rocm6.4", bnb="0.50.2"),
        pci_gpus=[PciGpu("0000:03:00.0", "amd", "0x1002", "0x744c", driver="amdgpu")],
    )


def no_gpu_box(**host_overrides) -> SystemFacts:
    return SystemFacts(
        probes=[
            VendorProbe("nvidia", "nvml", "absent", "NVML shared library (libnvidia-ml.so.1) not found"),
            VendorProbe("amd", "sysfs", "absent"),
        ],
        host=host(**{"loaded_modules": [], **host_overrides}),
        python=python(torch="2.7.1+cpu"),
    )


def busy(gpu: GpuFacts, *processes: tuple[int, str, int]) -> GpuFacts:
    gpu.processes = [GpuProcess(pid, name, used) for pid, name, used in processes]
    gpu.used_bytes = sum(used for _, _, used in processes)
    return gpu


def one(facts: SystemFacts, check_id: str):
    """The single finding check `check_id` gives on `facts` (fails the test if it gives none or several)."""
    from gpudoctor.doctor import run_checks

    found = run_checks(facts, only=check_id)
    assert len(found) == 1, found
    return found[0]


def quiet(facts: SystemFacts, check_id: str) -> bool:
    """True when check `check_id` says nothing on `facts`."""
    from gpudoctor.doctor import run_checks

    return run_checks(facts, only=check_id) == []
