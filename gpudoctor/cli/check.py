"""`gpudoctor check`: probe this machine, run the doctor, print flutter-doctor style rows or JSON.

Rows are [✓] ok, [!] warning, [✗] error (blocks training) and [☠] a check that crashed (a gpudoctor
bug: that part went unjudged; it does not block training, but the summary says so).
Exit 0 when ready to train with every check run, 1 when an error blocks training or a check crashed,
2 for usage errors. Only typer is imported at module level: the probe, the doctor and rich load when
the command runs.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from gpudoctor.doctor import CategoryResult, Diagnosis, Finding
    from gpudoctor.doctor.registry import Check
    from gpudoctor.probe.facts import SystemFacts

MARK = {"ok": "✓", "warning": "!", "crash": "☠", "error": "✗"}  # flutter doctor's boxes, [☠] its crash
BULLET = {"ok": "•", "warning": "!", "crash": "☠", "error": "✗"}
STYLE = {"ok": "green", "warning": "yellow", "crash": "magenta", "error": "red"}
INDENT = "    "
FIX_LABEL = "fix: "
# Keys of the --json document that are the doctor's judgement, not facts: --facts reads past them.
JUDGEMENT_KEYS = ("version", "ready", "findings")
# Distributions worth naming in a bug report, in this order.
REPORT_PACKAGES = ("torch", "bitsandbytes", "transformers", "peft", "accelerate", "datasets", "nvidia-ml-py", "amdsmi")


def register(app: typer.Typer) -> None:
    app.command("check", help="Check this machine for training: GPU, driver, torch, bitsandbytes, host, disk.")(check)


def check(
    as_json: bool = typer.Option(False, "--json", help="Print facts and findings as JSON (stable keys)."),
    verbose: bool = typer.Option(False, "-v", "--verbose", help="Also list the checks that passed, with details."),
    report: bool = typer.Option(False, "--report", help="Print a paste-ready block for a bug report."),
    fast: bool = typer.Option(False, "--fast", help="Skip the live torch/bitsandbytes subprocess check."),
    refresh: bool = typer.Option(False, "--refresh", help="Run the live check even if a pass for this set-up is remembered."),
    output_dir: Path = typer.Option(Path("."), "--output-dir", help="Where training will write (its free disk is checked)."),
    list_checks: bool = typer.Option(False, "--list-checks", help="List the checks' ids and exit."),
    only: str | None = typer.Option(None, "--only", metavar="ID", help="Run just the check ID (see --list-checks)."),
    facts_file: Path | None = typer.Option(
        None, "--facts", metavar="FILE", help="Judge facts saved by 'check --json' (e.g. on another machine) instead of probing."
    ),
) -> None:
    from gpudoctor.doctor import all_checks, diagnose
    from gpudoctor.errors import BadInput, EXIT_PROBLEM

    if as_json and report:
        raise BadInput("--json and --report print different things; pick one")
    if list_checks:
        _print_check_list(all_checks())
        return
    facts = _load_facts(facts_file) if facts_file is not None else _probe(fast=fast, refresh=refresh, output_dir=output_dir)
    diagnosis = diagnose(facts, only=only)
    if as_json:
        from gpudoctor.cli.output import print_json

        print_json(json.dumps(json_document(facts, diagnosis), indent=2, ensure_ascii=False))
    elif report:
        import sys

        sys.stdout.write(report_block(facts, diagnosis))
    else:
        from gpudoctor.cli.output import console

        render(console(), diagnosis, verbose=verbose)
    if not diagnosis.ready or diagnosis.crashes:
        raise typer.Exit(EXIT_PROBLEM)


def _probe(*, fast: bool, refresh: bool, output_dir: Path) -> SystemFacts:
    import os

    from gpudoctor.probe import default_sources, probe_system
    from gpudoctor.probe.facts import SystemFacts
    from gpudoctor.probe.live_cache import default_cache_file

    sources = default_sources(live_cache=None if refresh else default_cache_file(os.environ))
    try:
        return probe_system(sources=sources, live=not fast, output_dir=str(output_dir))
    except Exception as err:  # noqa: BLE001 - the probe promises not to raise; if it does, say so as a finding
        return SystemFacts(errors=[f"the probe crashed: {type(err).__name__}: {err}"])


def _load_facts(path: Path) -> SystemFacts:
    from gpudoctor.errors import BadInput
    from gpudoctor.probe.facts import SystemFacts

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise BadInput(f"--facts {path}: cannot read it ({err.strerror or err}); save one with 'gpudoctor check --json > FILE'") from err
    except json.JSONDecodeError as err:
        raise BadInput(f"--facts {path}: not JSON (line {err.lineno}: {err.msg}); save one with 'gpudoctor check --json > FILE'") from err
    if not isinstance(data, dict) or not isinstance(data.get("host", {}), dict):
        raise BadInput(f"--facts {path}: expected the object 'gpudoctor check --json' prints")
    facts = {key: value for key, value in data.items() if key not in JUDGEMENT_KEYS}
    try:
        return SystemFacts.from_dict(facts)
    except (TypeError, ValueError, AttributeError) as err:
        raise BadInput(f"--facts {path}: does not hold gpudoctor facts ({err})") from err


def json_document(facts: SystemFacts, diagnosis: Diagnosis) -> dict[str, Any]:
    """The `--json` object: version and readiness, the facts (as SystemFacts.to_dict) and the findings."""
    from gpudoctor import __version__

    return {
        "version": __version__,
        "ready": diagnosis.ready,
        **facts.to_dict(),
        "findings": [finding.to_dict() for finding in diagnosis.findings],
    }


def render(out: Console, diagnosis: Diagnosis, *, verbose: bool) -> None:
    """flutter doctor's layout: a [✓]/[!]/[✗]/[☠] row per category, problems and fixes under it, a summary."""
    out.print("gpudoctor check (sizes in GiB = 1024³ bytes)", highlight=False)
    for category in diagnosis.categories:
        _render_row(out, category)
        for finding in category.findings if verbose else category.problems:
            _render_finding(out, finding)
    out.print()
    out.print(summary_line(diagnosis), style=_summary_style(diagnosis), highlight=False)


