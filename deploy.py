"""inhouse: turn fresh Debian servers into a hardened mail system.

    INHOUSE_BOOTSTRAP=1 pyinfra inventory.py deploy.py   # first run, as root
    pyinfra inventory.py deploy.py                       # every run after, as the admin

Each component (tasks/<name>.py) says what it needs: packages, files (rendered here, from
data only), systemd units. The run reads the host's state once for all of them, installs
the missing packages in one apt run, then applies the components in this order:
- admin before ssh: the admin can log in before root logins stop;
- firewall last, with the ports of every enabled component.
"""

from pyinfra import host

from tasks import admin, bans, clock, firewall, ssh, upgrades
from tasks.data import DEFAULTS, InventoryError, problems
from tasks.util import HostState, System, install_packages

data = DEFAULTS | host.data.dict()
# The inventory checks data before connecting; this catches --data overrides too.
if errors := problems(host.name, data):
    raise InventoryError("\n  ".join(["bad data, nothing was changed:", *errors]))

system = host.get_fact(System)
optional = [(bans, "bans_enabled"), (clock, "clock_enabled"), (upgrades, "upgrades_enabled")]
configs = {c: c.files(data, system) for c in [admin, ssh] + [c for c, key in optional if data[key]]}
if data["firewall_enabled"]:
    configs[firewall] = firewall.files(data, system, ports=[f"tcp/{data['ssh_port']}"])

state = host.get_fact(
    HostState,
    # Files to install, and paths a component reads besides (PATHS: clock's /etc/localtime).
    paths=[f.path for fs in configs.values() for f in fs] + [p for c in configs for p in getattr(c, "PATHS", [])],
    units=[u for c in configs for u in c.UNITS],
    users=[data["admin_user"]],
)
install_packages([p for c in configs for p in c.PACKAGES], state["packages"])
for component, files in configs.items():
    component.apply(data, files, state)
