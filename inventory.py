"""Your servers. Run `pyinfra inventory.py deploy.py --dry` first to see what would change.

Each group is a list of hosts: a name (what pyinfra and the tests call the host, usually
its DNS name) and its data. ssh_hostname is where to connect, when the name does not
resolve yet. Site data for all hosts is in group_data/all.py; data here wins over it.
"""

from tasks.data import check_inventory, connection

# One VPS that does everything: DNS, MX, IMAP, submission.
mail = (
    [
        ("mx.example.org", {"ssh_hostname": "203.0.113.10"}),
    ],
    connection(),
)

# Two sites (seed 000's plan): a home server keeps the mail, and a VPS is the public
# relay, backup MX and secondary DNS. Uncomment, move the home server into `mail` above
# and put the VPS here:
# relay = (
#     [("vps.example.org", {"ssh_hostname": "198.51.100.20"})],
#     connection(),
# )

check_inventory(globals())
