"""The layering rules of docs/architecture.md, enforced: a forbidden import fails the build."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "nimbus"
LAYERS = ("server", "agent", "cli", "lab")
# Which top-level layers each layer may import (shared modules may import none of them).
ALLOWED = {
    "shared": set(),
    "server": {"server"},
    "agent": {"agent"},
    "cli": set(LAYERS),
    "lab": {"lab"},
}


# The CLI modules that run (part of) a control plane in-process and so may import `server`:
# serve starts it, bootstrap creates the first admin in a local data dir, backup/restore
# and doctor work on a data dir with the server's own code. Every other command is a
# client of the API.
CLI_MAY_IMPORT_SERVER = {"cli/serve.py", "cli/bootstrap.py", "cli/backup.py", "cli/doctor.py"}


def _layer(path: Path) -> str:
    rel = path.relative_to(PKG).parts
    if rel == ("__main__.py",):
        return "cli"  # the entry point of the zipapp hands over to the CLI
    return rel[0] if len(rel) > 1 and rel[0] in LAYERS else "shared"


def _imported_layers(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "nimbus" and len(parts) > 1 and parts[1] in LAYERS:
                found.add(parts[1])
    return found


MODULES = sorted(p for p in PKG.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PKG)))
def test_module_imports_respect_the_layers(path: Path) -> None:
    layer = _layer(path)
    forbidden = _imported_layers(path) - ALLOWED[layer]
    if layer == "cli" and str(path.relative_to(PKG)) not in CLI_MAY_IMPORT_SERVER:
        forbidden |= _imported_layers(path) & {"server"}
    assert not forbidden, f"{path.relative_to(PKG)} ({layer}) imports {sorted(forbidden)}"


def test_the_rule_catches_a_server_import_in_the_agent(tmp_path: Path) -> None:
    bad = tmp_path / "x.py"
    bad.write_text("from nimbus.server import nodes\nimport nimbus.wire\n")
    assert _imported_layers(bad) == {"server"}


# -- the module graph: no import cycles, subsystems reached only through the registry ---------

def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


NAMES = {_module_name(p): p for p in MODULES}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, package: str) -> set[str]:
    """Modules of nimbus this code imports: function-level imports included, imports under
    `if TYPE_CHECKING:` (annotations only) left out. `from a import b` is the module a.b
    when that module exists, else a."""
    found: set[str] = set()
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                found |= _imports(child, package)
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in NAMES else base)
        found |= _imports(node, package)
    return {m for m in found if m in NAMES}


def _graph() -> dict[str, set[str]]:
    graph = {}
    for name, path in NAMES.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        graph[name] = _imports(ast.parse(path.read_text()), package) - {name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            nxt = next(edges, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
    return found


def test_no_import_cycles_anywhere_in_nimbus() -> None:
    assert _cycles(_graph()) == []


def test_the_cycle_check_finds_a_loop() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _subsystem_packages() -> list[str]:
    server = PKG / "server"
    return sorted(f"nimbus.server.{p.parent.name}" for p in server.glob("*/__init__.py")
                  if "SUBSYSTEM = Subsystem(" in p.read_text())


def test_swarm_is_a_subsystem_package() -> None:
    assert "nimbus.server.swarm" in _subsystem_packages()


@pytest.mark.parametrize("package", _subsystem_packages())
def test_a_subsystem_is_imported_only_by_the_registry_the_api_and_itself(package: str) -> None:
    allowed = ("nimbus.server.subsystems", "nimbus.server.api.", package + ".", package)
    offenders = sorted(
        importer for importer, targets in _graph().items()
        if any(t == package or t.startswith(package + ".") for t in targets)
        and not any(importer == a or (a.endswith(".") and importer.startswith(a))
                    for a in allowed))
    assert offenders == [], f"{package} is imported by {offenders}"


def test_core_modules_reach_no_subsystem_even_indirectly() -> None:
    """state, nodes, mesh, tasks, hooks and registry: nothing they import leads to a subsystem."""
    graph = _graph()
    subsystems = _subsystem_packages()
    for core in ("state", "nodes", "mesh", "tasks", "hooks", "registry", "heartbeat"):
        seen, todo = set(), [f"nimbus.server.{core}"]
        while todo:
            module = todo.pop()
            if module in seen:
                continue
            seen.add(module)
            todo.extend(graph.get(module, ()))
        reached = sorted(m for m in seen for s in subsystems
                         if m == s or m.startswith(s + "."))
        assert reached == [], f"nimbus.server.{core} reaches {reached}"
