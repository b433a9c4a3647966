"""The API client's import stays light: every CLI command that calls the API pays for it.

It speaks TLS through the C modules `_ssl` and `_socket`; their Python layers (`ssl`,
`socket`, with `selectors` and `base64`) cost ~9 ms of start-up, and annotation-only
modules (`typing`, `contextlib`) several more. Checked in a fresh interpreter, by name.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.harness import REPO

NEVER = ("ssl", "socket", "selectors", "base64", "typing", "contextlib", "http", "email",
         "urllib", "pathlib", "encodings.idna", "stringprep", "unicodedata")

PROBE = """
import json, sys
before = set(sys.modules)
import nimbus.client
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def test_importing_the_client_loads_no_python_tls_layer():
    r = subprocess.run([sys.executable, "-S", "-c", PROBE], cwd=REPO,
                       env={**os.environ, "PYTHONPATH": str(REPO)},
                       capture_output=True, text=True, timeout=60, check=True)
    loaded = set(json.loads(r.stdout.strip().splitlines()[-1]))
    slipped = sorted(m for m in loaded for bad in NEVER if m == bad or m.startswith(bad + "."))
    assert not slipped, f"import nimbus.client loads {slipped}"
    assert {"_ssl", "_socket"} <= loaded | set(sys.builtin_module_names)
