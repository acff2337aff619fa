"""inhouse: turn fresh Debian servers into a hardened mail system.

    INHOUSE_BOOTSTRAP=1 pyinfra inventory.py deploy.py   # first run, as root
    pyinfra inventory.py deploy.py                       # every run after, as the admin

Each component (tasks/<name>.py) says what it needs: packages, files (rendered here, from
data only), systemd units, ports. The run reads the host's state once for all of them,
installs the missing packages in one apt run, then applies the components in this order:
- admin before ssh: the admin can log in before root logins stop;
- the certificate before the MTA, IMAP and the MTA-STS policy's nginx, which serve it;
  the MTA before dovecot;
- firewall last, with the ports of every enabled component.
The DNS master's zones publish keys made on the hosts (DKIM here, TLSA of every MX host):
they appear in the run after the one that made them.
"""

from pyinfra import host, inventory, logger
from pyinfra.api.exceptions import PyinfraError

from tasks import (
    admin,
    bans,
    clock,
    dkim,
    dmarc,
    firewall,
    imap,
    mail,
    mta_exim,
    mta_postfix,
    mta_sts,
    resolver,
    ssh,
    tls,
    upgrades,
    zone,
    zone_bind,
    zone_nsd,
)
from tasks.data import DEFAULTS, ROLE_GROUPS, InventoryError, problems, with_roles
from tasks.util import HostState, System, install_packages

groups = {g: [(h.name, h.data.dict()) for h in inventory.get_group(g, [])] for g in ROLE_GROUPS}
data = with_roles(host.name, DEFAULTS | host.data.dict(), groups)
# The inventory checks data before connecting; this catches --data overrides too.
if errors := problems(host.name, data):
    raise InventoryError("\n  ".join(["bad data, nothing was changed:", *errors]))

mail_role = mail.role(data) if data["mail_enabled"] else "none"
components = [admin, ssh] + [
    c for c, on in (
        (bans, data["bans_enabled"]),
        (clock, data["clock_enabled"]),
        (upgrades, data["upgrades_enabled"]),
        (zone.implementation(data), data["zone_enabled"] and zone.role(data) != "none"),
        (resolver, data["resolver_enabled"]),
        (tls, mail_role != "none"),
        (mail.implementation(data), mail_role != "none"),
        (dkim, mail_role == "mail"),
        (dmarc, mail_role == "mail" and data["mta"] == "postfix"),  # exim judges DMARC itself
        (imap, mail_role == "mail"),
        (mta_sts, mta_sts.serves(data)),  # the policy the zones announce (RFC 8461)
    ) if on
]
zone_master = data["zone_enabled"] and zone.role(data) == "master"
heads = [h for c in components if hasattr(c, "heads") for h in c.heads()]
if zone_master:
    heads += [zone.zone_path(data, z) for z in zone.zones(data)]
system = host.get_fact(System, heads=heads)
if zone_master:  # the keys the zones publish: DKIM here, TLSA of each MX host
    tlsa = {data["fqdn"]: system["heads"].get(tls.TLSA, "").strip()}
    for name, relay in groups["relay"] if data["mail_enabled"] else []:
        fqdn = relay.get("fqdn") or name
        try:  # one command on the relay; what it said last time if it cannot be asked now
            tlsa[fqdn] = inventory.get_host(name).get_fact(System, heads=[tls.TLSA])["heads"].get(tls.TLSA, "").strip()
            tls.remember(data, fqdn, tlsa[fqdn])
        except PyinfraError as e:
            tlsa[fqdn] = tls.remembered(data, fqdn)
            logger.warning(f"{host.name}: the relay {name} did not answer ({e}); its TLSA record stays as it was")
    data["zone_keys"] = {"dkim": dkim.current(system) if dkim in components else ("", ""),
                         "tlsa": {name: t for name, t in tlsa.items() if t}}
configs = {c: c.files(data, system) for c in components}
if data["firewall_enabled"]:
    ports = [f"tcp/{data['ssh_port']}"] + [
        p for c in components for p in (c.ports(data) if hasattr(c, "ports") else getattr(c, "PORTS", []))]
    sources = [s for c in components if hasattr(c, "sources") for s in c.sources(data)]
    configs[firewall] = firewall.files(data, system, ports=ports, sources=sources)

state = host.get_fact(
    HostState,
    # Files to install, and paths a component reads besides (paths(): clock's /etc/localtime).
    paths=[f.path for fs in configs.values() for f in fs]
    + [p for c in configs if hasattr(c, "paths") for p in c.paths(data)],
    units=[u for c in configs for u in (c.units(data) if hasattr(c, "units") else c.UNITS)],
    users=[data["admin_user"], mail.VMAIL],
)
state["heads"] = system["heads"]  # the key and certificate state tls and dkim act on
install_packages([p for c in configs for p in (c.packages(data) if hasattr(c, "packages") else c.PACKAGES)],
                 state["packages"])
# host.loop over every component, run here or not, gives each one's operations the same
# place on every host; pyinfra tells operations apart by line numbers only, and hosts with
# different components would otherwise order them in conflicting ways.
# TLS before the services that serve its certificate (the MTA, dovecot, nginx of MTA-STS);
# the MTA before dovecot, which puts its sockets into postfix's queue folder.
order = [admin, ssh, bans, clock, upgrades, zone_bind, zone_nsd, resolver, tls, dkim, dmarc, mta_postfix, mta_exim,
         imap, mta_sts, firewall]
for component in host.loop(order):
    if component in configs:
        component.apply(data, configs[component], state)
