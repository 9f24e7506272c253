#!/usr/bin/env bash
# Install the NVIDIA driver (and optionally the CUDA toolkit) on Ubuntu 24.04, the safe way.
#
#   install-cuda.sh [--dry-run] [--yes] [--force] [--driver BRANCH] [--proprietary] [--toolkit X.Y]
#
# - Driver: Ubuntu's signed packages through `ubuntu-drivers` (the recommended branch, or --driver),
#   with NVIDIA's open kernel modules (nvidia-driver-XXX-open) on Turing and newer GPUs. An installed
#   nvidia-driver-* package is left alone. Sources: Ubuntu Server docs "NVIDIA drivers installation"
#   (`ubuntu-drivers list`, `ubuntu-drivers install nvidia:BRANCH`; ubuntu-drivers-common's
#   UbuntuDrivers/detect.py reads "nvidia:570-open" as vendor nvidia, flavour 570-open, and adds the
#   matching prebuilt linux-modules-nvidia-* package); NVIDIA "Open Linux kernel modules" (supported
#   on Turing and later, and recommended there).
# - nouveau: when it is loaded, it is blacklisted in /etc/modprobe.d and the initramfs rebuilt.
# - Secure Boot: Ubuntu's prebuilt linux-modules-nvidia-* are signed by Canonical; a DKMS-built module
#   needs the machine owner key (MOK) enrolled at the next boot (`mokutil --import`).
# - --toolkit X.Y: NVIDIA's CUDA apt repository via its keyring package (a signed-by source, never
#   apt-key), then cuda-toolkit-X-Y, which does not pull in a second driver. Source: CUDA Installation
#   Guide for Linux, "Network Repo Installation for Ubuntu". PyTorch wheels carry their own CUDA
#   runtime: the toolkit is only needed to compile CUDA code.
#
# Idempotent: what is installed is detected (dpkg, /proc/modules, files) and skipped with
# "already installed: …"; a second run changes nothing. --dry-run prints every command it would run.
# Exit codes: 0 ok (or nothing to do), 1 refused or a step failed, 2 usage error.
set -euo pipefail

PROG="install-cuda"
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SCRIPT_PATH="$SCRIPT_DIR/$(basename "${BASH_SOURCE[0]}")"
ORIGINAL_ARGS=("$@")
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$SCRIPT_DIR/lib.sh"

DRIVER_BRANCH=""
PROPRIETARY=0
TOOLKIT=""
MOK_KEY="$ROOT/var/lib/shim-signed/mok/MOK.der"
# NVIDIA PCI device ids from 0x1e00 are Turing (TU102 = 0x1e02) or newer; Volta/Pascal sit below.
FIRST_TURING_DEVICE_ID=$((0x1e00))

usage() {
  cat <<'EOF'
Usage: install-cuda.sh [--dry-run] [--yes] [--force] [--driver BRANCH] [--proprietary] [--toolkit X.Y]

Installs the NVIDIA driver on Ubuntu 24.04 through ubuntu-drivers (open kernel modules on Turing and
newer) and, with --toolkit, the CUDA toolkit from NVIDIA's apt repository.

  --dry-run        print every command it would run; change nothing
  -y, --yes        run unattended (no questions; apt-get -y)
  --force          go on even if this is not Ubuntu 24.04
  --driver BRANCH  driver branch, e.g. 570 (default: what ubuntu-drivers recommends)
  --proprietary    the closed kernel modules even on Turing and newer
  --toolkit X.Y    also install the CUDA toolkit X.Y, e.g. 12.8

Exit codes: 0 ok, 1 refused or failed, 2 usage error.
EOF
}

