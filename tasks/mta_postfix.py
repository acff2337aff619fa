"""MTA (mta = "postfix"): receives mail for the domains on 25, takes users' mail on 587
(STARTTLS) and 465 (TLS), and sends mail out with DANE where the destination publishes
TLSA. See tasks/mail.py for who gets mail and who may send.

On the mail host: mailboxes go to dovecot (LMTP), logins are dovecot's (SASL, on the
submission ports only), opendkim signs and checks (tasks/dkim.py), policyd-spf refuses SPF
failures (strict SPF, as "Bringing E-Mail Server In-House" asks) and opendmarc judges DMARC
(tasks/dmarc.py); they say so in Authentication-Results, after the MTA dropped every such
field that came in claiming this host's name (RFC 8601 section 5). On the relay: backup MX
for the same addresses, with the same checks, and the way out for the mail host. Nothing relays for strangers ("Making a
Mailserver (Part 4)": "years of good reputation can be wiped away in a few open relay
minutes"). Maps are texthash: read at start, no
postmap; a changed map reloads postfix.
Reads: tasks/mail.py's data, fqdn, the hosts of the mail and relay groups.
"""

from pyinfra.api import deploy

from tasks import dkim, mail, milter, proxy, spam, tls, zone
from tasks.util import ConfigFile, activate, install_files, render

PACKAGES = ["postfix", "postfix-policyd-spf-python"]
UNITS = {"postfix": "reload"}
MAPS = "/etc/postfix/inhouse"
HEADER_CHECKS = f"{MAPS}/header_checks"
# Warnings count as failures: `postfix check` passes a misspelt parameter with only a
# warning. ("updating ..." lines are postfix copying files into its chroot.)
CHECK = ('out=$( (postconf -n >/dev/null; postfix check || echo "postfix check failed") 2>&1 | grep -v "^updating "); '
         'test -z "$out" || (echo "$out"; exit 1)')


def ports(data: dict) -> list[str]:
    return mail.ports(data) + [f"tcp/{p}" for p in proxy.home_ports(data, "postfix").values()]



def postfix_network(net: str) -> str:
    """An address or network as postfix writes it: IPv6 in brackets ([2001:db8::]/32)."""
    address, slash, length = net.partition("/")
    return f"[{address}]{slash}{length}" if ":" in address else net


def milters(data: dict) -> list[str]:
    """The milters of mail from outside besides the spam filter (whose rspamd judges SPF,
    DKIM and DMARC where it runs): opendkim where it signs or checks, opendmarc where
    rspamd does not judge."""
    return ([milter.DKIM.address] if mail.role(data) == "mail" or dkim.checks(data) else []) \
        + ([milter.DMARC.address] if not spam.judges(data) else [])


def files(data: dict, system: dict) -> list[ConfigFile]:
    role = mail.role(data)
    relays = [h["fqdn"] for h in data["zone_hosts"].get("relay", [])]
    networks = [postfix_network(n) for n in
                data["mail_relay_networks"] + (mail.peer_addresses(data, "mail") if role == "relay" else [])]
    hidden = zone.hidden(data)
    # The way out: the relay, by name; inside the link for a hidden home.
    relayhost = (f"[{zone.link_address(data, relays[0])}]:25" if hidden else f"[{relays[0]}]:25") if relays else ""
    ctx = {"role": role, "domains": mail.domains(data), "maps": MAPS, "header_checks": HEADER_CHECKS,
           "relay_networks": networks,
           "relayhost": relayhost if data["mail_outbound_relay"] or hidden else "", "hidden": hidden,
           "front_door": proxy.home_ports(data, "postfix"), "key": tls.KEY, "cert": tls.CHAIN,
           "ciphers": tls.INTERMEDIATE_CIPHERS,
           # DKIM (opendkim, tasks/dkim.py), DMARC (opendmarc, tasks/dmarc.py); the spam filter's
           "milters": milters(data), "spam_milter": milter.SPAM.address if spam.on(data) else ""}
    configs = [ConfigFile(f"{MAPS}/{name}", render("mta/map.j2", data, entries=entries))
               for name, entries in mail.maps(data).items()]
    if spam.on(data):  # the other MX hosts' mail: the milters without the spam filter
        peers = mail.peer_addresses(data, "relay" if role == "mail" else "mail")
        configs.append(ConfigFile(f"{MAPS}/milters", render("mta/postfix/milters.cidr.j2", data, peers=peers,
                                                            milters=ctx["milters"])))
    configs += [
        ConfigFile(HEADER_CHECKS, render("mta/postfix/header_checks.j2", data,
                                         name=data["fqdn"].replace(".", r"\."))),
        ConfigFile("/etc/postfix-policyd-spf-python/policyd-spf.conf",
                   render("mta/postfix/policyd-spf.conf.j2", data, skip=data["mail_relay_networks"]
                          + mail.peer_addresses(data, "relay" if role == "mail" else "mail"))),
        ConfigFile("/etc/postfix/master.cf", render("mta/postfix/master.cf.j2", data, **ctx), check=CHECK,
                   checker="postfix check"),
        ConfigFile("/etc/postfix/main.cf", render("mta/postfix/main.cf.j2", data, **ctx), check=CHECK,
                   checker="postfix check"),
    ]
    return configs


@deploy("MTA (postfix)")
def apply(data: dict, configs: list[ConfigFile], state: dict):
    changed = install_files(configs, state)
    # policyd-spf starts anew for each connection: its config needs no reload.
    activate(UNITS, {p: op for p, op in changed.items() if "policyd-spf" not in p}, state)
