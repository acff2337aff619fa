"""Bans: fail2ban blocks addresses that keep failing to log in ("Making a Mailserver (Part 1)", step 3): SSH, and
on mail hosts SMTP AUTH and IMAP.

Debian 12 and 13 log to the journal only (no /var/log/auth.log), where fail2ban's stock
jail finds no file and exits: jails read the journal (backend systemd). Bans go into an
nftables table of fail2ban's own, so reloading the firewall's iptables rules keeps them.
Loopback and operator_networks are never banned.
Reads: bans_time, bans_find_time, bans_max_retry, operator_networks, ssh_port.
"""

from pyinfra.api import deploy

from tasks import mail
from tasks.util import FILES, ConfigFile, activate, install_files, render
from tasks.validate import DURATION, is_integer, rule, scalar

DEFAULTS = {
    # How long a ban lasts (fail2ban time syntax: 10m, 1h, 1d).
    "bans_time": "1h",
    # An address is banned after bans_max_retry failures within bans_find_time.
    "bans_find_time": "10m",
    # Failures that trigger a ban; sshd's aggressive mode counts a few per bad login.
    "bans_max_retry": 5,
}
# The type and format of each setting, checked before anything connects (tasks/data.py).
CHECKS = {
    **{k: scalar(rule(lambda v: is_integer(v, 1, 10**9) or isinstance(v, str) and DURATION.fullmatch(v),
                      "is not a duration (600, 10m, 1h, 1d)")) for k in ("bans_time", "bans_find_time")},
    "bans_max_retry": scalar(rule(lambda v: is_integer(v, 1, 1000), "is not a positive number")),
}
# python3-systemd: the journal backend; nftables: the ban action's `nft` command.
PACKAGES = ["fail2ban", "python3-systemd", "nftables"]
UNITS = {"fail2ban": "reload-or-restart"}


def files(data: dict, system: dict) -> list[ConfigFile]:
    role = mail.role(data) if data["mail_enabled"] else "none"  # which mail logins to guard
    check = "fail2ban-client -t"
    # The jails first: Debian 12's stock jails fail the check until they read the journal.
    jail = render("bans/jail.local.j2", data, mail_role=role, mta=data["mta"])
    jails = [ConfigFile("/etc/fail2ban/jail.d/inhouse.local", jail, check=check)]
    return jails + ([ConfigFile("/etc/fail2ban/filter.d/dovecot.local", (FILES / "bans/dovecot.local").read_text(),
                                check=check)] if role == "mail" else [])


@deploy("Bans")
def apply(data: dict, configs: list[ConfigFile], state: dict):
    activate(UNITS, install_files(configs, state), state)
