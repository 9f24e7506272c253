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
