"""No lab: the tests' SSH clients reach a real server as pyinfra does, from the same host data."""

import subprocess

from tests.helpers import ssh_client_options, write_ssh_config

DATA = {"ssh_hostname": "mx.example.org", "ssh_user": "ops", "admin_user": "ops", "ssh_port": 2222,
        "ssh_key": "~/keys/ops", "ssh_known_hosts_file": "/srv/known_hosts", "ssh_strict_host_key_checking": "yes"}


def effective(*args: str) -> dict[str, str]:
    """What OpenSSH would use (ssh -G), without connecting."""
    out = subprocess.run(["ssh", "-G", *args], capture_output=True, text=True, check=True).stdout
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


def test_logins_by_address_trust_the_host_keys_pyinfra_trusts():
    # A test connects to an address; the key is looked up as paramiko does: "[name]:port".
    got = effective(*ssh_client_options("mx", DATA), "ops@192.0.2.10")
    assert got["hostname"] == "192.0.2.10" and got["port"] == "2222"
    assert got["hostkeyalias"] == "[mx.example.org]:2222"
    assert got["userknownhostsfile"] == "/srv/known_hosts" and got["stricthostkeychecking"] == "true"


def test_pyinfra_defaults_apply_when_the_data_names_none():
    got = effective(*ssh_client_options("mx.example.org", {"ssh_port": 22}), "ops@192.0.2.10")
    assert got["hostkeyalias"] == "mx.example.org" and got["port"] == "22"
    assert got["userknownhostsfile"].endswith("/.ssh/known_hosts") and got["stricthostkeychecking"] == "accept-new"


def test_testinfra_logs_in_as_pyinfra_does(tmp_path):
    path = write_ssh_config(tmp_path / "config", "mx", DATA)
    got = effective("-F", str(path), "mx")
    assert (got["hostname"], got["user"], got["port"]) == ("mx.example.org", "ops", "2222")
    assert got["identityfile"].endswith("/keys/ops") and got["identitiesonly"] == "yes"
    assert got["userknownhostsfile"] == "/srv/known_hosts" and got["stricthostkeychecking"] == "true"
    assert got["controlpath"].startswith(str(tmp_path))
