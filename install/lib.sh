# shellcheck shell=bash
# Shared by install-cuda.sh and install-rocm.sh: flags, root, the plan of steps, dry-run, the ending.
#
# How a run goes: the script inspects the machine (read-only), adds one step per change it needs
# (`add_step`), then either prints the plan (--dry-run) or confirms and runs it (`run_plan`), and
# ends with `finish` ("Reboot needed: …" only when a step needs it).
#
# Testability: every system path is read through $ROOT (GPUDOCTOR_ROOT, empty on a real machine)
# and every command is looked up on PATH, so tests run the scripts against stand-ins.

ROOT="${GPUDOCTOR_ROOT:-}"
DRY_RUN=0
ASSUME_YES=0
FORCE=0
STEP_DESC=()   # what each step does, for people
STEP_CMD=()    # the command, shell-quoted
REBOOT_REASONS=()
RELOGIN_REASONS=()
STOP_REASONS=()   # why the script refuses; a dry run lists them all at the end instead of stopping
NOTES=()
CACHE_DIR="$ROOT/var/cache/gpudoctor"  # downloads (root-only, unlike /tmp)

say() { printf '%s: %s\n' "$PROG" "$*"; }
warn() { printf '%s: warning: %s\n' "$PROG" "$*" >&2; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }
usage_error() { printf '%s: error: %s (see %s --help)\n' "$PROG" "$*" "$PROG" >&2; exit 2; }
have() { command -v "$1" >/dev/null 2>&1; }

quote_cmd() {
  local word out=()
  for word in "$@"; do
    if [[ "$word" =~ ^[A-Za-z0-9_./:=,+@%-]+$ ]]; then out+=("$word"); else out+=("$(printf '%q' "$word")"); fi
  done
  printf '%s' "${out[*]}"
}

# The one data file (profiles/compat.yaml) beside this folder, in a checkout or inside the wheel.
compat_file() {
  local dir
  for dir in "$SCRIPT_DIR/../profiles" "$SCRIPT_DIR/../_profiles"; do
    if [[ -r "$dir/compat.yaml" ]]; then printf '%s' "$dir/compat.yaml"; return 0; fi
  done
  die "cannot find compat.yaml next to $SCRIPT_DIR; reinstall gpudoctor"
}

# compat_scalar KEY: a top-level `KEY: "value"`.
compat_scalar() {
  sed -n "s/^$1: *\"\\(.*\\)\"$/\\1/p" "$(compat_file)"
}

# compat_entry MAP KEY FIELD: FIELD of the one-line entry `  "KEY": {FIELD: "value"}` under `MAP:`.
compat_entry() {
  awk -v map="$1" -v key="$2" -v field="$3" '
    /^[^ #]/ { inside = ($0 ~ "^" map ":") ; next }
    inside && index($0, "  \"" key "\":") == 1 {
      rest = substr($0, index($0, field ": \"") + length(field) + 3)
      if (index($0, field ": \"")) { print substr(rest, 1, index(rest, "\"") - 1) }
    }' "$(compat_file)"
}

# compat_map_value MAP KEY: the value of `  "KEY": "value"` under `MAP:`.
compat_map_value() {
  awk -v map="$1" -v key="$2" '
    /^[^ #]/ { inside = ($0 ~ "^" map ":"); next }
    inside && index($0, "  \"" key "\": \"") == 1 {
      rest = substr($0, length(key) + 8)
      print substr(rest, 1, index(rest, "\"") - 1)
    }' "$(compat_file)"
}

# compat_list KEY: a one-line `KEY: [a, b]` as "a b".
compat_list() {
  sed -n "s/^$1: *\\[\\(.*\\)\\]$/\\1/p" "$(compat_file)" | tr -d ' ' | tr ',' ' '
}

# add_step DESCRIPTION COMMAND [ARG…]: plan one change.
add_step() {
  local desc="$1"; shift
  STEP_DESC+=("$desc")
  STEP_CMD+=("$(quote_cmd "$@")")
}

already() { say "already installed: $*"; }

# Refuse now, or (in a dry run) remember why we would refuse and keep planning.
refuse() {
  if ((DRY_RUN)); then STOP_REASONS+=("$1"); else die "$1"; fi
}

# The common flags; a script's own flags are handled by its `script_option` function first.
parse_common_flag() {
  case "$1" in
    --dry-run) DRY_RUN=1 ;;
    -y | --yes) ASSUME_YES=1 ;;
    --force) FORCE=1 ;;
    *) return 1 ;;
  esac
}