def _render_row(out: Console, category: CategoryResult) -> None:
    """'[✓] GPU: <headline>', wrapped with later lines indented; only the mark is coloured."""
    from rich.text import Text

    mark = f"[{MARK[category.status]}]"
    label = f" {category.name}" + (f": {category.headline}" if category.headline else "")
    lines = _wrap(mark + label, max(out.width, 40), INDENT)
    row = Text(mark, style=STYLE[category.status])
    row.append(lines[0][len(mark):])
    out.print(row, soft_wrap=True)
    for line in lines[1:]:
        out.print(Text(line), soft_wrap=True)


def _render_finding(out: Console, finding: Finding) -> None:
    from rich.text import Text

    width = max(out.width, 40)
    title = _wrap(finding.title, width - len(INDENT) - 2)
    first = Text(INDENT)
    first.append(BULLET[finding.status], style=STYLE[finding.status])
    first.append(f" {title[0]}")
    out.print(first, soft_wrap=True)
    for line in title[1:]:
        out.print(Text(f"{INDENT}  {line}"), soft_wrap=True)
    for line in _wrap(finding.detail, width - len(INDENT) - 2) if finding.detail else []:
        out.print(Text(f"{INDENT}  {line}", style="dim"), soft_wrap=True)
    # Commands are printed unwrapped so they copy and paste whole.
    for number, line in enumerate((finding.fix or "").splitlines()):
        label = FIX_LABEL if number == 0 else " " * len(FIX_LABEL)
        out.print(Text(f"{INDENT}  {label}{line}"), soft_wrap=True)


def _wrap(text: str, width: int, indent: str = "") -> list[str]:
    """Wrap at spaces only (paths and package names stay whole); later lines get `indent`."""
    return textwrap.wrap(text, width, subsequent_indent=indent, break_on_hyphens=False, break_long_words=False) or [""]


def summary_line(diagnosis: Diagnosis) -> str:
    """'✗ 3 issues found: 1 error, 1 warning, 1 check crashed — not ready to train'."""
    errors, warnings, crashes = len(diagnosis.errors), len(diagnosis.warnings), len(diagnosis.crashes)
    issues = errors + warnings + crashes
    if issues == 0:
        return "✓ No issues found — ready to train"
    counts = [_count(errors, "error", "errors"), _count(warnings, "warning", "warnings"),
              _count(crashes, "check crashed", "checks crashed")]
    if errors:
        verdict = "not ready to train"
    elif crashes:
        verdict = "ready to train as far as the other checks tell"
    else:
        verdict = "ready to train"
    return f"{MARK[_summary_status(diagnosis)]} {_count(issues, 'issue', 'issues')} found: {', '.join(c for c in counts if c)} — {verdict}"


