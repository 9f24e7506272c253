"""Imports point down the layers: facts (probe) → judgements (doctor) → decisions (plan) → actions
(train, install) → the CLI, with the shared vocabulary (settings, types, profiles, …) at the bottom.

Every import in every module counts, also those inside functions (they run all the same).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "gpudoctor"

BASE = {"__init__", "errors", "types", "settings", "convert", "atomic", "resources", "compat", "profiles"}
# layer -> the layers it may import (besides itself)
ALLOWED = {
    "base": set(),
    "assets": {"base"},  # gpudoctor/demo: the scripts that built the shipped demo files
    "probe": {"base"},
    "doctor": {"base", "probe"},
    "data": {"base"},
    "plan": {"base", "probe", "doctor", "data"},
    "install": {"base", "probe", "doctor"},
    "train": {"base", "probe", "doctor", "data", "plan"},
    "cli": {"base", "probe", "doctor", "data", "plan", "install", "train", "assets"},
}
FOLDER_LAYER = {"demo": "assets"}


def layer_of(module: str) -> str:
    """'gpudoctor.plan.memory' -> 'plan'; 'gpudoctor.settings' -> 'base'; 'gpudoctor.__main__' -> 'cli'."""
    parts = module.split(".")
    if len(parts) == 1:
        return "base"
    head = parts[1]
    if head == "__main__":
        return "cli"
    if head in BASE:
        return "base"
    return FOLDER_LAYER.get(head, head)


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def imported(tree: ast.AST, module: str) -> list[tuple[int, str]]:
    """(line, gpudoctor module) for every import statement in the file, relative ones resolved."""
    found = []
    package = module if module.endswith("__init__") else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.split(".")[0] == "gpudoctor"]
        elif isinstance(node, ast.ImportFrom):
            name = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([name] if name else []))
            if name.split(".")[0] == "gpudoctor":
                if name == "gpudoctor":  # from gpudoctor import settings -> gpudoctor.settings; __version__ stays
                    found += [(node.lineno, _submodule(alias.name)) for alias in node.names]
                else:
                    found.append((node.lineno, name))
    return found


def _submodule(name: str) -> str:
    is_module = (PACKAGE / f"{name}.py").is_file() or (PACKAGE / name).is_dir()
    return f"gpudoctor.{name}" if is_module else "gpudoctor"


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer():
    layers = {layer_of(module_name(path)) for path in MODULES}
    assert layers <= set(ALLOWED), layers - set(ALLOWED)
    assert set(ALLOWED) - {"assets"} <= layers  # every layer is populated, so the test below bites


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_imports_point_down(layer):
    wrong = []
    for path in MODULES:
        module = module_name(path)
        if layer_of(module) != layer:
            continue
        for line, target in imported(ast.parse(path.read_text(encoding="utf-8")), module):
            target_layer = layer_of(target)
            if target_layer != layer and target_layer not in ALLOWED[layer]:
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {target} ({target_layer})")
    assert not wrong, "\n".join(wrong)


def test_the_checker_sees_a_violation(tmp_path):
    """The test above can fail: an upward import inside a function is found."""
    tree = ast.parse("def f():\n    from gpudoctor.cli.output import console\n")
    targets = imported(tree, "gpudoctor.train.run")
    assert [layer_of(t) for _, t in targets] == ["cli"]
    assert "cli" not in ALLOWED["train"]
