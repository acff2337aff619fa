"""Fixtures: the host under test and the hosts that look at it, by role.

Roles: `server` is the host under test; `observer` looks at it from outside; `attacker`
fails logins on purpose and is forgiven (unbanned) after each test.

On the lab (the default, `--inventory .lab/inventory.py`): the server is lab1, the observer
lab2 and the attacker lab3. They are deployed like the server; the tests use their network
namespaces as vantage points: commands run from this machine inside their namespace, so
traffic leaves from their addresses across the lab bridge, as from another server.

On a real server (`--inventory inventory.py --target mx.example.org -m "not lab" tests`):
this machine is observer and attacker; it is the operator, so its failed logins are never
banned. It connects as pyinfra does, from the inventory's host data (`ssh_client_options`).
Tests marked `lab` (each with its reason) need the lab's spare hosts, known passwords or
outside.test. An inventory is the lab's only at .lab/inventory.py: a copy elsewhere is a
real server to the tests (lab/test checks the production path that way).

Lab tests need a deployed lab (lab/test does it all); without one they fail, never skip.
"""

import json
import os
import re
import runpy
import ssl
import subprocess
import urllib.request
from pathlib import Path

import pytest
import testinfra

from tasks import mail, registry, zone
from tasks.data import inventory_hosts
from tests.helpers import (
    FRONT_DOOR_PORTS,
    LAB,
    REPO,
    Endpoint,
    Inventory,
    Vantage,
    World,
    vantage,
    write_ssh_config,
)


def pytest_addoption(parser):
    parser.addoption("--inventory", default=str(LAB / "inventory.py"), help="pyinfra inventory")
    parser.addoption("--target", default=None, help="host under test (default: the first)")


def pytest_collection_modifyitems(config, items):
    """test_logs.py looks at what every other test left in the logs: it runs after the
    others, and before test_rebuild.py, which throws the disks away (the other tests'
    logs with them) and runs last."""
    order = {"test_logs": 1, "test_rebuild": 2}
    items.sort(key=lambda item: order.get(item.module.__name__.rsplit(".", 1)[-1], 0))


def is_lab_inventory(config) -> bool:
    return Path(config.getoption("--inventory")).resolve() == LAB / "inventory.py"


def pytest_sessionfinish(session, exitstatus):
    """A skipped test proves nothing: on the lab the run fails if any test was skipped. A
    real server may lack what a test needs (IPv6 from this machine): -ra lists the skips."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter and reporter.stats.get("skipped") and exitstatus == 0 and is_lab_inventory(session.config):
        session.exitstatus = 1


@pytest.fixture(scope="session")
def inventory(request) -> Inventory:
    path = Path(request.config.getoption("--inventory")).resolve()
    if not path.exists():
        pytest.fail(f"no inventory at {path}: for the lab run lab/test (or lab/lab.py up and a deploy)")
    return Inventory(inventory_hosts(runpy.run_path(str(path))), path == LAB / "inventory.py")


@pytest.fixture(scope="session")
def target(request, inventory) -> str:
    name = request.config.getoption("--target") or next(iter(inventory.hosts))
    if name not in inventory.hosts:
        pytest.fail(f"--target {name}: not in the inventory ({', '.join(inventory.hosts)})")
    return name


@pytest.fixture(scope="session")
def site(inventory, target) -> dict:
    """The target's data as pyinfra sees it: admin_user, operator_networks, ..."""
    return inventory.hosts[target]


def lab_only(inventory: Inventory, role: str):
    if not inventory.is_lab:
        pytest.fail(f"the {role} role needs the lab; run with -m 'not lab' against a real server")


@pytest.fixture(scope="session")
def server(inventory, target) -> Vantage:
    return vantage(inventory, target)


@pytest.fixture(scope="session")
def observer(inventory, site) -> Vantage:
    if inventory.is_lab:
        return vantage(inventory, "lab2")
    return Vantage("this machine", "", None, None, site.get("ssh_key"))


