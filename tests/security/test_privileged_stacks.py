"""A compose stack may not take over its nodes unless an admin says so (issue 23 item 13).

Before: `privileged`, `cap_add: ALL`, host namespaces and bind mounts of `/` or the Docker
socket went to `docker stack deploy` unremarked. Now the deploy is refused with one line
naming every finding, unless the request says `allow_privileged: true` (audited).
"""

from __future__ import annotations

import json

import pytest

from nimbus.docker.compose import host_privileges
from nimbus.errors import BadRequest, Forbidden

HOSTILE_SERVICES = {
    "privileged": {"privileged": True},
    "cap_add ALL": {"cap_add": ["ALL"]},
    "cap_add CAP_SYS_ADMIN": {"cap_add": ["cap_sys_admin"]},
    "cap_add as a string": {"cap_add": "SYS_PTRACE"},
    "devices": {"devices": ["/dev/sda:/dev/sda"]},
    "host network": {"network_mode": "host"},
    "host pid": {"pid": "host"},
    "host ipc": {"ipc": "host"},
    "host userns": {"userns_mode": "host"},
    "seccomp unconfined": {"security_opt": ["seccomp=unconfined"]},
    "apparmor unconfined": {"security_opt": ["apparmor:unconfined"]},
    "bind /": {"volumes": ["/:/host"]},
    "bind //": {"volumes": ["//:/host:ro"]},
    "bind /etc": {"volumes": ["/etc:/etc:ro"]},
    "bind docker.sock": {"volumes": ["/var/run/docker.sock:/var/run/docker.sock"]},
    "bind /run/docker.sock": {"volumes": ["/run/docker.sock:/s"]},
    "bind /var (holds the socket)": {"volumes": ["/var:/v"]},
    "bind /proc": {"volumes": ["/proc:/p"]},
    "bind /sys": {"volumes": ["/sys/fs/cgroup:/c"]},
    "bind nimbus data": {"volumes": ["/var/lib/nimbus:/n"]},
    "bind .. out of the temp dir": {"volumes": ["../../etc:/e"]},
    "bind ~": {"volumes": ["~/.ssh:/k"]},
    "long-syntax bind": {"volumes": [{"type": "bind", "source": "/", "target": "/host"}]},
    "env_file from the manager": {"env_file": "/etc/shadow"},
    # `docker stack deploy` interpolates on the manager, after the control plane looked.
    "network_mode from a variable": {"network_mode": "${NET:-host}"},
    "bind source from a variable": {"volumes": ["${ROOT:-/}:/host"]},
    "privileged from a variable": {"privileged": "${P}"},
}


@pytest.mark.parametrize("svc", HOSTILE_SERVICES.values(), ids=list(HOSTILE_SERVICES))
def test_each_way_into_the_node_is_found(svc):
    findings = host_privileges({"services": {"web": {"image": "busybox", **svc}}})
    assert findings and all(f.startswith("service 'web' ") for f in findings), findings


def test_top_level_ways_into_the_node_are_found():
    compose = {"services": {"web": {"image": "busybox"}},
               "networks": {"hostnet": {"external": True, "name": "host"}},
               "volumes": {"root": {"driver": "local",
                                    "driver_opts": {"type": "none", "o": "bind", "device": "/"}}},
               "secrets": {"shadow": {"file": "/etc/shadow"}},
               "configs": {"key": {"file": "../../var/lib/nimbus/ca.key"}}}
    assert len(host_privileges(compose)) == 4


def test_an_ordinary_stack_has_no_findings():
    compose = {"services": {"web": {
        "image": "busybox", "cap_add": ["NET_BIND_SERVICE"], "cap_drop": ["ALL"],
        "volumes": ["data:/data", "/srv/web:/srv:ro", "./conf:/conf",
                    {"type": "volume", "source": "data", "target": "/d"}],
        "security_opt": ["no-new-privileges:true"], "networks": ["default"],
        "environment": {"HOME": "${HOME}"}, "command": "echo $$HOME"}},
        "volumes": {"data": {}}, "networks": {"front": {"driver": "overlay"}}}
    assert host_privileges(compose) == []


def _deploy(ops, compose, **extra):
    return ops.request("POST", "/v1/services",
                       {"name": "web", "swarm": "alpha", "compose": compose, **extra})


def _audit(server, event):
    lines = [json.loads(x) for x in (server.data_dir / "audit.log").read_text().splitlines()]
    return [e for e in lines if e["event"] == event]


def test_a_privileged_deploy_is_refused_naming_each_finding(server, ops):
    ops.request("POST", "/v1/swarms", {"name": "alpha"})
    compose = {"services": {"web": {"image": "busybox", "privileged": True,
                                    "volumes": ["/:/host", "/var/run/docker.sock:/s"]},
                            "db": {"image": "busybox", "network_mode": "host"}}}
    with pytest.raises(Forbidden) as refused:
        _deploy(ops, compose)
    message = refused.value.message
    assert "\n" not in message and "--allow-privileged" in message
    for phrase in ("'web' is privileged", "host path /;", "host path /var/run/docker.sock",
                   "'db' joins the host's network namespace"):
        assert phrase in message, message
    assert ops.request("GET", "/v1/services") == []
    assert _audit(server, "service.privileged_refused")[0]["findings"][0].endswith("privileged")
    with pytest.raises(BadRequest):
        _deploy(ops, compose, allow_privileged="yes")


def test_allow_privileged_lets_it_through_and_is_audited(server, ops):
    ops.request("POST", "/v1/swarms", {"name": "alpha"})
    compose = {"services": {"web": {"image": "busybox", "cap_add": ["ALL"]}}}
    # Past the privilege check, the swarm without nodes is the next refusal.
    with pytest.raises(Exception, match="no nodes yet"):
        _deploy(ops, compose, allow_privileged=True)
    allowed = _audit(server, "service.privileged")
    assert allowed[0]["findings"] == ["service 'web' adds capabilities ALL"]
    assert allowed[0]["actor"]


def test_a_variable_cannot_hide_a_host_mount(server, ops):
    # The control plane substitutes ${VAR} before the check, so the check sees "/".
    ops.request("POST", "/v1/swarms", {"name": "alpha"})
    compose = {"services": {"web": {"image": "busybox", "volumes": ["${ROOT:-/srv}:/host"]}}}
    with pytest.raises(Forbidden, match="mounts the host path / - "):
        _deploy(ops, compose, env={"ROOT": "/"})
    with pytest.raises(Exception, match="no nodes yet"):  # /srv: not a finding
        _deploy(ops, compose)


def test_the_cli_refuses_in_one_line_and_takes_allow_privileged(server, cli, admin, tmp_path):
    cli.json("swarm", "create", "--name", "alpha")
    stack = tmp_path / "root.yml"
    stack.write_text("services:\n  web:\n    image: busybox\n    privileged: true\n"
                     "    volumes: ['/:/host']\n")
    refused = cli.run("service", "deploy", "--swarm", "alpha", "--file", str(stack), "--name",
                      "web", check=False)
    assert refused.returncode != 0 and refused.stderr.count("\n") == 1, refused.stderr
    assert "'web' is privileged; service 'web' mounts the host path /" in refused.stderr
    assert "--allow-privileged" in refused.stderr
    allowed = cli.run("service", "deploy", "--swarm", "alpha", "--file", str(stack), "--name",
                      "web", "--allow-privileged", check=False)
    assert allowed.returncode != 0 and "no nodes yet" in allowed.stderr, allowed.stderr
