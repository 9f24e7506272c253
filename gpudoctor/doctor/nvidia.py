"""Checks for NVIDIA machines: the driver is new enough for torch's CUDA, and nothing stops it loading.

Each cause of "the driver does not work" has its own check and its own fix, because the fixes differ
and a wrong one costs more than none: a module built for another kernel needs its headers and DKMS,
Secure Boot needs a key enrolled (or a signed module), a half-finished upgrade needs apt, a stuck
nvidia_uvm needs reloading; reinstalling the driver or torch fixes none of them.
The predicates below (`nvml_version_mismatch`, `open_driver_holding_card`, `secure_boot_refuses_module`,
`module_not_built_for_kernel`) are also what gpu.present asks when it explains why no GPU is usable;
the fix is said here, once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gpudoctor import compat
from gpudoctor.doctor import fixes
from gpudoctor.doctor.environment import hidden_gpus, torch_cuda_version
from gpudoctor.doctor.finding import Verdict, error, ok, warning
from gpudoctor.doctor.registry import check
from gpudoctor.doctor.selection import pci_cards, training_gpus
from gpudoctor.doctor.torch_build import torch_build
from gpudoctor.doctor.torch_wheels import keep_release_line, sm_of
from gpudoctor.probe.facts import GpuFacts, SystemFacts, VendorProbe

# Driver branches Ubuntu 24.04 packages (nvidia-driver-<branch>[-open]) and the CUDA each supports
# natively (NVIDIA CUDA Toolkit release notes, "CUDA Toolkit and Corresponding Driver Versions").
UBUNTU_DRIVER_BRANCHES = (("535", "12.2"), ("550", "12.4"), ("570", "12.8"), ("575", "12.9"), ("580", "13.0"))
# Blackwell (compute capability 10.0 and 12.0) needs driver 570 or newer.
BLACKWELL_BRANCH = ("10.0", "570")
# What torch prints when CUDA init fails inside an otherwise answering driver: the state nvidia_uvm
# is left in after a suspend/resume (cudaErrorUnknown = 999), or a kernel launch that died with it.
UVM_STUCK_ERRORS = ("cuda unknown error", "error 999", "unknown error", "unspecified launch failure")
# CUDA's forward-compatibility libraries (the cuda-compat package, e.g. in nvidia/cuda container
# images) run a newer CUDA on an older driver only on data-center GPUs; elsewhere: Error 804.
FORWARD_COMPAT_ERRORS = ("error 804", "forward compatibility was attempted")
# torch's message when the driver is older than its CUDA runtime (c10/cuda CUDAFunctions.cpp).
DRIVER_TOO_OLD_ERRORS = ("driver on your system is too old", "cuda driver version is insufficient")


def nvidia_probe_error(facts: SystemFacts) -> VendorProbe | None:
    """The NVIDIA probe that found the driver but failed (NVML init error), if any."""
    return next((p for p in facts.probes if p.vendor == "nvidia" and p.status == "error"), None)


def nvml_version_mismatch(facts: SystemFacts) -> bool:
    """NVML answered 'Driver/library version mismatch': the driver was updated without a reboot."""
    failed = nvidia_probe_error(facts)
    return failed is not None and "mismatch" in (failed.error or "").lower()


# The in-kernel open drivers that take an NVIDIA card before nvidia.ko can: module name -> the names a PCI
# device's bound driver shows. nova_core, nouveau's Rust successor, binds Ada/Blackwell cards from Linux 7.0
# (Ubuntu 26.04) and is not stopped by blacklisting nouveau (beclab/Olares#3963).
OPEN_NVIDIA_DRIVERS = {"nouveau": ("nouveau",), "nova_core": ("nova_core", "nova-core", "novacore")}


def open_driver_holding_card(facts: SystemFacts) -> str | None:
    """The open driver module ('nouveau', 'nova_core') an NVIDIA card is bound to, or that is loaded beside one."""
    nvidia_cards = [c for c in pci_cards(facts) if c.vendor == "nvidia"]
    if not nvidia_cards:
        return None
    for module, names in OPEN_NVIDIA_DRIVERS.items():
        if any((c.driver or "").lower() in names for c in nvidia_cards) or module in facts.host.loaded_modules:
            return module
    return None



def secure_boot_refuses_module(facts: SystemFacts) -> bool:
    """Secure Boot is on and the NVIDIA module is unsigned, or signed by a key the machine has not enrolled."""
    return _unsigned_under_secure_boot(facts) or signing_key_not_enrolled(facts)


def _unsigned_under_secure_boot(facts: SystemFacts) -> bool:
    return bool(facts.host.secure_boot) and facts.host.nvidia_module_signed is False


def signing_key_not_enrolled(facts: SystemFacts) -> bool:
    """Secure Boot is on, the module is not loaded, and it is signed by a MOK that is not (yet) enrolled.

    Canonical's key (Ubuntu's prebuilt modules) is built into the kernel, so it needs no enrolment.
    """
    host = facts.host
    signer = (host.nvidia_module_signer or "").strip()
    if not host.secure_boot or not signer or "canonical" in signer.lower() or "nvidia" in host.loaded_modules:
        return False
    return _names_key(signer, host.mok_pending) or not _names_key(signer, host.mok_enrolled)


def _names_key(signer: str, keys: list[str]) -> bool:
    """`signer` (modinfo's) is one of `keys` (mokutil's subject CNs); either may carry extra words."""
    wanted = signer.lower()
    return any(key.strip() and (wanted in key.lower() or key.strip().lower() in wanted) for key in keys)


def uvm_missing(facts: SystemFacts) -> bool:
    """nvidia is loaded but nvidia_uvm (CUDA's memory manager) is not, or /dev/nvidia-uvm is missing."""
    host = facts.host
    if "nvidia" not in host.loaded_modules:
        return False
    nodes = {node.rsplit("/", 1)[-1] for node in host.device_nodes}
    node_missing = "nvidiactl" in nodes and "nvidia-uvm" not in nodes  # the probe saw the nodes, uvm's is absent
    return "nvidia_uvm" not in host.loaded_modules or node_missing


# --- dkms status -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DkmsBuild:
    """One nvidia line of `dkms status`: 'nvidia/570.133.07, 6.8.0-60-generic, x86_64: installed'."""

    version: str | None
    kernel: str | None
    state: str

    @property
    def installed(self) -> bool:
        return self.state.strip().lower().startswith("installed")


def dkms_nvidia_builds(facts: SystemFacts) -> list[DkmsBuild]:
    """The nvidia module's DKMS builds (dkms 3 'nvidia/VER, KERNEL, ARCH: STATE' or dkms 2 'nvidia, VER, KERNEL, ARCH: STATE')."""
    builds = []
    for line in facts.host.dkms_status:
        head, sep, state = line.rpartition(":")
        if not sep:
            head, state = line, ""
        parts = [p.strip() for p in head.split(",")]
        name, slash, version = parts[0].partition("/")
        if not name.strip().lower().startswith("nvidia"):
            continue
        if not slash and len(parts) >= 3:  # dkms 2: module, version, kernel, arch
            builds.append(DkmsBuild(parts[1], parts[2], state))
        else:
            builds.append(DkmsBuild(version or None, parts[1] if len(parts) > 1 else None, state))
    return builds


# `dkms status` stops at a module tree whose source is gone: "Error! Could not locate dkms.conf file.",
# "File: /var/lib/dkms/nvidia/390.48/source/dkms.conf does not exist." (negativo17/nvidia-driver#56).
BROKEN_TREE = re.compile(r"/var/lib/dkms/(nvidia[^/\s]*)/([^/\s]+)/source/dkms\.conf does not exist")


def dkms_broken_trees(facts: SystemFacts) -> list[tuple[str, str]]:
    """(module, version) of each DKMS tree `dkms status` could not read (a removed driver's leftovers)."""
    found = [m.groups() for line in facts.host.dkms_status if (m := BROKEN_TREE.search(line))]
    return list(dict.fromkeys(found))


def module_not_built_for_kernel(facts: SystemFacts) -> bool:
    """The driver is installed but no nvidia module exists for the running kernel (headers missing, DKMS skipped)."""
    host = facts.host
    if not any(c.vendor == "nvidia" for c in pci_cards(facts)) or "nvidia" in host.loaded_modules:
        return False
    if host.nvidia_module_signed is not None or host.nvidia_module_signer:
        return False  # modinfo found an nvidia module for this kernel: it exists
    builds = dkms_nvidia_builds(facts)
    if builds:
        return not any(b.installed and b.kernel == host.kernel for b in builds)
    if dkms_broken_trees(facts):
        return True
    return host.kernel_headers is False and nvidia_probe_error(facts) is not None


# --- checks ------------------------------------------------------------------------------------


@check("nvidia.driver_vs_torch", category="Driver")
def driver_vs_torch(facts: SystemFacts) -> Verdict | None:
    """The NVIDIA driver is new enough for the CUDA runtime inside the installed torch wheel."""
    build = torch_build(facts)
    runtime = torch_cuda_version(facts)
    gpus = [g for g in training_gpus(facts) if g.vendor == "nvidia"]
    if build is None or runtime is None or not gpus:
        return None
    minimum = compat.min_driver_for_cuda(runtime)
    if minimum is None:
        return warning(
            f"torch {build.version} is built for CUDA {runtime}, which gpudoctor has no driver minimum for",
            "profiles/compat.yaml lists the CUDA major versions it knows.",
            fixes.INSTALL_TORCH,
        )
    drivers = [g.driver_version for g in gpus if g.driver_version]
    driver = min(drivers, key=compat.parse_version) if drivers else None
    supported = _lowest_cuda_supported(gpus)
    if driver is not None and not compat.version_at_least(driver, minimum):
        return _driver_too_old(facts, f"driver {driver} is too old", build.version, runtime, minimum)
    if driver is None and supported and not compat.driver_cuda_runs(supported, runtime):
        return _driver_too_old(facts, f"the driver (CUDA {supported}) is too old", build.version, runtime, minimum)
    if _live_error_has(facts, DRIVER_TOO_OLD_ERRORS):
        return _driver_too_old(facts, "the driver is too old (torch said so)", build.version, runtime, minimum)
    if _live_error_has(facts, FORWARD_COMPAT_ERRORS):
        return _forward_compat_refused(facts, driver, supported, runtime)
    if driver is None:
        return None
    return ok(f"driver {driver} runs torch's CUDA {runtime} (needs ≥ {minimum})")


def _lowest_cuda_supported(gpus: list[GpuFacts]) -> str | None:
    versions = [g.cuda_driver_version for g in gpus if g.cuda_driver_version]
    return min(versions, key=compat.parse_version) if versions else None


def _driver_too_old(facts: SystemFacts, what: str, torch_version: str, runtime: str, minimum: str) -> Verdict:
    branch = ubuntu_branch_for(runtime, facts)
    return error(
        f"{what} for torch {torch_version} (CUDA {runtime} needs driver ≥ {minimum})",
        f"Either install a newer driver (on Ubuntu 24.04, nvidia-driver-{branch} is the oldest branch that runs "
        f"CUDA {runtime} natively; newer branches do too), or install the torch wheel built for the CUDA this driver runs. "
        "install-cuda leaves an installed driver alone unless --driver names the branch.",
        f"{fixes.INSTALL_CUDA} --driver {branch}   # a newer driver (any branch ≥ {branch}); --dry-run shows each step\n"
        f"{fixes.INSTALL_TORCH}   # or: torch for this driver" + _keep_driver_line(facts, torch_version),
    )


def _keep_driver_line(facts: SystemFacts, torch_version: str) -> str:
    """Where the driver cannot be changed (a cloud notebook, a shared server): this torch release built for the driver's CUDA."""
    gpu = next((g for g in training_gpus(facts) if g.vendor == "nvidia"), None)
    device = sm_of(gpu.compute_capability) if gpu else None
    line = keep_release_line(facts.python.executable, torch_version, gpu, device, "the driver cannot be updated")
    return "\n" + line if line else ""


def ubuntu_branch_for(runtime: str, facts: SystemFacts) -> str:
    """The oldest Ubuntu 24.04 driver branch that supports CUDA `runtime` natively (and the GPU, for Blackwell)."""
    capabilities = [g.compute_capability for g in facts.gpus if g.vendor == "nvidia" and g.compute_capability]
    needs_blackwell = any(compat.version_at_least(c, BLACKWELL_BRANCH[0]) for c in capabilities)
    for branch, cuda in UBUNTU_DRIVER_BRANCHES:
        if compat.version_at_least(cuda, runtime) and not (needs_blackwell and int(branch) < int(BLACKWELL_BRANCH[1])):
            return branch
    return UBUNTU_DRIVER_BRANCHES[-1][0]


def _forward_compat_refused(facts: SystemFacts, driver: str | None, supported: str | None, runtime: str) -> Verdict:
    branch = ubuntu_branch_for(runtime, facts)
    has = f"driver {driver}" if driver else "the driver"
    runs = f" (it runs CUDA {supported} natively)" if supported else ""
    return error(
        f"CUDA fails with Error 804: {has}{runs} is older than torch's CUDA {runtime}, "
        "and the forward-compatibility fallback does not work on this GPU",
        "CUDA tried NVIDIA's forward-compatibility libraries (the cuda-compat package, found in CUDA container images), "
        "which only data-center GPUs support. A host driver that runs this CUDA natively fixes it; inside a container, "
        "the host's driver is the one that counts.",
        f"{fixes.INSTALL_CUDA} --driver {branch}   # on the host: a driver that runs CUDA {runtime} natively\n"
        f"{fixes.INSTALL_TORCH}   # or: torch for the CUDA this driver runs",
    )


def _live_error_has(facts: SystemFacts, needles: tuple[str, ...]) -> bool:
    text = _live_cuda_failure(facts) or ""
    return any(n in text.lower() for n in needles)


def _live_cuda_failure(facts: SystemFacts) -> str | None:
    """What the live torch check said when CUDA failed (torch imported), else None."""
    live = facts.python.live
    if live is None or not live.ran or live.torch_error:
        return None
    if live.error:
        return live.error
    if live.gpu_available is False:
        return live.gpu_error or "torch.cuda.is_available() is False"
    return None


def _live_gpu_ok(facts: SystemFacts) -> bool:
    """The live check's torch used the GPU (so whatever a snapshot of the modules said, CUDA works)."""
    live = facts.python.live
    return live is not None and live.ran and not live.torch_error and not live.error and bool(live.gpu_available)


@check("nvidia.library_mismatch", category="Driver")
def library_mismatch(facts: SystemFacts) -> Verdict | None:
    """The loaded NVIDIA kernel module matches the installed driver libraries (no reboot pending after an update)."""
    if not nvml_version_mismatch(facts):
        return None
    module = facts.host.nvidia_module_version
    loaded = f"the NVIDIA kernel module {module}" if module else "the NVIDIA kernel module"
    title = f"{loaded} is still loaded, but the driver libraries are another version: NVML and CUDA refuse to start"
    next_boot = {b.version for b in dkms_nvidia_builds(facts) if b.installed and b.kernel == facts.host.kernel}
    if module and next_boot == {module}:
        return error(
            title,
            f"DKMS has only {module} built for this kernel, so a reboot loads the same old module again: the driver "
            "upgrade stopped half-way (libraries new, module old). Finishing it builds the new module.",
            fixes.FINISH_DRIVER_UPGRADE,
        )
    if next_boot:
        return error(title, f"The driver was updated: {', '.join(sorted(next_boot))} is built and a reboot loads it.", fixes.REBOOT)
    return error(
        title,
        "The driver was updated but the old kernel module is still loaded; a reboot loads the new one. If the mismatch "
        "survives the reboot, the upgrade stopped half-way and a new module was never built: finish it with apt.",
        f"{fixes.REBOOT}\n# still a mismatch after the reboot? the upgrade is half-done: {fixes.FINISH_DRIVER_UPGRADE}",
    )


@check("nvidia.nouveau", category="Driver")
def nouveau_loaded(facts: SystemFacts) -> Verdict | None:
    """No open in-kernel driver (nouveau, nova_core) is loaded: it keeps NVIDIA's driver off the card."""
    module = next((m for m in OPEN_NVIDIA_DRIVERS if m in facts.host.loaded_modules), None)
    if module is None:
        return None
    if module == "nova_core":
        return error(
            "the nova_core kernel module is loaded: it holds the NVIDIA card, so NVIDIA's driver cannot bind it",
            "nova_core (with nova_drm), nouveau's successor in Linux 7.0, claims the card at boot; blacklisting nouveau "
            "does not stop it. Blacklist nova, rebuild the initramfs and reboot, then install or load NVIDIA's driver.",
            f"{fixes.BLACKLIST_NOVA}\n{fixes.INSTALL_CUDA}   # after the reboot, if NVIDIA's driver is not installed yet",
        )
    driver_missing = any(p.vendor == "nvidia" and p.status == "absent" for p in facts.probes)
    fix = (
        f"{fixes.INSTALL_CUDA}   # installs the signed driver and blacklists nouveau"
        if driver_missing
        else fixes.BLACKLIST_NOUVEAU + "\n# nouveau still loaded after that reboot? add modprobe.blacklist=nouveau to "
        "GRUB_CMDLINE_LINUX_DEFAULT in /etc/default/grub, then: sudo update-grub && sudo reboot"
    )
    return error(
        "the nouveau kernel module is loaded: NVIDIA's driver cannot use the card, and nouveau has no CUDA",
        "Install NVIDIA's driver if it is missing, blacklist nouveau, rebuild the initramfs and reboot.",
        fix,
    )


@check("nvidia.secure_boot", category="Driver")
def secure_boot(facts: SystemFacts) -> Verdict | None:
    """With Secure Boot on, the NVIDIA kernel module is signed by a key the machine trusts (Canonical's or an enrolled MOK)."""
    if signing_key_not_enrolled(facts):
        return _key_not_enrolled(facts)
    if _unsigned_under_secure_boot(facts):
        return _unsigned_module(facts)
    return None


def _key_not_enrolled(facts: SystemFacts) -> Verdict:
    host = facts.host
    signer = host.nvidia_module_signer
    if _names_key(signer or "", host.mok_pending):
        return error(
            f"Secure Boot refuses the NVIDIA kernel module: its key '{signer}' waits to be enrolled at the next boot",
            "mokutil queued the key, but it is enrolled only when you confirm it in the blue MOK manager screen that "
            "appears right after a reboot (it boots on without it after 10 seconds). On a machine without a console "
            "(a cloud VM), turn Secure Boot off instead.",
            f"{fixes.FINISH_MOK_ENROLMENT}\n{fixes.SECURE_BOOT_OFF}",
        )
    return error(
        f"Secure Boot refuses the NVIDIA kernel module: it is signed by '{signer}', a key this machine has not enrolled",
        "DKMS signed the module with its Machine Owner Key, but the firmware trusts only enrolled keys (an upgrade "
        "may have made a new one). Enroll it at the next boot, or turn Secure Boot off in the firmware setup (the "
        "only way on a machine without a console, such as a cloud VM).",
        f"{fixes.ENROLL_MOK}\n{fixes.OTHER_DKMS_KEY}\n{fixes.SECURE_BOOT_OFF}",
    )


def _unsigned_module(facts: SystemFacts) -> Verdict:
    built = next((b for b in dkms_nvidia_builds(facts) if b.version), None)
    if built is not None:  # DKMS built it before a signing key existed: make the key, rebuild, enroll
        module = f"nvidia/{built.version}"
        fix = (
            "sudo update-secureboot-policy --new-key   # the Machine Owner Key DKMS signs with (an existing one is kept)\n"
            f"sudo dkms build --force {module} && sudo dkms install --force {module}   # rebuilt, so DKMS signs it\n"
            f"{fixes.ENROLL_MOK}\n# or Ubuntu's prebuilt modules, signed by Canonical: sudo ubuntu-drivers install\n{fixes.SECURE_BOOT_OFF}"
        )
    else:
        fix = (
            f"{fixes.UBUNTU_SIGNED_DRIVER}\n{fixes.REBOOT}\n"
            "# a driver from NVIDIA's .run installer? remove it first: sudo nvidia-uninstall\n"
            "# or sign your own DKMS build: sudo update-secureboot-policy --new-key, then rebuild it (dkms status names it):\n"
            "#   sudo dkms build --force nvidia/<version> && sudo dkms install --force nvidia/<version>\n"
            "#   and enroll the key: sudo mokutil --import /var/lib/shim-signed/mok/MOK.der, reboot, pick 'Enroll MOK'\n"
            f"{fixes.SECURE_BOOT_OFF}"
        )
    built_by = f" DKMS built nvidia {built.version} without one, so it is rebuilt after the key is made." if built else ""
    return error(
        "Secure Boot is on and the NVIDIA kernel module is not signed: the kernel refuses to load it",
        "Enrolling a key cannot make an unsigned module load: it has to be signed (Ubuntu's prebuilt modules are, "
        f"by Canonical; DKMS signs what it builds once a Machine Owner Key exists), or Secure Boot turned off.{built_by}",
        fix,
    )


@check("nvidia.kernel_module", category="Driver")
def kernel_module(facts: SystemFacts) -> Verdict | None:
    """The NVIDIA kernel module is built for the running kernel (after a kernel upgrade DKMS needs its headers)."""
    if not module_not_built_for_kernel(facts):
        return None
    host = facts.host
    kernel = host.kernel or "the running kernel"
    others = sorted({b.kernel for b in dkms_nvidia_builds(facts) if b.installed and b.kernel and b.kernel != host.kernel})
    built_for = f" DKMS built it for {', '.join(others)} only." if others else ""
    detail = (
        "The driver is installed, but no nvidia module exists for this kernel, so nothing loads and NVML says the "
        f"driver is not loaded.{built_for} After a kernel upgrade DKMS builds the module only if that kernel's headers are installed."
    )
    broken = dkms_broken_trees(facts)
    if broken and host.kernel_headers is not False:
        return _broken_dkms_tree(facts, broken, kernel)
    if host.kernel_headers is False:
        return error(
            f"kernel {kernel} has no headers installed, so DKMS could not build the NVIDIA module for it",
            detail,
            f"{fixes.KERNEL_HEADERS}\n{fixes.DKMS_BUILD}\n{fixes.REBOOT}\n{fixes.HEADERS_META}",
        )
    branch = next((b.version.split(".")[0] for b in dkms_nvidia_builds(facts) if b.version), "<branch>")
    return error(
        f"the NVIDIA kernel module is not built for the running kernel {kernel}",
        detail,
        f"{fixes.DKMS_BUILD}\nsudo depmod -a   # indexes the module for this kernel, so modprobe and modinfo find it\n{fixes.REBOOT}\n"
        f"# if the build fails: sudo apt install --reinstall nvidia-dkms-{branch}   (nvidia-dkms-{branch}-open for the open "
        "modules); its log is /var/lib/dkms/nvidia/*/build/make.log",
    )


def _broken_dkms_tree(facts: SystemFacts, broken: list[tuple[str, str]], kernel: str) -> Verdict:
    """A stale tree in /var/lib/dkms stops DKMS before it builds the installed driver for a new kernel."""
    stale = {version for _, version in broken}
    installed = [v for v in sorted(facts.host.dkms_nvidia_sources, key=compat.parse_version) if v not in stale]
    module = broken[0][0]
    target = installed[-1] if installed else "<version>"
    where = "" if installed else "   # <version>: the driver's source folder, ls -d /usr/src/nvidia-*"
    trees = ", ".join(f"/var/lib/dkms/{m}/{v}" for m, v in broken)
    return error(
        f"DKMS stops at a stale tree ({trees}: its dkms.conf is gone), so the NVIDIA module is not rebuilt for kernel {kernel}",
        "A driver that was removed by hand (or by another package manager) left its DKMS tree behind; `dkms status` "
        "fails on it, so no kernel upgrade rebuilds the installed driver and NVML says the driver is not loaded.",
        "\n".join([*(f"sudo rm -rf /var/lib/dkms/{m}/{v}   # the leftover of a removed driver" for m, v in broken),
                   f"sudo dkms install {module}/{target}{where}", fixes.REBOOT]),
    )


@check("nvidia.uvm", category="Driver")
def uvm(facts: SystemFacts) -> Verdict | None:
    """nvidia_uvm, the module CUDA needs beside nvidia, is loaded and answering (it can get stuck after suspend/resume)."""
    if not any(g.vendor == "nvidia" for g in facts.gpus):
        return None  # the driver itself does not answer: other checks say why
    failure = _live_cuda_failure(facts)
    if uvm_missing(facts):
        return None if _live_gpu_ok(facts) else _uvm_not_loaded(failure, facts.host.nvidia_modprobe)
    if failure and any(e in failure.lower() for e in UVM_STUCK_ERRORS) and not hidden_gpus(facts):
        return error(
            f"CUDA fails although the driver answers: {failure}",
            "NVML sees the GPU but CUDA cannot start: nvidia_uvm is usually left stuck by a suspend/resume. Reloading "
            "it (or a reboot) clears it; reinstalling torch or the driver does not. If it persists after a reboot, "
            "look for Xid errors: sudo dmesg | grep -i xid",
            fixes.RELOAD_UVM,
        )
    return None


def _uvm_not_loaded(failure: str | None, modprobe: str | None) -> Verdict:
    fix = f"{fixes.MAKE_UVM_NODE}\n{fixes.LOAD_UVM}   # the same without making /dev/nvidia-uvm\n{fixes.UVM_EVERY_BOOT}"
    detail = (
        "CUDA needs the nvidia_uvm module (and /dev/nvidia-uvm) beside nvidia. It is normally loaded at boot or on "
        "first use, through the setuid nvidia-modprobe; when that load failed (for example at boot, before the GPU was "
        "ready, or in a container that cannot run it), CUDA stays down until it is loaded. Reinstalling torch does not help."
    )
    if failure:
        return error(f"nvidia_uvm is not loaded, so CUDA cannot start: {failure}", detail, fix)
    if modprobe in ("missing", "not-setuid"):
        why = "nvidia-modprobe is not installed" if modprobe == "missing" else "nvidia-modprobe is not setuid root"
        return error(f"nvidia_uvm is not loaded and {why}, so nothing loads it on first use: CUDA fails with 'CUDA unknown error'", detail, fix)
    return warning("nvidia_uvm is not loaded: CUDA programs fail with 'CUDA unknown error' unless it loads on first use", detail, fix)