def _count(number: int, one: str, many: str) -> str:
    """'1 error', '2 errors', '' for none."""
    return "" if number == 0 else f"{number} {one if number == 1 else many}"


def _summary_status(diagnosis: Diagnosis) -> str:
    """The summary's mark: an error outranks a crashed check, which outranks a warning."""
    if diagnosis.errors:
        return "error"
    if diagnosis.crashes:
        return "crash"
    return "warning" if diagnosis.warnings else "ok"


def _summary_style(diagnosis: Diagnosis) -> str:
    return STYLE[_summary_status(diagnosis)]


def _print_check_list(checks: list[Check]) -> None:
    from gpudoctor.cli.output import console

    out = console()
    width = max(len(c.id) for c in checks)
    for spec in checks:
        out.print(f"{spec.id:<{width}}  {spec.category:<12}  {spec.summary}", highlight=False, soft_wrap=True)


def report_block(facts: SystemFacts, diagnosis: Diagnosis) -> str:
    """A fenced text block for bug reports: versions, GPUs, host and findings, home folder shown as ~."""
    from gpudoctor import __version__

    lines = [
        f"gpudoctor {__version__} check report",
        _readiness_line(diagnosis),
        *_host_lines(facts),
        *_gpu_lines(facts),
        *_driver_lines(facts),
        *_python_lines(facts),
        *_finding_lines(diagnosis),
    ]
    text = "\n".join(lines)
    user = facts.host.user
    if user:
        text = text.replace(f"/home/{user}/", "~/").replace(f"/home/{user}", "~")
    return f"```text\n{text}\n```\n"


def _known(value: object) -> str:
    """'?' for unknown, yes/no for booleans, else the value."""
    return "?" if value is None else ("yes" if value is True else "no" if value is False else str(value))


def _size(value: int | None) -> str:
    from gpudoctor.doctor.units import gib

    return gib(value) if value is not None else "?"


def _readiness_line(diagnosis: Diagnosis) -> str:
    crashed = f", {_count(len(diagnosis.crashes), 'crashed check', 'crashed checks')}" if diagnosis.crashes else ""
    return f"ready to train: {_known(diagnosis.ready)} ({len(diagnosis.errors)} errors, {len(diagnosis.warnings)} warnings{crashed})"


def _host_lines(facts: SystemFacts) -> list[str]:
    host = facts.host
    return [
        f"os: {host.os_pretty or '?'}, kernel {host.kernel or '?'}, WSL: {_known(host.is_wsl)}, Secure Boot: {_known(host.secure_boot)}",
        f"cpu: {host.cpu_model or '?'} ({host.cpu_count or '?'} CPUs), RAM {_size(host.ram_total_bytes)}, "
        f"swap {_size(host.swap_total_bytes)}, /dev/shm {_size(host.shm_total_bytes)}",
    ]


def _gpu_lines(facts: SystemFacts) -> list[str]:
    """One line per probed GPU, per card on the PCI bus and per probe (how it answered)."""
    from gpudoctor.doctor.diagnosis import gpu_line

    lines = []
    for gpu in facts.gpus:
        extra = [f"compute {gpu.compute_capability}" if gpu.compute_capability else None]
        if gpu.pcie_width:
            extra.append(f"PCIe gen{gpu.pcie_gen or '?'} x{gpu.pcie_width} (max gen{gpu.pcie_max_gen or '?'} x{gpu.pcie_max_width or '?'})")
        extra.append(f"bus {gpu.pci_bus_id}" if gpu.pci_bus_id else None)
        extra.append(f"used {_size(gpu.used_bytes)}" if gpu.used_bytes is not None else None)
        lines.append(f"gpu {gpu.index}: {gpu_line(gpu)}; " + ", ".join(e for e in extra if e) + f" [{gpu.source}]")
    for card in facts.pci_gpus:
        lines.append(f"pci {card.bus_id}: {card.vendor} {card.vendor_id}:{card.device_id} rev {card.revision or '?'}, driver {card.driver or 'none'}")
    for probe in facts.probes:
        status = f"{probe.status}, {probe.device_count} device(s)" + (f": {probe.error}" if probe.error else "")
        lines.append(f"probe {probe.vendor}/{probe.source}: {status}")
    return lines


