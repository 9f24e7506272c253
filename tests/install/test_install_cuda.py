"""install-cuda.sh against stand-in commands: exact commands, idempotency, dry run, refusals, exit codes."""

from __future__ import annotations

from fakebox import DRIVERS_LIST_DKMS, GTX_1080, INTEL_ONLY, UBUNTU_2204, changes, relative

KEYRING = "https://developer.download.nvidia.com/compute/cuda/repos/ubuntu2404/x86_64/cuda-keyring_1.1-1_all.deb"
FRESH_CHANGES = [
    "ubuntu-drivers install nvidia:570-open",
    "update-initramfs -u",
    f"wget -q -O /var/cache/gpudoctor/cuda-keyring_1.1-1_all.deb {KEYRING}",
    "dpkg -i /var/cache/gpudoctor/cuda-keyring_1.1-1_all.deb",
    "apt-get update",
    "apt-get install -y cuda-toolkit-12-8",
]


def test_fresh_nvidia_box_installs_open_driver_blacklists_nouveau_and_adds_toolkit(nvidia):
    run = nvidia.run("install-cuda.sh", "--yes", "--toolkit", "12.8")
    assert run.code == 0, run.stderr
    assert changes(nvidia, run) == FRESH_CHANGES
    blacklist = nvidia.root / "etc/modprobe.d/blacklist-nouveau.conf"
    assert blacklist.read_text() == "blacklist nouveau\noptions nouveau modeset=0\n"
    assert {"nvidia-driver-570-open", "linux-modules-nvidia-570-open-generic-hwe-24.04", "cuda-keyring",
            "cuda-toolkit-12-8"} <= nvidia.packages()
    lines = run.stdout.splitlines()
    assert lines[-3:] == [
        "install-cuda: Reboot needed: the new NVIDIA kernel module (nvidia-driver-570-open) loads at the next boot",
        "install-cuda: Reboot needed: nouveau is blacklisted from the next boot",
        "install-cuda: done: 7 step(s) ran",
    ]
    assert "add the toolkit to your PATH: export PATH=/usr/local/cuda-12.8/bin:$PATH" in run.stdout


def test_second_run_changes_nothing_and_says_so(nvidia):
    assert nvidia.run("install-cuda.sh", "--yes", "--toolkit", "12.8").code == 0
    again = nvidia.run("install-cuda.sh", "--yes", "--toolkit", "12.8")
    assert again.code == 0
    assert again.changes == []
    for what in ("nvidia-driver-570-open", "nouveau blacklist", "cuda-keyring", "cuda-toolkit-12-8"):
        assert f"already installed: {what}" in again.stdout
    assert "Reboot needed" not in again.stdout
    assert "nothing to change: everything is already installed" in again.stdout
    assert again.stdout.rstrip().endswith("install-cuda: done: nothing changed")


def test_already_installed_box_issues_only_read_only_commands(nvidia):
    nvidia.installed("nvidia-driver-550")
    nvidia.modules("nvidia", "nvidia_uvm")
    run = nvidia.run("install-cuda.sh", "--yes")
    assert run.code == 0
    assert run.changes == []
    assert run.commands == [
        "lspci -nn -d 10de:",
        "id -u",
        "mokutil --sb-state",
        "dpkg-query -W -f=${Package} ${Status}\\n nvidia-driver-*",
    ]
    assert "already installed: nvidia-driver-550 (pass --driver BRANCH to switch branches)" in run.stdout


