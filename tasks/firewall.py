"""Firewall: iptables for IPv4 and IPv6, inbound denied except what this host serves
("Making a Mailserver (Part 1)", step 6).

Rules are whole files (/etc/iptables/rules.v4, rules.v6) that netfilter-persistent loads at
boot; each is checked with iptables-restore --test before it replaces the old one and is
loaded only when it changed. fail2ban's bans live in its own nftables table, not here.
Reads: firewall_extra_ports, firewall_extra_rules; the components' ports (to everyone) and
sources (to some networks only) come from deploy.py.
"""

import ipaddress

from pyinfra.api import deploy

from tasks.util import ConfigFile, activate, install_files, render
from tasks.validate import IPTABLES_RULE, PORT, is_one_line, listing, rule

DEFAULTS = {
    # More ports to open to everyone, as "tcp/PORT" or "udp/PORT".
    "firewall_extra_ports": [],
    # Extra raw rules for the filter table, IPv4 and IPv6 alike (iptables-save syntax,
    # "-A INPUT -s 192.0.2.7 -p tcp --dport 8080 -j ACCEPT"); checked before loading.
    "firewall_extra_rules": [],
}
# The type and format of each setting, checked before anything connects (tasks/data.py).
CHECKS = {
    "firewall_extra_ports": listing(rule(lambda v: isinstance(v, str) and (m := PORT.fullmatch(v))
                                         and 0 < int(m[2]) < 65536, "is not tcp/PORT or udp/PORT")),
    "firewall_extra_rules": listing(rule(lambda v: is_one_line(v) and IPTABLES_RULE.fullmatch(v),
                                         "is not one iptables rule (-A INPUT ... -j ACCEPT)")),
}
PACKAGES = ["iptables", "iptables-persistent", "netfilter-persistent"]
# netfilter-persistent's start loads the rules files; a restart reloads them.
UNITS = {"netfilter-persistent": "restart"}


def files(data: dict, system: dict, ports: list[str], sources: list[tuple[str, str]]) -> list[ConfigFile]:
    """Open `ports` ("tcp/22", ...) of the enabled components and firewall_extra_ports to
    everyone, and each (network, port) of `sources` to that network only; drop every other
    new inbound connection."""
    open_ports = [p.split("/") for p in sorted(set(ports + data["firewall_extra_ports"]))]
    return [
        ConfigFile(f"/etc/iptables/rules.v{v}", render("firewall/rules.j2", data, v=v, ports=open_ports, sources=[
            (net, *port.split("/")) for net, port in sources if ipaddress.ip_network(net, strict=False).version == v
        ]), check=f"{cmd}-restore --test {{path}}", mode="640")
        for v, cmd in ((4, "iptables"), (6, "ip6tables"))
    ]


@deploy("Firewall")
def apply(data: dict, configs: list[ConfigFile], state: dict):
    activate(UNITS, install_files(configs, state), state)
