"""Remember a passing live check, so `gpudoctor check` on a healthy GPU box answers in well under a second.

The live check imports torch in a child process (3–10 s on a GPU machine). Its answer only changes
when the interpreter, its packages (torch, bitsandbytes, the training libraries), the GPUs or their
driver, or the variables that steer them (host.GPU_ENV_VARIABLES, the one list) change, so a *passing* result is kept under a key made of exactly those, for a day. A failing
result is never kept: after a fix (a new group, a reboot) the next check looks again.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path

from gpudoctor.atomic import write_json
from gpudoctor.probe.facts import GpuFacts, LiveFacts, PythonFacts
from gpudoctor.probe.host import GPU_ENV_VARIABLES
from gpudoctor.resources import gpudoctor_cache_dir

TTL_SECONDS = 24 * 3600


def default_cache_file(environ: Mapping[str, str]) -> Path:
    return gpudoctor_cache_dir(environ) / "live-check.json"


def cache_key(python: PythonFacts, gpus: list[GpuFacts], environ: Mapping[str, str]) -> str:
    """A digest of everything the live check's answer depends on."""
    packages = {name: (facts.version, facts.flavour) for name, facts in sorted(python.packages.items())}
    cards = sorted((g.vendor, g.name, g.pci_bus_id, g.driver_version, g.cuda_driver_version, g.gfx_target) for g in gpus)
    steering = {name: environ.get(name) for name in GPU_ENV_VARIABLES}
    document = json.dumps([python.executable, python.version, packages, cards, steering], sort_keys=True, default=str)
    return hashlib.sha256(document.encode("utf-8")).hexdigest()


def passed(live: LiveFacts) -> bool:
    """Only a clean pass is worth remembering: a child killed by a signal, or a training library that
    would not import, is looked at again next time."""
    return live.ran and not live.timed_out and live.gpu_available is True and live.bnb_4bit_ok is True and not (
        live.torch_error or live.bnb_error or live.bnb_4bit_error or live.gpu_error or live.error
        or live.signal or live.import_errors
    )


def load(path: Path, key: str, now: float | None = None) -> LiveFacts | None:
    """The remembered pass for `key`, younger than TTL_SECONDS, else None (a broken file is a miss)."""
    now = time.time() if now is None else now
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        if document["key"] != key or not 0 <= now - float(document["saved_at"]) <= TTL_SECONDS:
            return None
        live = LiveFacts(**document["live"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    live.cached_at = time.strftime("%Y-%m-%d %H:%M", time.localtime(float(document["saved_at"])))
    return live


def store(path: Path, key: str, live: LiveFacts, now: float | None = None) -> None:
    """Keep `live` if it passed; a cache that cannot be written is simply not kept."""
    if not passed(live):
        return
    try:
        write_json(path, {"key": key, "saved_at": time.time() if now is None else now, "live": asdict(live)})
    except OSError:
        pass
