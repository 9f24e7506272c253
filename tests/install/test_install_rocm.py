"""install-rocm.sh against stand-in commands: exact commands, idempotency, dry run, refusals, gfx warning."""

from __future__ import annotations

import subprocess

import yaml
from fakebox import INSTALL, REPO, RTX_4090, UBUNTU_2204, changes, relative

DEB_71 = "amdgpu-install_7.1.70100-1_all.deb"
FRESH_CHANGES = [
    "apt-get install -y linux-headers-6.8.0-49-generic linux-modules-extra-6.8.0-49-generic",
    f"wget -q -O /var/cache/gpudoctor/{DEB_71} https://repo.radeon.com/amdgpu-install/7.1/ubuntu/noble/{DEB_71}",
    f"apt-get install -y /var/cache/gpudoctor/{DEB_71}",
    "apt-get update",
    "amdgpu-install -y --usecase=rocm",
    "usermod -aG render,video alice",
]


def test_fresh_amd_box_installs_rocm_and_adds_the_user_to_the_groups(amd):
    run = amd.run("install-rocm.sh", "--yes")
    assert run.code == 0, run.stderr
    assert changes(amd, run) == FRESH_CHANGES
    assert (amd.root / "opt/rocm/.info/version").read_text() == "7.1.0-1\n"
    assert {"rocm", "amdgpu-dkms", "amdgpu-install"} <= amd.packages()
    assert "install-rocm: GPU target gfx1100 is supported by ROCm" in run.stdout
    assert run.stdout.splitlines()[-3:] == [
        "install-rocm: Log out and back in: alice joins the render and video groups at the next login",
        "install-rocm: Reboot needed: the amdgpu-dkms kernel driver loads at the next boot",
        "install-rocm: done: 6 step(s) ran",
    ]


def test_second_run_changes_nothing_and_says_so(amd):
    assert amd.run("install-rocm.sh", "--yes").code == 0
    again = amd.run("install-rocm.sh", "--yes")
    assert again.code == 0
    assert again.changes == []
    assert [line for line in again.stdout.splitlines() if "already installed:" in line] == [
        "install-rocm: already installed: linux-headers-6.8.0-49-generic",
        "install-rocm: already installed: linux-modules-extra-6.8.0-49-generic",
        "install-rocm: already installed: amdgpu-install 7.1.70100-1 (AMD's repositories for ROCm 7.1)",
        "install-rocm: already installed: ROCm 7.1.0-1",
        "install-rocm: already installed: alice in the render and video groups",
    ]
    assert "Reboot needed" not in again.stdout and "Log out" not in again.stdout
    assert again.stdout.rstrip().endswith("install-rocm: done: nothing changed")


def test_named_release_without_dkms_needs_no_headers_and_no_reboot(amd):
    run = amd.run("install-rocm.sh", "--yes", "--rocm", "6.4", "--no-dkms", "--user", "bob")
    assert run.code == 0
    deb = "amdgpu-install_6.4.60403-1_all.deb"
    assert changes(amd, run) == [
        f"wget -q -O /var/cache/gpudoctor/{deb} https://repo.radeon.com/amdgpu-install/6.4.3/ubuntu/noble/{deb}",
        f"apt-get install -y /var/cache/gpudoctor/{deb}",
        "apt-get update",
        "amdgpu-install -y --usecase=rocm --no-dkms",
        "usermod -aG render,video bob",
    ]
    assert "amdgpu-dkms" not in amd.packages()
    assert "Reboot needed" not in run.stdout


def test_dry_run_prints_every_command_and_changes_nothing(amd):
    before = amd.files()
    run = amd.run("install-rocm.sh", "--dry-run")
    assert run.code == 0
    assert run.changes == []
    assert amd.files() == before
    would = [relative(amd, line.split("would run: ", 1)[1]) for line in run.stdout.splitlines() if "would run: " in line]
    assert would == [
        "apt-get install linux-headers-6.8.0-49-generic linux-modules-extra-6.8.0-49-generic",
        FRESH_CHANGES[1],
        f"apt-get install /var/cache/gpudoctor/{DEB_71}",
        "apt-get update",
        "amdgpu-install --usecase=rocm",
        "usermod -aG render,video alice",
    ]


