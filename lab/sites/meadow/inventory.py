"""A third example site, for lab/rehearse: the plan of "Bringing E-Mail Server In-House",
a home server that keeps the mail hidden behind a VPS (link_home_hidden). The home has a
LAN address and no IPv6; the VPS is the only MX, name server and front door.

    lab/rehearse lab/sites/meadow/inventory.py --day-two
"""

from tasks.data import check_inventory, connection

mail = (
    [("home.meadow.test", {"ssh_hostname": "192.168.1.20", "ipv4": "192.168.1.20"})],
    connection(),
)
relay = (
    [("vps.meadow.test", {"ssh_hostname": "203.0.113.50", "ipv4": "203.0.113.50", "ipv6": "2001:db8::50"})],
    connection(),
)

check_inventory(globals())
