"""Backup store: the relay keeps the mail host's backups (tasks/backup.py), off the mail
host's disk. One account, whose only door is `borg serve` restricted to each mail host's
own repository (borg's "Hosting repositories": `restrict` and a forced command in
authorized_keys); it sees only encrypted data, never the passphrase.
Reads: backup_enabled, the mail group (each mail host's key from secrets_dir/backup/).
"""

from pyinfra.api import deploy
from pyinfra.operations import server

from tasks import backup, mail
from tasks.util import ConfigFile, install_files

PACKAGES = ["borgbackup"]
USER, DIR = backup.STORE_USER, backup.STORE_DIR
KEYS = f"{DIR}/.ssh/authorized_keys"


def on(data: dict) -> bool:
    """A relay stores the backups of the mail hosts that send them here (the default)."""
    return mail.role(data) == "relay" and data["backup_enabled"] and not data["backup_repository"]


def files(data: dict, system: dict) -> list[ConfigFile]:
    lines = []
    for mail_host in data.get("zone_hosts", {}).get("mail", []):
        _, _, public = backup.credentials(data["secrets_dir"], mail_host["fqdn"])
        repo = f"{DIR}/{mail_host['fqdn']}"
        lines.append(f'restrict,command="borg serve --restrict-to-repository {repo}" {public}\n')
    # Owned by root, readable by the account: it cannot change what it may do.
    return [ConfigFile(KEYS, "".join(lines), mode="644", dir_mode="755")]


@deploy("Backup store")
def apply(data: dict, configs: list[ConfigFile], state: dict):
    if USER not in state["users"]:
        server.shell(name=f"Add the {USER} user, owner of the backup repositories", commands=[
            f"id -u {USER} >/dev/null 2>&1 || useradd --system --user-group --home-dir {DIR} --create-home "
            f"--shell /bin/sh {USER}; chmod 700 {DIR}; passwd -l {USER} >/dev/null"])
    install_files(configs, state)
