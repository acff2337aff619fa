"""Fixtures: the host under test and the hosts that look at it, by role.

Roles: `server` is the host under test; `observer` looks at it from outside; `attacker`
fails logins on purpose and is forgiven (unbanned) after each test.

On the lab (the default, `--inventory .lab/inventory.py`): the server is lab1, the observer
lab2 and the attacker lab3. They are deployed like the server; the tests use their network
namespaces as vantage points: commands run from this machine inside their namespace, so
traffic leaves from their addresses across the lab bridge, as from another server.

On a real server (`--inventory inventory.py --target mx.example.org -m "not lab"`): this
machine is observer and attacker; it is the operator, so its failed logins are never banned.
Tests marked `lab` (bans, reboot, deploys, fault injection) need the lab's spare hosts.

Lab tests need a deployed lab (lab/test does it all); without one they fail, never skip.
"""

import imaplib
import json
import re
import runpy
import smtplib
import socket
import ssl
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import testinfra

from tasks import mail, zone
from tasks.data import inventory_hosts

REPO = Path(__file__).resolve().parent.parent
LAB = REPO / ".lab"


def pytest_addoption(parser):
    parser.addoption("--inventory", default=str(LAB / "inventory.py"), help="pyinfra inventory")
    parser.addoption("--target", default=None, help="host under test (default: the first)")


def pytest_collection_modifyitems(config, items):
    """test_logs.py looks at what every other test left in the logs: it runs last."""
    items.sort(key=lambda item: item.module.__name__.endswith("test_logs"))


def pytest_sessionfinish(session, exitstatus):
    """A skipped test proves nothing: the run fails if any test was skipped."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter and reporter.stats.get("skipped") and exitstatus == 0:
        session.exitstatus = 1


@dataclass
class Vantage:
    """A place to look from: a lab host's network namespace, or this machine (netns None)."""

    name: str
    ipv4: str
    ipv6: str | None
    netns: str | None
    key: str | None  # SSH key to log in with; None: the user's own

    def run(self, *cmd: str, timeout: float = 60) -> subprocess.CompletedProcess:
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        return subprocess.run([*prefix, *cmd], capture_output=True, text=True, timeout=timeout)

    def ssh(self, target: str, user: str, *options: str, command: str = "true"):
        """An SSH login from here to `target`, as a client would try."""
        key = ["-i", self.key, "-o", "IdentitiesOnly=yes"] if self.key else []
        known = ["-o", f"UserKnownHostsFile={LAB / 'known_hosts'}"] if self.netns else []
        return self.run(
            "timeout", "20", "ssh", "-F", "/dev/null", *key, *known, "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", *options, f"{user}@{target}", command,
            timeout=30,
        )

    def tcp_open(self, target: str, port: int) -> bool:
        """Whether a TCP connection from here to target:port is accepted."""
        r = self.run("timeout", "3", "bash", "-c", f"exec 3<>/dev/tcp/{target}/{port}", timeout=10)
        return r.returncode == 0


@pytest.fixture(scope="session")
def inventory(request) -> tuple[dict, bool]:
    """(name -> merged data of every host, whether this is the lab)."""
    path = Path(request.config.getoption("--inventory")).resolve()
    if not path.exists():
        pytest.fail(f"no inventory at {path}: for the lab run lab/test (or lab/lab.py up and a deploy)")
    return inventory_hosts(runpy.run_path(str(path))), path == LAB / "inventory.py"


@pytest.fixture(scope="session")
def target(request, inventory) -> str:
    hosts, _ = inventory
    name = request.config.getoption("--target") or next(iter(hosts))
    if name not in hosts:
        pytest.fail(f"--target {name}: not in the inventory ({', '.join(hosts)})")
    return name


@pytest.fixture(scope="session")
def site(inventory, target) -> dict:
    """The target's data as pyinfra sees it: admin_user, operator_networks, ..."""
    return inventory[0][target]


def vantage(inventory, name: str) -> Vantage:
    hosts, is_lab = inventory
    data = hosts[name]
    key = data.get("ssh_key")
    return Vantage(name, data.get("ipv4") or data.get("ssh_hostname") or name, data.get("ipv6"),
                   f"ihlab-{name}" if is_lab else None, key)


def lab_only(inventory, role: str):
    if not inventory[1]:
        pytest.fail(f"the {role} role needs the lab; run with -m 'not lab' against a real server")


@pytest.fixture(scope="session")
def server(inventory, target) -> Vantage:
    return vantage(inventory, target)


@pytest.fixture(scope="session")
def observer(inventory, site) -> Vantage:
    if inventory[1]:
        return vantage(inventory, "lab2")
    return Vantage("this machine", "", None, None, site.get("ssh_key"))


@pytest.fixture
def attacker(inventory, site, on_server):
    if not inventory[1]:
        yield Vantage("this machine", "", None, None, site.get("ssh_key"))
        return
    host = vantage(inventory, "lab3")
    # A clean slate: unbanning keeps the failures counted, so restart the jail too.
    on_server.check_output("fail2ban-client reload --restart --unban sshd")
    yield host
    on_server.run("fail2ban-client set sshd unbanip %s", host.ipv4)


