"""The probe layer: gather facts about the GPU, host and Python environment into SystemFacts.

`probe_system()` runs the NVIDIA, AMD, PCI, host and Python probes at once in threads and
starts the live torch check as soon as it can tell something (torch installed and a GPU seen).
A probe that crashes becomes a line in `SystemFacts.errors`; the others still report.
Nothing here prints, and nothing here imports torch.
"""

from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from gpudoctor.probe import live_cache
from gpudoctor.probe.amd import probe_amd
from gpudoctor.probe.facts import LiveFacts, SystemFacts
from gpudoctor.probe.host import probe_host
from gpudoctor.probe.nvidia import probe_nvidia
from gpudoctor.probe.pci import scan_pci
from gpudoctor.probe.pyenv import probe_python
from gpudoctor.probe.sources import Sources, default_sources

__all__ = ["Sources", "SystemFacts", "default_sources", "probe_system"]


def probe_system(sources: Sources | None = None, *, live: bool = True, output_dir: str | None = None) -> SystemFacts:
    """Everything the doctor needs to know about this machine; never raises for the machine's state.

    Without `sources` it reads `default_sources()`: the real machine outside the test suite.
    """
    sources = sources or default_sources()
    facts = SystemFacts()
    with ThreadPoolExecutor(max_workers=6, thread_name_prefix="gpudoctor-probe") as pool:
        jobs: dict[str, Future[Any]] = {
            "python": pool.submit(probe_python, sources),
            "pci": pool.submit(scan_pci, sources),
            "nvidia": pool.submit(probe_nvidia, sources),
            "amd": pool.submit(probe_amd, sources),
            "host": pool.submit(probe_host, sources, output_dir),
        }
        live_job = _start_live(pool, jobs, sources) if live else None
        results = {name: _result(job, name, facts) for name, job in jobs.items()}

        if results["nvidia"] is not None:
            probe, gpus = results["nvidia"]
            facts.probes.append(probe)
            facts.gpus.extend(gpus)
        if results["amd"] is not None:
            probes, gpus = results["amd"]
            facts.probes.extend(probes)
            facts.gpus.extend(gpus)
        facts.pci_gpus = results["pci"] or []
        if results["host"] is not None:
            facts.host = results["host"]
        if results["python"] is not None:
            facts.python = results["python"]
            if not live:
                facts.python.live = LiveFacts(ran=False, skipped_reason="skipped (--fast)")
            elif isinstance(live_job, Future):
                facts.python.live = _result(live_job, "live", facts)
            else:
                facts.python.live = LiveFacts(ran=False, skipped_reason=live_job)
    return facts


def _start_live(pool: ThreadPoolExecutor, jobs: dict[str, Future[Any]], sources: Sources) -> Future[Any] | str:
    """The live check's future once torch and a GPU are both seen, else why it was not run."""
    python = jobs["python"].exception() is None and jobs["python"].result()
    torch = python.packages.get("torch") if python else None
    if torch is None or not torch.version:
        return "torch is not installed"
    pending = {jobs["pci"], jobs["nvidia"], jobs["amd"]}
    while pending:
        done, pending = wait(pending, return_when=FIRST_COMPLETED)
        if any(_sees_gpu(job, jobs) for job in done):
            return _live_or_remembered(pool, jobs, python, sources)
    return "no GPU was found"


def _live_or_remembered(pool: ThreadPoolExecutor, jobs: dict[str, Future[Any]], python: Any, sources: Sources) -> Future[Any]:
    """Start the live check, unless a passing one for this exact set-up is remembered (sources.live_cache)."""
    if sources.live_cache is None:
        return pool.submit(sources.live, sources.environ, sources.live_timeout)
    wait([jobs["nvidia"], jobs["amd"]])  # the key names the GPUs and their driver: milliseconds
    gpus = [gpu for name in ("nvidia", "amd") if jobs[name].exception() is None for gpu in jobs[name].result()[1]]
    key = live_cache.cache_key(python, gpus, sources.environ)
    remembered = live_cache.load(sources.live_cache, key)
    if remembered is not None:
        done: Future[Any] = Future()
        done.set_result(remembered)
        return done

    def run_and_remember() -> Any:
        result = sources.live(sources.environ, sources.live_timeout)
        live_cache.store(sources.live_cache, key, result)
        return result

    return pool.submit(run_and_remember)


def _sees_gpu(job: Future[Any], jobs: dict[str, Future[Any]]) -> bool:
    if job.exception() is not None:
        return False
    value = job.result()
    if job is jobs["pci"]:
        return any(card.vendor in ("nvidia", "amd") for card in value)
    return bool(value[1])  # (probe(s), gpus)


def _result(job: Future[Any], name: str, facts: SystemFacts) -> Any:
    error = job.exception()
    if error is None:
        return job.result()
    facts.errors.append(f"the {name} probe crashed: {type(error).__name__}: {error}")
    return None