# Ubuntu 24.04 only, from $ROOT/etc/os-release (--force skips the check).
check_os() {
  local file="$ROOT/etc/os-release" id="" version="" pretty=""
  if [[ -r "$file" ]]; then
    id=$(sed -n 's/^ID=//p' "$file" | tr -d '"')
    version=$(sed -n 's/^VERSION_ID=//p' "$file" | tr -d '"')
    pretty=$(sed -n 's/^PRETTY_NAME=//p' "$file" | tr -d '"')
  fi
  if [[ "$id" == "ubuntu" && "$version" == "24.04" ]]; then
    return 0
  fi
  if ((FORCE)); then
    warn "this is ${pretty:-an unknown system}, not Ubuntu 24.04; going on because of --force"
    return 0
  fi
  refuse "this script supports Ubuntu 24.04 only; this is ${pretty:-an unknown system (no $file)} (--force to try anyway)"
}

# Become root by running this script again through sudo; a dry run needs no root.
ensure_root() {
  ((DRY_RUN)) && return 0
  [[ "$(id -u)" == "0" ]] && return 0
  have sudo || die "run this script as root (sudo is not installed)"
  say "re-running through sudo"
  exec sudo --preserve-env=GPUDOCTOR_ROOT bash "$SCRIPT_PATH" "${ORIGINAL_ARGS[@]}"
}

# The person the groups are for: the user who called sudo, else the current user.
invoking_user() {
  printf '%s' "${SUDO_USER:-${USER:-$(id -un)}}"
}

# dpkg_installed PACKAGE: true when dpkg has it fully installed.
dpkg_installed() {
  local status
  status=$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) || return 1
  [[ "$status" == "install ok installed" ]]
}

dpkg_version() {
  dpkg-query -W -f='${Version}' "$1" 2>/dev/null || true
}

# apt_step DESCRIPTION PACKAGE…: plan an apt-get install (unattended with --yes).
apt_step() {
  local desc="$1"; shift
  if ((ASSUME_YES)); then
    add_step "$desc" env DEBIAN_FRONTEND=noninteractive apt-get install -y "$@"
  else
    add_step "$desc" apt-get install "$@"
  fi
}

# write_root_file PATH TEXT: write a root-owned file atomically (temp file beside it, then rename).
write_root_file() {
  local dest="$1" text="$2" tmp
  mkdir -p "$(dirname "$dest")"
  tmp=$(mktemp "$dest.XXXXXX")
  printf '%s\n' "$text" >"$tmp"
  chmod 644 "$tmp"
  mv -f "$tmp" "$dest"
}


print_plan() {
  local i n=${#STEP_CMD[@]}
  if ((n == 0)); then
    say "nothing to change: everything is already installed"
    return 0
  fi
  say "plan: $n step(s)"
  for ((i = 0; i < n; i++)); do
    say "  $((i + 1)). ${STEP_DESC[i]}"
    if ((DRY_RUN)); then say "     would run: ${STEP_CMD[i]}"; fi
  done
}

confirm() {
  ((ASSUME_YES)) && return 0
  local answer=""
  if [[ ! -t 0 ]]; then
    die "not asking without a terminal; pass --yes to run the plan above unattended"
  fi
  read -r -p "$PROG: run these ${#STEP_CMD[@]} step(s)? [y/N] " answer
  [[ "$answer" == [yY]* ]] || die "stopped; nothing was changed"
}

run_plan() {
  local i n=${#STEP_CMD[@]} code
  ((n == 0)) && return 0
  confirm
  mkdir -p "$CACHE_DIR"
  for ((i = 0; i < n; i++)); do
    say "[$((i + 1))/$n] ${STEP_DESC[i]}"
    say "running: ${STEP_CMD[i]}"
    code=0
    eval "${STEP_CMD[i]}" || code=$?
    ((code == 0)) || die "step $((i + 1)) failed (exit $code): ${STEP_CMD[i]}; nothing after it ran — fix the cause and run this script again (it skips what is done)"
  done
}

finish() {
  local reason note
  for note in "${NOTES[@]}"; do say "note: $note"; done
  if ((DRY_RUN)); then
    if ((${#STOP_REASONS[@]})); then
      for reason in "${STOP_REASONS[@]}"; do say "would stop: $reason"; done
      say "dry run: nothing was changed"
      exit 1
    fi
    for reason in "${RELOGIN_REASONS[@]}"; do say "afterwards: log out and back in: $reason"; done
    for reason in "${REBOOT_REASONS[@]}"; do say "afterwards: reboot needed: $reason"; done
    say "dry run: nothing was changed"
    exit 0
  fi
  for reason in "${RELOGIN_REASONS[@]}"; do say "Log out and back in: $reason"; done
  for reason in "${REBOOT_REASONS[@]}"; do say "Reboot needed: $reason"; done
  if ((${#STEP_CMD[@]} == 0)); then
    say "done: nothing changed"
  else
    say "done: ${#STEP_CMD[@]} step(s) ran"
  fi
  exit 0
}
