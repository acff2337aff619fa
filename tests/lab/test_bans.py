"""fail2ban, seen from outside: repeated failed logins get an address blocked at the TCP
level; unbanning lets it back in; loopback and the operator are never banned."""

import subprocess
import time

import pytest

pytestmark = [pytest.mark.mta]


def fail_logins(source, target, times: int):
    for _ in range(times):
        source.ssh(target, "intruder", "-o", "ConnectTimeout=3")


def banned(on_server) -> set[str]:
    status = on_server.check_output("fail2ban-client status sshd")
    return set(status.split("Banned IP list:")[1].split())


def failures(on_server) -> str:
    return on_server.check_output("fail2ban-client status sshd | grep 'Total failed'")


def wait_for(predicate, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    return False


@pytest.mark.lab("gets its attacker banned: needs a spare host to ban")
def test_repeated_failed_logins_ban_the_host_and_unban_lets_it_back(on_server, server, attacker):
    assert attacker.tcp_open(server.ipv4, 22), "the attacker must start unbanned"
    fail_logins(attacker, server, 8)
    assert wait_for(lambda: attacker.ipv4 in banned(on_server)), "not banned after 8 failures"
    # The ban is a firewall block, not sshd refusing the login: no TCP connection at all.
    assert not attacker.tcp_open(server.ipv4, 22)
    assert "f2b" in on_server.check_output("nft list ruleset") and attacker.ipv4 in on_server.check_output(
        "nft list ruleset"
    )
    # Let fail2ban finish reading the journal, or a late line bans the attacker again.
    counts = []
    assert wait_for(lambda: counts.append(failures(on_server)) or counts[-3:] == [counts[-1]] * 3)
    on_server.check_output("fail2ban-client set sshd unbanip %s", attacker.ipv4)
    assert wait_for(lambda: attacker.tcp_open(server.ipv4, 22)), "still blocked after unban"


@pytest.mark.lab("fails logins from the operator: a wrong operator_networks would lock you out")
def test_operator_address_is_never_banned(on_server, server, site, lab):
    operator = site["operator_networks"][0]  # this machine, on the lab bridge
    for _ in range(8):  # from this machine itself: the operator, on the bridge
        subprocess.run(
            ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
             "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=3", f"intruder@{server.ipv4}", "true"],
            capture_output=True, timeout=30,
        )
    time.sleep(3)
    assert operator not in banned(on_server)
    assert operator in on_server.check_output("fail2ban-client get sshd ignoreip")
    assert server.name and subprocess.run(  # and sshd still lets the operator connect
        ["bash", "-c", f"exec 3<>/dev/tcp/{server.ipv4}/22"], timeout=10
    ).returncode == 0


def test_loopback_is_never_banned(on_server):
    for _ in range(8):
        on_server.run(
            "ssh -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
            "-o ConnectTimeout=3 intruder@127.0.0.1 true || true"
        )
    time.sleep(3)
    assert "127.0.0.1" not in banned(on_server)
    ignored = on_server.check_output("fail2ban-client get sshd ignoreip")
    assert "127.0.0.0/8" in ignored and "::1" in ignored


def fail_mail_logins(source, server, times: int, port: int) -> None:
    """Wrong passwords from `source`'s address: IMAPS (993) or SMTP AUTH after STARTTLS (587)."""
    login = (f"s = imaplib.IMAP4_SSL('{server.ipv4}', 993, ssl_context=ctx); s.login('alice@inhouse.test', 'wrong')"
             if port == 993 else
             f"s = smtplib.SMTP('{server.ipv4}', 587, timeout=10); s.starttls(context=ctx); "
             "s.login('alice@inhouse.test', 'wrong')")
    code = ("import imaplib, smtplib, ssl\nctx = ssl._create_unverified_context()\n"
            f"for _ in range({times}):\n    try:\n        {login}\n    except Exception:\n        pass\n")
    source.run("python3", "-c", code, timeout=120)


@pytest.fixture
def mail_jails(on_server, attacker, site):
    jails = {993: "dovecot", 587: "postfix-sasl" if site["mta"] == "postfix" else "exim"}
    yield jails
    for jail in jails.values():
        on_server.run("fail2ban-client set %s unbanip %s", jail, attacker.ipv4)
        on_server.run("fail2ban-client reload --restart --unban %s", jail)


@pytest.mark.lab("gets its attacker banned from mail: needs a spare host to ban")
@pytest.mark.parametrize("port", [993, 587])
def test_repeated_failed_mail_logins_ban_the_host(on_server, server, attacker, mail_jails, port):
    jail = mail_jails[port]
    on_server.check_output("fail2ban-client reload --restart --unban %s", jail)
    assert attacker.tcp_open(server.ipv4, port), "the attacker must start unbanned"
    fail_mail_logins(attacker, server, 6, port)
    status = lambda: on_server.check_output("fail2ban-client status %s", jail)  # noqa: E731
    assert wait_for(lambda: attacker.ipv4 in status().split("Banned IP list:")[1]), status()
    assert not attacker.tcp_open(server.ipv4, port)
    on_server.check_output("fail2ban-client set %s unbanip %s", jail, attacker.ipv4)
    assert wait_for(lambda: attacker.tcp_open(server.ipv4, port)), "still blocked after unban"
