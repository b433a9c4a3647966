"""The CLI's start-up budget (issue 19) as a rule on what it imports, not on time.

`nimbus --help` and `nimbus node list` load click (and what click itself needs: typing,
inspect, enum, gettext, datetime, …), nimbus's root group and, for `node list`, the one
command module of that noun plus the HTTP client — nothing of the server, the agent,
cryptography, bottle, cheroot, nor click's shell-completion machinery (only when completing).
`--help` does not even load the HTTP client or a command module. A module that slips in shows
up here by name, long before anyone notices the extra milliseconds.
"""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys

import pytest

from tests.harness import REPO

NEVER = ("http.client", "email", "zipfile", "compileall", "pathlib", "urllib", "cryptography",
         "bottle", "cheroot", "jwt", "yaml", "nimbus.server", "nimbus.agent", "nimbus.store",
         "nimbus.lab", "_bootstrap", "tomllib", "tomli", "asyncio", "logging", "argparse",
         "secrets", "random", "getpass", "ssl", "socket", "selectors", "base64", "subprocess",
         "encodings.idna", "click.shell_completion", "click._termui_impl", "difflib")
# `--help` needs no network: not even the client, nor any command module.
NOT_FOR_HELP = ("_ssl", "_socket", "json", "nimbus.client", "nimbus.cli.context",
                "nimbus.cli.output", "nimbus.cli.nodes")
# The root's own modules; any other nimbus.cli.* is a noun's (one per command run).
ROOT = ("nimbus.cli", "nimbus.cli.main", "nimbus.cli.secrets")
SHARED = ("nimbus.cli.context", "nimbus.cli.output")

PROBE = """
import json, sys
if sys.argv[1] != "baseline":
    from nimbus.cli import main
if sys.argv[1] == "help":
    main.run(["--help"])
elif sys.argv[1] == "node":  # the whole path up to the request: parse, run, read the config
    main.run(["--config", sys.argv[2], "node", "list"])
    import nimbus.client  # what sends it
sys.stdout.flush()
print("\\n" + json.dumps(sorted(sys.modules)))
"""


def _modules(mode: str, tmp: str = "") -> set[str]:
    # -S: no site hooks (a dev install's editable finder imports pathlib itself), so the
    # checkout and the venv's packages go on the path explicitly, as the pyz puts its own.
    path = os.pathsep.join([str(REPO), *site.getsitepackages()])
    r = subprocess.run([sys.executable, "-S", "-c", PROBE, mode, f"{tmp}/none.json"], cwd=REPO,
                       env={**os.environ, "PYTHONPATH": path},
                       capture_output=True, text=True, timeout=120, check=True)
    return set(json.loads(r.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("command", ["help", "node list"])
def test_fast_commands_import_only_what_they_use(command, tmp_path):
    loaded = _modules(command.split()[0], str(tmp_path)) - _modules("baseline")
    assert {"click", "nimbus.cli.main"} <= loaded
    banned = NEVER + (NOT_FOR_HELP if command == "help" else ())
    slipped = sorted(m for m in loaded for bad in banned if m == bad or m.startswith(bad + "."))
    assert not slipped, f"`nimbus {command}` imports {slipped}"
    nouns = sorted(m for m in loaded if m.startswith("nimbus.cli.") and m not in ROOT + SHARED)
    assert nouns == ([] if command == "help" else ["nimbus.cli.nodes"])
