"""lab/rehearse's inventory (lab/site_inventory.py.in): an operator's site on lab hosts.
Rendered from a lab's outputs made up here; no lab needed."""

import json
import runpy
import shutil
import subprocess
from pathlib import Path

from tasks.data import inventory_hosts
from tasks.password import read_passwords

REPO = Path(__file__).resolve().parents[2]
HARBOUR = REPO / "lab/sites/harbour"


def lab_outputs(out: Path, hosts: int, site: Path = HARBOUR) -> Path:
    """What lab.py up and lab/site.py write, for `hosts` lab hosts."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(out / "id_ed25519")], check=True)
    (out / "hosts.json").write_text(json.dumps({
        "operator": ["10.77.0.1", "fd77:1ab::1"], "key": str(out / "id_ed25519"),
        "hosts": {f"lab{i}": {"ipv4": f"10.77.0.{10 + i}", "ipv6": f"fd77:1ab::{10 + i:x}"}
                  for i in range(1, hosts + 1)}}))
    (out / "site.json").write_text(json.dumps({"inventory": str(site / "inventory.py"),
                                               "group_data": str(site / "group_data")}))
    shutil.copyfile(REPO / "lab/site_inventory.py.in", out / "inventory.py")
    return out / "inventory.py"


def test_their_site_on_lab_hosts_with_lab_secrets(tmp_path):
    hosts = inventory_hosts(runpy.run_path(str(lab_outputs(tmp_path, 3))))
    mx, relay, rest = hosts["mx.harbour.test"], hosts["relay.harbour.test"], hosts["lab3"]
    # Their names, domains, users, MTA and DNS server; the lab's addresses (none of IPv6
    # for their IPv4-only relay) and the last host for the lab's internet.
    assert (mx["ipv4"], mx["ipv6"], relay["ipv4"], relay["ipv6"]) == ("10.77.0.11", "fd77:1ab::b", "10.77.0.12", None)
    assert (mx["domain"], mx["extra_domains"], mx["mta"], mx["zone_server"]) == (
        "harbour.test", ["lighthouse.test"], "exim4", "nsd")
    assert mx["mail_aliases"]["crew@lighthouse.test"] == ["anna@harbour.test", "ben@lighthouse.test"]
    assert rest["fqdn"] == "lab3.lab.test" and "tcp/14000" in rest["firewall_extra_ports"]
    # The lab's key, networks and secrets_dir; passwords made for the lab, their hashes there.
    assert mx["secrets_dir"] == str(tmp_path / "secrets") and mx["operator_networks"] == ["10.77.0.1", "fd77:1ab::1"]
    assert mx["admin_ssh_keys"] == [(tmp_path / "id_ed25519.pub").read_text().strip()]
    assert (mx["admin_user"], mx["ssh_user"], mx["ssh_key"]) == ("keeper", "keeper", str(tmp_path / "id_ed25519"))
    made = json.loads((tmp_path / "mail-users.json").read_text())
    assert set(made) == set(read_passwords(mx)[0]) == {"anna@harbour.test", "ben@lighthouse.test"}
    # The lab compresses time: TTLs of seconds, so that rehearsed key rolls take seconds
    # (the DS TTL is the lab root's, lab/root.py).
    assert (mx["zone_ttl"], mx["zone_parent_ds_ttl"], relay["zone_ttl"]) == (20, 20, 20)
    # Nothing of this checkout's own site (group_data/all.py: example.org) leaks in.
    assert not any("example.org" in json.dumps(d, default=str) for d in hosts.values())


def test_a_site_needs_a_lab_host_more_than_it_has(tmp_path):
    r = subprocess.run([str(REPO / ".venv/bin/python"), "-c", "import runpy, sys; runpy.run_path(sys.argv[1])",
                        str(lab_outputs(tmp_path, 2))], cwd=REPO, capture_output=True, text=True)
    assert r.returncode and "none left for the lab's internet" in r.stderr, r.stderr
    count = subprocess.run([str(REPO / ".venv/bin/python"), "lab/site.py", "count", str(HARBOUR / "inventory.py")],
                           cwd=REPO, capture_output=True, text=True, check=True)
    assert count.stdout.strip() == "3"


def test_a_hidden_home_stays_hidden_on_the_lab(tmp_path):
    hosts = inventory_hosts(runpy.run_path(str(lab_outputs(tmp_path, 3, REPO / "lab/sites/meadow"))))
    home, vps = hosts["home.meadow.test"], hosts["vps.meadow.test"]
    assert (home["ipv4"], home["ipv6"], vps["ipv4"], vps["ipv6"]) == ("10.77.0.11", None, "10.77.0.12", "fd77:1ab::c")
    assert home["link_enabled"] is home["link_home_hidden"] is True and home["mta"] == "postfix"
    # Their LAN stays out: the lab's operator reaches the home.
    assert home["operator_networks"] == ["10.77.0.1", "fd77:1ab::1"]
