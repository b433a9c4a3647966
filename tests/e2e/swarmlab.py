"""Lab handles driven through `lab cli` (any e2e lab; a 3-node `--docker` one for Swarm)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.test_lab import DATA_ROOT, missing_requirements, new_id, nimbus, wait_clean


def docker_missing() -> str | None:
    reason = missing_requirements()
    if reason:
        return reason
    for tool in ("dockerd", "docker", "nsenter", "unshare", "busybox"):
        if shutil.which(tool) is None:
            return f"{tool} not found on PATH"
    return None


class LabHandle:
    """A running lab driven through `lab cli` / `lab status` (any e2e test's lab)."""

    def __init__(self, lab_id: str) -> None:
        self.id = lab_id
        self.outputs: list[str] = []  # every CLI output, grepped for secrets later

    def status(self) -> dict[str, Any]:
        return json.loads(nimbus("lab", "status", "--id", self.id, "-o", "json").stdout)

    def run(self, *args: str, check: bool = True, timeout: float = 240,
            ) -> subprocess.CompletedProcess[str]:
        proc = nimbus("lab", "cli", "--id", self.id, "--", *args, check=check, timeout=timeout)
        self.outputs += [proc.stdout, proc.stderr]
        return proc

    def cli(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json").stdout)

    def nodes(self) -> dict[str, dict[str, Any]]:
        return {n["name"]: n for n in self.status()["nodes"]}


class SwarmLab(LabHandle):
    """A lab whose nodes each run a Docker Engine (`lab up --docker`)."""

    def docker(self, node: str, *args: str, timeout: float = 60,
               ) -> subprocess.CompletedProcess[str]:
        host = self.nodes()[node]["docker_host"]
        return subprocess.run(["docker", "--host", host, *args], capture_output=True,
                              text=True, timeout=timeout, check=False)

    def swarm_state(self, node: str) -> str:
        out = self.docker(node, "info", "--format", "{{.Swarm.LocalNodeState}}")
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()


def swarm_lab() -> Iterator[SwarmLab]:
    """A 3-node `lab up --docker` for one test module (skips without root and Docker);
    use it as the body of a module-scoped fixture."""
    reason = docker_missing()
    if reason:
        pytest.skip(f"needs root, WireGuard tools, docker.io and busybox-static: {reason}")
    lab_id = new_id()
    proc = nimbus("lab", "up", "--nodes", "3", "--id", lab_id, "--docker", check=False,
                  timeout=400)
    if proc.returncode != 0:
        nimbus("lab", "down", "--id", lab_id, check=False)
        raise AssertionError(f"lab up --docker failed:\n{proc.stdout}\n{proc.stderr}")
    handle = SwarmLab(lab_id)
    try:
        yield handle
    finally:
        nimbus("lab", "down", "--id", lab_id, check=False)
        if wait_clean(lab_id):
            from nimbus.lab import netns

            netns.destroy(lab_id)
            shutil.rmtree(DATA_ROOT / lab_id, ignore_errors=True)
