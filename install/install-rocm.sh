#!/usr/bin/env bash
# Install AMD ROCm on Ubuntu 24.04 with AMD's amdgpu-install, for a named ROCm release.
#
#   install-rocm.sh [--dry-run] [--yes] [--force] [--rocm X.Y] [--no-dkms] [--user NAME]
#
# Steps, as in AMD's "Quick start installation guide" and "Installation via AMDGPU installer"
# (rocm.docs.amd.com, Ubuntu 24.04 "noble"):
#   1. kernel headers and extra modules for the running kernel (linux-headers-$(uname -r),
#      linux-modules-extra-$(uname -r)), which the amdgpu-dkms driver builds against;
#   2. the amdgpu-install package from repo.radeon.com for the release (it adds AMD's signed apt
#      repositories), then `apt-get update`;
#   3. `amdgpu-install --usecase=rocm` (with the amdgpu-dkms kernel driver unless --no-dkms);
#   4. the invoking user ($SUDO_USER, else $USER, or --user) into the render and video groups,
#      which open /dev/kfd and /dev/dri/renderD*.
# It warns when the GPU's gfx target is not on ROCm's support list (compat.yaml rocm_supported_gfx).
#
# Idempotent: what is installed is detected (dpkg, /opt/rocm/.info/version, group membership) and
# skipped with "already installed: …". --dry-run prints every command it would run.
# Exit codes: 0 ok (or nothing to do), 1 refused or a step failed, 2 usage error.
set -euo pipefail

PROG="install-rocm"
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SCRIPT_PATH="$SCRIPT_DIR/$(basename "${BASH_SOURCE[0]}")"
ORIGINAL_ARGS=("$@")
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$SCRIPT_DIR/lib.sh"

ROCM=""
DKMS=1
TARGET_USER=""

usage() {
  cat <<'EOF'
Usage: install-rocm.sh [--dry-run] [--yes] [--force] [--rocm X.Y] [--no-dkms] [--user NAME]

Installs AMD ROCm on Ubuntu 24.04 through AMD's amdgpu-install and adds you to the render and
video groups.

  --dry-run     print every command it would run; change nothing
  -y, --yes     run unattended (no questions)
  --force       go on even if this is not Ubuntu 24.04
  --rocm X.Y    the ROCm release (default: compat.yaml rocm_default)
  --no-dkms     keep the kernel's own amdgpu driver (no amdgpu-dkms, no reboot)
  --user NAME   the account to add to render and video (default: the one that ran sudo)

Exit codes: 0 ok, 1 refused or failed, 2 usage error.
EOF
}

