# The meadow site's data (lab/sites/meadow/inventory.py): a hidden home behind its VPS.
domain = "meadow.test"
extra_domains = []
admin_user = "gardener"
admin_ssh_keys = []
operator_networks = ["192.168.1.0/24"]  # the home LAN, where the operator sits
timezone = "Europe/London"
secrets_dir = "secrets"
mail_users = ["rose@meadow.test"]
mail_aliases = {"garden@meadow.test": ["rose@meadow.test"]}
# The home dials the VPS over WireGuard and is hidden behind it (tasks/link.py).
link_enabled = True
link_home_hidden = True
