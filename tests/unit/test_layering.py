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
