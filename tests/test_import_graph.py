"""The import graph of ``src/tiffin``: no cycles, and no arrow from a lower layer to a higher one.

Every import counts, those inside functions too (a function-level import that hides a
cycle is still a cycle). The layer order below is the one place it is written down.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"

# Lowest first. A module belongs to the layer of the longest prefix that matches it (a
# prefix names a module and everything under it); a module may import from its own layer
# and the layers below, never from a layer above.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("tiffin._version", "tiffin.errors", "tiffin.package.layout"),
    ("tiffin.package",),  # the package on disk: manifest, integrity, atomic writes, archive
    ("tiffin.schema",),  # specs, signature, enforcement, typed JSON, input files, model card
    ("tiffin.logic",),  # code/: copied in, imported back as its own namespace
    ("tiffin.security",),  # allow-lists, native-format pre-parsers, the sniffer, signing
    ("tiffin.package.open",),  # open_package: archive, integrity, signing policy
    ("tiffin.flavors",),
    ("tiffin._load",),
    ("tiffin.env",),
    ("tiffin._lint",),
    ("tiffin.isolated",),
    ("tiffin._pack", "tiffin._verify", "tiffin._build"),
    ("tiffin.serve",),
    ("tiffin.cli",),
    ("tiffin",),
)


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
    best, layer = -1, None
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best:
                best, layer = len(p), i
    if layer is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in {__file__}")
    return layer


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