def write_ssh_config(path: Path, name: str, data: dict) -> Path:
    """OpenSSH client config for testinfra: the admin, the key, one shared connection."""
    lines = [f"Host {name}", f"HostName {data.get('ssh_hostname') or name}",
             f"User {data['admin_user']}", f"Port {data['ssh_port']}", "BatchMode yes",
             "ControlMaster auto", "ControlPath /tmp/inhouse-%C", "ControlPersist 60", "ServerAliveInterval 5"]
    if data.get("ssh_key"):
        lines += [f"IdentityFile {data['ssh_key']}", "IdentitiesOnly yes"]
    if data.get("ssh_known_hosts_file"):
        lines += [f"UserKnownHostsFile {data['ssh_known_hosts_file']}", "StrictHostKeyChecking yes"]
    path.write_text("\n  ".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def ssh_config(inventory, server, site) -> Path:
    path = write_ssh_config((LAB if inventory[1] else Path("/tmp")) / f"inhouse-ssh-config-{server.name}",
                            server.name, site)
    yield path
    subprocess.run(["ssh", "-F", str(path), "-O", "exit", server.name], capture_output=True)


@pytest.fixture(scope="session")
def on_server(server, ssh_config):
    """testinfra host of the server, as the admin with sudo."""
    return testinfra.get_host(f"ssh://{server.name}", ssh_config=str(ssh_config), sudo=True)


@pytest.fixture(scope="session")
def lab_host(inventory):
    """testinfra host of another lab host by name (lab3 is the rest of the internet)."""
    lab_only(inventory, "lab host")
    opened = []

    def get(name: str):
        path = write_ssh_config(LAB / f"inhouse-ssh-config-{name}", name, inventory[0][name])
        opened.append((path, name))
        return testinfra.get_host(f"ssh://{name}", ssh_config=str(path), sudo=True)

    yield get
    for path, name in opened:
        subprocess.run(["ssh", "-F", str(path), "-O", "exit", name], capture_output=True)


@pytest.fixture(scope="session")
def services(site) -> list[str]:
    """The daemons the deploy keeps running on the server, from its data."""
    daemons = ["ssh", "fail2ban", "chrony", "netfilter-persistent", "unbound"]
    if site["zone_enabled"] and zone.role(site) != "none":
        daemons += [u for u in zone.implementation(site).UNITS if not u.endswith(".timer")]
    if site["mail_enabled"] and mail.role(site) != "none":
        daemons += list(mail.implementation(site).UNITS)
        if mail.role(site) == "mail":
            daemons += ["dovecot", "nginx"] + (["opendkim", "opendmarc"] if site["mta"] == "postfix" else [])
    return daemons


@pytest.fixture(scope="session")
def lab(inventory):
    lab_only(inventory, "deploy")


@pytest.fixture(scope="session")
def deploy(lab):
    """Run the real deploy against the lab, as an operator would; returns the process and
    the numbers of operations that changed something and that failed, counted per host."""

    def run(*args: str) -> tuple[subprocess.CompletedProcess, int, int]:
        r = subprocess.run(
            [str(REPO / ".venv/bin/pyinfra"), "-y", str(LAB / "inventory.py"), "deploy.py", *args],
            cwd=REPO, capture_output=True, text=True, timeout=900,
        )
        assert "Beginning operation run" in r.stderr or r.returncode, f"pyinfra did not run:\n{r.stderr[-3000:]}"
        results = re.findall(r"^\s+\[[^]]+\] (Success|Error|No changes)", r.stdout + r.stderr, re.M)
        return r, results.count("Success"), results.count("Error")

    return run


@pytest.fixture(scope="session")
def mail_data(site, inventory) -> dict:
    assert mail.role(site) == "mail", "the server under test must be the mail host"
    return site


@pytest.fixture(scope="session")
def passwords(lab) -> dict[str, str]:
    return json.loads((LAB / "mail-users.json").read_text())


@pytest.fixture(scope="session")
def outside(lab_host):
    return lab_host("lab3")


@pytest.fixture(scope="session")
def tls_context(site) -> ssl.SSLContext:
    """Trusts what pebble (the lab's ACME CA) signs, as clients trust Let's Encrypt."""
    lab_ca = ssl.create_default_context(cadata=site["tls_acme_ca_bundle"])
    management = site["tls_acme_server"].replace(":14000/dir", ":15000/roots/0")
    with urllib.request.urlopen(management, context=lab_ca, timeout=10) as r:
        root = r.read().decode()
    return ssl.create_default_context(cadata=root)


class Endpoint:
    """Connections to a name at an address of our choosing (lab names are not in this
    machine's DNS); certificates are checked against the name."""

    def __init__(self, name: str, address: str, context: ssl.SSLContext):
        self.name, self.address, self.context = name, address, context

    def smtp(self, port: int, tls: bool = True) -> smtplib.SMTP:
        """A session on `port`: TLS at once on 465, STARTTLS first on the others (tls)."""
        address = self.address

        class Connection(smtplib.SMTP_SSL if port == 465 else smtplib.SMTP):
            def _get_socket(self, host, port, timeout):
                sock = socket.create_connection((address, port), timeout)
                return self.context.wrap_socket(sock, server_hostname=host) if port == 465 else sock

        kwargs = {"context": self.context} if port == 465 else {}
        s = Connection(self.name, port, local_hostname="client.outside.test", timeout=20, **kwargs)
        s.ehlo()
        if tls and port != 465:
            s.starttls(context=self.context)
            s.ehlo()
        return s

    def imap(self) -> imaplib.IMAP4_SSL:
        address = self.address

        class Connection(imaplib.IMAP4_SSL):
            def _create_socket(self, timeout):
                sock = socket.create_connection((address, self.port), timeout)
                return self.ssl_context.wrap_socket(sock, server_hostname=self.host)

        return Connection(self.name, 993, ssl_context=self.context, timeout=20)


@pytest.fixture(scope="session")
def mx(mail_data, server, tls_context) -> Endpoint:
    return Endpoint(mail_data["fqdn"], server.ipv4, tls_context)
