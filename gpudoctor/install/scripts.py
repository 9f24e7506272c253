"""Run the shell installers (install-cuda.sh, install-rocm.sh) that ship in gpudoctor's install/ folder.

The script's output streams through as it comes; its exit code becomes the command's.
"""

from __future__ import annotations

import codecs
import os
import selectors
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from gpudoctor.errors import ProblemFound
from gpudoctor.resources import install_dir

SCRIPTS = ("install-cuda.sh", "install-rocm.sh")


def script_path(name: str) -> Path:
    if name not in SCRIPTS:
        raise ValueError(f"unknown installer {name}")
    path = install_dir() / name
    if not path.is_file():
        raise ProblemFound(f"{path} is missing; reinstall gpudoctor (pip install --force-reinstall gpudoctor)")
    return path


def bash_path() -> str:
    bash = shutil.which("bash")
    if bash is None:
        raise ProblemFound("bash is not on PATH; the installers are bash scripts (sudo apt-get install bash)")
    return bash


def run_script(name: str, args: Sequence[str]) -> int:
    """Run installer `name` with `args`; return its exit code (0 ok, 1 refused/failed, 2 usage)."""
    argv = [bash_path(), str(script_path(name)), *args]
    if sys.stdout.isatty() and sys.stdin.isatty():
        # A terminal: let apt, debconf and mokutil talk to the user directly.
        return subprocess.call(argv)
    return _copy_output(argv)


def _copy_output(argv: list[str]) -> int:
    """Run `argv`, copying its stdout and stderr to ours as they arrive (prompts without a newline show)."""
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    selector = selectors.DefaultSelector()
    for pipe, target in ((process.stdout, sys.stdout), (process.stderr, sys.stderr)):
        selector.register(pipe, selectors.EVENT_READ, (target, codecs.getincrementaldecoder("utf-8")(errors="replace")))
    while selector.get_map():
        for key, _ in selector.select():
            target, decoder = key.data
            chunk = os.read(key.fd, 4096)
            if not chunk:
                selector.unregister(key.fileobj)
                target.write(decoder.decode(b"", final=True))
                continue
            target.write(decoder.decode(chunk))
            target.flush()
    return process.wait()
