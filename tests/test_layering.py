"""The package's layers: lower ones never import higher ones, and no import goes in a circle.

``data`` < ``models`` < evaluation / experiments < ``cross_sell`` and the applications <
pipeline / cli / serving. The test reads every module's source (AST), so imports inside functions
count as much as those at the top of a file.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "xsell"

#: What the lowest layers may never import (module-level or inside a function).
HIGHER = ("xsell.experiments", "xsell.evaluation", "xsell.tuning", "xsell.ablations",
          "xsell.peers", "xsell.cross_sell",
          "xsell.apps", "xsell.pipeline", "xsell.diagnostics", "xsell.cli", "xsell.serving")
#: The top layer, which the applications and cross-selling tools never import.
TOP = ("xsell.pipeline", "xsell.cli", "xsell.serving")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path, known: set[str]) -> set[str]:
    """xsell modules a file imports, anywhere in it (``from a import b`` counts as
    ``a.b`` when that is a module)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        # A class named by string ("xsell.x.y:Class", as the registry does) is an import.
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            named = re.fullmatch(r"(xsell(?:\.\w+)+):\w+", node.value)
            if named:
                out.add(named.group(1))
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("xsell"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.startswith("xsell"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                out.add(sub if sub in known else node.module)
    return out


def graph() -> dict[str, set[str]]:
    """Module -> the xsell modules it imports; a package's ``__init__`` re-exporting its
    own submodules is left out (that is how a package presents itself, not a layer tie)."""
    mods = modules()
    known = set(mods)
    return {name: {d for d in imports(path, known) & known if not d.startswith(name + ".")}
            for name, path in mods.items()}


def test_graph_sees_imports_inside_functions_and_classes_named_by_string():
    g = graph()
    assert "xsell.data.dataset" in g["xsell.models.base"]
    assert "xsell.models.fitting" in g["xsell.diagnostics"]  # imported inside a function
    assert "xsell.models.ease" in g["xsell.models.registry"]  # "xsell.models.ease:EASE"


def upward(layers: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    """``"a imports b"`` for every module in ``layers`` importing one in ``forbidden``."""
    g = graph()
    return sorted(f"{mod} imports {dep}" for mod, deps in g.items()
                  if mod in layers or mod.startswith(tuple(f"{x}." for x in layers))
                  for dep in deps if dep.startswith(forbidden))


@pytest.mark.parametrize("layer", ["xsell.data", "xsell.models"])
def test_lower_layers_do_not_import_higher_ones(layer):
    assert upward((layer,), HIGHER) == []


@pytest.mark.parametrize("layer", ["xsell.apps", "xsell.cross_sell", "xsell.experiments",
                                   "xsell.evaluation", "xsell.tuning", "xsell.ablations",
                                   "xsell.peers"])
def test_middle_layers_do_not_import_the_top(layer):
    assert upward((layer,), TOP) == []


def test_evaluation_does_not_import_the_applications():
    assert upward(("xsell.evaluation", "xsell.experiments", "xsell.tuning", "xsell.ablations",
                   "xsell.peers"), ("xsell.apps", "xsell.cross_sell")) == []


def test_no_import_cycles():
    g = graph()
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in g[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(g):
        if v not in index:
            visit(v)
    assert cycles == []
