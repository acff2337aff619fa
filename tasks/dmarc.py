"""DMARC: opendmarc judges inbound mail by the SPF (policyd-spf) and DKIM (opendkim)
results above it and adds its verdict to Authentication-Results ("Hosting your own Email with DANE"). Mail users
submit is not judged; reports of the other side's DMARC go to the report mailbox.
Reads: fqdn, the relay's name (its SPF results are trusted).
"""

from pyinfra.api import deploy

from tasks.util import ConfigFile, activate, install_files, render

DEFAULTS: dict = {}
PACKAGES = ["opendmarc"]
UNITS = {"opendmarc": "restart"}


def files(data: dict, system: dict) -> list[ConfigFile]:
    trusted = [data["fqdn"], *[h["fqdn"] for h in data["zone_hosts"].get("relay", [])]]
    return [ConfigFile("/etc/opendmarc.conf", render("dmarc/opendmarc.conf.j2", data, trusted=trusted),
                       check="opendmarc -n -c {path}")]


@deploy("DMARC")
def apply(data: dict, configs: list[ConfigFile], state: dict):
    activate(UNITS, install_files(configs, state), state)
