"""Proxy: the relay's front door for the users of a hidden home (link_home_hidden,
tasks/link.py). haproxy on the relay takes IMAP (993) and submission (465) with TLS from
the first byte, under the relay's own certificate (the name users' programs know from the
SRV records, RFC 6186 and RFC 8314), and passes each connection inside the link to the
home server with a PROXY v2 header (haproxy's proxy-protocol.txt): dovecot and postfix
then see the client's own address and that TLS was used, and log, limit and judge logins
by it. STARTTLS (143, 587) cannot pass a TLS proxy: the SRV records say those services are
not offered.
The home ports of the front door (10993, 10465) let in only the link (tasks/registry.py's
firewall for a hidden home). A relay that no longer fronts a hidden home closes the door.
Reads: link_home_hidden, link_network, the relays' certificate (tasks/tls.py).
"""

from pyinfra.api import deploy
from pyinfra.operations import server

from tasks import mail, tls, zone
from tasks.util import ConfigFile, activate, install_files, render

DEFAULTS: dict = {}
# Each service: the port users reach on the relay, and the home server's port behind it.
FRONT = {"imaps": (993, 10993), "submissions": (465, 10465)}
SERVES = {"dovecot": "imaps", "postfix": "submissions"}  # which daemon at home serves which
CONF = "/etc/haproxy/haproxy.cfg"
# haproxy finds the key of a certificate file beside it, under the same name and .key.
KEY_LINK = f"{tls.CHAIN}.key"


def front_door(data: dict) -> bool:
    """This relay fronts a hidden home."""
    return mail.role(data) == "relay" and zone.hidden(data)


def home_ports(data: dict, daemon: str) -> dict[str, int]:
    """On a hidden home: the port inside the link where `daemon` takes the front door's
    connections, by service; {} elsewhere."""
    if mail.role(data) != "mail" or not zone.hidden(data):
        return {}
    return {SERVES[daemon]: FRONT[SERVES[daemon]][1]}


def packages(data: dict) -> list[str]:
    return ["haproxy"] if front_door(data) else []


def units(data: dict) -> dict[str, str]:
    return {"haproxy": "reload"} if front_door(data) else {}


def ports(data: dict) -> list[str]:
    return [f"tcp/{public}" for public, _ in FRONT.values()] if front_door(data) else []


def paths(data: dict) -> list[str]:
    return [KEY_LINK] if front_door(data) else []


def heads(data: dict) -> list[str]:
    return [CONF]  # also where the door is no longer wanted: it closes


def files(data: dict, system: dict) -> list[ConfigFile]:
    if not front_door(data):
        return []
    conf = render("proxy/haproxy.cfg.j2", data, front=FRONT, cert=tls.CHAIN, home=mail.home_link(data),
                  ciphers=tls.INTERMEDIATE_CIPHERS)
    return [ConfigFile(CONF, conf, check="haproxy -c -q -f {path}")]


@deploy("Proxy")
def apply(data: dict, configs: list[ConfigFile], state: dict):
    if not front_door(data):
        if CONF in state["heads"]:
            server.shell(name="Close the front door (no hidden home behind this relay)",
                         commands=[f"systemctl disable --now haproxy 2>/dev/null; rm -f {CONF} {KEY_LINK}"])
        return
    if state["paths"].get(KEY_LINK) in (None, "no-parent"):
        server.shell(name="Show haproxy the certificate's key", commands=[f"ln -sfn {tls.KEY} {KEY_LINK}"])
    activate(units(data), install_files(configs, state), state)
