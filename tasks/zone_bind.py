"""Zones served by bind (zone_server = "bind", the default): see tasks/zone.py for the zones.

bind signs inline (`dnssec-policy`: one ECDSA P-256 key, algorithm 13, NSEC3) and keeps
its keys beside the zones in /var/lib/bind across runs. A changed zone is reloaded with
`rndc reload ZONE`: a restart after a rewrite meets bind's journal ("journal out of sync").
"""

from pyinfra import logger
from pyinfra.api import deploy
from pyinfra.operations import server
from pyinfra.operations.util import any_changed

from tasks import zone
from tasks.util import ConfigFile, activate, install_files, render

PACKAGES = ["bind9", "bind9-utils", "bind9-dnsutils"]
PORTS = ["tcp/53", "udp/53"]
UNITS = {"named": "reload"}
ZONE_DIR, GROUP = zone.SERVERS["bind"]["dir"], zone.SERVERS["bind"]["group"]
heads = zone.heads


def keeps(data: dict) -> list[str]:
    """The master's DNSSEC keys with their state files (bind's key-directory is the zone folder)."""
    return [f"{ZONE_DIR}/K*"] if zone.role(data) == "master" else []


def files(data: dict, system: dict) -> list[ConfigFile]:
    context = zone.context(data) | {"zone_dir": ZONE_DIR}
    configs = [
        ConfigFile("/etc/bind/inhouse-transfer.key", render("zone/bind/transfer.key.j2", data, **context),
                   mode="640", group=GROUP),
        ConfigFile("/etc/bind/named.conf.options", render("zone/bind/named.conf.options.j2", data, **context),
                   check="named-checkconf", group=GROUP),
        ConfigFile("/etc/bind/named.conf.local", render("zone/bind/named.conf.local.j2", data, **context),
                   check="named-checkconf", group=GROUP),
    ]
    return configs + (zone.zone_files(data, system) if context["role"] == "master" else [])


@deploy("Zone (bind)")
def apply(data: dict, configs: list[ConfigFile], state: dict):
    changed = install_files(configs, state)
    running = state["units"].get("named", ("", ""))[1] == "active"
    activate(UNITS, {p: op for p, op in changed.items() if not p.startswith(ZONE_DIR)}, state)
    if running and zone.role(data) == "secondary" and (conf := changed.get("/etc/bind/named.conf.local")):
        # Its primaries may have moved (a home hidden or no longer): ask them now, not at the
        # SOA's refresh, hours away; a NOTIFY they sent before the reload was refused.
        server.shell(name="Ask the primaries for the zones", _if=any_changed(conf),
                     commands=["; ".join(f"rndc refresh {z}" for z in zone.zones(data))])
    if running and (rolls := zone.dnssec_rolls(data, state.get("dnssec", {}))):
        # bind publishes the successor now and retires the old key only as the parent follows.
        server.shell(name=f"Roll the DNSSEC keys of {', '.join(rolls)}",
                     commands=["; ".join(f"rndc dnssec -rollover -key {k} {z}" for z, ks in rolls.items() for k in ks)])
    if deferred := zone.dnssec_deferred(data, state.get("dnssec", {})):
        logger.warning(zone.dnssec_deferred_note(data, deferred))
    if waiting := zone.dnssec_waiting(state.get("dnssec", {})):
        logger.warning(f"{data['fqdn']}: a DNSSEC key roll of {', '.join(waiting)} waits for the DS at the parent: "
                       "set what `python -m tasks.registrar` prints; the old key stays until bind sees it there")
    reloads = [z for z in zone.zones(data) if zone.zone_path(data, z) in changed]
    if reloads and running:  # one command for every changed zone
        server.shell(name=f"Reload zones {', '.join(reloads)}",
                     commands=["; ".join(f"rndc reload {z}" for z in reloads)],
                     _if=any_changed(*[changed[zone.zone_path(data, z)] for z in reloads]))