def test_dry_run_prints_every_command_and_changes_nothing(nvidia):
    before = nvidia.files()
    run = nvidia.run("install-cuda.sh", "--dry-run", "--toolkit", "12.8")
    assert run.code == 0
    assert run.changes == []
    assert nvidia.files() == before
    would = [relative(nvidia, line.split("would run: ", 1)[1]) for line in run.stdout.splitlines() if "would run: " in line]
    root_file = "/etc/modprobe.d/blacklist-nouveau.conf"
    assert would == [
        "ubuntu-drivers install nvidia:570-open",
        f"write_root_file {root_file} $'blacklist nouveau\\noptions nouveau modeset=0'",
        "update-initramfs -u",
        f"wget -q -O /var/cache/gpudoctor/cuda-keyring_1.1-1_all.deb {KEYRING}",
        "dpkg -i /var/cache/gpudoctor/cuda-keyring_1.1-1_all.deb",
        "apt-get update",
        "apt-get install cuda-toolkit-12-8",
    ]
    assert "afterwards: reboot needed: nouveau is blacklisted from the next boot" in run.stdout
    assert run.stdout.rstrip().endswith("install-cuda: dry run: nothing was changed")


def test_wrong_os_is_refused_before_anything_runs(nvidia):
    nvidia.os_release(UBUNTU_2204)
    run = nvidia.run("install-cuda.sh", "--yes")
    assert run.code == 1
    assert run.commands == []
    assert run.stderr == (
        "install-cuda: error: this script supports Ubuntu 24.04 only; this is Ubuntu 22.04.4 LTS "
        "(--force to try anyway)\n"
    )


def test_force_goes_on_with_a_warning_on_another_os(nvidia):
    nvidia.os_release(UBUNTU_2204)
    run = nvidia.run("install-cuda.sh", "--yes", "--force")
    assert run.code == 0
    assert "warning: this is Ubuntu 22.04.4 LTS, not Ubuntu 24.04; going on because of --force" in run.stderr
    assert relative(nvidia, run.changes[0]) == "ubuntu-drivers install nvidia:570-open"


def test_no_nvidia_gpu_is_refused(box):
    box.lspci(INTEL_ONLY)
    run = box.run("install-cuda.sh", "--yes")
    assert run.code == 1
    assert run.changes == []
    assert "error: no NVIDIA GPU found by lspci" in run.stderr


def test_dry_run_on_an_unfit_box_lists_every_reason_to_stop(box):
    box.os_release(UBUNTU_2204)
    box.remove("lspci")
    box.remove("ubuntu-drivers")
    run = box.run("install-cuda.sh", "--dry-run")
    assert run.code == 1
    assert run.changes == []
    assert "would run: apt-get install ubuntu-drivers-common" in run.stdout
    assert "would stop: this script supports Ubuntu 24.04 only; this is Ubuntu 22.04.4 LTS" in run.stdout
    assert "would stop: cannot look for an NVIDIA GPU: lspci is missing (sudo apt-get install pciutils)" in run.stdout


def test_secure_boot_with_prebuilt_signed_modules_needs_no_key(nvidia):
    nvidia.state_file("sb-state", "SecureBoot enabled\n")
    run = nvidia.run("install-cuda.sh", "--yes")
    assert run.code == 0
    assert "Secure Boot is on: the driver's modules come prebuilt and signed by Canonical" in run.stdout
    assert not [c for c in run.commands if c.startswith("mokutil --import")]


def test_secure_boot_with_dkms_unattended_explains_the_key_enrollment(nvidia):
    nvidia.state_file("sb-state", "SecureBoot enabled\n")
    nvidia.state_file("ubuntu-drivers-list.txt", DRIVERS_LIST_DKMS)
    run = nvidia.run("install-cuda.sh", "--yes")
    assert run.code == 0
    assert "nvidia-dkms-570-open" in nvidia.packages()
    assert "enroll its key with 'sudo mokutil --import /var/lib/shim-signed/mok/MOK.der'" in run.stdout
    assert "Reboot needed: enroll the Secure Boot key: at the blue MOK Manager screen choose 'Enroll MOK'" in run.stdout


def test_secure_boot_with_dkms_interactive_plans_the_key_import(nvidia):
    nvidia.state_file("sb-state", "SecureBoot enabled\n")
    nvidia.state_file("ubuntu-drivers-list.txt", DRIVERS_LIST_DKMS)
    run = nvidia.run("install-cuda.sh", "--dry-run")
    assert f"would run: mokutil --import {nvidia.root}/var/lib/shim-signed/mok/MOK.der" in run.stdout


