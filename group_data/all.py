# Site data for every host: who runs the site, which components are on.
# Change these here or per group (group_data/<group>.py) or per host (inventory.py).
# Each component's own knobs and their defaults sit in its task module (tasks/*.py,
# DEFAULTS); every key is checked (tasks/data.py) before pyinfra connects anywhere.

# The mail domain; host names and records derive from it.
domain = "example.org"

# More mail domains served by the same servers; their zones, MX and policies are made
# like the primary's (name servers and host names stay under the primary domain).
extra_domains = []

# The person who administers the servers: a login with sudo, reached only by SSH key.
# root logins are refused once the first deploy has run ("Making a Mailserver (Part 1)": "Remove root SSH access").
admin_user = "mailadmin"

# OpenSSH public keys of admin_user, one string each ("ssh-ed25519 AAAA... you@laptop").
# Required: without one the deploy refuses to run, as it turns password logins off.
admin_ssh_keys = []

# Addresses or networks of the operator (office, home, the machine running pyinfra).
# fail2ban never bans them; loopback is never banned anyway.
operator_networks = []

# The port sshd listens on, pyinfra connects to, the firewall opens and fail2ban guards.
# To move it on a live server: open the new port with firewall_extra_ports, deploy, then
# change ssh_port and deploy again.
ssh_port = 22

# Time zone of the servers' clocks and logs, a name from the tz database.
timezone = "UTC"

# Where keys made on this machine are kept (the TSIG key of zone transfers): never in git,
# keep it with your backups. Relative paths are from the directory you run pyinfra in.
secrets_dir = "secrets"

# Lab only (lab/inventory.py.in): accept private addresses (10.0.0.0/8, fd00::/8...) as the
# hosts' public ipv4/ipv6. Real servers need public ones: keep False.
lab_private_addresses = False

# Components beyond SSH hardening; set to False to leave one out.
bans_enabled = True  # fail2ban: ban addresses that keep failing to log in
clock_enabled = True  # chrony: keep the clock right (TLS, DNSSEC, logs depend on it)
firewall_enabled = True  # iptables: default deny inbound, open only what runs here
upgrades_enabled = True  # unattended-upgrades: install Debian security updates daily
zone_enabled = True  # DNS: master on the mail group's host, secondary on the relay's
resolver_enabled = True  # unbound: DNSSEC-validating resolver for this host
mail_enabled = True  # the MTA, IMAP, DKIM, DMARC and certificates of the mail and relay hosts

# Mailboxes, one per person (more mail settings: tasks/mail.py). Each needs a password
# hash in secrets_dir, asked at a prompt: python -m tasks.password alice@example.org
mail_users = ["alice@example.org"]
