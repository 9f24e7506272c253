"""Everything outside the process that the probe reads, gathered in one swappable dataclass.

The defaults reach the real machine; tests pass stand-ins (a fake NVML module, a fixture folder
as the filesystem root, a recorded command runner) so every probe runs without a GPU.
`default_sources()` is what a probe reads when it is given no Sources: the real machine, unless
GPUDOCTOR_PROBE_SOURCES names another factory (the test suite points it at a recorded machine, so
no test, nor any gpudoctor process a test starts, reads the real host).
"""

from __future__ import annotations

import grp
import importlib
import importlib.metadata
import os
import pwd
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gpudoctor.probe.facts import LiveFacts

# (argv, timeout seconds) -> (return code, stdout, stderr); raises FileNotFoundError for a
# missing tool and TimeoutError when the command overruns.
Runner = Callable[[Sequence[str], float], tuple[int, str, str]]


def run_command(argv: Sequence[str], timeout: float) -> tuple[int, str, str]:
    """Run a short command with C locale output; never prompts, never hangs past `timeout`."""
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, env=env,
            stdin=subprocess.DEVNULL, errors="replace", check=False,
        )
    except subprocess.TimeoutExpired as err:
        raise TimeoutError(f"{argv[0]} did not answer within {timeout:g} s") from err
    except PermissionError as err:
        raise FileNotFoundError(f"{argv[0]} is not executable") from err
    return done.returncode, done.stdout, done.stderr


def import_module(name: str) -> Callable[[], Any]:
    """A loader that imports `name` when called (ImportError and OSError pass to the caller)."""
    return lambda: importlib.import_module(name)


def package_version(name: str) -> str | None:
    """Installed version of distribution `name` from its metadata, None when not installed."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def package_requires(name: str) -> list[str] | None:
    """The distribution's Requires-Dist lines, None when not installed."""
    try:
        return importlib.metadata.requires(name) or []
    except importlib.metadata.PackageNotFoundError:
        return None


def current_user() -> str | None:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return os.environ.get("USER")


def session_groups() -> list[str]:
    """Names of the groups this process runs with (what a device-node permission check sees)."""
    names = []
    for gid in sorted({*os.getgroups(), os.getgid()}):
        try:
            names.append(grp.getgrgid(gid).gr_name)
        except KeyError:
            names.append(str(gid))
    return names


def disk_usage(path: str) -> tuple[int, int]:
    """(total, free) bytes of the filesystem holding `path`."""
    usage = shutil.disk_usage(path)
    return usage.total, usage.free


@dataclass(frozen=True)
class PythonInfo:
    executable: str
    version: str
    in_venv: bool
    env_kind: str | None = None  # "venv" | "conda" | "system"
    externally_managed: bool | None = None
    python_headers: bool | None = None  # Python.h in sysconfig's include folder (python3-dev on Ubuntu)


def python_info() -> PythonInfo:
    import sysconfig

    version = ".".join(str(part) for part in sys.version_info[:3])
    in_venv = sys.prefix != sys.base_prefix
    conda = (Path(sys.prefix) / "conda-meta").is_dir()
    kind = "venv" if in_venv else "conda" if conda else "system"
    # PEP 668: the marker file sits in the stdlib folder; a venv is never externally managed.
    marker = Path(sysconfig.get_path("stdlib")) / "EXTERNALLY-MANAGED"
    # A venv's include path is its base interpreter's: the headers Triton's launcher is compiled against.
    include = sysconfig.get_path("include")
    headers = (Path(include) / "Python.h").is_file() if include else None
    return PythonInfo(sys.executable, version, in_venv, kind, marker.is_file() and not in_venv, headers)


def _default_live(environ: Mapping[str, str], timeout: float) -> LiveFacts:
    from gpudoctor.probe.live import run_live_check

    return run_live_check(environ=environ, timeout=timeout)


@dataclass
class Sources:
    """Where each fact comes from. Paths such as /sys, /proc, /etc, /opt/rocm and /dev are read under `root`."""

    nvml: Callable[[], Any] = field(default=import_module("pynvml"))
    amdsmi: Callable[[], Any] = field(default=import_module("amdsmi"))
    root: Path = Path("/")
    run: Runner = run_command
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    package_version: Callable[[str], str | None] = package_version
    package_requires: Callable[[str], list[str] | None] = package_requires
    live: Callable[[Mapping[str, str], float], LiveFacts] = _default_live
    user: Callable[[], str | None] = current_user
    groups: Callable[[], list[str]] = session_groups
    disk_usage: Callable[[str], tuple[int, int]] = disk_usage
    access: Callable[[str, int], bool] = os.access
    python: Callable[[], PythonInfo] = python_info
    cwd: Callable[[], str] = os.getcwd
    command_timeout: float = 3.0
    live_timeout: float = 20.0
    live_cache: Path | None = None  # where a passing live check is remembered; None: not remembered

    def path(self, absolute: str) -> Path:
        """`absolute` ("/sys/class/drm") as seen under this root."""
        return self.root / absolute.lstrip("/")


# "module:function": a factory returning the Sources to use instead of the real machine's (a test hook).
SOURCES_VARIABLE = "GPUDOCTOR_PROBE_SOURCES"


def default_sources(**changes: Any) -> Sources:
    """The Sources of a probe that was given none (`changes` replace fields, e.g. live_cache=…).

    The real machine, unless $GPUDOCTOR_PROBE_SOURCES names a factory; a name that cannot be
    loaded raises rather than falling back to the real machine.
    """
    spec = os.environ.get(SOURCES_VARIABLE)
    sources = _load_factory(spec)() if spec else Sources()
    return replace(sources, **changes) if changes else sources


def _load_factory(spec: str) -> Callable[[], Sources]:
    module, _, name = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise RuntimeError(f"{SOURCES_VARIABLE}={spec}: cannot load that factory ({err}); expected module:function") from err
    return factory
