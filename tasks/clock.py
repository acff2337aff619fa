"""Clock: chrony keeps time (seed 004, step 4) and the time zone comes from data (step 5).

TLS, DNSSEC signatures and log correlation all depend on a right clock. In a container the
clock belongs to the machine underneath: chronyd may not set it (systemd skips the unit
without CAP_SYS_TIME), so there it runs with -x, serving and tracking time without setting it.
Reads: timezone, clock_ntp_servers.
"""

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import server

from tasks.util import ConfigFile, FileStates, activate, install_files, render, system

DEFAULTS = {
    # NTP servers or pools ("pool 2.debian.pool.ntp.org iburst" lines). Empty keeps
    # Debian's pool; set your provider's servers when outbound NTP is filtered.
    "clock_ntp_servers": [],
}
PACKAGES = ["chrony", "tzdata"]
CONTAINER_DROPIN = "/etc/systemd/system/chrony.service.d/inhouse-container.conf"


def set_timezone(debian: int) -> None:
    zone = host.data.timezone
    target = f"/usr/share/zoneinfo/{zone}"
    if host.get_fact(FileStates, paths=["/etc/localtime"]).get("/etc/localtime") == f"link {target}":
        return
    # Debian 13 dropped /etc/timezone; the link alone is the setting there.
    legacy = f" && echo {zone} > /etc/timezone" if debian < 13 else ""
    server.shell(name=f"Set time zone {zone}", commands=[f"ln -sfn {target} /etc/localtime{legacy}"])


@deploy("Clock", data_defaults=DEFAULTS)
def apply():
    facts = system()
    set_timezone(facts["debian"])
    configs = [
        ConfigFile("/etc/chrony/sources.d/inhouse.sources", render("clock/inhouse.sources.j2"),
                   check="chronyd -p"),
    ]
    if facts["container"] != "none":
        configs.append(ConfigFile(CONTAINER_DROPIN, render("clock/container.conf.j2")))
    changed = install_files(configs)
    if CONTAINER_DROPIN in changed:
        server.shell(name="Reload systemd units", commands=["systemctl daemon-reload"],
                     _if=changed[CONTAINER_DROPIN].did_change)
    activate(["chrony"], changed, action="restart")