while (($#)); do
  if parse_common_flag "$1"; then shift; continue; fi
  case "$1" in
    --driver) [[ $# -ge 2 && "$2" =~ ^[0-9]+$ ]] || usage_error "--driver needs a branch number such as 570"; DRIVER_BRANCH="$2"; shift 2 ;;
    --proprietary) PROPRIETARY=1; shift ;;
    --toolkit) [[ $# -ge 2 && "$2" =~ ^[0-9]+\.[0-9]+$ ]] || usage_error "--toolkit needs a version such as 12.8"; TOOLKIT="$2"; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) usage_error "unknown option '$1'" ;;
  esac
done

# --- Look (read-only) ---------------------------------------------------------------------------

check_os

# PCI device ids ("2684") of NVIDIA display controllers (class 0300 VGA, 0302 3D).
nvidia_device_ids() {
  lspci -nn -d 10de: | sed -n 's/.*\[030[02]\].*\[10de:\([0-9a-fA-F]\{4\}\)\].*/\1/p'
}

DEVICE_IDS=()
if ! have lspci; then
  refuse "cannot look for an NVIDIA GPU: lspci is missing (sudo apt-get install pciutils)"
else
  mapfile -t DEVICE_IDS < <(nvidia_device_ids)
  if ((${#DEVICE_IDS[@]} == 0)); then
    refuse "no NVIDIA GPU found by lspci; this script installs the NVIDIA driver only (AMD: install-rocm.sh)"
  else
    say "NVIDIA GPU(s): ${DEVICE_IDS[*]/#/10de:}"
  fi
fi

ensure_root

OPEN=1
((PROPRIETARY)) && OPEN=0
for id in "${DEVICE_IDS[@]}"; do
  if (($((16#$id)) < FIRST_TURING_DEVICE_ID)); then
    OPEN=0
    say "GPU 10de:$id is older than Turing: using the proprietary kernel modules"
  fi
done

module_loaded() { grep -q "^$1 " "$ROOT/proc/modules" 2>/dev/null; }

SECURE_BOOT=0
if have mokutil && mokutil --sb-state 2>/dev/null | grep -q "SecureBoot enabled"; then
  SECURE_BOOT=1
  say "Secure Boot is enabled"
fi

# --- Plan: driver -------------------------------------------------------------------------------

installed_drivers() {
  dpkg-query -W -f='${Package} ${Status}\n' 'nvidia-driver-*' 2>/dev/null |
    awk '$2 == "install" && $4 == "installed" { print $1 }'
}

DRIVER_PLANNED=0
mapfile -t HAVE_DRIVERS < <(installed_drivers)
if ((${#HAVE_DRIVERS[@]})) && [[ -z "$DRIVER_BRANCH" ]]; then
  already "${HAVE_DRIVERS[*]} (pass --driver BRANCH to switch branches)"
  DRIVER_BRANCH=$(printf '%s\n' "${HAVE_DRIVERS[0]}" | sed -n 's/^nvidia-driver-\([0-9]\+\).*/\1/p')
  if ! module_loaded nvidia; then
    NOTES+=("a reboot is still pending from an earlier run: ${HAVE_DRIVERS[0]} is installed but its kernel module is not loaded")
  fi
else
  LISTING=""
  if ! have ubuntu-drivers; then
    apt_step "install ubuntu-drivers (Ubuntu's driver chooser)" ubuntu-drivers-common
  else
    LISTING=$(ubuntu-drivers list 2>/dev/null || true)
  fi
  if [[ -z "$DRIVER_BRANCH" && -n "$LISTING" ]]; then
    # ubuntu-drivers prints one driver per line; the recommended one comes from `devices`.
    DRIVER_BRANCH=$(ubuntu-drivers devices 2>/dev/null |
      sed -n 's/.*nvidia-driver-\([0-9]\+\)\(-open\|-server\|-server-open\)\? .*recommended.*/\1/p' | head -n 1)
    if [[ -z "$DRIVER_BRANCH" ]]; then
      DRIVER_BRANCH=$(printf '%s\n' "$LISTING" | sed -n 's/^nvidia-driver-\([0-9]\+\)\(-open\)\?\(,.*\)\?$/\1/p' | sort -n | tail -n 1)
    fi
  fi
  if [[ -n "$DRIVER_BRANCH" ]]; then
    FLAVOUR="$DRIVER_BRANCH"
    ((OPEN)) && FLAVOUR="$DRIVER_BRANCH-open"
    PACKAGE="nvidia-driver-$FLAVOUR"
    if dpkg_installed "$PACKAGE"; then
      already "$PACKAGE"
    else
      if [[ -n "$LISTING" ]] && ! printf '%s\n' "$LISTING" | grep -qE "^$PACKAGE(,|$)"; then
        refuse "ubuntu-drivers does not offer $PACKAGE for this GPU (see: ubuntu-drivers list)"
      fi
      add_step "install the NVIDIA driver $PACKAGE (Ubuntu's signed packages)" ubuntu-drivers install "nvidia:$FLAVOUR"
      DRIVER_PLANNED=1
      REBOOT_REASONS+=("the new NVIDIA kernel module ($PACKAGE) loads at the next boot")
      PREBUILT=$(printf '%s\n' "$LISTING" | sed -n "s/^$PACKAGE, (kernel modules provided by \\([^)]*\\)).*/\\1/p" | head -n 1)
    fi
  else
    add_step "install the NVIDIA driver ubuntu-drivers recommends" ubuntu-drivers install
    DRIVER_PLANNED=1
    REBOOT_REASONS+=("the new NVIDIA kernel module loads at the next boot")
    PREBUILT=""
  fi
fi

# --- Plan: nouveau ------------------------------------------------------------------------------

BLACKLIST="$ROOT/etc/modprobe.d/blacklist-nouveau.conf"
if module_loaded nouveau; then
  if grep -qs "^blacklist nouveau" "$BLACKLIST"; then
    already "nouveau blacklist (${BLACKLIST#"$ROOT"})"
    NOTES+=("a reboot is still pending from an earlier run: nouveau is blacklisted but still loaded")
  else
    add_step "blacklist the nouveau driver, which holds the GPU" write_root_file "$BLACKLIST" $'blacklist nouveau\noptions nouveau modeset=0'
    add_step "rebuild the initramfs without nouveau" update-initramfs -u
    REBOOT_REASONS+=("nouveau is blacklisted from the next boot")
  fi
fi

# --- Plan: Secure Boot --------------------------------------------------------------------------

if ((SECURE_BOOT && DRIVER_PLANNED)); then
  if [[ -n "${PREBUILT:-}" ]]; then
    NOTES+=("Secure Boot is on: the driver's modules come prebuilt and signed by Canonical ($PREBUILT); no key to enroll")
  elif [[ -r "$MOK_KEY" ]] && mokutil --test-key "$MOK_KEY" 2>/dev/null | grep -q "already enrolled"; then
    already "Secure Boot key $MOK_KEY (enrolled)"
  elif ((ASSUME_YES)); then
    NOTES+=("Secure Boot is on and the module is built by DKMS: after this run, enroll its key with 'sudo mokutil --import ${MOK_KEY#"$ROOT"}' (it asks for a one-time password)")
    REBOOT_REASONS+=("enroll the Secure Boot key: at the blue MOK Manager screen choose 'Enroll MOK' and type that password")
  else
    add_step "enroll the DKMS signing key for Secure Boot (asks for a one-time password)" mokutil --import "$MOK_KEY"
    REBOOT_REASONS+=("enroll the Secure Boot key: at the blue MOK Manager screen choose 'Enroll MOK' and type the password you just set")
  fi
fi

# --- Plan: CUDA toolkit -------------------------------------------------------------------------

if [[ -n "$TOOLKIT" ]]; then
  MAJOR="${TOOLKIT%%.*}"
  NEEDED=$(compat_map_value cuda_driver_minimum "$MAJOR")
  if [[ -n "$NEEDED" && -n "$DRIVER_BRANCH" ]] && ((DRIVER_BRANCH < ${NEEDED%%.*})); then
    warn "CUDA $TOOLKIT needs driver >= $NEEDED; driver branch $DRIVER_BRANCH is older (pass --driver ${NEEDED%%.*})"
  fi
  for source_file in "$ROOT"/etc/apt/sources.list.d/*; do
    [[ -f "$source_file" ]] || continue
    if grep -q "developer.download.nvidia.com" "$source_file" && ! grep -q "signed-by" "$source_file"; then
      warn "$source_file adds NVIDIA's repository without signed-by (an old apt-key setup); remove it to avoid mixed sources"
    fi
  done
  if dpkg_installed cuda-keyring; then
    already "cuda-keyring (NVIDIA's CUDA apt repository)"
  else
    KEYRING_URL=$(compat_scalar cuda_keyring_url)
    [[ -n "$KEYRING_URL" ]] || die "compat.yaml has no cuda_keyring_url"
    add_step "download NVIDIA's repository keyring package" wget -q -O "$CACHE_DIR/${KEYRING_URL##*/}" "$KEYRING_URL"
    add_step "add NVIDIA's CUDA apt repository (signed-by keyring)" dpkg -i "$CACHE_DIR/${KEYRING_URL##*/}"
    add_step "refresh the package lists" apt-get update
  fi
  TOOLKIT_PACKAGE="cuda-toolkit-${TOOLKIT/./-}"
  if dpkg_installed "$TOOLKIT_PACKAGE"; then
    already "$TOOLKIT_PACKAGE"
  else
    apt_step "install the CUDA $TOOLKIT toolkit (no driver)" "$TOOLKIT_PACKAGE"
    NOTES+=("add the toolkit to your PATH: export PATH=/usr/local/cuda-$TOOLKIT/bin:\$PATH")
  fi
fi

# --- Do -----------------------------------------------------------------------------------------

print_plan
if ((!DRY_RUN)); then run_plan; fi
finish
