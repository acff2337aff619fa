"""Upgrades: unattended-upgrades installs Debian's security updates every day.

Debian's stock 50unattended-upgrades already limits itself to the security archive and
the point releases; this module switches the daily run on and sets what the data says.
Reads: upgrades_reboot, upgrades_reboot_time.
"""

from pyinfra.api import deploy

from tasks.util import ConfigFile, activate, install_files, render
from tasks.validate import BOOLEAN, CLOCK_TIME, rule, scalar

DEFAULTS = {
    # Reboot by itself when an update needs it (a new kernel or libc)...
    "upgrades_reboot": False,
    # ...at this time of day (local time zone).
    "upgrades_reboot_time": "04:00",
}
# The type and format of each setting, checked before anything connects (tasks/data.py).
CHECKS = {
    "upgrades_reboot": scalar(BOOLEAN),
    "upgrades_reboot_time": scalar(rule(lambda v: isinstance(v, str) and CLOCK_TIME.fullmatch(v),
                                        "is not a time of day (HH:MM)")),
}
PACKAGES = ["unattended-upgrades"]
# apt's timers run unattended-upgrades (they read the config at each run: nothing to
# restart); the service only finishes upgrades at shutdown.
UNITS = {"apt-daily.timer": "", "apt-daily-upgrade.timer": "", "unattended-upgrades": ""}


def files(data: dict, system: dict) -> list[ConfigFile]:
    return [ConfigFile("/etc/apt/apt.conf.d/52inhouse-upgrades", render("upgrades/52inhouse-upgrades.j2", data),
                       check="apt-config dump")]


@deploy("Upgrades")
def apply(data: dict, configs: list[ConfigFile], state: dict):
    activate(UNITS, install_files(configs, state), state)
