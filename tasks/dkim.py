"""DKIM: a 2048-bit RSA key made on the host, readable only by the signer, whose public key
the zones publish under the selector (tasks/zone.py). With postfix, opendkim signs the mail
the mail host sends and checks the signatures of the mail it receives (as "Hosting your own Email with DANE" does);
exim does both itself ("Making a Mailserver (Part 4)") with the same key.

The selector comes from data, or is the year and month the key was made (the host keeps
its choice in CURRENT, with the public key the zones need); a new selector in data makes a
new key and the zones publish it.
Reads: dkim_selector, domain, extra_domains, fqdn, mail_relay_networks.
"""

import shlex
import time

from pyinfra.api import deploy
from pyinfra.operations import server

from tasks import mail
from tasks.util import ConfigFile, activate, install_files, render
from tasks.validate import SELECTOR, optional, rule, scalar

DEFAULTS = {
    # The DKIM selector; empty: the one the host made (YYYYMM of its first deploy).
    "dkim_selector": "",
}
# The type and format of each setting, checked before anything connects (tasks/data.py).
CHECKS = {
    "dkim_selector": scalar(optional(rule(lambda v: isinstance(v, str) and SELECTOR.fullmatch(v),
                                          "is not a selector (lower case, digits, -)"))),
}
PACKAGES = ["opendkim", "opendkim-tools"]
UNITS = {"opendkim": "restart"}


def packages(data: dict) -> list[str]:
    return PACKAGES if data["mta"] == "postfix" else ["openssl"]


def units(data: dict) -> dict[str, str]:
    return UNITS if data["mta"] == "postfix" else {}


def signer(data: dict) -> str:
    """The user that reads the private key."""
    return "opendkim" if data["mta"] == "postfix" else mail.mta(data).user
DIR = "/etc/inhouse/dkim"
CURRENT = f"{DIR}/current"  # "SELECTOR\nBASE64 PUBLIC KEY", written when the key is made
CONF_DIR = "/etc/opendkim/inhouse"


KEEPS = [DIR]  # the keys of every selector, and CURRENT


def heads(data: dict) -> list[str]:
    return [CURRENT]


def current(system: dict) -> tuple[str, str]:
    """(selector, public key) of the host's key, or ("", "") before it has one."""
    lines = system["heads"].get(CURRENT, "").splitlines()
    return (lines[0], lines[1]) if len(lines) > 1 else ("", "")


def selector(data: dict, system: dict) -> str:
    return data["dkim_selector"] or current(system)[0] or time.strftime("%Y%m", time.gmtime())


def key_path(sel: str) -> str:
    return f"{DIR}/{sel}.private"


def files(data: dict, system: dict) -> list[ConfigFile]:
    if data["mta"] != "postfix":
        return []
    ctx = {"dir": CONF_DIR, "domains": mail.domains(data), "selector": selector(data, system),
           "key": key_path(selector(data, system))}
    check = "opendkim -n -x /etc/opendkim.conf"
    return [
        ConfigFile(f"{CONF_DIR}/{name}", render(f"dkim/{name}.j2", data, **ctx), check=check, checker="opendkim")
        for name in ("keytable", "signingtable", "internal")
    ] + [ConfigFile("/etc/opendkim.conf", render("dkim/opendkim.conf.j2", data, **ctx), check=check)]


@deploy("DKIM")
def apply(data: dict, configs: list[ConfigFile], state: dict):
    sel = selector(data, state)
    if current(state)[0] != sel:  # the key first: opendkim's config check loads it
        key = key_path(sel)
        script = (
            f"set -e; umask 077; mkdir -p {DIR}; chmod 755 {DIR}; cd {DIR}; "
            f"[ -s {key} ] || openssl genpkey -quiet -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out {key}; "
            f"chown {signer(data)}:{signer(data)} {key}; "
            f'printf "%s\\n%s\\n" {sel} "$(openssl pkey -in {key} -pubout -outform DER | base64 -w0)" > {CURRENT}; '
            f"chmod 644 {CURRENT}"
        )
        server.shell(name=f"Make the DKIM key of selector {sel}", commands=[f"sh -c {shlex.quote(script)}"])
    activate(units(data), install_files(configs, state), state)
