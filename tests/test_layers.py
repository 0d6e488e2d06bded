"""Imports point one way: a walk over every module of `reconciler/` with `ast`.

Every import counts: at the top of a module, inside a function, and under `TYPE_CHECKING`
(a type-only import is still a dependency a reader has to follow). The test fails on
  - any import cycle between the package's modules;
  - any import of a higher layer (LAYERS below) by a lower one;
  - any import of the sandbox from outside it, but by the entry points (SANDBOX_USERS);
  - any import inside a function without a `# lazy: <why>` comment on its line or the line
    before (an import inside a function is only there for start-up time; a run of imports
    directly after a commented one, blank lines aside, shares its comment).

The layers are data, so that moving modules into folders (e.g. a `core/` package) means
editing a prefix here, not the walk.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import reconciler

PACKAGE = Path(reconciler.__file__).parent

# Lowest first. A module may import its own layer and any layer below it; the longest matching
# prefix decides a module's layer (`reconciler.config` covers `reconciler.config.build`).
LAYERS: list[tuple[str, list[str]]] = [
    (
        "base",
        [
            "reconciler._version",
            "reconciler.errors",
            "reconciler.model",
            "reconciler.clock",
            "reconciler.fsutil",
            "reconciler.net",
            "reconciler.identity",
            "reconciler.provenance",
            "reconciler.resources",
            "reconciler.parallelism",
            "reconciler.rules",
            "reconciler.policy",
            "reconciler.diffing",
            "reconciler.jsonexact",
            "reconciler.demo_keys",
        ],
    ),
    # The NewStore adapter: the client knows no setting; settings talk through the client.
    ("newstore", ["reconciler.newstore"]),
    ("settings", ["reconciler.newstore.settings"]),
    # The desired state: environment files, validated against the settings' declarations.
    ("config", ["reconciler.config"]),
    (
        "core",
        [
            "reconciler.core.plan",
            "reconciler.core.apply",
            "reconciler.core.drift",
            "reconciler.core.drift_state",
            "reconciler.core.dump",
            "reconciler.core.planfile",
            "reconciler.core.journal",
            "reconciler.core.lock",
            "reconciler.core.interrupt",
            "reconciler.core.scaffold",
            "reconciler.core",
        ],
    ),
    ("render", ["reconciler.render"]),
    # Outputs that leave the machine (notifications, pushed metrics): they render like render/
    # (and borrow its words), then deliver.
    ("notify", ["reconciler.notify"]),
    # The Python API, and the package itself, which exports it (lazily).
    (
        "api",
        [
            "reconciler.api",
            "reconciler.api_apply",
            "reconciler.api_common",
            "reconciler.api_lock",
            "reconciler",
        ],
    ),
    ("cli", ["reconciler.cli", "reconciler.__main__", "reconciler.demo"]),
]
# Beside the layers: a local NewStore that imports only the base layer, and that only the
# entry points start (of the CLI, its `sandbox` command alone).
SANDBOX = "reconciler.sandbox"
SANDBOX_USERS = {"reconciler.cli.sandbox", "reconciler.demo"}
# A sandbox module that reads a tenant state the way the reconciler reads the API (for the
# demo's and the tests' rule checks) may import up to the settings.
SANDBOX_BRIDGES = {"reconciler.sandbox.values": "settings"}

LAZY_MARK = "# lazy:"

# Known upward edges, each with why it is kept; left out of the layer and circle checks, and
# each must still exist (a fixed one is taken off the list). Keep this empty where you can.
ACCEPTED: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    line: int
    in_function: bool


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


_ImportNode = ast.Import | ast.ImportFrom


def _nodes(tree: ast.AST) -> Iterator[tuple[_ImportNode, bool]]:
    """Every import statement, and whether it sits inside a function."""

    def walk(
        node: ast.AST, in_function: bool
    ) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield child, in_function
            inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            yield from walk(child, inner)

    yield from walk(tree, False)


def _imports(modules: dict[str, Path]) -> list[Import]:
    return [imp for imp in _all_imports(modules) if (imp.importer, imp.imported) not in ACCEPTED]


def _all_imports(modules: dict[str, Path]) -> list[Import]:
    found = []
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node, in_function in _nodes(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                # `from pkg import module` depends on that module; `from pkg import name` on pkg.
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                    for alias in node.names
                ]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    found.append(Import(name, target, node.lineno, in_function))
    return found


def _layer(module: str) -> int | None:
    best: tuple[int, int] | None = None  # (prefix length, layer index)
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (
                best is None or len(prefix) > best[0]
            ):
                best = (len(prefix), index)
    return None if best is None else best[1]


def _in_sandbox(module: str) -> bool:
    return module == SANDBOX or module.startswith(SANDBOX + ".")


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_walk_sees_the_package() -> None:
    imports = _imports(_modules())
    pairs = {(i.importer, i.imported) for i in imports}
    # Top level, inside a function, and type-only imports are all seen.
    assert ("reconciler.core.plan.live", "reconciler.newstore.settings") in pairs
    assert ("reconciler.cli.plan_apply", "reconciler.api") in pairs
    assert ("reconciler.newstore.settings.base", "reconciler.newstore.client") in pairs


def test_accepted_upward_edges_still_exist() -> None:
    pairs = {(i.importer, i.imported) for i in _all_imports(_modules())}
    assert set(ACCEPTED) <= pairs, "an accepted edge is gone: take it off ACCEPTED"


def test_every_module_has_a_layer() -> None:
    unplaced = [name for name in _modules() if _layer(name) is None and not _in_sandbox(name)]
    assert unplaced == [], f"add these modules to LAYERS in {__file__}: {unplaced}"


def test_no_import_cycles() -> None:
    edges: dict[str, set[str]] = {}
    for imp in _imports(_modules()):
        edges.setdefault(imp.importer, set()).add(imp.imported)
    assert _cycles(edges) == []


def test_imports_point_down() -> None:
    upward = []
    for imp in _imports(_modules()):
        source, target = _in_sandbox(imp.importer), _in_sandbox(imp.imported)
        if source and target:
            continue
        if target:
            if imp.importer not in SANDBOX_USERS:
                upward.append(f"{imp.importer}:{imp.line} imports the sandbox ({imp.imported})")
            continue
        if source:
            highest = [name for name, _ in LAYERS].index(SANDBOX_BRIDGES.get(imp.importer, "base"))
            if (_layer(imp.imported) or 0) > highest:
                upward.append(f"{imp.importer}:{imp.line} (sandbox) imports {imp.imported}")
            continue
        low, high = _layer(imp.importer), _layer(imp.imported)
        assert low is not None and high is not None
        if high > low:
            upward.append(
                f"{imp.importer}:{imp.line} ({LAYERS[low][0]}) imports {imp.imported} "
                f"({LAYERS[high][0]})"
            )
    assert upward == []


def test_imports_inside_functions_say_why() -> None:
    unexplained = []
    for name, path in _modules().items():
        lines = path.read_text().splitlines()
        nodes = sorted(
            (node for node, in_function in _nodes(ast.parse(path.read_text())) if in_function),
            key=lambda node: node.lineno,
        )
        covered_until = -1  # the last line of the latest import that says (or shares) its why
        for node in nodes:
            here, before = lines[node.lineno - 1], lines[node.lineno - 2]
            says_why = LAZY_MARK in here or before.strip().startswith(LAZY_MARK)
            # A run of imports directly after an explained one shares its comment (blank lines
            # between them aside: isort groups a run).
            gap = lines[covered_until : node.lineno - 1] if covered_until >= 0 else ["?"]
            if says_why or not any(line.strip() for line in gap):
                covered_until = node.end_lineno or node.lineno
            else:
                unexplained.append(f"{name}:{node.lineno}: {here.strip()}")
    assert unexplained == [], f"say why with `{LAZY_MARK} start-up time` (or move them up)"