@pytest.fixture
def attacker(inventory, site, on_server):
    if not inventory.is_lab:
        yield Vantage("this machine", "", None, None, site.get("ssh_key"))
        return
    host = vantage(inventory, "lab3")
    # A clean slate: unbanning keeps the failures counted, so restart the jail too.
    on_server.check_output("fail2ban-client reload --restart --unban sshd")
    yield host
    on_server.run("fail2ban-client set sshd unbanip %s", host.ipv4)


@pytest.fixture(scope="session")
def ssh_config(inventory, server, site, tmp_path_factory) -> Path:
    folder = LAB if inventory.is_lab else tmp_path_factory.mktemp("ssh")
    path = write_ssh_config(folder / f"inhouse-ssh-config-{server.name}", server.name, site)
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
        path = write_ssh_config(LAB / f"inhouse-ssh-config-{name}", name, inventory.hosts[name])
        opened.append((path, name))
        return testinfra.get_host(f"ssh://{name}", ssh_config=str(path), sudo=True)

    yield get
    for path, name in opened:
        subprocess.run(["ssh", "-F", str(path), "-O", "exit", name], capture_output=True)


@pytest.fixture(scope="session")
def services(site) -> list[str]:
    """The daemons the deploy keeps running on the server, from its data."""
    return registry.daemons(site)


@pytest.fixture(scope="session")
def lab(inventory):
    lab_only(inventory, "deploy")


@pytest.fixture(scope="session")
def deploy(lab):
    """Run the real deploy against the lab, as an operator would; returns the process and
    the numbers of operations that changed something and that failed, counted per host."""

    def run(*args: str, bootstrap: bool = False) -> tuple[subprocess.CompletedProcess, int, int]:
        """bootstrap: the first run on a fresh host, as root (INHOUSE_BOOTSTRAP=1)."""
        r = subprocess.run(
            [str(REPO / ".venv/bin/pyinfra"), "-y", str(LAB / "inventory.py"), "deploy.py", *args],
            cwd=REPO, capture_output=True, text=True, timeout=900,
            env=os.environ | {"INHOUSE_BOOTSTRAP": "1" if bootstrap else "0"},
        )
        # A dry run stops after preparing (pyinfra: "Skipping change detection").
        ran = "Beginning operation run" in r.stderr or ("--dry" in args and "Skipping change detection" in r.stderr)
        assert ran or r.returncode, f"pyinfra did not run:\n{r.stderr[-3000:]}"
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
def world(inventory, site) -> World:
    ca_roots = None
    if site["tls_acme_ca_bundle"]:  # a private ACME CA: pebble (the lab's) gives its roots on 15000
        lab_ca = ssl.create_default_context(cadata=site["tls_acme_ca_bundle"])
        management = site["tls_acme_server"].replace(":14000/dir", ":15000/roots/0")
        with urllib.request.urlopen(management, context=lab_ca, timeout=10) as r:
            ca_roots = r.read().decode()
    if site["resolver_trust_anchors"]:
        ours = {h["fqdn"] for hosts in site["zone_hosts"].values() for h in hosts}
        outside = [d["ipv4"] for d in inventory.hosts.values() if d["fqdn"] not in ours and d.get("ipv4")]
        return World(site["resolver_trust_anchors"], ca_roots, "outside.test", f"[{(outside or ['192.0.2.1'])[0]}]")
    # RFC 2606 and RFC 5737 names: no one's mail, and nothing is ever sent (no DATA).
    return World([], ca_roots, "example.com", "[192.0.2.1]")


@pytest.fixture(scope="session")
def tls_context(world) -> ssl.SSLContext:
    """Trusts what the server's ACME CA signs, as clients trust Let's Encrypt."""
    return ssl.create_default_context(cadata=world.ca_roots) if world.ca_roots else ssl.create_default_context()


@pytest.fixture(scope="session")
def mx(mail_data, server, tls_context) -> Endpoint:
    """Where users and the internet meet the mail host: itself, or, for a home hidden
    behind the relay (link_home_hidden), the relay's front door (tasks/proxy.py)."""
    if zone.hidden(mail_data):
        door = zone.front_door(mail_data)
        return Endpoint(door["fqdn"], door["ipv4"], tls_context, FRONT_DOOR_PORTS)
    return Endpoint(mail_data["fqdn"], server.ipv4, tls_context)