def test_secure_boot_key_already_enrolled_is_skipped(nvidia):
    nvidia.state_file("sb-state", "SecureBoot enabled\n")
    nvidia.state_file("ubuntu-drivers-list.txt", DRIVERS_LIST_DKMS)
    nvidia.state_file("mok-enrolled", "")
    key = nvidia.root / "var/lib/shim-signed/mok/MOK.der"
    key.parent.mkdir(parents=True)
    key.write_bytes(b"key")
    run = nvidia.run("install-cuda.sh", "--dry-run")
    assert "already installed: Secure Boot key" in run.stdout
    assert "mokutil --import" not in run.stdout


def test_pre_turing_gpu_gets_the_proprietary_modules(nvidia):
    nvidia.lspci(GTX_1080)
    run = nvidia.run("install-cuda.sh", "--yes")
    assert "GPU 10de:1b80 is older than Turing: using the proprietary kernel modules" in run.stdout
    assert relative(nvidia, run.changes[0]) == "ubuntu-drivers install nvidia:570"


def test_driver_branch_not_offered_is_refused(nvidia):
    run = nvidia.run("install-cuda.sh", "--yes", "--driver", "999")
    assert run.code == 1
    assert "error: ubuntu-drivers does not offer nvidia-driver-999-open for this GPU" in run.stderr
    assert run.changes == []


def test_old_unsigned_nvidia_source_is_warned_about(nvidia):
    sources = nvidia.root / "etc/apt/sources.list.d"
    sources.mkdir(parents=True)
    (sources / "cuda.list").write_text("deb https://developer.download.nvidia.com/compute/cuda/repos/ubuntu2404/x86_64/ /\n")
    run = nvidia.run("install-cuda.sh", "--dry-run", "--toolkit", "12.8")
    assert "cuda.list adds NVIDIA's repository without signed-by" in run.stderr


def test_toolkit_newer_than_the_driver_is_warned_about(nvidia):
    run = nvidia.run("install-cuda.sh", "--dry-run", "--toolkit", "13.0")
    assert "warning: CUDA 13.0 needs driver >= 580.65.06; driver branch 570 is older (pass --driver 580)" in run.stderr


def test_a_failing_step_stops_the_run_with_exit_1(nvidia):
    nvidia.fail("update-initramfs")
    run = nvidia.run("install-cuda.sh", "--yes", "--toolkit", "12.8")
    assert run.code == 1
    assert [relative(nvidia, c) for c in run.changes] == FRESH_CHANGES[:2]
    assert "error: step 3 failed (exit 100): update-initramfs -u; nothing after it ran" in run.stderr


def test_without_yes_and_without_a_terminal_it_asks_for_yes(nvidia):
    run = nvidia.run("install-cuda.sh")
    assert run.code == 1
    assert run.changes == []
    assert "pass --yes to run the plan above unattended" in run.stderr


def test_not_root_runs_again_through_sudo(nvidia):
    nvidia.state_file("uid", "1000")
    run = nvidia.run("install-cuda.sh", "--yes", env={"USER": "alice", "SUDO_USER": None})
    assert run.code == 0
    assert run.changes[0].startswith("sudo --preserve-env=GPUDOCTOR_ROOT bash ")
    assert run.changes[0].endswith("install/install-cuda.sh --yes")
    assert "install-cuda: re-running through sudo" in run.stdout


def test_usage_errors_exit_2(nvidia):
    for args in (["--bogus"], ["--toolkit", "twelve"], ["--driver"]):
        run = nvidia.run("install-cuda.sh", *args)
        assert run.code == 2, args
        assert run.commands == []
        assert run.stderr.endswith("(see install-cuda --help)\n")


def test_help_exits_0(nvidia):
    run = nvidia.run("install-cuda.sh", "--help")
    assert run.code == 0
    assert run.stdout.startswith("Usage: install-cuda.sh")
