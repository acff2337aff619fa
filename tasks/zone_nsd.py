"""Zones served by NSD (zone_server = "nsd", the choice of "Bringing E-Mail Server In-House"): see tasks/zone.py.

NSD does not sign: inhouse-zone-sign signs each zone with BIND's dnssec-signzone (one
ECDSA P-256 key per zone, made once in /var/lib/nsd/keys, NSEC3 without iterations,
signatures valid 30 days) when the deploy changes it, and daily from a timer so that
signatures never run out; each signing raises the served serial (YYYYMMDDnn).
"""

from pyinfra.api import deploy
from pyinfra.operations import server

from tasks import zone
from tasks.util import ConfigFile, activate, install_files, reload_unit_files, render

PACKAGES = ["nsd", "bind9-utils", "bind9-dnsutils"]
PORTS = ["tcp/53", "udp/53"]
UNITS = {"nsd": "restart", "inhouse-zone-sign.timer": ""}
ZONE_DIR, GROUP = zone.SERVERS["nsd"]["dir"], zone.SERVERS["nsd"]["group"]
heads = zone.heads
SIGNER = "/usr/local/sbin/inhouse-zone-sign"
SIGNER_UNITS = "/etc/systemd/system/inhouse-zone-sign"


def units(data: dict) -> dict[str, str]:
    return UNITS if zone.role(data) == "master" else {"nsd": UNITS["nsd"]}  # secondaries sign nothing


def keeps(data: dict) -> list[str]:
    """The master's DNSSEC keys (the signer's)."""
    return [f"{ZONE_DIR}/keys"] if zone.role(data) == "master" else []


def paths(data: dict) -> list[str]:
    """The signed zones: one missing (a failed signing) is signed again."""
    return [f"{ZONE_DIR}/db.{z}.signed" for z in zone.zones(data)] if zone.role(data) == "master" else []


def files(data: dict, system: dict) -> list[ConfigFile]:
    context = zone.context(data) | {"zone_dir": ZONE_DIR, "signer": SIGNER}
    configs = [
        ConfigFile("/etc/nsd/nsd.conf.d/inhouse.conf", render("zone/nsd/inhouse.conf.j2", data, **context),
                   check="nsd-checkconf /etc/nsd/nsd.conf", mode="640", group=GROUP),
    ]
    if context["role"] != "master":
        return configs
    return configs + [
        ConfigFile(SIGNER, render("zone/nsd/inhouse-zone-sign.j2", data, **context), mode="755"),
        ConfigFile(f"{SIGNER_UNITS}.service", render("zone/nsd/inhouse-zone-sign.service.j2", data, **context)),
        ConfigFile(f"{SIGNER_UNITS}.timer", render("zone/nsd/inhouse-zone-sign.timer.j2", data, **context)),
        *zone.zone_files(data, system),
    ]


@deploy("Zone (nsd)")
def apply(data: dict, configs: list[ConfigFile], state: dict):
    changed = install_files(configs, state)
    reload_unit_files(changed, SIGNER_UNITS)
    signs = [z for z in zone.zones(data) if zone.role(data) == "master" and (
        zone.zone_path(data, z) in changed or f"{ZONE_DIR}/db.{z}.signed" not in state["paths"])]
    if signs:  # one command for every changed zone
        server.shell(name=f"Sign zones {', '.join(signs)}", commands=[f"{SIGNER} {' '.join(signs)}"])
    activate(units(data), {p: op for p, op in changed.items() if p.startswith("/etc/nsd")}, state)
