"""Zones served by NSD (zone_server = "nsd", the choice of "Bringing E-Mail Server In-House"): see tasks/zone.py.

NSD does not sign: inhouse-zone-sign signs each zone with BIND's dnssec-signzone (an
ECDSA P-256 key per zone, made in /var/lib/nsd/keys, NSEC3 without iterations, signatures
valid 30 days) when the deploy changes it, and daily from a timer so that signatures never
run out; each signing raises the served serial (YYYYMMDDnn). A key roll
(zone_dnssec_key_made_after) is the signer's too: the timer takes it one step on each hour,
and the old key goes only once the host's validating resolver shows the new DS at the
parent (as bind's dnssec-policy does it).
"""

from pyinfra import logger
from pyinfra.api import deploy
from pyinfra.operations import server
from pyinfra.operations.util import any_changed

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
    # A roll's waits (RFC 7583 section 3.3.1): the new DNSKEY reaches every cache before
    # its DS is asked for; the old DS leaves every cache before the old key goes.
    context = zone.context(data) | {
        "zone_dir": ZONE_DIR, "signer": SIGNER,
        "ipub": data["zone_ttl"] + data["zone_propagation_delay"] + data["zone_dnssec_safety"],
        "retire": data["zone_parent_ds_ttl"] + data["zone_parent_propagation_delay"] + data["zone_dnssec_safety"]}
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
    if rolls := zone.dnssec_rolls(data, state.get("dnssec", {})):
        server.shell(name=f"Roll the DNSSEC keys of {', '.join(rolls)}",
                     commands=[f"{SIGNER} --roll {' '.join(rolls)}"])
    if deferred := zone.dnssec_deferred(data, state.get("dnssec", {})):
        logger.warning(zone.dnssec_deferred_note(data, deferred))
    if waiting := zone.dnssec_waiting(state.get("dnssec", {})):
        logger.warning(f"{data['fqdn']}: a DNSSEC key roll of {', '.join(waiting)} waits for the DS at the parent: "
                       "set what `python -m tasks.registrar` prints; the old key stays until the signer sees it there")
    activate(units(data), {p: op for p, op in changed.items() if p.startswith("/etc/nsd")}, state)
    if zone.role(data) == "secondary" and (conf := changed.get("/etc/nsd/nsd.conf.d/inhouse.conf")) and \
            state["units"].get("nsd", ("", ""))[1] == "active":
        # Its primaries may have moved (a home hidden or no longer): ask them now, not at the
        # SOA's refresh, hours away; a NOTIFY they sent before the restart was refused.
        server.shell(name="Ask the primaries for the zones", _if=any_changed(conf),
                     commands=[caught_up(data)])


def caught_up(data: dict, tries: int = 20, silent: int = 5) -> str:
    """A secondary asks its primary for every zone until it serves the primary's serial;
    it gives up, saying so, after `tries` seconds, or `silent` seconds without an answer
    from the primary (a link not up yet: the zones follow at the primary's next NOTIFY).
    A transfer asked for before a new link is up fails, and NSD would not try again
    before the SOA's retry (an hour): the ACME CA would meanwhile find the old names."""
    primary = zone.transfer_address(data, zone.servers(data, "mail")[0])
    zones = " ".join(zone.zones(data))
    # nsd-control answers once the restarted NSD listens.
    return (f"quiet=0; for i in $(seq {tries}); do nsd-control transfer >/dev/null 2>&1; sleep 1; behind=0; "
            f"for z in {zones}; do "
            f'want=$(dig +short +time=1 +tries=1 @{primary} "$z" SOA | cut -d" " -f3); '
            f'[ -n "$want" ] || {{ quiet=$((quiet + 1)); behind=1; break; }}; '
            f"nsd-control zonestatus \"$z\" | grep -q \"served-serial: \\\"$want \" || behind=1; done; "
            f'[ "$behind" = 0 ] && exit 0; [ "$quiet" -ge {silent} ] && break; done; '
            f"echo 'the primary {primary} did not give the current zones yet; they follow at its next NOTIFY' >&2")
