"""The real-failure case bank (tests/doctor/cases/*.yaml): load a case, build the facts the doctor
would see on that machine, and grade what the doctor says about it.

Facts: a case's `facts` (a partial SystemFacts in its `to_dict` form) are deep-merged over a healthy
box of the same vendor (doctor_facts.nvidia_box / amd_box, plus healthy values for the fields that
box predates: a C compiler, Python and kernel headers, a venv). Dicts merge key by key; a list or a
scalar in the case replaces the baseline's (`gpus: []` means no GPU), and so does each package
record under `python.packages`. Consistency rules keep the baseline from contradicting a case: the
/dev/nvidia* nodes follow the loaded modules unless the case lists `host.device_nodes`,
`python.in_venv` follows a case's `python.env_kind`, and a case that names its OS drops the
baseline's `os_pretty` (and, for another distribution, its `os_version`).

Grade (one case, the doctor's findings): only problem findings count (error, warning, crash).
- fix given: every `fix_keywords` entry occurs (case-insensitively) in some problem finding's fix,
  and no problem finding's fix is one of the case's `wrong_fixes` (matched by `wrong_fix_signs`).
- cause named: one problem finding's title + detail holds every `cause_keywords` entry
  ("a|b" accepts either alternative).
- not ready: an error finding exists (the doctor does not say "ready to train").
A case is diagnosed when the cause is named and the fix given.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from doctor_facts import amd_box, nvidia_box

from gpudoctor.doctor.finding import STATUSES, Finding
from gpudoctor.probe.facts import SystemFacts

CASES_DIR = Path(__file__).resolve().parent / "cases"
# dev: tune on it; holdout: set aside first, already measured; fresh: gathered later, measured once at the end.
SPLITS = ("dev", "holdout", "fresh")
PROBLEM = ("error", "warning", "crash")

REQUIRED_KEYS = (
    "id", "split", "mode", "source", "quote", "reported", "cause", "fix", "fix_keywords", "wrong_fixes",
    "cause_keywords", "wrong_fix_signs", "blocks_training", "facts", "confidence",
)
OPTIONAL_KEYS = ("visible", "why_not_visible", "new_facts")

# Healthy values for fields the doctor_facts boxes do not set (they predate them).
HEALTHY_EXTRAS: dict[str, Any] = {
    "host": {"c_compiler": "/usr/bin/gcc", "kernel_headers": True},
    "python": {"env_kind": "venv", "externally_managed": False, "python_headers": True},
}

# /dev nodes a loaded NVIDIA module gives (nvidia0 … one per GPU).
MODULE_NODES = {"nvidia_uvm": ["nvidia-uvm", "nvidia-uvm-tools"], "nvidia_modeset": ["nvidia-modeset"]}


@dataclass
class Case:
    id: str
    split: str
    mode: str
    fix_keywords: list[str]
    wrong_fixes: list[str]
    wrong_fix_signs: list[dict[str, list[str]]]
    cause_keywords: list[str]
    blocks_training: bool
    visible: bool
    facts: dict[str, Any]
    raw: dict[str, Any] = field(repr=False)

    @property
    def vendor(self) -> str:
        return case_vendor(self.facts)


@dataclass
class Grade:
    case: Case
    findings: list[Finding]
    missing_keywords: list[str]
    wrong_fixes_given: list[tuple[str, str]]  # (wrong fix, the finding id that gave it)
    cause_named: bool

    @property
    def fix_given(self) -> bool:
        return not self.missing_keywords and not self.wrong_fixes_given

    @property
    def diagnosed(self) -> bool:
        return self.cause_named and self.fix_given

    @property
    def passes(self) -> bool:
        """What test_cases.py asserts: the fix given, and not "ready to train" where the failure blocks training."""
        return self.fix_given and not (self.case.blocks_training and self.ready)

    @property
    def ready(self) -> bool:
        return not any(f.status == "error" for f in self.findings)

    @property
    def top(self) -> Finding | None:
        """The doctor's most severe problem finding (the first of that severity), None when it found none."""
        found = problems(self.findings)
        return max(found, key=lambda f: STATUSES.index(f.status), default=None)


def load_cases(splits: tuple[str, ...] = SPLITS, visible_only: bool = False) -> list[Case]:
    """Every case in the bank of the given splits, by id."""
    cases = [load_case(path) for path in sorted(CASES_DIR.glob("*.yaml"))]
    return [c for c in cases if c.split in splits and (c.visible or not visible_only)]


