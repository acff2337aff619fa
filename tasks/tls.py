"""TLS: the certificate the MTA, IMAP and the MTA-STS policy (tasks/mta_sts.py) serve, from
an ACME CA (Let's Encrypt by default) with certbot, renewed by a timer, for the mail host
and the relay; on the mail host it also names mta-sts.DOMAIN of every domain.

The private key is made on the host and kept: the TLSA record (DANE, "Hosting your own
Email with DANE") names the key, so renewals never break it. A second, next key waits
beside it with its TLSA record published too; a roll (yearly, or on demand) switches to it
only once every name server has served its record for twice the TTL (tasks/rollover.py),
and the following run publishes a new next key in place of the old one.
A self-signed certificate lets the services start until the CA has signed one (the
registrar may not point at the new servers yet); every run and the timer try the CA
again until it does. The full chain is served (Thunderbird refuses a bare certificate, as
"Making a Mailserver (Part 4)" found), and each renewal reloads every service that serves it.
Reads: fqdn, domain, tls_acme_*, tls_key_*, the name servers (zone_hosts).
"""

import re
import time
from pathlib import Path

from pyinfra import logger
from pyinfra.api import deploy
from pyinfra.operations import server

from tasks import mail, rollover, zone
from tasks.secrets_dir import write_secret
from tasks.util import ConfigFile, activate, install_files, reload_unit_files, render
from tasks.validate import ACME_URL, is_integer, is_mail_address, moment, optional, pem_problem, rule, scalar

DEFAULTS = {
    # The ACME directory of the CA.
    "tls_acme_server": "https://acme-v02.api.letsencrypt.org/directory",
    # The CA's contact for expiry warnings; empty: hostmaster@ the primary domain.
    "tls_acme_email": "",
    # PEM of a CA that signs the ACME server's own HTTPS certificate when the system does not
    # trust it (a private or test CA, as the lab's pebble). Empty: the system's trust store.
    "tls_acme_ca_bundle": "",
    # Roll the key (and its TLSA record) when it is this many days old; 0: only on demand.
    "tls_key_days": 365,
    # On demand: roll a key made before this moment (ISO 8601, UTC: "2027-01-15" or
    # "2027-01-15T10:00:00"). Set it to now after a key may have leaked.
    "tls_key_made_after": "",
}
# The type and format of each setting, checked before anything connects (tasks/data.py).
CHECKS = {
    "tls_acme_server": scalar(rule(lambda v: isinstance(v, str) and ACME_URL.fullmatch(v),
                                   "is not an https URL (https://host[:port]/path)")),
    "tls_acme_email": scalar(optional(rule(is_mail_address, "is not an address like hostmaster@example.org"))),
    "tls_acme_ca_bundle": scalar(pem_problem),
    "tls_key_days": scalar(rule(lambda v: is_integer(v, 0, 36500), "is not a number of days")),
    "tls_key_made_after": scalar(optional(rule(lambda v: moment(v) is not None,
                                               "is not a moment (2027-01-15 or 2027-01-15T10:00:00, UTC)"))),
}
PACKAGES = ["certbot", "openssl"]
PORTS = ["tcp/80"]  # the CA's HTTP-01 check, answered by certbot while it asks
UNITS = {"inhouse-cert.timer": ""}
DIR = "/etc/inhouse/tls"
KEY, CHAIN = f"{DIR}/privkey.pem", f"{DIR}/fullchain.pem"
TLSA, ISSUER = f"{DIR}/tlsa", f"{DIR}/issuer"  # written by the script, read by the zones and runs
NEXT_TLSA = f"{DIR}/next.tlsa"  # the TLSA data of the next key
MADE = f"{DIR}/made"  # when the current key was made, in seconds since 1970
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


def published(heads: dict[str, str]) -> list[str]:
    """The TLSA data a host's zone records carry, from its files: the current key's, then
    the next key's."""
    found = [heads.get(path, "").strip() for path in (TLSA, NEXT_TLSA)]
    return [t for t in found if TLSA_DATA.fullmatch(t)]


def remember(data: dict, fqdn: str, tlsa: list[str]) -> None:
    """Keep the TLSA data of another MX host (the relay) on the operator's machine
    (secrets_dir/tlsa/FQDN): the DNS master's run uses it when that host cannot be asked
    (down, or refusing root during a rebuild of the mail host)."""
    path = Path(data["secrets_dir"]) / "tlsa" / fqdn
    text = "".join(f"{t}\n" for t in tlsa)
    if tlsa and all(TLSA_DATA.fullmatch(t) for t in tlsa) and (not path.exists() or path.read_text() != text):
        write_secret(path, text)


def remembered(data: dict, fqdn: str) -> list[str]:
    """What remember() kept, if it is TLSA data: the zone gets nothing else."""
    path = Path(data["secrets_dir"]) / "tlsa" / fqdn
    lines = [line.strip() for line in path.read_text().splitlines()] if path.exists() else []
    return lines if all(TLSA_DATA.fullmatch(t) for t in lines) else []


