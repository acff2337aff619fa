"""The firewall, seen from another host: only SSH and the enabled components answer, on
IPv4 and IPv6, even when something else listens; loopback is not filtered."""

import ipaddress
import re

import pytest

from tasks import link, mail, proxy, zone

pytestmark = [pytest.mark.mta]

PROBE_PORT = 8025


def open_ports(observer, address: str, *options: str) -> set[int]:
    r = observer.run(
        "nmap", "-Pn", "-n", "-p-", "--min-rate", "5000", "--max-retries", "1", "-oG", "-",
        *options, address, timeout=300,
    )
    assert r.returncode == 0, r.stderr
    return {int(p) for p in re.findall(r"(\d+)/open/tcp", r.stdout)}


@pytest.fixture(scope="module")
def listener(on_server):
    """A service the firewall knows nothing about, listening on every address."""
    unit = "inhouse-test-listener"
    on_server.check_output(
        "systemd-run --unit %s systemd-socket-activate -l %s --accept /bin/cat", unit, str(PROBE_PORT)
    )
    yield PROBE_PORT
    on_server.run("systemctl stop %s", unit)


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_only_intended_ports_answer_from_another_host(server, observer, listener, site, family):
    expected = {site["ssh_port"]} | ({53} if site["zone_enabled"] and zone.role(site) != "none" else set())
    if site["mail_enabled"]:  # SMTP; submission, IMAP, MTA-STS where served (80 opens only while certbot asks)
        expected |= {"mail": {25, 465, 587, 143, 993}, "relay": {25}, "none": set()}[mail.role(site)]
        expected |= {443} if zone.mta_sts_served(site) else set()
    address = observer.reach(server, family)
    if link.role(site) == "home" and link.hidden(site):
        # A hidden home answers its operator, its LAN and the link alone (tasks/registry.py),
        # there with the front door's ports inside the link too (tasks/proxy.py).
        source = ipaddress.ip_address(re.search(r"\bsrc (\S+)", observer.run("ip", "route", "get", address).stdout)[1])
        inside = any(source in ipaddress.ip_network(n, strict=False) for n in link.networks(site))
        expected = expected | {home for _, home in proxy.FRONT.values()} if inside else set()
    options = ["-6"] if family == "ipv6" else []
    assert open_ports(observer, address, *options) == expected


def test_unlisted_service_answers_on_loopback_only(on_server, server, observer, listener):
    assert on_server.run("timeout 3 bash -c 'exec 3<>/dev/tcp/127.0.0.1/%s'", str(listener)).rc == 0
    assert not observer.tcp_open(server.ipv4, listener)


def test_rules_are_on_disk_for_the_next_boot(on_server):
    for version, command in ((4, "iptables"), (6, "ip6tables")):
        saved = on_server.file(f"/etc/iptables/rules.v{version}").content_string
        assert ":INPUT DROP" in saved
        live = on_server.check_output(f"{command} -S INPUT")
        assert "-P INPUT DROP" in live and "--dport 22" in live
    assert on_server.service("netfilter-persistent").is_enabled
