"""SSH from another host: the admin's key gets in; root and passwords never do."""

import pytest


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_admin_key_login_works_from_another_host(server, observer, site, family):
    r = observer.ssh(server, site["admin_user"], family=family, command="sudo -n true && echo ok")
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_root_login_is_refused_even_with_an_authorized_key(server, attacker, on_server, inventory):
    # The fresh lab host let root in with this very key; the key is still in root's file.
    assert on_server.file("/root/.ssh/authorized_keys").exists or not inventory.is_lab
    r = attacker.ssh(server, "root")
    assert r.returncode == 255 and "Permission denied" in r.stderr


def test_password_login_is_not_even_offered(server, attacker, site):
    r = attacker.ssh(
        server, site["admin_user"], "-o", "PubkeyAuthentication=no",
        "-o", "PreferredAuthentications=password,keyboard-interactive",
    )
    assert r.returncode == 255
    assert "Permission denied (publickey)" in r.stderr, r.stderr


def test_unknown_user_is_refused(server, attacker):
    r = attacker.ssh(server, "nobody")
    assert r.returncode == 255 and "Permission denied" in r.stderr


def test_sshd_runs_with_cis_values(on_server, site):
    effective = dict(
        line.split(" ", 1) for line in on_server.check_output("sshd -T").splitlines() if " " in line
    )
    expected = {
        "permitrootlogin": "no", "passwordauthentication": "no", "kbdinteractiveauthentication": "no",
        "permitemptypasswords": "no", "hostbasedauthentication": "no", "ignorerhosts": "yes",
        "allowusers": site["admin_user"], "logingracetime": "60", "maxauthtries": "4",
        "maxsessions": "10", "maxstartups": "10:30:60", "disableforwarding": "yes", "x11forwarding": "no",
        "allowtcpforwarding": "no", "allowagentforwarding": "no",
        "permituserenvironment": "no", "usepam": "yes", "authenticationmethods": "publickey",
    }
    assert {k: effective.get(k) for k in expected} == expected
    weak = ("cbc", "sha1", "md5", "nistp", "ssh-dss", "group1-", "group14-", "umac-64")
    for kind in ("ciphers", "macs", "kexalgorithms", "hostkeyalgorithms"):
        assert not [a for a in effective[kind].split(",") if any(w in a for w in weak)], kind
    conf = on_server.file("/etc/ssh/sshd_config.d/00-inhouse.conf")
    assert (conf.user, conf.group, conf.mode) == ("root", "root", 0o600)


@pytest.mark.parametrize("options", [
    ["-o", "Ciphers=aes128-cbc"],
    ["-o", "Ciphers=aes128-ctr", "-o", "MACs=hmac-sha1"],
    ["-o", "KexAlgorithms=diffie-hellman-group14-sha1"],
    ["-o", "HostKeyAlgorithms=ecdsa-sha2-nistp256"],
])
def test_server_offers_no_weak_algorithm_to_a_client(server, attacker, site, options):
    # A client that only speaks old algorithms cannot even start a session.
    r = attacker.ssh(server, site["admin_user"], *options)
    assert r.returncode == 255 and "no matching" in r.stderr, r.stderr
