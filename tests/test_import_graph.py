"""The import graph of ``src/tiffin``: no cycles, and no arrow from a lower layer to a higher one.

Every import counts, those inside functions too (a function-level import that hides a
cycle is still a cycle). The layer order below is the one place it is written down.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"

# Lowest first. A module belongs to the first layer with a prefix that matches it (a
# prefix names a module and everything under it); a module may import from its own layer
# and the layers below, never from a layer above.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("tiffin._version", "tiffin.errors", "tiffin.layout"),
    ("tiffin.manifest", "tiffin.integrity", "tiffin.atomic", "tiffin.provenance", "tiffin.archive"),
    (
        "tiffin.tensorspec", "tiffin.dtypes", "tiffin.enforce", "tiffin.signature",
        "tiffin.examples", "tiffin.datafiles", "tiffin.modelcard",
    ),
    ("tiffin.logic",),
    ("tiffin.security",),
    ("tiffin.package",),
    ("tiffin.flavors",),
    ("tiffin.load",),
    ("tiffin.env",),
    ("tiffin.lint",),
    ("tiffin.isolated",),
    ("tiffin.pack", "tiffin.verify", "tiffin.build"),
    ("tiffin.serve",),
    ("tiffin.cli",),
    ("tiffin",),
)  # fmt: skip


def _modules() -> dict[str, Path]:
    mods = {}
    for f in (SRC / "tiffin").rglob("*.py"):
        parts = list(f.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = f
    return mods


def _edges(mods: dict[str, Path]) -> dict[str, set[str]]:
    def resolve(name: str) -> str:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name

    edges: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            for target in targets:
                found = resolve(target)
                # a package's __init__ is reached by importing any of its modules: not an edge
                if found and found != mod and not mod.startswith(found + "."):
                    edges[mod].add(found)
    return edges


def layer_of(module: str) -> int:
    for i, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return i
    raise AssertionError(f"{module} is in no layer: add it to LAYERS in {__file__}")


def test_every_module_has_a_layer() -> None:
    for module in _modules():
        layer_of(module)


def test_no_import_points_up() -> None:
    edges = _edges(_modules())
    upward = [
        f"{src} (layer {layer_of(src)}) imports {dst} (layer {layer_of(dst)})"
        for src, targets in sorted(edges.items())
        for dst in sorted(targets)
        if layer_of(dst) > layer_of(src)
    ]
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def test_no_import_cycles() -> None:
    edges = _edges(_modules())
    cycles: list[str] = []
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(mod: str) -> None:
        state[mod] = 1
        stack.append(mod)
        for nxt in sorted(edges[mod]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*stack[stack.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[mod] = 2

    for mod in sorted(edges):
        if mod not in state:
            visit(mod)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_checker_sees_a_cycle_hidden_in_a_function(tmp_path: Path) -> None:
    """The graph reads imports inside functions, which is where cycles hide."""
    (tmp_path / "tiffin").mkdir()
    (tmp_path / "tiffin" / "__init__.py").write_text("")
    (tmp_path / "tiffin" / "a.py").write_text("from . import b\n")
    (tmp_path / "tiffin" / "b.py").write_text("def f():\n    from .a import x\n")
    global SRC
    saved, SRC = SRC, tmp_path
    try:
        edges = _edges(_modules())
    finally:
        SRC = saved
    assert edges["tiffin.a"] == {"tiffin.b"} and edges["tiffin.b"] == {"tiffin.a"}