while (($#)); do
  if parse_common_flag "$1"; then shift; continue; fi
  case "$1" in
    --rocm) [[ $# -ge 2 && "$2" =~ ^[0-9]+\.[0-9]+$ ]] || usage_error "--rocm needs a release such as 6.4"; ROCM="$2"; shift 2 ;;
    --no-dkms) DKMS=0; shift ;;
    --user) [[ $# -ge 2 && -n "$2" ]] || usage_error "--user needs an account name"; TARGET_USER="$2"; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) usage_error "unknown option '$1'" ;;
  esac
done

if [[ -z "$ROCM" ]]; then
  ROCM=$(compat_scalar rocm_default)
fi
INSTALLER=$(compat_entry rocm_releases "$ROCM" installer)
if [[ -z "$INSTALLER" ]]; then
  known=$(awk '/^[^ #]/ { inside = ($0 ~ "^rocm_releases:") ; next } inside && /^  "/ { gsub(/[":]/, "", $1); printf "%s ", $1 }' "$(compat_file)")
  usage_error "ROCm '$ROCM' is not in compat.yaml rocm_releases (known: ${known% })"
fi

# --- Look (read-only) ---------------------------------------------------------------------------

check_os

# AMD display controllers: class 0300 (VGA), 0302 (3D) or 0380 (display).
amd_gpus() {
  lspci -nn -d 1002: | grep -E '\[030[02]\]|\[0380\]' || true
}

GPUS=""
have lspci && GPUS=$(amd_gpus)
if ! have lspci; then
  refuse "cannot look for an AMD GPU: lspci is missing (sudo apt-get install pciutils)"
elif [[ -z "$GPUS" ]]; then
  refuse "no AMD GPU found by lspci; this script installs ROCm for AMD GPUs only (NVIDIA: install-cuda.sh)"
else
  say "AMD GPU(s): $(printf '%s\n' "$GPUS" | sed -n 's/.*\[\(1002:[0-9a-fA-F]\{4\}\)\].*/\1/p' | paste -sd ' ')"
fi

ensure_root

KERNEL=$(uname -r)

# gfx targets from the kernel's KFD topology: gfx_target_version 110000 -> gfx1100, 90010 -> gfx90a.
gfx_targets() {
  local file value
  for file in "$ROOT"/sys/class/kfd/kfd/topology/nodes/*/properties; do
    [[ -r "$file" ]] || continue
    value=$(sed -n 's/^gfx_target_version \([0-9]\+\)$/\1/p' "$file")
    [[ -n "$value" && "$value" != "0" ]] || continue
    printf 'gfx%d%x%x\n' $((value / 10000)) $((value / 100 % 100)) $((value % 100))
  done | sort -u
}

# --- Plan: kernel headers -----------------------------------------------------------------------

if ((DKMS)); then
  MISSING=()
  for package in "linux-headers-$KERNEL" "linux-modules-extra-$KERNEL"; do
    if dpkg_installed "$package"; then already "$package"; else MISSING+=("$package"); fi
  done
  if ((${#MISSING[@]})); then
    apt_step "install the running kernel's headers and extra modules (for amdgpu-dkms)" "${MISSING[@]}"
  fi
fi

# --- Plan: amdgpu-install -----------------------------------------------------------------------

DEB="${INSTALLER##*/}"
WANT_VERSION="${DEB#amdgpu-install_}"
WANT_VERSION="${WANT_VERSION%_all.deb}"
HAVE_VERSION=""
dpkg_installed amdgpu-install && HAVE_VERSION=$(dpkg_version amdgpu-install)
if [[ "$HAVE_VERSION" == "$WANT_VERSION" ]]; then
  already "amdgpu-install $HAVE_VERSION (AMD's repositories for ROCm $ROCM)"
else
  if [[ -n "$HAVE_VERSION" ]]; then
    warn "amdgpu-install $HAVE_VERSION is installed; switching it to $WANT_VERSION for ROCm $ROCM"
  fi
  add_step "download AMD's amdgpu-install for ROCm $ROCM" wget -q -O "$CACHE_DIR/$DEB" "https://repo.radeon.com/amdgpu-install/$INSTALLER"
  if ((ASSUME_YES)); then
    add_step "install amdgpu-install (adds AMD's signed apt repositories)" env DEBIAN_FRONTEND=noninteractive apt-get install -y "$CACHE_DIR/$DEB"
  else
    add_step "install amdgpu-install (adds AMD's signed apt repositories)" apt-get install "$CACHE_DIR/$DEB"
  fi
  add_step "refresh the package lists" apt-get update
fi

# --- Plan: ROCm ---------------------------------------------------------------------------------

ROCM_HAVE=""
[[ -r "$ROOT/opt/rocm/.info/version" ]] && ROCM_HAVE=$(head -n 1 "$ROOT/opt/rocm/.info/version")
if dpkg_installed rocm && [[ "$ROCM_HAVE" == "$ROCM" || "$ROCM_HAVE" == "$ROCM".* ]]; then
  already "ROCm $ROCM_HAVE"
else
  [[ -n "$ROCM_HAVE" ]] && warn "ROCm $ROCM_HAVE is installed; amdgpu-install moves it to $ROCM"
  ARGS=(--usecase=rocm)
  ((ASSUME_YES)) && ARGS=(-y "${ARGS[@]}")
  ((DKMS)) || ARGS+=(--no-dkms)
  add_step "install ROCm $ROCM$( ((DKMS)) && printf ' and the amdgpu-dkms kernel driver')" amdgpu-install "${ARGS[@]}"
  if ((DKMS)); then
    REBOOT_REASONS+=("the amdgpu-dkms kernel driver loads at the next boot")
    if have mokutil && mokutil --sb-state 2>/dev/null | grep -q "SecureBoot enabled"; then
      NOTES+=("Secure Boot is on: amdgpu-dkms modules load only once their signing key is enrolled (the MOK screen at the next boot); or run again with --no-dkms")
    fi
  fi
fi

# --- Plan: render and video groups --------------------------------------------------------------

[[ -n "$TARGET_USER" ]] || TARGET_USER=$(invoking_user)
if [[ "$TARGET_USER" == "root" ]]; then
  NOTES+=("no user to add to the render and video groups: run this through sudo from your account, or pass --user NAME")
else
  GROUPS_HAVE=" $(id -nG "$TARGET_USER" 2>/dev/null || true) "
  if [[ "$GROUPS_HAVE" == *" render "* && "$GROUPS_HAVE" == *" video "* ]]; then
    already "$TARGET_USER in the render and video groups"
  else
    add_step "add $TARGET_USER to the render and video groups (for /dev/kfd and /dev/dri)" usermod -aG render,video "$TARGET_USER"
    RELOGIN_REASONS+=("$TARGET_USER joins the render and video groups at the next login")
  fi
fi

# --- The GPU's gfx target -----------------------------------------------------------------------

SUPPORTED=" $(compat_list rocm_supported_gfx) "
mapfile -t TARGETS < <(gfx_targets)
if ((${#TARGETS[@]} == 0)); then
  NOTES+=("could not read the GPU's gfx target (is the amdgpu driver loaded?); ROCm supports:${SUPPORTED% }")
fi
for target in "${TARGETS[@]}"; do
  if [[ "$SUPPORTED" == *" $target "* ]]; then
    say "GPU target $target is supported by ROCm"
  else
    warn "GPU target $target is not on ROCm's support list (${SUPPORTED# }); PyTorch may not run on it"
  fi
done

# --- Do -----------------------------------------------------------------------------------------

print_plan
if ((!DRY_RUN)); then run_plan; fi
finish