def remembered_problems(data: dict) -> list[str]:
    """Broken files of remember(), for the relays the master's zones name."""
    out = []
    for host in data["zone_hosts"].get("relay", []):
        path = Path(data["secrets_dir"]) / "tlsa" / host["fqdn"]
        try:
            text = path.read_text().strip() if path.exists() else ""
        except (OSError, UnicodeDecodeError) as e:
            text = f"({type(e).__name__})"
        if text and not all(TLSA_DATA.fullmatch(line.strip()) for line in text.splitlines()):
            out.append(f"{path} is not TLSA data (3 1 1 HEX); remove it, the next run asks the relay again")
    return out


def heads(data: dict) -> list[str]:
    """Files whose first lines a run needs: the TLSA data of both keys, whether the CA
    signed yet, and for which names, when the key was made."""
    return [TLSA, NEXT_TLSA, ISSUER, NAMES, MADE]


def acme(data: dict) -> bool:
    """Whether the CA can check this host: not a hidden home, which the internet cannot reach
    (its certificate is self-signed; users meet the relay's at the front door)."""
    return not (mail.role(data) == "mail" and zone.hidden(data))


def ports(data: dict) -> list[str]:
    return PORTS if acme(data) else []


def names(data: dict) -> list[str]:
    """The names the certificate carries: the host, and the MTA-STS policy host of every
    domain where this host serves the policy (RFC 8461 section 3.3)."""
    return [data["fqdn"], *(zone.mta_sts_hosts(data) if zone.mta_sts_served(data) else [])]


def files(data: dict, system: dict) -> list[ConfigFile]:
    # Who serves the certificate, and reloads after a renewal.
    mta = mail.mta(data)
    units = [*mta.certificate_units, *(["dovecot"] if mail.role(data) == "mail" else []),
             *(["nginx"] if zone.mta_sts_served(data) else []),  # tasks/mta_sts.py
             *(["haproxy"] if mail.role(data) == "relay" and zone.hidden(data) else [])]  # tasks/proxy.py
    bundle = f"{DIR}/acme-ca.pem" if data["tls_acme_ca_bundle"] else ""
    # exim reads the key as its own user; postfix and dovecot as root.
    key_group = mta.key_group
    ctx = {"dir": DIR, "units": units, "ca_bundle": bundle, "acme": acme(data), "key_group": key_group,
           "names": names(data),
           # Where the CA will look the names up (tasks/zone.py): the names in our zones.
           "ask_servers": [h["ipv4"] or h["ipv6"] for h in zone.public_servers(data)],
           "ask_names": [n for n in names(data) if any(n == z or n.endswith(f".{z}") for z in zone.zones(data))],
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
    signed = state["heads"].get(ISSUER, "").strip() in (("acme",) if acme(data) else ("acme", "self-signed"))
    if not signed or state["heads"].get(NAMES, "").strip() != " ".join(names(data)) or SCRIPT in changed:
        server.shell(name=f"Get a certificate for {data['fqdn']}", commands=[SCRIPT])
    if (why := roll_due(data, state["heads"])) and ready(data, state["heads"], why):
        server.shell(name=f"Roll the TLS key of {data['fqdn']} ({why})", commands=[f"{SCRIPT} --roll"])
    activate(UNITS, {}, state)


def roll_due(data: dict, heads: dict[str, str], now: float | None = None) -> str:
    """Why the current key must make way for the next one: its age, or the data's demand;
    "" when it need not (or there is no key yet)."""
    now = time.time() if now is None else now
    try:
        made = float(heads.get(MADE, "").strip())
    except ValueError:
        return ""
    if data["tls_key_made_after"] and made < moment(data["tls_key_made_after"]):
        return f"made before tls_key_made_after {data['tls_key_made_after']}"
    if data["tls_key_days"] and now - made >= data["tls_key_days"] * 86400:
        return f"{(now - made) // 86400:.0f} days old, tls_key_days is {data['tls_key_days']}"
    return ""


def ready(data: dict, heads: dict[str, str], why: str, now: float | None = None) -> bool:
    """Whether every name server has served the next key's TLSA record for twice its TTL
    (RFC 7671 section 8.1: a sender may hold the set from before it for one TTL, the
    secondaries may lag); if not, the operator is told when to run again."""
    now = time.time() if now is None else now
    nxt = heads.get(NEXT_TLSA, "").strip()
    if not TLSA_DATA.fullmatch(nxt):
        return False
    name = f"_25._tcp.{data['fqdn']}"
    first, ttl, missing = rollover.since(data, f"tls-{data['fqdn']}", nxt.split()[-1], [(name, "TLSA")],
                                         lambda r: r.lower() == nxt, now)
    if missing:
        logger.warning(f"{data['fqdn']}: the TLS key is due for a roll ({why}), but the next key's TLSA "
                       f"record is {missing}: run the deploy again once the zones carry it")
        return False
    if now - first < 2 * ttl:
        logger.warning(f"{data['fqdn']}: the TLS key is due for a roll ({why}); it rolls in a run after "
                       f"{rollover.when(first + 2 * ttl)} (the next key's TLSA record served for twice its TTL)")
        return False
    return True
