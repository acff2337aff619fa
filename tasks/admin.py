"""The administrator: a login with sudo reached only by SSH key ("Making a Mailserver (Part 1)", step 1 and 2).

This runs before the SSH hardening so that, when root logins stop, the admin can get in.
Reads: admin_user, admin_ssh_keys.
"""

from pyinfra.api import deploy
from pyinfra.operations import server

from tasks.util import ConfigFile, install_files, render

DEFAULTS: dict = {}
PACKAGES = ["sudo"]
UNITS: dict = {}


def files(data: dict, system: dict) -> list[ConfigFile]:
    user = data["admin_user"]
    return [
        ConfigFile(f"/home/{user}/.ssh/authorized_keys", render("admin/authorized_keys.j2", data),
                   mode="600", user=user, group=user, dir_mode="700"),
        # sudo skips names with a dot in sudoers.d: the candidate PATH.new stays inert.
        ConfigFile("/etc/sudoers.d/inhouse", render("admin/sudoers.j2", data), check="visudo -cqf {path}",
                   mode="440"),
    ]


@deploy("Admin user")
def apply(data: dict, configs: list[ConfigFile], state: dict):
    user = data["admin_user"]
    if user not in state["users"]:
        # No password: logins are by key, and sudo asks none (see sudoers).
        server.shell(name=f"Create user {user}", commands=[f"useradd --create-home --shell /bin/bash {user}"])
    install_files(configs, state)
