"""Fixtures: the lab's hosts by role, seen from outside and from inside.

Roles: `server` (lab1) is the host under test; `observer` (lab2) and `attacker` (lab3)
are other lab hosts, deployed the same way, whose network namespaces the tests use as
vantage points: commands run from this machine inside their namespace, so traffic leaves
from their addresses across the lab bridge, as it would from another server. Failed logins
come from the attacker only, so a ban never hides the observer's view; it is unbanned after
each test.

Lab tests need a deployed lab (lab/test does it all); without one they fail, never skip.
"""

import json
import re
import runpy
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import testinfra

REPO = Path(__file__).resolve().parent.parent
LAB = REPO / ".lab"


def pytest_sessionfinish(session, exitstatus):
    """A skipped test proves nothing: the run fails if any test was skipped."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter and reporter.stats.get("skipped") and exitstatus == 0:
        session.exitstatus = 1


@dataclass
class LabHost:
    name: str
    ipv4: str
    ipv6: str
    netns: str

    def run(self, *cmd: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run a command of this machine from inside this host's network namespace."""
        return subprocess.run(
            ["ip", "netns", "exec", self.netns, *cmd], capture_output=True, text=True, timeout=timeout
        )

    def ssh(self, target: str, user: str, *options: str, command: str = "true"):
        """An SSH login from this host to `target` with the lab key, as a client would try."""
        return self.run(
            "timeout", "20",
            "ssh", "-F", "/dev/null", "-i", str(LAB / "id_ed25519"), "-o", "IdentitiesOnly=yes",
            "-o", f"UserKnownHostsFile={LAB / 'known_hosts'}", "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", *options, f"{user}@{target}", command,
            timeout=30,
        )

    def tcp_open(self, target: str, port: int) -> bool:
        """Whether a TCP connection from this host to target:port is accepted."""
        r = self.run("timeout", "3", "bash", "-c", f"exec 3<>/dev/tcp/{target}/{port}", timeout=10)
        return r.returncode == 0


@pytest.fixture(scope="session")
def lab() -> dict:
    if not (LAB / "hosts.json").exists():
        pytest.fail("no lab: run lab/test, or lab/lab.py up and a bootstrap deploy first")
    return json.loads((LAB / "hosts.json").read_text())


@pytest.fixture(scope="session")
def site() -> dict:
    """The lab inventory's group data: admin user, keys, operator networks."""
    return runpy.run_path(str(LAB / "inventory.py"))["lab"][1]


def lab_host(lab: dict, name: str) -> LabHost:
    h = lab["hosts"][name]
    return LabHost(name, h["ipv4"], h["ipv6"], h["netns"])


@pytest.fixture(scope="session")
def server(lab) -> LabHost:
    return lab_host(lab, "lab1")


@pytest.fixture(scope="session")
def observer(lab) -> LabHost:
    return lab_host(lab, "lab2")


@pytest.fixture
def attacker(lab, on_server) -> LabHost:
    """The host that fails logins on purpose; sshd and fail2ban forgive it after each test."""
    host = lab_host(lab, "lab3")
    yield host
    on_server.run("fail2ban-client set sshd unbanip %s", host.ipv4)


@pytest.fixture(scope="session")
def ssh_config(lab, site) -> Path:
    """OpenSSH client config for testinfra: the admin, the lab key, one shared connection."""
    path = LAB / "ssh_config"
    path.write_text("".join(
        f"Host {name}\n  HostName {h['ipv4']}\n  User {site['admin_user']}\n"
        f"  IdentityFile {LAB / 'id_ed25519'}\n  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {LAB / 'known_hosts'}\n  StrictHostKeyChecking yes\n"
        "  BatchMode yes\n  ControlMaster auto\n  ControlPath /tmp/inhouse-lab-%C\n"
        "  ControlPersist 60\n  ServerAliveInterval 5\n"
        for name, h in lab["hosts"].items()
    ))
    yield path
    for name in lab["hosts"]:
        subprocess.run(["ssh", "-F", str(path), "-O", "exit", name], capture_output=True)


@pytest.fixture(scope="session")
def on_server(server, ssh_config):
    """testinfra host of the server, as the admin with sudo."""
    return testinfra.get_host(f"ssh://{server.name}", ssh_config=str(ssh_config), sudo=True)


@pytest.fixture(scope="session")
def deploy(lab):
    """Run the real deploy against the lab, as an operator would; returns the process and
    the numbers of operations that changed something and that failed, counted per host."""

    def run(*args: str) -> tuple[subprocess.CompletedProcess, int, int]:
        r = subprocess.run(
            [str(REPO / ".venv/bin/pyinfra"), "-y", str(LAB / "inventory.py"), "deploy.py", *args],
            cwd=REPO, capture_output=True, text=True, timeout=900,
        )
        results = re.findall(r"^\s+\[[^]]+\] (Success|Error|No changes)", r.stdout + r.stderr, re.M)
        assert results or r.returncode, f"pyinfra ran no operation:\n{r.stdout[-3000:]}{r.stderr}"
        return r, results.count("Success"), results.count("Error")

    return run
