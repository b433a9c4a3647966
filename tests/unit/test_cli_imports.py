"""The CLI's start-up budget (issue 12) as a rule on what it imports, not on time.

`nimbus --help` and `nimbus node list` must stay fast on a Raspberry Pi: they load nimbus's
own CLI modules (and, to call the API, the C modules _ssl and _socket, and json), nothing of
the server, the agent, cryptography, click or the heavy stdlib corners (typing, ssl.py and
socket.py, http.client/email, zipfile, pathlib, urllib, shutil, datetime). `--help` does
not even load the HTTP client. A module that slips in shows up here by name, long before
anyone notices the extra milliseconds.
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
         "bottle", "cheroot", "jwt", "nimbus.server", "nimbus.agent", "nimbus.store",
         "nimbus.lab", "_bootstrap", "tomllib", "tomli", "asyncio", "logging", "click",
         "typing", "inspect", "argparse", "gettext", "shutil", "textwrap", "datetime",
         "secrets", "random", "getpass", "ssl", "socket", "selectors", "base64",
         "encodings.idna")
# `--help` needs no network: not even the client.
NOT_FOR_HELP = ("_ssl", "_socket", "json", "nimbus.client", "nimbus.cli.context")

PROBE = """
import json, sys
if sys.argv[1] != "baseline":
    from nimbus.cli import main
if sys.argv[1] == "baseline":  # what the interpreter (and a dev install's finder) loads
    pass
elif sys.argv[1] == "help":
    try:
        main.run(["--help"])
    finally:
        sys.stdout.flush()
else:
    main.cli.get_command("node").get_command("list")
    import nimbus.cli.context, nimbus.client  # what `node list` uses to call the API
print("\\n" + json.dumps(sorted(sys.modules)))
"""


def _modules(mode: str) -> set[str]:
    # -S: no site hooks (a dev install's editable finder imports pathlib itself), so the
    # checkout and the venv's packages go on the path explicitly, as the pyz puts its own.
    path = os.pathsep.join([str(REPO), *site.getsitepackages()])
    r = subprocess.run([sys.executable, "-S", "-c", PROBE, mode], cwd=REPO,
                       env={**os.environ, "PYTHONPATH": path},
                       capture_output=True, text=True, timeout=120, check=True)
    return set(json.loads(r.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("command", ["help", "node list"])
def test_fast_commands_import_only_what_they_use(command):
    loaded = _modules(command.split()[0]) - _modules("baseline")
    assert "nimbus.cli.cmdline" in loaded
    banned = NEVER + (NOT_FOR_HELP if command == "help" else ())
    slipped = sorted(m for m in loaded for bad in banned if m == bad or m.startswith(bad + "."))
    assert not slipped, f"`nimbus {command}` imports {slipped}"