def _driver_lines(facts: SystemFacts) -> list[str]:
    host = facts.host
    lines = [
        f"drivers: nvidia module {host.nvidia_module_version or '-'} (signed: {_known(host.nvidia_module_signed)}), "
        f"amdgpu {host.amdgpu_version or '-'}, ROCm {host.rocm_version or '-'}, CUDA toolkit {host.cuda_toolkit_version or '-'}"
    ]
    if host.user_groups:
        pending = f" (pending: {', '.join(host.user_groups_pending)})" if host.user_groups_pending else ""
        kfd = _known(host.kfd_accessible) if host.kfd_exists else "missing"
        lines.append(f"groups: {', '.join(host.user_groups)}{pending}; /dev/kfd: {kfd}")
    return lines


def _python_lines(facts: SystemFacts) -> list[str]:
    """The interpreter, the packages worth naming, the live check and any probe errors."""
    python = facts.python
    packages = [
        f"{name} {python.packages[name].version}"
        for name in REPORT_PACKAGES
        if name in python.packages and python.packages[name].version
    ]
    return [
        f"python: {python.version or '?'} {'(venv) ' if python.in_venv else ''}{python.executable or '?'}",
        f"packages: {', '.join(packages) or 'none of ' + ', '.join(REPORT_PACKAGES[:3])}",
        _live_line(facts),
        *_live_failure_lines(facts),
        *(f"probe error: {problem}" for problem in [*facts.errors, *facts.host.errors]),
    ]


def _live_failure_lines(facts: SystemFacts) -> list[str]:
    """The signal that killed the live check and the end of its stderr, and the libraries that failed to import."""
    live = facts.python.live
    if live is None or not live.ran:
        return []
    lines = [f"import {name} failed: {message.strip().splitlines()[0] if message.strip() else '?'}"
             for name, message in sorted(live.import_errors.items())]
    tail = [line.rstrip() for line in (live.stderr_tail or "").splitlines() if line.strip()]
    if live.signal:
        lines.append(f"live check killed by {live.signal}" + ("; its stderr ended:" if tail else " (no stderr)"))
    elif tail:
        lines.append("live check stderr ended:")
    return lines + [f"  | {line}" for line in tail]


def _finding_lines(diagnosis: Diagnosis) -> list[str]:
    problems = [f for f in diagnosis.findings if f.is_problem]
    return ["findings:", *(f"  [{MARK[f.status]}] {f.id}: {f.title}" for f in problems)] + ([] if problems else ["  none"])


def _live_line(facts: SystemFacts) -> str:
    live = facts.python.live
    if live is None or not live.ran:
        return f"live check: skipped ({live.skipped_reason if live and live.skipped_reason else 'not run'})"
    if live.torch_error:
        return f"live check: import torch failed: {live.torch_error}"
    parts = [
        f"torch {live.torch_version}",
        f"CUDA {live.cuda_version}" if live.cuda_version else None,
        f"HIP {live.hip_version}" if live.hip_version else None,
        f"GPU available: {'yes' if live.gpu_available else 'no'}"
        + (f" ({live.device_count} x {live.device_name})" if live.gpu_available else "")
        + (f" [{live.gpu_error}]" if live.gpu_error else ""),
        f"bf16: {'yes' if live.bf16_supported else 'no'}" if live.bf16_supported is not None else None,
        f"bitsandbytes {live.bnb_version}" if live.bnb_version else (f"bitsandbytes: {live.bnb_error}" if live.bnb_error else None),
        f"4-bit: {'ok' if live.bnb_4bit_ok else live.bnb_4bit_error or 'failed'}" if live.bnb_4bit_ok is not None else None,
        "timed out" if live.timed_out else None,
        f"{live.duration_s:.1f} s" if live.duration_s is not None else None,
        f"remembered from {live.cached_at}" if live.cached_at else None,
    ]
    return "live check: " + ", ".join(p for p in parts if p)
