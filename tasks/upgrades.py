"""Upgrades: unattended-upgrades installs Debian's security updates every day.

Debian's stock 50unattended-upgrades already limits itself to the security archive and
the point releases; this module switches the daily run on and sets what the data says.
Reads: upgrades_reboot, upgrades_reboot_time.
"""

from pyinfra.api import deploy

from tasks.util import ConfigFile, activate, install_files, render

DEFAULTS = {
    # Reboot by itself when an update needs it (a new kernel or libc), at this time.
    "upgrades_reboot": False,
    "upgrades_reboot_time": "04:00",
}
PACKAGES = ["unattended-upgrades"]


@deploy("Upgrades", data_defaults=DEFAULTS)
def apply():
    install_files([
        ConfigFile("/etc/apt/apt.conf.d/52inhouse-upgrades", render("upgrades/52inhouse-upgrades.j2"),
                   check="apt-config dump"),
    ])
    # apt's timers run unattended-upgrades; the service only finishes upgrades at shutdown.
    activate(["apt-daily.timer", "apt-daily-upgrade.timer", "unattended-upgrades"], {})
