"""Resolver: unbound, a caching resolver that validates DNSSEC, for this host (the MTA needs
validated answers for DANE) and optionally a LAN ("Bringing E-Mail Server In-House": "a DNS caching,
DNSSEC-validating ... recursive server"; its wish for private upstream lookups is the
DNS-over-TLS forwarder).

unbound answers on loopback (bind has the public addresses), and this host resolves through
it. Root hints and trust anchors are data: Debian's (the real root) by default, the lab's
own in the lab.
Reads: resolver_networks, resolver_addresses, resolver_forward_tls, resolver_root_hints,
resolver_trust_anchors, domain, extra_domains.
"""

from pyinfra.api import deploy
from pyinfra.operations import server

from tasks.util import ConfigFile, activate, install_files, render
from tasks.validate import forward_problem, is_address, is_one_line, listing, network_problem, rule

DEFAULTS = {
    # LAN networks allowed to use this resolver (the home network of "Bringing E-Mail Server In-House"); the firewall
    # opens port 53 to them. Empty: this host only.
    "resolver_networks": [],
    # This host's LAN addresses unbound answers on, besides loopback.
    "resolver_addresses": [],
    # Forward every query over DNS-over-TLS to these servers ("9.9.9.9@853#dns.quad9.net")
    # instead of asking the authoritative servers directly. Empty: no forwarding.
    "resolver_forward_tls": [],
    # Root hints (zone-file lines) and trust anchors (DS or DNSKEY lines) of another root
    # than the internet's, as the lab's. Empty: Debian's, for the real root.
    "resolver_root_hints": [],
    # Trust anchors for the root zone of resolver_root_hints.
    "resolver_trust_anchors": [],
}
# The type and format of each setting, checked before anything connects (tasks/data.py).
CHECKS = {
    "resolver_networks": listing(network_problem),
    "resolver_addresses": listing(rule(is_address, "is not an IP address of this host")),
    "resolver_forward_tls": listing(forward_problem),
    **{k: listing(rule(lambda v: is_one_line(v) and '"' not in v and v.strip(), "must be one line of text"))
       for k in ("resolver_root_hints", "resolver_trust_anchors")},
}
PACKAGES = ["unbound", "dns-root-data", "bind9-dnsutils"]  # dig and delv, to look
UNITS = {"unbound": "restart"}
# Names unbound answers itself (RFC 6761 and friends), which a lab domain may use.
SPECIAL_TLDS = {"test", "example", "invalid", "local", "localhost", "onion", "home.arpa"}
DEBIAN_ANCHOR = "/etc/unbound/unbound.conf.d/root-auto-trust-anchor-file.conf"
# The internet root's anchor, which unbound keeps up to date: made at the first start from
# dns-root-data, and needed by unbound-checkconf before that.
ROOT_KEY = "/var/lib/unbound/root.key"


def sources(data: dict) -> list[tuple[str, str]]:
    """What the firewall opens to the LAN networks only."""
    return [(net, port) for net in data["resolver_networks"] for port in ("udp/53", "tcp/53")]


def paths(data: dict) -> list[str]:
    return [ROOT_KEY]


def files(data: dict, system: dict) -> list[ConfigFile]:
    check = "unbound-checkconf"
    special = sorted({d.rsplit(".", 1)[-1] for d in [data["domain"], *data["extra_domains"]]} & SPECIAL_TLDS)
    own_root = bool(data["resolver_trust_anchors"])
    # The root's hints and anchor first: the checker of the configs that name them reads them.
    configs = [
        ConfigFile("/etc/unbound/inhouse-root.hints", "\n".join(data["resolver_root_hints"]) + "\n"),
        ConfigFile("/etc/unbound/inhouse-root.anchor", "\n".join(data["resolver_trust_anchors"]) + "\n"),
    ] if own_root else []
    return configs + [
        # Debian's file names the real root's anchor; with a root of our own it names ours.
        ConfigFile(DEBIAN_ANCHOR, render("resolver/root-auto-trust-anchor-file.conf.j2", data, own_root=own_root),
                   check=check),
        ConfigFile("/etc/unbound/unbound.conf.d/inhouse.conf",
                   render("resolver/inhouse.conf.j2", data, special=special, own_root=own_root), check=check),
        ConfigFile("/etc/resolv.conf", render("resolver/resolv.conf.j2", data)),
    ]


# What unbound remembers of a zone that was not delegated yet: servers it found lame or
# unreachable (infra cache, 15 min by default: infra-host-ttl in unbound.conf(5)), negative
# answers and the NSEC records that prove them (up to the parent's SOA minimum, RFC 2308;
# aggressive-nsec reuses them, RFC 8198), and bogus answers. Dropped, the next query asks
# the parent afresh.
FLUSH = ["unbound-control flush_infra all", "unbound-control flush_zone .", "unbound-control flush_bogus",
         "unbound-control flush_requestlist"]


@deploy("Resolver")
def apply(data: dict, configs: list[ConfigFile], state: dict):
    if not data["resolver_trust_anchors"] and ROOT_KEY not in state["paths"]:
        server.shell(name=f"Create {ROOT_KEY}", commands=["/usr/libexec/unbound-helper root_trust_anchor_update"])
    changed = install_files(configs, state)
    inputs = {p: op for p, op in changed.items() if p != "/etc/resolv.conf"}
    # The first run comes before the registrar delegates the domains (or a rebuilt host
    # asked while they were broken): unbound cached that for as long as the parent allows.
    # Whenever the site's own names do not validate, forget it, so that this run (the ACME
    # CA's check, DANE, DKIM records) sees the delegation as it is now. A restart forgets too.
    if state.get("unvalidated") and not inputs:
        server.shell(name=f"Resolve {', '.join(state['unvalidated'])} afresh: unbound forgets what it cached",
                     commands=FLUSH)
    activate(UNITS, inputs, state)
