"""pyinfra deploy of the lab's root server (lab/root.py publish runs it): bind serving the
pre-signed root zone and broken.test from .lab/root, nothing else."""

from io import StringIO
from pathlib import Path

from pyinfra import host
from pyinfra.operations import apt, files, server, systemd

ROOT = Path(__file__).resolve().parent.parent / ".lab" / "root"

apt.packages(name="Install bind9", packages=["bind9"], no_recommends=True)
conf = files.put(
    name="Install named.conf.local",
    src=StringIO(
        "".join(
            f'zone "{zone}" {{ type primary; file "/var/lib/bind/lab-{zone}.zone"; }};\n'
            for zone in (".", "broken.test")
        )
    ),
    dest="/etc/bind/named.conf.local",
)
options = files.put(
    name="Install named.conf.options",
    src=StringIO(
        'options { directory "/var/cache/bind"; recursion no; dnssec-validation no;\n'
        f'  listen-on {{ {host.data.ipv4}; }}; listen-on-v6 {{ {host.data.ipv6}; }}; }};\n'
    ),
    dest="/etc/bind/named.conf.options",
)
zones = [
    files.put(name=f"Install the {name} zone", src=str(ROOT / source), dest=f"/var/lib/bind/lab-{name}.zone")
    for name, source in ((".", "root.zone"), ("broken.test", "broken.test.zone"))
]
systemd.service(name="Enable named", service="named", running=True, enabled=True)
server.shell(name="Restart named", commands=["systemctl restart named"],
             _if=lambda: any(op.did_change() for op in [conf, options, *zones]))
