"""The house rules of docs/architecture.md that import-linter cannot see: nothing outside a
synthesizer's package names it, no private name crosses a module, and an import inside a
function is there to load something heavy lazily and says so."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from engine.synth import registrations

ENGINE = Path(__file__).resolve().parent.parent / "engine"
SOURCES = sorted(ENGINE.rglob("*.py"))


def _rel(path: Path) -> str:
    return path.relative_to(ENGINE.parent).as_posix()


def _code_without_docs(path: Path) -> str:
    """The module's code with docstrings and comments removed (prose may name anything)."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            body[0].value.value = ""
    return ast.unparse(tree)


@pytest.mark.parametrize("synth_type", sorted(registrations()))
def test_nothing_outside_a_synthesizers_package_names_it(synth_type):
    reg = registrations()[synth_type]
    package = reg.config.__module__.rsplit(".", 1)[0]
    if not package.startswith("engine."):
        pytest.skip(f"{synth_type} is installed from elsewhere")
    home = ENGINE.parent / package.replace(".", "/")
    pattern = re.compile(rf"\b{re.escape(synth_type)}\b")
    offenders = [
        _rel(p) for p in SOURCES
        if home not in p.parents and pattern.search(_code_without_docs(p))
    ]
    assert not offenders, f"{synth_type} is named outside {package}: {offenders}"


def _imports(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            yield node


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ENGINE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = _module_name(path).split(".")
    if path.name != "__init__.py":
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
    return ".".join(base + ([node.module] if node.module else []))


def test_no_private_name_is_imported_from_another_module():
    offenders = []
    for path in SOURCES:
        for node in _imports(path):
            target = _resolve(path, node)
            if not target.startswith("engine"):
                continue
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    offenders.append(f"{_rel(path)}:{node.lineno} imports {target}.{alias.name}")
    assert not offenders, "make these public where they belong:\n" + "\n".join(offenders)


def test_an_import_inside_a_function_says_why():
    """Module-level imports are the rule; one inside a function (at any depth of it)
    loads something heavy lazily (Ray, matplotlib, albumentations, ...) and has a comment
    saying so on its line, the line above, or the first line of its block of imports."""
    offenders = []
    for path in SOURCES:
        lines = path.read_text().splitlines()
        tree = ast.parse("\n".join(lines))
        inner = sorted({
            (node.lineno, node.end_lineno)
            for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
            for node in ast.walk(fn) if isinstance(node, (ast.Import, ast.ImportFrom))
        })
        for start, end in inner:
            first = start
            while first - 1 >= 1 and re.match(r"\s*(from \S+ )?import ", lines[first - 2]):
                first -= 1  # the first line of this block of imports
            near = lines[max(0, first - 2): end]
            if not any("#" in line for line in near):
                offenders.append(f"{_rel(path)}:{start} {lines[start - 1].strip()}")
    assert not offenders, "say why each of these is imported inside a function:\n" + "\n".join(offenders)
