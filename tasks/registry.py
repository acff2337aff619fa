"""Every component, in the order a run applies them, each with the data that turns it on.
deploy.py, the data checks, the tests and the benchmark ask this list; adding a component
is a task module (the interface: tasks/component.py) and one line here.

The order, with its reasons:
- keys (a rebuilt host's, put back) and the mail (backup) first, right after the packages
  install (with their daemons held): before any component uses or makes keys or starts a
  service; and before root logins stop, so that a rebuild that cannot read its backup
  stops on a host where the same first command can run again;
- admin before ssh: the admin can log in before root logins stop;
- the zones and the resolver before the certificate: the ACME CA and DANE need the names;
- the certificate before the MTA, IMAP and the MTA-STS policy's web server, which serve
  it; the MTA before dovecot, which puts its sockets into postfix's queue folder;
- the firewall, with the ports of every component the host runs (on a hidden home, open
  only to the link, the operator and the home LAN: tasks/link.py), before the services
  others must reach in the same run: the secondaries ask the master for a changed zone,
  the ACME CA checks port 80 (a home no longer hidden is asked from outside at once);
- the link before the zones: a hidden home's NOTIFY and transfers go through it.
"""

from tasks import (
    admin,
    backup,
    backup_store,
    bans,
    clock,
    dkim,
    dmarc,
    firewall,
    imap,
    keys,
    link,
    mail,
    mta_exim,
    mta_postfix,
    mta_sts,
    proxy,
    reports,
    resolver,
    spam,
    ssh,
    tls,
    upgrades,
    zone,
    zone_bind,
    zone_nsd,
)
from tasks.component import Component


def mail_role(data: dict) -> str:
    """'mail', 'relay' or 'none': what this host does for mail."""
    return mail.role(data) if data["mail_enabled"] else "none"


def zone_role(data: dict) -> str:
    """'master', 'secondary' or 'none': what this host does for the zones."""
    return zone.role(data) if data["zone_enabled"] else "none"


class Firewall(Component):
    """Opens the ports of the other components this host runs."""

    def files(self, data: dict, system: dict, others: list[Component]) -> list:
        ports = [p for c in others for p in c.ports(data)]
        sources = [s for c in others for s in c.sources(data)]
        if link.role(data) == "home" and link.hidden(data):  # nothing of the internet talks to home
            ports, sources = [], sources + [(n, p) for n in link.networks(data) for p in ports]
        return firewall.files(data, system, ports=ports, sources=sources)


class Backup(Component):
    """Archives the key files of the other components too."""

    def files(self, data: dict, system: dict, others: list[Component]) -> list:
        return backup.files(data, system, keeps=[k for c in others for k in c.keeps(data)])


COMPONENTS = [
    Component(keys),
    Backup(backup, lambda d: mail_role(d) == "mail" and backup.on(d)),
    Component(admin),
    Component(ssh),
    Component(bans, lambda d: d["bans_enabled"]),
    Component(clock, lambda d: d["clock_enabled"]),
    Component(upgrades, lambda d: d["upgrades_enabled"]),
    Component(backup_store, lambda d: mail_role(d) == "relay" and backup_store.on(d)),
    Firewall(firewall, lambda d: d["firewall_enabled"]),
    Component(link, link.on),
    Component(zone_bind, lambda d: zone_role(d) != "none" and d["zone_server"] == "bind"),
    Component(zone_nsd, lambda d: zone_role(d) != "none" and d["zone_server"] == "nsd"),
    Component(resolver, lambda d: d["resolver_enabled"]),
    Component(tls, lambda d: mail_role(d) != "none"),
    # Every postfix MX judges the mail it takes in; exim judges DKIM and DMARC itself.
    # A postfix relay checks signatures with opendkim, and DMARC with opendmarc, unless
    # rspamd judges (tasks/spam.py).
    Component(dkim, lambda d: mail_role(d) == "mail" or (mail_role(d) == "relay" and dkim.checks(d)
                                                          and d["mta"] == "postfix")),
    Component(dmarc, lambda d: mail_role(d) != "none" and d["mta"] == "postfix" and not spam.judges(d)),
    Component(spam, spam.on),  # before the MTA, which asks it
    Component(mta_postfix, lambda d: mail_role(d) != "none" and d["mta"] == "postfix"),
    Component(mta_exim, lambda d: mail_role(d) != "none" and d["mta"] == "exim4"),
    Component(imap, lambda d: mail_role(d) == "mail"),
    Component(proxy, lambda d: mail_role(d) == "relay"),
    Component(reports, lambda d: mail_role(d) == "mail"),
    Component(mta_sts, lambda d: mail_role(d) != "none"),  # the host that serves it: tasks/zone.py
]
# Modules of data that several components share: their settings and checks.
SHARED = [mail, zone]
DEFAULTS = {k: v for m in [*SHARED, *(c.module for c in COMPONENTS)] for k, v in getattr(m, "DEFAULTS", {}).items()}


def enabled(data: dict) -> list[Component]:
    """The components this host runs, in order."""
    return [c for c in COMPONENTS if c.on(data)]


def by_name(name: str) -> Component:
    return next(c for c in COMPONENTS if c.name == name)


def daemons(data: dict) -> list[str]:
    """The services the deploy keeps running on this host (its timers left out)."""
    return [u for c in enabled(data) for u in c.units(data) if not u.endswith(".timer")]
