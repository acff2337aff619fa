"""MTA (mta = "exim4"): exim, as in "Making a Mailserver (Part 4)", with the same promises as postfix
(tasks/mta_postfix.py): mail for the domains on 25, users' mail on 587 (STARTTLS) and 465
(TLS), DANE out where TLSA is published, nothing relayed for strangers.

One whole configuration (/etc/exim4/exim4.conf, which Debian's exim reads before the one
it generates from conf.d) rather than Debian's split config: every line is ours and
checked with `exim4 -bV`. Exim signs with DKIM itself (the key tasks/dkim.py makes), checks
SPF itself (Debian's exim4-daemon-heavy) and writes Authentication-Results; DMARC, which
Debian's exim is built without, comes from Mail::DMARC (libmail-dmarc-perl) through
exim's Perl. Logins and delivery are dovecot's, as with postfix.
Reads: tasks/mail.py's data, fqdn, dkim_selector, the hosts of the mail and relay groups.
"""

from pyinfra.api import deploy

from tasks import dkim, mail, spam, tls
from tasks.resolver import SPECIAL_TLDS
from tasks.util import ConfigFile, activate, install_files, render

PACKAGES = ["exim4-daemon-heavy", "libmail-dmarc-perl"]
UNITS = {"exim4": "reload"}
USER = mail.MTAS["exim4"].user
MAPS = "/etc/exim4/inhouse"
DMARC_SCRIPT = f"{MAPS}/dmarc.pl"
DOVECOT_SOCKETS = mail.MTAS["exim4"].dovecot_sockets


ports = mail.ports


def files(data: dict, system: dict) -> list[ConfigFile]:
    role = mail.role(data)
    relays = [h["fqdn"] for h in data["zone_hosts"].get("relay", [])]
    networks = data["mail_relay_networks"] + (mail.addresses(data, "mail") if role == "relay" else [])
    ctx = {"role": role, "domains": mail.domains(data), "maps": MAPS, "relay_networks": networks,
           "name_pattern": data["fqdn"].replace(".", r"\."),  # a regular expression of this host's name
           "relay": relays[0] if relays else "", "key": tls.KEY, "cert": tls.CHAIN, "priority": tls.GNUTLS_PRIORITY,
           "dkim_current": dkim.CURRENT, "dkim_dir": dkim.DIR, "dmarc_script": DMARC_SCRIPT,
           "backup_mx": mail.addresses(data, "relay") if role == "mail" else [],
           "auth_socket": DOVECOT_SOCKETS["auth"], "lmtp_socket": DOVECOT_SOCKETS["lmtp"],
           "spam": spam.SCANNER if spam.on(data) else ""}
    check = "exim4 -bV -C {path}"
    configs = [ConfigFile(f"{MAPS}/{name}", render("mta/map.j2", data, entries=entries), group=USER,
                          mode="640")
               for name, entries in mail.maps(data).items()]
    if role == "mail":
        special = sorted({d.rsplit(".", 1)[-1] for d in mail.domains(data)} & SPECIAL_TLDS)
        configs.append(ConfigFile(DMARC_SCRIPT, render("mta/exim4/dmarc.pl.j2", data, special=special),
                                  check="perl -c {path}"))
    return configs + [ConfigFile("/etc/exim4/exim4.conf", render("mta/exim4/exim4.conf.j2", data, **ctx),
                                 check=check, group=USER, mode="640")]


@deploy("MTA (exim4)")
def apply(data: dict, configs: list[ConfigFile], state: dict):
    activate(UNITS, install_files(configs, state), state)
