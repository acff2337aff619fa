"""Mail: who gets mail and who may send it, shared by the MTA (tasks/mta_postfix.py or
tasks/mta_exim.py), IMAP (tasks/imap.py) and DKIM (tasks/dkim.py) modules.

The mail host (inventory group `mail`) receives mail for every domain, keeps it in Maildirs
and lets users read it over IMAP and send it through authenticated submission. The relay
(group `relay`) is the backup MX that queues mail for the mail host, and the way out for
the mail host when `mail_outbound_relay` is on ("Bringing E-Mail Server In-House": a home server behind a
residential address). Users' password hashes live on the operator's machine
(secrets_dir/mail-passwords, made by `python -m tasks.password ADDRESS`), never in git.
Reads: domain, extra_domains, mail_*, secrets_dir, zone_dmarc_reports, zone_tls_reports,
the hosts of the mail and relay groups.
"""

from dataclasses import dataclass
from pathlib import Path

from tasks import zone

DEFAULTS = {
    # The MTA: postfix (with opendkim, policyd-spf and opendmarc) or exim4 (its own DKIM
    # and SPF, the choice of "Making a Mailserver (Part 4)"; DMARC by Mail::DMARC).
    "mta": "postfix",
    # Mailbox addresses, one per person; each needs a password hash in secrets_dir
    # (python -m tasks.password alice@example.org).
    "mail_users": [],
    # Aliases: {"info@example.org": ["alice@example.org", "bob@elsewhere.example"]}.
    # A user may send as each alias that delivers to them.
    "mail_aliases": {},
    # The person who gets postmaster, abuse, hostmaster and root of every domain
    # (RFC 2142); empty: the first of mail_users.
    "mail_admin": "",
    # Machines that may send through the MTAs without logging in ("machines to
    # relay mail for"): addresses or networks. Users log in instead.
    "mail_relay_networks": [],
    # The mail host sends through the relay instead of straight to other servers.
    "mail_outbound_relay": False,
    # Largest message accepted, in bytes.
    "mail_max_size": 50 * 1024 * 1024,
}
# RFC 2142 role addresses of every domain, routed to mail_admin.
ROLE_ADDRESSES = ("postmaster", "abuse", "hostmaster", "root")
PASSWORDS = "mail-passwords"  # in secrets_dir: "address hash" lines
MAIL_HOME = "/var/mail/vhosts"  # Maildirs, owned by VMAIL
VMAIL = "vmail"


def domains(data: dict) -> list[str]:
    return [data["domain"], *data["extra_domains"]]


def role(data: dict) -> str:
    """'mail' (keeps the mail), 'relay' (backup MX, way out) or 'none': the same hosts as
    the DNS master and secondary."""
    return {"master": "mail", "secondary": "relay"}.get(zone.role(data), "none")


def ports(data: dict) -> list[str]:
    """What the MTA opens: SMTP everywhere, submission (465, 587) on the mail host."""
    return ["tcp/25"] + (["tcp/465", "tcp/587"] if role(data) == "mail" else [])


def addresses(data: dict, group: str) -> list[str]:
    """The IP addresses of the hosts of an inventory group (mail, relay)."""
    return [a for h in data["zone_hosts"].get(group, []) for a in (h["ipv4"], h["ipv6"]) if a]


def admin(data: dict) -> str:
    return data["mail_admin"] or (data["mail_users"] or [""])[0]


def report_mailboxes(data: dict) -> list[str]:
    """Mailboxes for DMARC and TLS-RPT reports (RFC 7489, RFC 8460): no login of their own."""
    return [f"{data[k]}@{data['domain']}" for k in ("zone_dmarc_reports", "zone_tls_reports")]


def mailboxes(data: dict) -> list[str]:
    return [*data["mail_users"], *report_mailboxes(data)]


def aliases(data: dict) -> dict[str, list[str]]:
    """Every alias: the role addresses of each domain, then the data's own (which win)."""
    out = {f"{r}@{d}": [admin(data)] for d in domains(data) for r in ROLE_ADDRESSES}
    return out | {a.lower(): [t.lower() for t in ts] for a, ts in data["mail_aliases"].items()}


def senders(data: dict) -> dict[str, list[str]]:
    """Address -> the users who may send as it: their own, and aliases that deliver to them."""
    out = {u: [u] for u in data["mail_users"]}
    for alias, targets in aliases(data).items():
        if owners := [t for t in targets if t in data["mail_users"]]:
            out[alias] = owners
    return out


