"""The package's import graph has no cycles and the Triton kernels import nothing above them.

Every ``import`` statement counts, wherever it is (module level, inside a function, under
``TYPE_CHECKING``): a lazy import hides a cycle from the interpreter, not from a reader. An
import of a name from a package counts as an edge to the package's ``__init__`` unless the name is
a submodule. ``kernels/`` is installed as ``advface_fast.kernels``.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the modules the Triton kernels may import from the rest of the package: the bottom of the graph
KERNEL_DEPS = {
    "advface_fast.engines.activations",
    "advface_fast.engines.cuda_graphs",
    "advface_fast.models.fingerprint",
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


def _edges(mods: dict[str, Path]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        out = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in mods else mod for a in node.names]
            for t in targets:
                while t and t not in mods:  # `import advface_fast.x.y` -> the deepest module that exists
                    t = t.rpartition(".")[0]
                if t and t != name:
                    out.add(t)
        graph[name] = out
    return graph


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


def test_the_import_graph_has_no_cycle():
    cycle = _cycle(_graph_without_package_roots(_edges(_modules())))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_kernels_import_only_the_bottom_of_the_package():
    graph = _edges(_modules())
    for name, out in graph.items():
        if name.startswith("advface_fast.kernels"):
            upward = {m for m in out if m.startswith("advface_fast") and not m.startswith("advface_fast.kernels")}
            assert upward <= KERNEL_DEPS | {"advface_fast"}, f"{name} imports {sorted(upward - KERNEL_DEPS)}"


def test_the_walk_sees_imports():  # the checks above would pass on an empty graph
    graph = _edges(_modules())
    assert "advface_fast.engines.batch" in graph["advface_fast.engines.registry"]
    assert "advface_fast.engines.activations" in graph["advface_fast.kernels.mlp_gemm"]
    assert "advface_fast.kernels.pgd_mlp" in graph["advface_fast.engines.triton_fused"]  # a lazy import in a function
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
