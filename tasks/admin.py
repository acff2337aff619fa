"""The administrator: a login with sudo reached only by SSH key (seed 004, step 1 and 2).

This runs before the SSH hardening so that, when root logins stop, the admin can get in.
Reads: admin_user, admin_ssh_keys.
"""

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import server

from tasks.util import ConfigFile, install_files, render

DEFAULTS: dict = {}
PACKAGES = ["sudo"]


@deploy("Admin user")
def apply():
    user = host.data.admin_user
    # The account has no password: logins are by key, sudo asks none (see sudoers).
    server.user(name=f"Create {user}", user=user, shell="/bin/bash", create_home=True)
    install_files([
        ConfigFile(
            f"/home/{user}/.ssh/authorized_keys",
            render("admin/authorized_keys.j2"),
            mode="600", user=user, group=user,
        ),
        ConfigFile(
            "/etc/sudoers.d/inhouse",  # sudo skips names with a dot: PATH.new is inert
            render("admin/sudoers.j2"),
            check="visudo -cqf {path}",
            mode="440",
        ),
    ])
