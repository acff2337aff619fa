"""Your servers. Run `pyinfra inventory.py deploy.py --dry` first to see what would change.

Each group is a list of hosts: a name (what pyinfra and the tests call the host, usually
its DNS name, which is also `fqdn` unless set) and its data: `ipv4`/`ipv6`, the public
addresses (glue, A/AAAA, MX); `ssh_hostname`, where to connect while the name does not
resolve yet. Site data for all hosts is in group_data/all.py; data here wins over it.
"""

from tasks.data import check_inventory, connection

# The mail host: keeps the mail, DNS master. With one VPS, that VPS is all there is.
mail = (
    [
        ("mx.example.org", {"ssh_hostname": "203.0.113.10", "ipv4": "203.0.113.10", "ipv6": "2001:db8::10"}),
    ],
    connection(),
)

# Two sites (the plan of "Bringing E-Mail Server In-House"): the home server above keeps the mail, and a VPS is the
# public relay, backup MX and DNS secondary. Uncomment and fill in:
# relay = (
#     [("vps.example.org", {"ssh_hostname": "198.51.100.20", "ipv4": "198.51.100.20"})],
#     connection(),
# )
# A home server behind NAT, hidden behind that VPS (README, "Point it at a real VPS"):
# set in group_data/all.py link_enabled = True and link_home_hidden = True; the home
# server's ipv4 above may then be its LAN address ("192.168.1.10").

check_inventory(globals())
