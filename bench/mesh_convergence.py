"""Mesh convergence on a real lab (root): join -> all ready -> full ping matrix, then
update-ip and delete -> seen by every peer. Prints a table of seconds.

    sudo .venv/bin/python -m bench.mesh_convergence [--nodes 10] [--json FILE]

Uses the `nimbus lab` orchestrator in-process (namespaces, `nimbus serve`, real agents,
wireguard-go or kernel WireGuard). Polls are ~50 ms apart for WireGuard state and
~0.5 s (one CLI call) for node status, which bounds the resolution of each figure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import wait_until  # noqa: E402
from nimbus.lab.netns import new_lab_id  # noqa: E402
from nimbus.lab.orchestrate import Lab, all_labs, check_requirements  # noqa: E402


def _wg(lab: Lab, member: str, what: str) -> subprocess.Popen[str]:
    argv = lab.runner.wrap(["wg", "show", lab.net.wg_ifname(member), what],
                           netns=lab.net.netns(member))
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def wg_state(lab: Lab, members: list[str], what: str) -> dict[str, str]:
    """`wg show IF <what>` of several members, run in parallel."""
    procs = {m: _wg(lab, m, what) for m in members}
    return {m: p.communicate(timeout=15)[0] for m, p in procs.items()}


def measure(nodes: int, log: Callable[[str], None]) -> dict[str, Any]:
    lab_id = next(i for i in iter(new_lab_id, None) if i not in all_labs())
    lab = Lab(lab_id)
    res: dict[str, Any] = {"nodes": nodes, "lab_id": lab_id}
    try:
        log(f"lab {lab_id}: {nodes} nodes")
        t = time.monotonic()
        times = lab.up(nodes, echo=log, timeout=120 + 10 * nodes)
        res["lab_up_total_s"] = time.monotonic() - t
        res["control_plane_up_s"] = times["control_plane"]
        res["join_to_all_ready_s"] = times["join_to_ready"]
        res["join_to_full_mesh_config_s"] = times["join_to_full_mesh_config"]
        t = time.monotonic()
        matrix = lab.ping(retry_for=60)
        res["config_to_full_ping_matrix_s"] = time.monotonic() - t
        res["ping_pairs_ok"] = f"{sum(matrix.values())}/{len(matrix)}"
        members = ["cp", *lab.info["nodes"]]
        listed = {n["name"]: n for n in lab.cli_json("node", "list")}

        # update-ip: the node's new endpoint appears on every other member.
        victim = str(nodes)
        key = listed[f"n{victim}"]["wireguard_public_key"]
        new_ip = lab.net.underlay_ip(victim).rsplit(".", 1)[0] + ".250"
        old_ip = lab.net.underlay_ip(victim)
        lab.net.run_in(victim, ["sysctl", "-qw", "net.ipv4.conf.eth0.promote_secondaries=1"])
        lab.net.run_in(victim, ["ip", "address", "add", f"{new_ip}/24", "dev", "eth0"])
        others = [m for m in members if m != victim]
        t = time.monotonic()
        lab.cli(["node", "update-ip", listed[f"n{victim}"]["id"], "--ip", new_ip])
        cli_done = time.monotonic()
        # The node really moves: its old address goes (else roaming could flip peers back).
        lab.net.run_in(victim, ["ip", "address", "del", f"{old_ip}/24", "dev", "eth0"])
        want = f"{key}\t{new_ip}:51820"
        ok = wait_until(lambda: all(want in out for out in
                                    wg_state(lab, others, "endpoints").values()), 30)
        res["update_ip_to_endpoint_everywhere_s"] = (time.monotonic() - t) if ok else None
        res["update_ip_after_cli_returned_s"] = (time.monotonic() - cli_done) if ok else None

        # delete: no remaining member keeps the node as a peer.
        victim = "1"
        key = listed["n1"]["wireguard_public_key"]
        rest = [m for m in members if m != victim]
        t = time.monotonic()
        lab.cli(["node", "delete", listed["n1"]["id"]])
        cli_done = time.monotonic()
        ok = wait_until(lambda: all(key not in out for out in
                                    wg_state(lab, rest, "peers").values()), 30)
        res["delete_to_peer_removed_everywhere_s"] = (time.monotonic() - t) if ok else None
        res["delete_after_cli_returned_s"] = (time.monotonic() - cli_done) if ok else None
        res["cli_call_s"] = cli_done - t
    finally:
        lab.down()
    return res


LABELS = [
    ("lab_up_total_s", "lab up, total (namespaces, cp, bootstrap, tokens, join, ready)"),
    ("control_plane_up_s", "control plane up + admin bootstrapped"),
    ("join_to_all_ready_s", "agents started (join) -> all nodes ready"),
    ("join_to_full_mesh_config_s", "agents started -> every member has every peer"),
    ("config_to_full_ping_matrix_s", "then -> full overlay ping matrix ok (all pairs)"),
    ("update_ip_to_endpoint_everywhere_s", "update-ip issued -> new endpoint on every peer"),
    ("update_ip_after_cli_returned_s", "  of which after the CLI call returned"),
    ("delete_to_peer_removed_everywhere_s", "delete issued -> peer removed everywhere"),
    ("delete_after_cli_returned_s", "  of which after the CLI call returned"),
    ("cli_call_s", "one `nimbus node delete` CLI call (process start incl.)"),
]


def table(res: dict[str, Any]) -> str:
    rows = [(label, "-" if res.get(k) is None else f"{res[k]:.2f}") for k, label in LABELS]
    width = max(len(label) for label, _ in rows)
    head = f"mesh convergence, {res['nodes']} nodes (seconds; pings {res.get('ping_pairs_ok')})"
    return "\n".join([head, *(f"  {label.ljust(width)}  {v:>7}" for label, v in rows)])


def run(quick: bool, log: Callable[[str], None]) -> list[Any]:
    """Entry for `python -m bench` (needs root; 3 nodes in quick mode, else 10)."""
    from bench.common import Result

    if os.geteuid() != 0:
        log("mesh convergence: skipped (needs root)")
        return []
    check_requirements()
    res = measure(3 if quick else 10, log)
    log(table(res))
    return [Result(f"mesh: {label.strip()}", res.get(k), "s", None, details=res)
            for k, label in LABELS[:6] + LABELS[7:8]]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--json", type=Path, default=None, help="Also write the figures here.")
    args = ap.parse_args()
    check_requirements()
    res = measure(args.nodes, lambda s: print(s, file=sys.stderr, flush=True))
    print(table(res))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
