"""The launcher's code stays readable: every module says what it is for, no function runs past 60 lines."""

from __future__ import annotations

import ast
from pathlib import Path

TRAIN = Path(__file__).resolve().parents[2] / "gpudoctor" / "train"
LONGEST = 60


def test_every_module_has_a_docstring_and_short_functions():
    problems = []
    for path in sorted(TRAIN.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if not ast.get_docstring(tree):
            problems.append(f"{path.name}: no module docstring")
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > LONGEST:
                problems.append(f"{path.name}:{node.lineno} {node.name} is {node.end_lineno - node.lineno + 1} lines")
    assert not problems, "\n".join(problems)
