"""A second example site, for lab/rehearse (the project's CI rehearses it on every run):
other domains than the lab's own, exim4 and NSD, and a relay with IPv4 only.

    lab/rehearse lab/sites/harbour/inventory.py
"""

from tasks.data import check_inventory, connection

mail = (
    [("mx.harbour.test", {"ssh_hostname": "203.0.113.30", "ipv4": "203.0.113.30", "ipv6": "2001:db8::30"})],
    connection(),
)
relay = (
    [("relay.harbour.test", {"ssh_hostname": "198.51.100.40", "ipv4": "198.51.100.40"})],
    connection(),
)

check_inventory(globals())