@dataclass(frozen=True)
class Mta:
    """What the other components must know of an MTA (tasks/mta_postfix.py, mta_exim.py)."""

    user: str  # the account it runs as
    key_group: str  # the group that reads the TLS key: postfix reads it as root, exim as itself
    certificate_units: tuple[str, ...]  # reloaded after a renewal
    dovecot_sockets: dict  # dovecot's sockets for delivery (LMTP) and logins (SASL), and their owner


MTAS = {
    # postfix's smtpd processes keep the certificate they started with; the sockets sit
    # inside postfix's chroot.
    "postfix": Mta("postfix", "root", ("postfix",),
                   {"lmtp": "/var/spool/postfix/private/dovecot-lmtp", "auth": "/var/spool/postfix/private/auth",
                    "user": "postfix"}),
    # exim reads the certificate for each connection: a renewal needs no reload.
    "exim4": Mta("Debian-exim", "Debian-exim", (),
                 {"lmtp": "/run/dovecot/lmtp-exim", "auth": "/run/dovecot/auth-exim", "user": "Debian-exim"}),
}


def mta(data: dict) -> Mta:
    return MTAS[data["mta"]]


def maps(data: dict) -> dict[str, list[tuple[str, str]]]:
    """The MTA's lookup tables, by file name, as (key, value) lines both MTAs read
    ("key value, value"): local names, mailboxes, aliases and sender rights on the mail
    host; the addresses it accepts on the relay."""
    out = {"local-aliases": [(r, admin(data) or "root") for r in ROLE_ADDRESSES]}
    if role(data) == "mail":
        out["mailboxes"] = [(m, "OK") for m in mailboxes(data)]
        out["aliases"] = [(a, ", ".join(ts)) for a, ts in aliases(data).items()]
        out["senders"] = [(a, ", ".join(us)) for a, us in senders(data).items()]
    else:
        out["recipients"] = [(a, "OK") for a in [*mailboxes(data), *aliases(data)]]
    return out


def password_hashes(data: dict) -> dict[str, str]:
    path = Path(data["secrets_dir"]) / PASSWORDS
    if not path.exists():
        return {}
    return dict(line.split(None, 1) for line in path.read_text().splitlines() if line.strip())


def problems(data: dict, is_address, is_network) -> list[str]:
    """What is wrong with the mail data, as 'field: problem' lines."""
    out = []
    if data["mta"] not in ("postfix", "exim4"):
        out.append(f"mta: {data['mta']!r} is not postfix or exim4")
    users = data["mail_users"]
    if not isinstance(users, list):
        return out + ["mail_users: must be a list of addresses"]
    hashes = password_hashes(data)
    for i, u in enumerate(users):
        if not is_address(u):
            out.append(f"mail_users[{i}]: {u!r} is not an address like alice@{data['domain']}")
        elif u.split("@")[1] not in domains(data):
            out.append(f"mail_users[{i}]: {u!r} is not in one of your domains ({', '.join(domains(data))})")
        elif u != u.lower() or users.index(u) != i:
            out.append(f"mail_users[{i}]: {u!r} is not lower case or is listed twice")
        elif u not in hashes:
            out.append(f"mail_users[{i}]: {u} has no password hash in {data['secrets_dir']}/{PASSWORDS}; "
                       f"make one with: python -m tasks.password {u}")
    if users and admin(data) not in users:
        out.append(f"mail_admin: {data['mail_admin']!r} is not one of mail_users")
    if role(data) == "mail" and not users:
        out.append("mail_users: the mail host needs at least one user (postmaster mail goes to the first)")
    if not isinstance(data["mail_aliases"], dict):
        return out + ['mail_aliases: must map an address to a list of addresses']
    for alias, targets in data["mail_aliases"].items():
        if not is_address(alias) or alias.split("@")[1] not in domains(data):
            out.append(f"mail_aliases[{alias!r}]: not an address in one of your domains")
        elif alias.lower() in mailboxes(data):
            out.append(f"mail_aliases[{alias!r}]: is a mailbox already")
        if not isinstance(targets, list) or not targets or any(not is_address(t) for t in targets):
            out.append(f"mail_aliases[{alias!r}]: must be a list of addresses")
    for i, net in enumerate(data["mail_relay_networks"]):
        if not is_network(net):
            out.append(f"mail_relay_networks[{i}]: {net!r} is not an IP address or network")
    if not isinstance(data["mail_max_size"], int) or data["mail_max_size"] < 1024 * 1024:
        out.append(f"mail_max_size: {data['mail_max_size']!r} is not a size in bytes of at least 1 MB")
    return out
