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

import re
from dataclasses import dataclass
from pathlib import Path

from tasks import zone
from tasks.validate import (
    BOOLEAN,
    choice,
    is_integer,
    is_mail_address,
    listing,
    network_problem,
    no_duplicates,
    optional,
    rule,
    scalar,
)

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
# The type and format of each setting, checked before anything connects (tasks/data.py).
CHECKS = {
    "mta": scalar(choice("postfix", "exim4")),
    "mail_users": lambda k, v: listing(rule(is_mail_address, "is not an address like alice@example.org"))(k, v)
    or no_duplicates(k, v),
    "mail_aliases": lambda key, value: aliases_shape(key, value),  # noqa: PLW0108 (defined below)
    "mail_admin": scalar(optional(rule(is_mail_address, "is not an address"))),
    "mail_relay_networks": listing(network_problem),
    "mail_outbound_relay": scalar(BOOLEAN),
    "mail_max_size": scalar(rule(lambda v: is_integer(v, 1024 * 1024, 2**40),
                                 "is not a size in bytes of at least 1 MB")),
}
# RFC 2142 role addresses of every domain, routed to mail_admin.
ROLE_ADDRESSES = ("postmaster", "abuse", "hostmaster", "root")
PASSWORDS = "mail-passwords"  # in secrets_dir: "address hash" lines
# A hash with its dovecot scheme ({SHA512-CRYPT}$6$...): no space, and no colon, which
# separates the fields of dovecot's passwd-file (doc.dovecot.org, "Passwd-file").
HASH = re.compile(r"\{[A-Z0-9.-]+\}[!-9;-~]+")
MAIL_HOME = "/var/mail/vhosts"  # Maildirs, owned by VMAIL
VMAIL = "vmail"
# Made by imap, or by backup first when a rebuild puts the Maildirs back.
ADD_VMAIL = (f"id -u {VMAIL} >/dev/null 2>&1 || {{ useradd --system --user-group --home-dir {MAIL_HOME} --create-home "
             f"--shell /usr/sbin/nologin {VMAIL} && chmod 750 {MAIL_HOME}; }}")


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


def peer_addresses(data: dict, group: str) -> list[str]:
    """The addresses the hosts of a group (mail, relay) connect from: their own, and inside
    the link when the mail host is hidden (tasks/link.py), where they talk to each other."""
    if not zone.hidden(data):
        return addresses(data, group)
    inside = [zone.link_address(data, h["fqdn"]) for h in data["zone_hosts"].get(group, [])]
    return addresses(data, group) + [a for a in inside if a]


def home_link(data: dict) -> str:
    """Where a relay hands mail to the hidden mail host: its end of the link."""
    return zone.link_address(data, data["zone_hosts"]["mail"][0]["fqdn"])


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
        if zone.hidden(data):  # no MX names the hidden home: its mail goes inside the link
            out["transport"] = [(d, f"smtp:[{home_link(data)}]:25") for d in domains(data)]
    return out


def read_passwords(data: dict) -> tuple[dict[str, str], list[str]]:
    """{address: hash} of secrets_dir/mail-passwords, and its broken lines (by number only:
    a line may hold a hash, which no message repeats)."""
    path = Path(data["secrets_dir"]) / PASSWORDS
    try:
        lines = path.read_text().splitlines() if path.exists() else []
    except (OSError, UnicodeDecodeError) as e:
        return {}, [f"{path}: cannot be read ({type(e).__name__})"]
    hashes, broken = {}, []
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if not line.strip():
            continue
        if len(fields) != 2 or not HASH.fullmatch(fields[1]) or "@" not in fields[0]:
            broken.append(number)
        else:
            hashes[fields[0]] = fields[1]
    if not broken:
        return hashes, []
    lines = f"line {broken[0]} is" if len(broken) == 1 else f"lines {', '.join(map(str, broken))} are"
    return hashes, [f"{path}: {lines} not 'ADDRESS {{SCHEME}}HASH'; remove them, and make those users' "
                    "hashes again (python -m tasks.password ADDRESS)"]


def password_hashes(data: dict) -> dict[str, str]:
    return read_passwords(data)[0]


def problems(data: dict) -> list[str]:
    """What is wrong with the mail data, as 'field: problem' lines. The types and formats
    are right already (tasks/data.py): these are the checks across fields."""
    out = []
    users = data["mail_users"]
    hashes, broken = read_passwords(data)
    out += [f"secrets_dir: {p}" for p in broken]
    for i, u in enumerate(users):
        if u.split("@")[1] not in domains(data):
            out.append(f"mail_users[{i}]: {u!r} is not in one of your domains ({', '.join(domains(data))})")
        elif u != u.lower():
            out.append(f"mail_users[{i}]: {u!r} is not lower case")
        elif u not in hashes:
            out.append(f"mail_users[{i}]: {u} has no password hash in {data['secrets_dir']}/{PASSWORDS}; "
                       f"make one with: python -m tasks.password {u}")
    if users and admin(data) not in users:
        out.append(f"mail_admin: {data['mail_admin']!r} is not one of mail_users")
    if role(data) == "mail" and not users:
        out.append("mail_users: the mail host needs at least one user (postmaster mail goes to the first)")
    own = data["mail_aliases"]
    for alias in own:
        if alias.split("@")[1].lower() not in domains(data):
            out.append(f"mail_aliases[{alias!r}]: not an address in one of your domains")
        elif alias.lower() in mailboxes(data):
            out.append(f"mail_aliases[{alias!r}]: is a mailbox already")
        elif [a.lower() for a in own].count(alias.lower()) > 1:
            out.append(f"mail_aliases[{alias!r}]: is there twice (addresses ignore case)")
    if out:
        return out
    every = aliases(data)
    known = set(mailboxes(data)) | set(every)
    for alias, targets in own.items():
        for target in targets:
            if target.lower().split("@")[1] in domains(data) and target.lower() not in known:
                out.append(f"mail_aliases[{alias!r}]: {target} is neither a mailbox nor an alias; "
                           "its mail would bounce")
        if (loop := alias_loop(every, alias.lower())) is not None:
            out.append(f"mail_aliases[{alias!r}]: "
                       + ("delivers to itself" if len(loop) == 1 else f"loops: {' -> '.join([*loop, loop[0]])}"))
    return out


def alias_loop(every: dict[str, list[str]], start: str) -> list[str] | None:
    """The aliases of a loop from `start` back to it (a -> b -> a), or None."""
    path, stack, seen = [start], [iter(every.get(start, []))], set()
    while stack:
        target = next(stack[-1], None)
        if target is None:
            stack.pop()
            path.pop()
        elif target == start:
            return list(path)
        elif target in every and target not in seen:
            seen.add(target)
            path.append(target)
            stack.append(iter(every[target]))
    return None


def aliases_shape(key: str, value) -> list[str]:
    if not isinstance(value, dict):
        return [f"{key}: must map an address to a list of addresses"]
    out = []
    for alias, targets in value.items():
        if not is_mail_address(alias):
            out.append(f"{key}[{alias!r}]: not an address in one of your domains")
        if not isinstance(targets, list) or not targets or any(not is_mail_address(t) for t in targets):
            out.append(f"{key}[{alias!r}]: must be a list of addresses")
    return out
