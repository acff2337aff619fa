"""inhouse: turn fresh Debian servers into a hardened mail system.

    INHOUSE_BOOTSTRAP=1 pyinfra inventory.py deploy.py   # first run, as root
    pyinfra inventory.py deploy.py                       # every run after, as the admin

The story of a run, on each host:
1. the data is checked (again: `--data` overrides come after the inventory's own check);
2. one round trip reads what the components depend on (Debian version, keys, serials); a
   fresh host the site has known before (a rebuild) gets its keys back from secrets_dir;
3. the components this host runs (tasks/registry.py, in their order) render their files
   from data alone; one more round trip reads the state of those files, units and users;
4. the missing packages install in one apt run, then each component acts only on what
   differs from that state, restarting a service only when one of its inputs changed;
5. keys the run made or changed are copied to secrets_dir (tasks/keys.py); a rebuilt mail
   host asks its relays (ETRN) for the mail they kept for it meanwhile.
The DNS master's zones publish keys made on the hosts (DKIM here, TLSA of every MX host):
they appear in the run after the one that made them; each host keeps a next key, published
ahead, so that a roll (tasks/rollover.py) switches to a key every sender can know.
"""

from pyinfra import host, inventory, logger
from pyinfra.api.exceptions import PyinfraError

from tasks import backup, dkim, keys, link, mail, tls, zone
from tasks.data import ROLE_GROUPS, InventoryError, problems, with_roles
from tasks.registry import COMPONENTS, DEFAULTS, enabled, mail_role, zone_role
from tasks.util import HostState, System, install_packages

groups = {g: [(h.name, h.data.dict()) for h in inventory.get_group(g, [])] for g in ROLE_GROUPS}
data = with_roles(host.name, DEFAULTS | host.data.dict(), groups)
# The inventory checked this data before connecting (check_inventory, --data too); checked
# again as pyinfra merged it, for an inventory that does not end with check_inventory.
if errors := problems(host.name, data):
    raise InventoryError("\n  ".join(["bad data, nothing was changed:", *errors]))

components = enabled(data)
heads, keeps = [h for c in components for h in c.heads(data)], [k for c in components for k in c.keeps(data)]
system = host.get_fact(System, heads=heads, names=zone.zones(data) if data["resolver_enabled"] else [], keeps=keeps,
                       key_dir=zone.dnssec_key_dir(data))
if (restoring := keys.restoring(data, system)) and system["keys"] == keys.NONE:  # a rebuilt host:
    system["heads"] |= keys.escrowed_heads(data, heads)  # its keys come back first


def relays() -> dict[str, dict[str, str]]:
    """What the mail host needs of each relay, asked from it (one command each): its TLSA
    data (for the zones) and SSH host key (for the backups); as it answered last time when
    it cannot be asked now (down, or refusing root during a rebuild of the mail host)."""
    out = {}
    for name, relay in groups["relay"]:
        fqdn = relay.get("fqdn") or name
        try:
            asked = inventory.get_host(name).get_fact(
                System, heads=[tls.TLSA, tls.NEXT_TLSA, backup.HOST_KEY, link.PUBLIC])
            out[fqdn] = {"tlsa": tls.published(asked["heads"]),
                         backup.HOST_KEY: asked["heads"].get(backup.HOST_KEY, ""),
                         link.PUBLIC: link.public_key(asked["heads"])}
            tls.remember(data, fqdn, out[fqdn]["tlsa"])
            backup.remember_host_key(data, fqdn, out[fqdn][backup.HOST_KEY])
            link.remember(data, fqdn, out[fqdn][link.PUBLIC])
        except PyinfraError as e:
            out[fqdn] = {"tlsa": tls.remembered(data, fqdn), backup.HOST_KEY: backup.remembered_host_key(data, fqdn),
                         link.PUBLIC: link.remembered(data, fqdn)}
            logger.warning(f"{host.name}: the relay {name} did not answer ({e}); using what it said last time")
    return out


def link_home() -> dict[str, str]:
    """A relay's side of the link: the mail host's public key, asked from it (one command);
    as it answered last time when it cannot be asked now."""
    out = {}
    for name, home in groups["mail"][:1]:
        fqdn = home.get("fqdn") or name
        try:
            out[fqdn] = link.public_key(inventory.get_host(name).get_fact(System, heads=[link.PUBLIC])["heads"])
            link.remember(data, fqdn, out[fqdn])
        except PyinfraError as e:
            out[fqdn] = link.remembered(data, fqdn)
            logger.warning(f"{host.name}: the mail host {name} did not answer ({e}); using what it said last time")
    return out


if mail_role(data) != "none" and (zone_role(data) == "master" or mail_role(data) == "mail"):
    system["relays"] = relays()
if link.role(data) == "home":  # the link's peers: every relay, or the mail host
    system["link_peers"] = {fqdn: asked[link.PUBLIC] for fqdn, asked in system["relays"].items()}
elif link.role(data) == "hub":
    system["link_peers"] = link_home()
if zone_role(data) == "master":  # the keys the zones publish: TLSA of every MX host
    tlsa = {data["fqdn"]: tls.published(system["heads"])} | {
        fqdn: asked["tlsa"] for fqdn, asked in system.get("relays", {}).items()}
    data["zone_keys"] = {"dkim": dkim.published(data, system) if mail_role(data) == "mail" else [],
                         "tlsa": {fqdn: t for fqdn, t in tlsa.items() if t}}
configs = {c: c.files(data, system, [o for o in components if o is not c]) for c in components}
state = host.get_fact(
    HostState,
    paths=[f.path for fs in configs.values() for f in fs]
    + [p for c in components for p in c.paths(data) + c.gone(data)],
    units=[u for c in components for u in c.units(data)],
    users=[data["admin_user"], mail.VMAIL, backup.STORE_USER],
)
state["heads"] = system["heads"]  # the key and certificate state tls and dkim act on
state["unvalidated"] = system["unvalidated"]  # the site's names the resolver does not validate
state["restoring"], state["keys"] = restoring, system["keys"]
state["dnssec"] = zone.dnssec_keys(system["dnssec"])  # bind's DNSSEC keys, for a roll
install_packages([p for c in components for p in c.packages(data)], state["packages"])
for component in components:
    # pyinfra tells operations apart (and orders them across hosts) by the line numbers of
    # their call stack, the same wherever two components call a helper from equal lines: a
    # host that runs other components would count them otherwise, a cycle. Each component's
    # place in the registry, the same on every host, keeps them apart.
    host.loop_position.append(COMPONENTS.index(component))
    component.apply(data, configs[component], state)
    host.loop_position.pop()
keys.escrow(data, keeps, system)  # new or changed keys, to the operator's machine
if any(c.module is backup for c in components):
    backup.first(state)
if restoring:
    if mail_role(data) == "mail":  # back from a rebuild: what waited on the relays, now
        backup.ask_relays(data)
    keys.rebuilt()