def load_case(path: Path) -> Case:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    return Case(
        id=raw["id"],
        split=raw["split"],
        mode=raw["mode"],
        fix_keywords=list(raw["fix_keywords"]),
        wrong_fixes=list(raw["wrong_fixes"]),
        wrong_fix_signs=list(raw.get("wrong_fix_signs") or []),
        cause_keywords=list(raw.get("cause_keywords") or []),
        blocks_training=bool(raw.get("blocks_training", True)),
        visible=bool(raw.get("visible", True)),
        facts=raw.get("facts") or {},
        raw=raw,
    )


def case_vendor(facts: dict[str, Any]) -> str:
    """'amd' when the case's cards, probes or loaded modules are AMD's, else 'nvidia'."""
    items = [*facts.get("gpus", []), *facts.get("pci_gpus", []), *facts.get("probes", [])]
    if any(item.get("vendor") == "amd" for item in items):
        return "amd"
    return "amd" if "amdgpu" in facts.get("host", {}).get("loaded_modules", []) else "nvidia"


def baseline(vendor: str) -> dict[str, Any]:
    """A healthy box of `vendor` in to_dict form, with healthy values for the newer fields."""
    box = amd_box() if vendor == "amd" else nvidia_box()
    return deep_merge(box.to_dict(), HEALTHY_EXTRAS)


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` on top of `base`: dicts merge key by key, anything else in `over` replaces."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def facts_dict(case: Case) -> dict[str, Any]:
    """The case's facts over the healthy baseline of its vendor, made consistent (see the module docstring)."""
    merged = deep_merge(baseline(case.vendor), case.facts)
    host, python = merged["host"], merged["python"]
    for name, package in case.facts.get("python", {}).get("packages", {}).items():
        python["packages"][name] = copy.deepcopy(package)  # a package is one record: the case's replaces the baseline's
    case_host = case.facts.get("host", {})
    if "device_nodes" not in case_host:
        host["device_nodes"] = nvidia_nodes(host["loaded_modules"], merged["gpus"])
    if ("os_id" in case_host or "os_version" in case_host) and "os_pretty" not in case_host:
        host["os_pretty"] = None  # the baseline's "Ubuntu 24.04.2 LTS" would name another system
    if case_host.get("os_id", "ubuntu") != "ubuntu" and "os_version" not in case_host:
        host["os_version"] = None  # nor is another distribution at release 24.04
    if "env_kind" in case.facts.get("python", {}) and "in_venv" not in case.facts["python"]:
        python["in_venv"] = python["env_kind"] == "venv"
    return merged


def nvidia_nodes(modules: list[str], gpus: list[dict[str, Any]]) -> list[str]:
    """The /dev/nvidia* nodes the loaded NVIDIA modules give."""
    if "nvidia" not in modules:
        return []
    count = max(1, sum(1 for g in gpus if g.get("vendor") == "nvidia"))
    nodes = [f"nvidia{i}" for i in range(count)] + ["nvidiactl"]
    return nodes + [node for module, extra in MODULE_NODES.items() if module in modules for node in extra]


def system_facts(case: Case) -> SystemFacts:
    """The SystemFacts of the case (through the strict converter: an unknown key is an error)."""
    return SystemFacts.from_dict(facts_dict(case), source=f"tests/doctor/cases/{case.id}.yaml")


def problems(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.status in PROBLEM]


def mentions(text: str, keyword: str) -> bool:
    """`keyword` ("a|b": either alternative) occurs in `text`, ignoring case."""
    lowered = text.lower()
    return any(alternative.strip().lower() in lowered for alternative in keyword.split("|"))


def is_wrong_fix(fix: str, sign: dict[str, list[str]]) -> bool:
    """The fix text matches a wrong fix's sign: it holds every `has` entry and no `lacks` entry."""
    return all(mentions(fix, k) for k in sign.get("has", [])) and not any(mentions(fix, k) for k in sign.get("lacks", []))


def grade(case: Case, findings: list[Finding]) -> Grade:
    found = problems(findings)
    fixes = "\n".join(f.fix or "" for f in found).lower()
    missing = [k for k in case.fix_keywords if not mentions(fixes, k)]
    wrong = [
        (text, f.id)
        for text, sign in zip(case.wrong_fixes, case.wrong_fix_signs)
        for f in found
        if f.fix and is_wrong_fix(f.fix, sign)
    ]
    named = any(all(mentions(f"{f.title}\n{f.detail}", k) for k in case.cause_keywords) for f in found)
    return Grade(case, findings, missing, wrong, named)
