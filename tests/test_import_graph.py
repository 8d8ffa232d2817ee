"""The package's layers: every import points down the layer table or stays in its layer, every
import names a module that exists, there are no cycles, and the Triton kernels import only the
bottom of the package.

Every ``import`` statement counts, wherever it is (module level, inside a function, under
``TYPE_CHECKING``): a lazy import hides a cycle or an upward dependency from the interpreter, not
from a reader. An import of a name from a package counts as an edge to the package's ``__init__``
unless the name is a submodule. ``kernels/`` is installed as ``advface_fast.kernels``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Bottom to top. A module belongs to the layer of its longest matching prefix, and may import
# from its own layer and the layers below it, never above.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("advface_fast.errors", "advface_fast.optional", "advface_fast.settings")),
    ("io", ("advface_fast.io", "advface_fast.metrics")),
    ("models", ("advface_fast.models",)),
    ("engines", ("advface_fast.engines", "advface_fast.kernels", "advface_fast._C")),
    ("data", ("advface_fast.data",)),
    # the shipped default models come with the synthetic world they were trained in
    ("shipped models", ("advface_fast.models.defaults",)),
    ("encoders", ("advface_fast.encoders",)),
    (
        "protection",
        (
            "advface_fast.keys",
            "advface_fast.keymodes",
            "advface_fast.rotation",
            "advface_fast.protect_checks",
            "advface_fast.protector",
            "advface_fast.provenance",
        ),
    ),
    ("pipelines", ("advface_fast.faces", "advface_fast.train")),
    (
        "applications",
        (
            "advface_fast.eval",
            "advface_fast.distributed",
            "advface_fast.deploy",
            "advface_fast.duetface",
            "advface_fast.match",
        ),
    ),
    ("cli", ("advface_fast.cli",)),
    ("package", ("advface_fast", "advface_fast.__main__")),
]
COMPILED = {"advface_fast._C"}  # built by setup.py from csrc/, no .py source
# the modules the Triton kernels may import from the rest of the package: the bottom of the graph
KERNEL_DEPS = {
    "advface_fast.models.activations",
    "advface_fast.engines.cuda_graphs",
    "advface_fast.engines.overrides",
    "advface_fast.engines.plan_cache",
    "advface_fast.settings",
}


def _modules() -> dict[str, Path]:
    mods = {}
    for base, prefix in ((ROOT / "advface_fast", "advface_fast"), (ROOT / "kernels", "advface_fast.kernels")):
        for path in base.rglob("*.py"):
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join([prefix, *parts])] = path
    return mods


def _imports(name: str, path: Path, mods: dict[str, Path]) -> list[tuple[int, str, str]]:
    """``(line, module named, module the edge goes to)`` of every package import in a module."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    known = set(mods) | COMPILED
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for a in node.names:
                sub = f"{mod}.{a.name}"
                found.append((node.lineno, mod, sub if sub in known else mod))
    return [f for f in found if f[1] == "advface_fast" or f[1].startswith("advface_fast.")]


def _edges(mods: dict[str, Path]) -> dict[str, set[str]]:
    return {name: {t for _, _, t in _imports(name, path, mods) if t != name} for name, path in mods.items()}


def _layer(module: str) -> int:
    best = (-1, -1)
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best[1]:
                best = (i, len(p))
    if best[0] < 0:
        raise AssertionError(f"{module} is in no layer of LAYERS: add it")
    return best[0]


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return [*stack[stack.index(m) :], m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def _graph_without_package_roots(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Edges into a package's ``__init__`` from its own submodules are dropped: Python runs a
    package's ``__init__`` before any of its submodules, so ``import advface_fast as af`` in a
    submodule is a name lookup in a module that is already (being) imported, not an order."""
    return {n: {m for m in out if not n.startswith(m + ".")} for n, out in graph.items()}


def _upward(graph: dict[str, set[str]]) -> list[str]:
    return [
        f"{a} [{LAYERS[_layer(a)][0]}] imports {b} [{LAYERS[_layer(b)][0]}]"
        for a, outs in sorted(graph.items())
        for b in sorted(outs)
        if _layer(b) > _layer(a)
    ]


def test_the_import_graph_has_no_cycle():
    cycle = _cycle(_graph_without_package_roots(_edges(_modules())))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_module_imports_a_layer_above_its_own():
    assert _upward(_graph_without_package_roots(_edges(_modules()))) == []


def test_every_import_names_a_module_that_exists():
    mods = _modules()
    known = set(mods) | COMPILED
    missing = [
        f"{path.relative_to(ROOT)}:{line} imports {named}"
        for name, path in mods.items()
        for line, named, _ in _imports(name, path, mods)
        if named not in known
    ]
    assert missing == []


def test_tests_benchmarks_and_docs_import_modules_that_exist():
    """The same check outside the package: a GPU-only test that imports a moved module would
    otherwise fail only on a lent GPU."""
    mods = _modules()
    known = set(mods) | COMPILED
    files = [*(ROOT / "tests").rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py"), *(ROOT / "docs").rglob("*.py")]
    missing = [
        f"{path.relative_to(ROOT)}:{line} imports {named}"
        for path in files
        for line, named, _ in _imports("__main__", path, mods)
        if named not in known
    ]
    assert missing == []


def test_every_module_is_in_a_layer():
    for name in _modules():
        _layer(name)


def test_the_kernels_import_only_the_bottom_of_the_package():
    graph = _edges(_modules())
    for name, out in graph.items():
        if name.startswith("advface_fast.kernels"):
            upward = {m for m in out if m.startswith("advface_fast") and not m.startswith("advface_fast.kernels")}
            assert upward <= KERNEL_DEPS | {"advface_fast"}, f"{name} imports {sorted(upward - KERNEL_DEPS)}"


def test_the_walk_sees_imports():  # the checks above would pass on an empty graph
    mods = _modules()
    graph = _edges(mods)
    assert "advface_fast.engines.batch" in graph["advface_fast.engines.registry"]
    assert "advface_fast.models.activations" in graph["advface_fast.kernels.mlp_gemm"]
    assert "advface_fast.kernels.pgd_mlp" in graph["advface_fast.engines.triton_fused"]  # a lazy import in a function
    assert "advface_fast._C" in graph["advface_fast.engines.extension"]  # the compiled module is a module
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    # an upward import and a misspelt module are caught
    assert _upward({"advface_fast.io.arrays": {"advface_fast.protector"}}) != []
    assert _upward({"advface_fast.protector": {"advface_fast.io.arrays"}}) == []
    with pytest.raises(AssertionError, match="no layer"):
        _layer("elsewhere.module")


def test_a_missing_module_is_named(tmp_path: Path):
    bad = tmp_path / "m.py"
    bad.write_text("def f():\n    from advface_fast.no_such_module import x\n    from .errors import AdvFaceError\n")
    mods = {"advface_fast.m": bad, "advface_fast.errors": ROOT / "advface_fast/errors.py"}
    named = [n for _, n, _ in _imports("advface_fast.m", bad, mods)]
    assert named == ["advface_fast.no_such_module", "advface_fast.errors"]
    assert "advface_fast.no_such_module" not in set(mods) | COMPILED
