"""Clock: chrony keeps time ("Making a Mailserver (Part 1)", step 4) and the time zone comes from data (step 5).

TLS, DNSSEC signatures and log correlation all depend on a right clock. In a container the
clock belongs to the machine underneath: chronyd may not set it (systemd skips the unit
without CAP_SYS_TIME), so there it runs with -x, serving and tracking time without setting it.
Reads: timezone, clock_ntp_servers.
"""

from pyinfra.api import deploy
from pyinfra.operations import server

from tasks.util import FILES, ConfigFile, activate, install_files, reload_unit_files, render
from tasks.validate import NTP_SOURCE, listing, rule

DEFAULTS = {
    # NTP servers or pools ("pool 2.debian.pool.ntp.org iburst" lines). Empty keeps
    # Debian's pool; set your provider's servers when outbound NTP is filtered.
    "clock_ntp_servers": [],
}
# The type and format of each setting, checked before anything connects (tasks/data.py).
CHECKS = {
    "clock_ntp_servers": listing(rule(lambda v: isinstance(v, str) and NTP_SOURCE.fullmatch(v),
                                      "is not a chrony source line (pool 2.debian.pool.ntp.org iburst)")),
}
PACKAGES = ["chrony", "tzdata"]
UNITS = {"chrony": "restart"}
CONTAINER_DROPIN = "/etc/systemd/system/chrony.service.d/inhouse-container.conf"


def paths(data: dict) -> list[str]:
    """Read with the files, so the time zone costs no round trip of its own."""
    return ["/etc/localtime"]


def files(data: dict, system: dict) -> list[ConfigFile]:
    configs = [ConfigFile("/etc/chrony/sources.d/inhouse.sources", render("clock/inhouse.sources.j2", data),
                          check="chronyd -p")]
    if system["container"] != "none":
        configs.append(ConfigFile(CONTAINER_DROPIN, (FILES / "clock/container.conf").read_text()))
    if system["debian"] < 13:  # Debian 13 dropped /etc/timezone; the link alone says it there
        configs.append(ConfigFile("/etc/timezone", f"{data['timezone']}\n"))
    return configs


@deploy("Clock")
def apply(data: dict, configs: list[ConfigFile], state: dict):
    target = f"/usr/share/zoneinfo/{data['timezone']}"
    if state["paths"].get("/etc/localtime") != f"link {target}":
        server.shell(name=f"Set time zone {data['timezone']}", commands=[f"ln -sfn {target} /etc/localtime"])
    changed = install_files(configs, state)
    reload_unit_files(changed, CONTAINER_DROPIN)
    activate(UNITS, changed, state)
