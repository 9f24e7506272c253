"""Readable code: every module in gpudoctor/ opens with a docstring saying what it is for, and no
function is longer than LIMIT lines unless its docstring says why.

A function's length counts from its `def` to its last line, docstring included. A long one passes
only when its docstring holds the words "long because", with the reason.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "gpudoctor"
LIMIT = 60


def long_functions(source: str) -> list[tuple[str, int, int]]:
    """(name, first line, length) of every function over LIMIT lines without a stated reason."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            reason = "long because" in (ast.get_docstring(node) or "").lower()
            if length > LIMIT and not reason:
                out.append((node.name, node.lineno, length))
    return out


def test_no_function_is_too_long():
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{line} {name} is {length} lines"
        for path in sorted(PACKAGE.rglob("*.py"))
        for name, line, length in long_functions(path.read_text(encoding="utf-8"))
    ]
    assert not found, "\n".join(found)


def test_every_module_says_what_it_is_for():
    missing = [str(path.relative_to(PACKAGE.parent)) for path in sorted(PACKAGE.rglob("*.py")) if not ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))]
    assert not missing, missing


def test_the_measure_counts_lines_and_honours_a_reason():
    body = "\n".join(f"    x{i} = {i}" for i in range(LIMIT))
    assert long_functions(f"def f():\n{body}\n") == [("f", 1, LIMIT + 1)]
    assert long_functions(f'def f():\n    """Long because it is a table."""\n{body}\n') == []
