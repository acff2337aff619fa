"""Link: a WireGuard tunnel from the mail host at home to the relay (the VPS), the first
piece of the plan of "Bringing E-Mail Server In-House": the mail lives at home, only the
VPS faces the internet.

The home server opens the link (it dials out: NAT, carrier-grade NAT and a changing home
address are fine, and PersistentKeepalive keeps the NAT's mapping open); the relay listens
on `link_port` (UDP) and learns where home is from authenticated packets (WireGuard's
roaming). Each end makes its own key on the host and keeps it (a rebuild brings it back,
so the other end's config stays right); the deploy carries only the public keys from one
end to the other, and the run after the one that made a key completes the peer. No trust
by IP address: a packet counts only if it is signed with the peer's key.

The kernel's WireGuard where it has one; else wg-quick starts wireguard-go, the userspace
implementation (the same deploy, the same unit: wg-quick falls back by itself when
`ip link add type wireguard` fails, as on the lab's kernel).
Reads: link_enabled, link_port, link_network, link_home_hidden (tasks/proxy.py, tasks/zone.py);
the hosts of the mail and relay groups.
"""

import ipaddress
import re
from pathlib import Path

from pyinfra.api import deploy
from pyinfra.operations import server

from tasks import mail, zone
from tasks.backup import ETRN
from tasks.secrets_dir import write_secret
from tasks.util import ConfigFile, activate, install_files, reload_unit_files, render
from tasks.validate import is_integer, rule, scalar

DEFAULTS = {
    # The mail host is a home server: it opens a WireGuard link to the relay (the VPS).
    "link_enabled": False,
    # The UDP port the relay listens on for the link.
    "link_port": 51820,
    # Private IPv4 network inside the link: the mail host takes its first address, each
    # relay the next ones (in the relay group's order). Pick one no LAN of yours uses.
    "link_network": "10.254.254.0/24",
    # The home server hides behind the relays: they are the only name servers, MX hosts and
    # the front door for users (IMAP 993 and submission 465 through tasks/proxy.py); home
    # keeps the mail, signs the zones and opens no port to the internet, only to the link,
    # operator_networks and mail_relay_networks (the home LAN). Needs link_enabled and postfix.
    "link_home_hidden": False,
}


def _private_network(value) -> bool:
    if not isinstance(value, str):
        return False
    try:
        net = ipaddress.ip_network(value)
    except (TypeError, ValueError):
        return False
    rfc1918 = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")]
    return net.version == 4 and any(net.subnet_of(r) for r in rfc1918) and 16 <= net.prefixlen <= 29


CHECKS = {
    **{k: scalar(rule(lambda v: isinstance(v, bool), "is not True or False")) for k in ("link_enabled",
                                                                                       "link_home_hidden")},
    "link_port": scalar(rule(lambda v: is_integer(v, 1, 65535), "is not a port number")),
    "link_network": scalar(rule(_private_network,
                                "is not a private IPv4 network (RFC 1918) of /16 to /29, like 10.254.254.0/24")),
}
NAME = "inhouse"  # the interface, and wg-quick@NAME
CONF = f"/etc/wireguard/{NAME}.conf"
KEY = f"/etc/wireguard/{NAME}.key"  # private, made on the host, never leaves it but in the escrow
PUBLIC = f"/etc/wireguard/{NAME}.pub"
UNIT = f"wg-quick@{NAME}"
WG_KEY = re.compile(r"[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=")  # 32 bytes, base64


def role(data: dict) -> str:
    """'home' (the mail host, which dials), 'hub' (a relay, which listens) or 'none'."""
    if data.get("link_enabled") is not True or not data["zone_hosts"].get("relay"):
        return "none"
    return {"mail": "home", "relay": "hub"}.get(mail.role(data), "none")


def problems(data: dict) -> list[str]:
    """A link asked for with nothing to link to; a hidden home the operator could not reach."""
    out = []
    if data.get("link_home_hidden") is True and mail.role(data) != "none":
        if data.get("link_enabled") is not True:
            out.append("link_home_hidden: the hidden home is reached only through the link: set link_enabled too")
        if data.get("mta") != "postfix":
            out.append("link_home_hidden: needs mta postfix (the relay's front door speaks PROXY to postfix)")
        if not data.get("operator_networks"):
            out.append("link_home_hidden: the hidden home lets in SSH only from operator_networks and the link: "
                       "set operator_networks, or the deploy would lock you out")
    if data.get("link_enabled") is not True or mail.role(data) == "none":
        return out
    relays = data["zone_hosts"].get("relay", [])
    if not relays:
        return [*out, "link_enabled: the link goes from the mail host to a relay: add a host to the relay group"]
    return out + [f"link_enabled: the relay {r['fqdn']} has no ipv4, which the mail host dials" for r in relays
                  if not r.get("ipv4")]


hidden = zone.hidden


def networks(data: dict) -> list[str]:
    """Who may reach a hidden home: the link, the operator, the machines of the home LAN."""
    return [data["link_network"], *data["operator_networks"], *data["mail_relay_networks"]]


