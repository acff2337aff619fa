# The harbour site's data (lab/sites/harbour/inventory.py): what differs from the lab's own
# example is the point.
domain = "harbour.test"
extra_domains = ["lighthouse.test"]
admin_user = "keeper"
admin_ssh_keys = []
operator_networks = []
timezone = "Europe/Berlin"
secrets_dir = "secrets"
mta = "exim4"
zone_server = "nsd"
mail_users = ["anna@harbour.test", "ben@lighthouse.test"]
mail_aliases = {
    "info@harbour.test": ["anna@harbour.test"],
    "crew@lighthouse.test": ["anna@harbour.test", "ben@lighthouse.test"],
}
