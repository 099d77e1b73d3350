"""The package layout keeps the architecture's layers: no import cycle, and no module imports a layer above it.

docs/architecture.md ("Layers") lists the same order. Imports are read from the source with ``ast`` (function-
level imports included, since a lazy import is still a dependency), so the test sees every edge whether or not
it runs.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("agents", "envs", "apps")

# Lowest first; a module may import its own layer and any layer below. ``agents.cli`` and ``apps`` sit on top.
LAYERS = (
    ("envs",),
    ("agents.arguments", "agents.config", "agents.ratings", "agents.registry", "agents.spaces", "agents.trees"),
    ("agents.model",),
    ("agents.rollout",),
    ("agents.run",),
    ("agents.train", "agents.deploy"),
    ("agents.watch",),
    ("agents.cli", "agents", "apps"),
)


def module_names() -> dict[str, Path]:
    names = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The project modules that ``path`` imports (``from pkg import submodule`` counts as the submodule)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom) and node.module in modules:
            subs = {f"{node.module}.{alias.name}" for alias in node.names} & modules
            found.update(subs or {node.module})
            if len(subs) < len(node.names):
                found.add(node.module)
    return found


def layer_of(module: str) -> int:
    best, best_len = None, -1
    for index, layer in enumerate(LAYERS):
        for prefix in layer:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    assert best is not None, f"{module} is in no layer of LAYERS"
    return best


def graph() -> dict[str, set[str]]:
    modules = module_names()
    names = set(modules)
    return {name: imports_of(path, names) - {name} for name, path in modules.items()}


def test_no_module_imports_a_layer_above_its_own():
    upward = [f"{m} -> {d}" for m, deps in graph().items() for d in deps
              if not m.startswith(d + ".") and layer_of(d) > layer_of(m)]  # a package's __init__ may be imported
    assert not upward, "imports of a higher layer:\n" + "\n".join(sorted(upward))


def test_no_import_cycles():
    edges = graph()
    # A package importing its own submodules (to re-export them) is not a cycle through the package.
    edges = {m: {d for d in deps if not d.startswith(m + ".") and not m.startswith(d + ".")}
             for m, deps in edges.items()}
    cycles, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for dep in sorted(edges[node]):
            if state.get(dep) == "open":
                cycles.append(" -> ".join([*path[path.index(dep):], dep]))
            elif dep not in state:
                visit(dep, [*path, dep])
        state[node] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_every_module_is_in_a_layer_and_every_layer_exists():
    modules = module_names()
    for module in modules:
        layer_of(module)
    for layer in LAYERS:
        for prefix in layer:
            assert prefix in modules, f"LAYERS names {prefix}, which is not a module or package"