def on(data: dict) -> bool:
    """On every mail and relay host: one that had a link and no longer should takes it down."""
    return mail.role(data) != "none"


def packages(data: dict) -> list[str]:
    return ["wireguard-tools", "wireguard-go"] if role(data) != "none" else []


PROBE = "/etc/systemd/system/inhouse-link-probe"  # .service, .timer: home only
PROBE_SCRIPT = "/usr/local/sbin/inhouse-link-probe"
PROBE_STATE = "/run/inhouse-link"  # the relays the probe saw answering


def units(data: dict) -> dict[str, str]:
    if role(data) == "none":
        return {}
    return {UNIT: "restart"} | ({"inhouse-link-probe.timer": ""} if role(data) == "home" else {})


def ports(data: dict) -> list[str]:
    return [f"udp/{data['link_port']}"] if role(data) == "hub" else []


def keeps(data: dict) -> list[str]:
    return [KEY] if role(data) != "none" else []


def heads(data: dict) -> list[str]:
    """The public key: this host's end of the link, if it has one (also one no longer wanted)."""
    return [PUBLIC]


def ends(data: dict) -> list[dict]:
    """Each end of the link with its address inside it: the mail host first, then the relays."""
    hosts = data["zone_hosts"].get("mail", [])[:1] + data["zone_hosts"].get("relay", [])
    return [h | {"link": zone.link_address(data, h["fqdn"])} for h in hosts]


def peer_group(data: dict) -> str:
    """The inventory group whose hosts are this host's peers."""
    return "relay" if role(data) == "home" else "mail"


def public_key(heads: dict[str, str]) -> str:
    found = heads.get(PUBLIC, "").strip()
    return found if WG_KEY.fullmatch(found) else ""


def remember(data: dict, fqdn: str, key: str) -> None:
    """Keep a peer's public key (secrets_dir/link/FQDN) for runs that cannot ask it."""
    path = Path(data["secrets_dir"]) / "link" / fqdn
    if WG_KEY.fullmatch(key) and (not path.exists() or path.read_text().strip() != key):
        write_secret(path, key + "\n")


def remembered(data: dict, fqdn: str) -> str:
    path = Path(data["secrets_dir"]) / "link" / fqdn
    key = path.read_text().strip() if path.exists() else ""
    return key if WG_KEY.fullmatch(key) else ""


def files(data: dict, system: dict) -> list[ConfigFile]:
    if role(data) == "none":
        return []
    me = next(e for e in ends(data) if e["fqdn"] == data["fqdn"])
    keys = system.get("link_peers", {})
    others = ends(data)[1:] if role(data) == "home" else ends(data)[:1]  # home: every relay; a relay: home
    peers = [e | {"key": keys[e["fqdn"]]} for e in others if keys.get(e["fqdn"])]
    prefix = ipaddress.ip_network(data["link_network"]).prefixlen
    wg = render("link/wg.conf.j2", data, role=role(data), me=me, prefix=prefix, peers=peers, key=KEY,
                probe_state=PROBE_STATE)
    configs = [ConfigFile(CONF, wg, check=f"wg-quick strip {CONF}", mode="600", dir_mode="700")]
    if role(data) == "home":
        notify = "rndc notify" if data["zone_server"] == "bind" else "nsd-control notify"
        probe = render("link/inhouse-link-probe.j2", data, peers=others, hidden=hidden(data), etrn=ETRN,
                       notify=notify, domains=mail.domains(data))
        configs += [ConfigFile(PROBE_SCRIPT, probe, check="bash -n {path}", mode="755")]
        configs += [ConfigFile(f"{PROBE}.{kind}", render(f"link/inhouse-link-probe.{kind}.j2", data, unit=UNIT,
                                                         script=PROBE_SCRIPT))
                    for kind in ("service", "timer")]
    return configs


@deploy("Link")
def apply(data: dict, configs: list[ConfigFile], state: dict):
    if role(data) == "none":
        if PUBLIC in state["heads"]:  # a link no longer wanted: down, its config gone (the key stays)
            server.shell(name="Take the link down", commands=[
                f"systemctl disable --now {UNIT} 2>/dev/null; "
                "systemctl disable --now inhouse-link-probe.timer 2>/dev/null; "
                f"rm -rf {CONF} {PUBLIC} {PROBE}.service {PROBE}.timer {PROBE_SCRIPT} {PROBE_STATE}; "
                "systemctl daemon-reload"])
        return
    if not public_key(state["heads"]):  # the key, made here once (wg(8) genkey, pubkey)
        server.shell(name="Make the link's key",
                     commands=[f"sh -c 'umask 077; [ -s {KEY} ] || wg genkey > {KEY}; wg pubkey < {KEY} > {PUBLIC}'"])
    changed = install_files(configs, state)
    reload_unit_files(changed, PROBE)
    activate({UNIT: "restart"}, {p: op for p, op in changed.items() if p == CONF}, state)
    activate({u: a for u, a in units(data).items() if u != UNIT}, {}, state)
