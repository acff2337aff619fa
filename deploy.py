"""inhouse: turn fresh Debian servers into a hardened mail system.

    INHOUSE_BOOTSTRAP=1 pyinfra inventory.py deploy.py   # first run, as root
    pyinfra inventory.py deploy.py                       # every run after, as the admin

Components run in this order:
- admin before ssh: the admin can log in before root logins stop;
- packages once for every component, so a no-op run spends one round trip on them;
- firewall last, with the ports of every enabled component.
"""

from pyinfra import host

from tasks import admin, bans, clock, firewall, ssh, upgrades
from tasks.data import DEFAULTS, InventoryError, problems
from tasks.util import install_packages

# The inventory checks data before connecting; this catches --data overrides too.
if errors := problems(host.name, DEFAULTS | host.data.dict()):
    raise InventoryError("\n  ".join(["bad data, nothing was changed:", *errors]))

enabled = [admin, ssh] + [
    c for c, key in ((bans, "bans_enabled"), (clock, "clock_enabled"), (upgrades, "upgrades_enabled"))
    if host.data.get(key)
]
firewall_on = host.data.get("firewall_enabled")
install_packages([p for c in enabled + ([firewall] if firewall_on else []) for p in c.PACKAGES])
for component in enabled:
    component.apply()
if firewall_on:
    firewall.apply([f"tcp/{host.data.ssh_port}"])
