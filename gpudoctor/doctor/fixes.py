"""The exact commands the doctor prints as fixes, in one place so every check says them the same way."""

from __future__ import annotations

import shlex

REBOOT = "sudo reboot"
INSTALL_CUDA = "gpudoctor install-cuda"
# install-cuda.sh runs `ubuntu-drivers install nvidia:<branch>-open`, blacklists nouveau and says when to reboot.
INSTALL_NVIDIA_DRIVER = f"{INSTALL_CUDA}   # the signed driver via ubuntu-drivers; --dry-run shows each step"
INSTALL_ROCM = "gpudoctor install-rocm"
INSTALL_TORCH = "gpudoctor install-torch"
CPU_DEMO = "gpudoctor train --demo"
ADD_GPU_GROUPS = "sudo usermod -aG render,video $USER   # then log out and back in"
BLACKLIST_NOUVEAU = (
    "printf 'blacklist nouveau\\noptions nouveau modeset=0\\n' | sudo tee /etc/modprobe.d/blacklist-nouveau.conf\n"
    "sudo update-initramfs -u && sudo reboot"
)
BLACKLIST_NOVA = (
    "printf 'blacklist nova_core\\nblacklist nova_drm\\nblacklist nouveau\\n' | sudo tee /etc/modprobe.d/blacklist-nova.conf\n"
    "sudo update-initramfs -u && sudo reboot"
)
# Ubuntu's DKMS signs modules with this key; enrolling it lets Secure Boot load them.
ENROLL_MOK = (
    "sudo mokutil --import /var/lib/shim-signed/mok/MOK.der   # choose a one-time password\n"
    "sudo reboot   # then pick 'Enroll MOK' in the blue MOK manager screen and type that password"
)
WSL_DRIVER = "install the NVIDIA driver on Windows (WSL2 uses it): https://www.nvidia.com/Download/index.aspx"
ROCM_MATRIX = "https://rocm.docs.amd.com/en/latest/compatibility/compatibility-matrix.html"


def pip_install(python: str | None, requirement: str, *, reinstall: bool = False) -> str:
    """`<python> -m pip install -U '<requirement>'` for the interpreter gpudoctor inspected."""
    flags = "-U --force-reinstall" if reinstall else "-U"
    return f"{shlex.quote(python or 'python3')} -m pip install {flags} {shlex.quote(requirement)}"

# --- added for the NVIDIA driver and environment checks (nvidia.py, environment.py) ---------------

# Ubuntu's prebuilt nvidia modules (linux-modules-nvidia-*) are signed by Canonical; Secure Boot loads them.
UBUNTU_SIGNED_DRIVER = "sudo ubuntu-drivers install   # Ubuntu's driver: prebuilt modules signed by Canonical, which Secure Boot trusts"
SECURE_BOOT_OFF = "# or turn Secure Boot off in the firmware setup (on a cloud VM: its Secure Boot / Trusted Launch setting)"
# Without a console (a cloud VM) the MOK Manager screen cannot be reached: turning Secure Boot off is the way.
FINISH_MOK_ENROLMENT = (
    "sudo reboot   # then pick 'Enroll MOK' → Continue → Yes in the blue MOK manager screen and type the one-time password\n"
    "# password forgotten? sudo mokutil --revoke-import && sudo mokutil --import /var/lib/shim-signed/mok/MOK.der, then reboot"
)
# DKMS outside Ubuntu's shim-signed set-up keeps its key in /var/lib/dkms.
OTHER_DKMS_KEY = "# no /var/lib/shim-signed/mok/MOK.der? DKMS's own key is /var/lib/dkms/mok.pub: import that one"
# The NVIDIA module for the running kernel is built by DKMS against that kernel's headers.
KERNEL_HEADERS = "sudo apt install linux-headers-$(uname -r)   # installing them makes DKMS build the NVIDIA module"
DKMS_BUILD = "sudo dkms autoinstall   # builds every DKMS module (nvidia too) for the running kernel"
# Keeps the headers coming with every future kernel (linux-headers-generic-hwe-24.04 on the HWE kernel).
HEADERS_META = "# so the next kernel gets its headers too: sudo apt install linux-headers-generic (or linux-headers-generic-hwe-24.04)"
LOAD_UVM = "sudo modprobe nvidia_uvm"
# What CUDA itself runs on first use: loads nvidia_uvm and creates /dev/nvidia-uvm (NVIDIA/enroot#106).
MAKE_UVM_NODE = "sudo nvidia-modprobe -u -c=0   # loads nvidia_uvm and makes /dev/nvidia-uvm"
# What NixOS merged for nvidia_uvm loaded too early at boot: load it after nvidia, every boot.
UVM_EVERY_BOOT = "echo 'softdep nvidia post: nvidia-uvm' | sudo tee /etc/modprobe.d/nvidia-uvm.conf   # and at every boot"
RELOAD_UVM = "sudo rmmod nvidia_uvm && sudo modprobe nvidia_uvm   # close every CUDA program first; or: sudo reboot"
# Finishes a half-done driver upgrade, so the kernel module DKMS builds and the libraries are one version.
FINISH_DRIVER_UPGRADE = "sudo apt update && sudo apt install --fix-broken && sudo reboot"
