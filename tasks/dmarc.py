"""DMARC: opendmarc judges inbound mail by its SPF result and the DKIM result of opendkim
(tasks/dkim.py) above it, and adds its verdict to Authentication-Results ("Hosting your own
Email with DANE"), on every postfix MX: each judges the mail it takes in from the internet,
the mail host leaves what the relay forwards to the relay's verdict (RFC 8601 section 5).
Mail users submit is not judged; reports of the other side's DMARC go to the report mailbox.

No result a message carries in is believed: the MTA drops every Authentication-Results
field that claims this host's name (tasks/mta_postfix.py), so the DKIM result trusted is
opendkim's, added after; opendmarc checks SPF itself rather than read it from a header.
Reads: fqdn, mail_relay_networks, the other MX hosts.
"""

from pyinfra.api import deploy

from tasks import mail, milter
from tasks.util import ConfigFile, activate, install_files, reload_unit_files, render

DEFAULTS: dict = {}
PACKAGES = ["opendmarc"]
UNITS = {"opendmarc": "restart"}
IGNORE = "/etc/opendmarc/inhouse-ignore"


def files(data: dict, system: dict) -> list[ConfigFile]:
    # Not judged: this host, the machines that relay through it, and the other MX hosts
    # (their mail was judged where it came in, or is the mail host's own, going out).
    other = mail.peer_addresses(data, "mail" if mail.role(data) == "relay" else "relay")
    ignore = ["127.0.0.1", "::1", *data["mail_relay_networks"], *other]
    return [ConfigFile(IGNORE, render("dmarc/ignore.j2", data, addresses=ignore)),
            milter.DMARC.dropin(data),
            ConfigFile("/etc/opendmarc.conf", render("dmarc/opendmarc.conf.j2", data, ignore=IGNORE,
                                                     socket=milter.DMARC.socket),
                       check="opendmarc -n -c {path}")]


@deploy("DMARC")
def apply(data: dict, configs: list[ConfigFile], state: dict):
    changed = install_files(configs, state)
    reload_unit_files(changed, milter.DROPINS)
    activate(UNITS, changed, state)
