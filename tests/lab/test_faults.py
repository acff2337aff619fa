"""Fault injection: a config that fails its check never goes live; the deploy fails on
that host, the old config keeps running and SSH keeps working."""

import json

import pytest

CASES = {
    "sshd": ("ssh_extra_config", ["NoSuchOption yes"], "/etc/ssh/sshd_config.d/00-inhouse.conf",
             "sshd rejected"),
    "firewall": ("firewall_extra_rules", ["-A INPUT -p tcp --dport 70000 -j ACCEPT"],
                 "/etc/iptables/rules.v4", "iptables-restore rejected"),
}


@pytest.mark.lab("deploys broken configs")
@pytest.mark.parametrize("case", CASES)
def test_broken_config_fails_the_deploy_and_keeps_the_old_one(case, deploy, on_server, server, observer, site):
    key, value, path, message = CASES[case]
    old = on_server.check_output("sha256sum %s", path)
    live = on_server.check_output("sshd -T; iptables-save | grep -v '^#' | sed 's/\\[[0-9:]*\\]//'")
    result, _, failed = deploy("--limit", server.name, "--data", f"{key}={json.dumps(value)}")
    assert result.returncode != 0 and failed >= 1, result.stdout[-3000:]
    assert message in result.stdout + result.stderr
    assert on_server.check_output("sha256sum %s", path) == old
    assert not on_server.file(f"{path}.new").exists and not on_server.file(f"{path}.bak").exists
    assert on_server.check_output("sshd -T; iptables-save | grep -v '^#' | sed 's/\\[[0-9:]*\\]//'") == live
    r = observer.ssh(server, site["admin_user"])  # a new login, not the test's connection
    assert r.returncode == 0, r.stderr
