"""SSH: key-only logins for the admin, no root, strong algorithms (CIS Debian 12, 5.1).

Settings live in a drop-in that sorts first in /etc/ssh/sshd_config.d (sshd keeps the first
value it reads), so Debian's sshd_config stays the package's and upgrades bring no prompt.
`sshd -t` checks the whole config before sshd reloads; a reload keeps open sessions.

Algorithms: only modern ones, but every kind keeps one that paramiko (pyinfra's SSH
library) speaks, or the next deploy would be locked out while OpenSSH clients still work.
Reads: ssh_port, ssh_extra_config, admin_user, operator_networks.
"""

import shlex

from pyinfra.api import deploy

from tasks import backup_store
from tasks.util import ConfigFile, activate, install_files, render
from tasks.validate import ONE_LINE_TEXT, listing

DEFAULTS = {
    # Extra sshd_config lines, appended to the drop-in as they are (checked by sshd -t).
    "ssh_extra_config": [],
}
# The type and format of each setting, checked before anything connects (tasks/data.py).
CHECKS = {
    "ssh_extra_config": listing(ONE_LINE_TEXT),
}
PACKAGES = ["openssh-server"]
UNITS = {"ssh": "reload"}

# Key exchange per Debian release: post-quantum hybrids first where OpenSSH has them
# (mlkem768x25519 since 9.9, so not in Debian 12's 9.2); curve25519-sha256@libssh.org and
# group16 stay for paramiko.
KEX = {
    12: ["sntrup761x25519-sha512@openssh.com"],
    13: ["mlkem768x25519-sha256", "sntrup761x25519-sha512", "sntrup761x25519-sha512@openssh.com"],
}
KEX_COMMON = [
    "curve25519-sha256",
    "curve25519-sha256@libssh.org",
    "diffie-hellman-group16-sha512",
    "diffie-hellman-group18-sha512",
    "diffie-hellman-group-exchange-sha256",
]


def ports(data: dict) -> list[str]:
    return [f"tcp/{data['ssh_port']}"]


def files(data: dict, system: dict) -> list[ConfigFile]:
    debian = system["debian"]
    config = render(
        "ssh/00-inhouse.conf.j2", data,
        kex=KEX.get(debian, KEX[13]) + KEX_COMMON,
        # PerSourcePenalties (OpenSSH 9.8+) would otherwise block the operator after typos.
        penalties=debian >= 13,
        also=[backup_store.USER] if backup_store.on(data) else [],
    )
    # Valid is not enough: the admin must still be let in (a config sshd accepts can still
    # name nobody who can log in), or the deploy would lock its operator out.
    admin = shlex.quote(f"allowusers {data['admin_user']}")
    return [ConfigFile("/etc/ssh/sshd_config.d/00-inhouse.conf", config, mode="600", checker="sshd",
                       check=f"sshd -t && sshd -T | grep -qx {admin}")]


@deploy("SSH")
def apply(data: dict, configs: list[ConfigFile], state: dict):
    activate(UNITS, install_files(configs, state), state)
