"""TLS: the certificate the MTA, IMAP and the MTA-STS policy (tasks/mta_sts.py) serve, from
an ACME CA (Let's Encrypt by default) with certbot, renewed by a timer, for the mail host
and the relay; on the mail host it also names mta-sts.DOMAIN of every domain.

The private key is made on the host once and kept: the TLSA record (DANE, "Hosting your own Email with DANE") names
the key, so renewals never break it. A self-signed certificate lets the services start
until the CA has signed one (the registrar may not point at the new servers yet); every
run and the timer try the CA again until it does. The full chain is served (Thunderbird
refuses a bare certificate, as "Making a Mailserver (Part 4)" found), and each renewal
reloads every service that serves it.
Reads: fqdn, domain, tls_acme_*.
"""

import re
from pathlib import Path

from pyinfra.api import deploy
from pyinfra.operations import server

from tasks import mail, zone
from tasks.secrets_dir import write_secret
from tasks.util import ConfigFile, activate, install_files, reload_unit_files, render
from tasks.validate import ACME_URL, is_mail_address, optional, pem_problem, rule, scalar

DEFAULTS = {
    # The ACME directory of the CA.
    "tls_acme_server": "https://acme-v02.api.letsencrypt.org/directory",
    # The CA's contact for expiry warnings; empty: hostmaster@ the primary domain.
    "tls_acme_email": "",
    # PEM of a CA that signs the ACME server's own HTTPS certificate when the system does not
    # trust it (a private or test CA, as the lab's pebble). Empty: the system's trust store.
    "tls_acme_ca_bundle": "",
}
# The type and format of each setting, checked before anything connects (tasks/data.py).
CHECKS = {
    "tls_acme_server": scalar(rule(lambda v: isinstance(v, str) and ACME_URL.fullmatch(v),
                                   "is not an https URL (https://host[:port]/path)")),
    "tls_acme_email": scalar(optional(rule(is_mail_address, "is not an address like hostmaster@example.org"))),
    "tls_acme_ca_bundle": scalar(pem_problem),
}
PACKAGES = ["certbot", "openssl"]
PORTS = ["tcp/80"]  # the CA's HTTP-01 check, answered by certbot while it asks
UNITS = {"inhouse-cert.timer": ""}
DIR = "/etc/inhouse/tls"
KEY, CHAIN = f"{DIR}/privkey.pem", f"{DIR}/fullchain.pem"
TLSA, ISSUER = f"{DIR}/tlsa", f"{DIR}/issuer"  # written by the script, read by the zones and runs
NAMES = f"{DIR}/names"  # the names the CA signed last, written by the script
SCRIPT = "/usr/local/sbin/inhouse-cert"
# The key (and with it the TLSA record), the certificate, and certbot's ACME account.
KEEPS = [DIR, "/etc/letsencrypt/accounts"]
# What the script writes to TLSA: usage 3, selector 1, SHA-256 (RFC 6698 2.1).
TLSA_DATA = re.compile(r"3 1 1 [0-9a-f]{64}")
# Mozilla's "intermediate" TLS 1.2 suites (TLS 1.3 suites are all fine): ECDHE with AES-GCM
# or ChaCha20, forward secret and authenticated.
INTERMEDIATE_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
)
# The same for GnuTLS (Debian's exim): TLS 1.2 and 1.3, those suites, the server choosing.
GNUTLS_PRIORITY = (
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:+CHACHA20-POLY1305:"
    "-KX-ALL:+ECDHE-RSA:+ECDHE-ECDSA:%SERVER_PRECEDENCE"
)


def remember(data: dict, fqdn: str, tlsa: str) -> None:
    """Keep the TLSA data of another MX host (the relay) on the operator's machine
    (secrets_dir/tlsa/FQDN): the DNS master's run uses it when that host cannot be asked
    (down, or refusing root during a rebuild of the mail host)."""
    path = Path(data["secrets_dir"]) / "tlsa" / fqdn
    if TLSA_DATA.fullmatch(tlsa) and (not path.exists() or path.read_text().strip() != tlsa):
        write_secret(path, tlsa + "\n")


def remembered(data: dict, fqdn: str) -> str:
    """What remember() kept, if it is TLSA data: the zone gets nothing else."""
    path = Path(data["secrets_dir"]) / "tlsa" / fqdn
    text = path.read_text().strip() if path.exists() else ""
    return text if TLSA_DATA.fullmatch(text) else ""


def remembered_problems(data: dict) -> list[str]:
    """Broken files of remember(), for the relays the master's zones name."""
    out = []
    for host in data["zone_hosts"].get("relay", []):
        path = Path(data["secrets_dir"]) / "tlsa" / host["fqdn"]
        try:
            text = path.read_text().strip() if path.exists() else ""
        except (OSError, UnicodeDecodeError) as e:
            text = f"({type(e).__name__})"
        if text and not TLSA_DATA.fullmatch(text):
            out.append(f"{path} is not TLSA data (3 1 1 HEX); remove it, the next run asks the relay again")
    return out


def heads(data: dict) -> list[str]:
    """Files whose first lines a run needs: the TLSA data, whether the CA signed yet, and
    for which names."""
    return [TLSA, ISSUER, NAMES]


def names(data: dict) -> list[str]:
    """The names the certificate carries: the host, and the MTA-STS policy host of every
    domain where this host serves the policy (RFC 8461 section 3.3)."""
    return [data["fqdn"], *(zone.mta_sts_hosts(data) if zone.mta_sts_served(data) else [])]


def files(data: dict, system: dict) -> list[ConfigFile]:
    # Who serves the certificate, and reloads after a renewal.
    mta = mail.mta(data)
    units = [*mta.certificate_units, *(["dovecot"] if mail.role(data) == "mail" else []),
             *(["nginx"] if zone.mta_sts_served(data) else [])]  # tasks/mta_sts.py
    bundle = f"{DIR}/acme-ca.pem" if data["tls_acme_ca_bundle"] else ""
    # exim reads the key as its own user; postfix and dovecot as root.
    key_group = mta.key_group
    ctx = {"dir": DIR, "units": units, "ca_bundle": bundle, "key_group": key_group, "names": names(data),
           "san": ",".join(f"DNS:{n}" for n in names(data)),
           "email": data["tls_acme_email"] or f"hostmaster@{data['domain']}"}
    configs = [ConfigFile(bundle, data["tls_acme_ca_bundle"].strip() + "\n", dir_mode="700")] if bundle else []
    return configs + [
        ConfigFile(SCRIPT, render("tls/inhouse-cert.j2", data, **ctx), check="sh -n {path}", mode="755"),
        ConfigFile("/etc/systemd/system/inhouse-cert.service", render("tls/inhouse-cert.service.j2", data)),
        ConfigFile("/etc/systemd/system/inhouse-cert.timer", render("tls/inhouse-cert.timer.j2", data)),
    ]


@deploy("TLS certificate")
def apply(data: dict, configs: list[ConfigFile], state: dict):
    changed = install_files(configs, state)
    reload_unit_files(changed, "/etc/systemd/")
    # Key and certificate before the services that serve them; the CA again while it has not
    # signed, or not for the names wanted now.
    signed = state["heads"].get(ISSUER, "").strip() == "acme"
    if not signed or state["heads"].get(NAMES, "").strip() != " ".join(names(data)) or SCRIPT in changed:
        server.shell(name=f"Get a certificate for {data['fqdn']}", commands=[SCRIPT])
    activate(UNITS, {}, state)