def test_unsupported_gfx_target_is_warned_about(amd):
    amd.gfx(100302)  # gfx1032, an RX 6600
    run = amd.run("install-rocm.sh", "--dry-run")
    assert "warning: GPU target gfx1032 is not on ROCm's support list (gfx908 gfx90a" in run.stderr


def test_gfx_target_letters_are_read_as_hex(amd):
    amd.gfx(90010)
    run = amd.run("install-rocm.sh", "--dry-run")
    assert "GPU target gfx90a is supported by ROCm" in run.stdout


def test_wrong_os_is_refused(amd):
    amd.os_release(UBUNTU_2204)
    run = amd.run("install-rocm.sh", "--yes")
    assert run.code == 1
    assert run.commands == []
    assert "error: this script supports Ubuntu 24.04 only; this is Ubuntu 22.04.4 LTS" in run.stderr


def test_no_amd_gpu_is_refused(amd):
    amd.lspci(RTX_4090)
    run = amd.run("install-rocm.sh", "--yes")
    assert run.code == 1
    assert run.changes == []
    assert "error: no AMD GPU found by lspci" in run.stderr


def test_root_without_sudo_user_gets_a_note_instead_of_a_group_change(amd):
    run = amd.run("install-rocm.sh", "--yes", env={"SUDO_USER": None})
    assert run.code == 0
    assert not [c for c in run.changes if c.startswith("usermod")]
    assert "note: no user to add to the render and video groups" in run.stdout


def test_secure_boot_with_dkms_is_explained(amd):
    amd.state_file("sb-state", "SecureBoot enabled\n")
    run = amd.run("install-rocm.sh", "--dry-run")
    assert "Secure Boot is on: amdgpu-dkms modules load only once their signing key is enrolled" in run.stdout


def test_unknown_release_is_a_usage_error(amd):
    run = amd.run("install-rocm.sh", "--rocm", "5.0")
    assert run.code == 2
    assert run.commands == []
    assert run.stderr == "install-rocm: error: ROCm '5.0' is not in compat.yaml rocm_releases (known: 7.1 7.0 6.4) (see install-rocm --help)\n"


def test_the_scripts_read_compat_yaml_as_yaml_does():
    """install/lib.sh parses compat.yaml with sed/awk; it must agree with a YAML parser."""
    table = yaml.safe_load((REPO / "profiles/compat.yaml").read_text())
    lines = ["compat_scalar rocm_default", "compat_scalar cuda_keyring_url", "compat_list rocm_supported_gfx"]
    lines += [f'compat_entry rocm_releases "{release}" installer' for release in table["rocm_releases"]]
    lines += [f'compat_map_value cuda_driver_minimum "{major}"' for major in table["cuda_driver_minimum"]]
    script = f'PROG=t; SCRIPT_DIR="{INSTALL}"; source "{INSTALL}/lib.sh"; ' + "; ".join(lines)
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out == [
        table["rocm_default"],
        table["cuda_keyring_url"],
        " ".join(table["rocm_supported_gfx"]),
        *[entry["installer"] for entry in table["rocm_releases"].values()],
        *table["cuda_driver_minimum"].values(),
    ]
    assert table["rocm_default"] in table["rocm_releases"]


def test_already_installed_box_issues_only_read_only_commands(amd):
    for package in ("linux-headers-6.8.0-49-generic", "linux-modules-extra-6.8.0-49-generic", "rocm"):
        amd.installed(package)
    amd.installed("amdgpu-install", "6.4.60403-1")
    (amd.root / "opt/rocm/.info").mkdir(parents=True)
    (amd.root / "opt/rocm/.info/version").write_text("6.4.3-60403\n")
    amd.state_file("groups/alice", " render video")
    run = amd.run("install-rocm.sh", "--yes", "--rocm", "6.4")
    assert run.code == 0
    assert run.changes == []
    assert run.commands == [
        "lspci -nn -d 1002:",
        "id -u",
        "uname -r",
        "dpkg-query -W -f=${Status} linux-headers-6.8.0-49-generic",
        "dpkg-query -W -f=${Status} linux-modules-extra-6.8.0-49-generic",
        "dpkg-query -W -f=${Status} amdgpu-install",
        "dpkg-query -W -f=${Version} amdgpu-install",
        "dpkg-query -W -f=${Status} rocm",
        "id -nG alice",
    ]
    assert "already installed: ROCm 6.4.3-60403" in run.stdout
    assert run.stdout.rstrip().endswith("install-rocm: done: nothing changed")
