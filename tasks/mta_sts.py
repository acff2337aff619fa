"""MTA-STS: the policy that tells sending MTAs to reach our MX hosts only over TLS with a
valid certificate (RFC 8461), served where senders fetch it:
https://mta-sts.DOMAIN/.well-known/mta-sts.txt, for every domain.

The mail host serves it with nginx on 443 (tcp/443 opens), or the first relay when the
mail host is hidden (tasks/link.py); mta-sts.DOMAIN of every zone points at it, and its
ACME certificate names them all (tasks/tls.py, same key, so TLSA stays). nginx serves
that one file and nothing else: no default site, no version, no other name (the TLS
handshake is refused for them). The zones publish the `_mta-sts` TXT record only where a
host serves the policy (RFC 8461 section 3: the policy comes first; until the CA has
signed, a sender finds no valid policy and delivers as without one, section 3.3); its id
is a hash of the policy, so it changes exactly when the policy does (section 3.1), and
senders fetch it again. To retire the policy set zone_mta_sts_mode = "none": the policy
then says so and stays served, as section 8.3 asks.
Reads: zone_mta_sts_mode, mta_sts_max_age, domain, extra_domains, the MX hosts; the
policy and its id are made in tasks/zone.py, which publishes them.
"""

from pyinfra.api import deploy
from pyinfra.operations import server

from tasks import tls, zone
from tasks.util import ConfigFile, activate, install_files, render

CONF = "/etc/nginx/nginx.conf"
POLICY = "/var/www/mta-sts/mta-sts.txt"


def packages(data: dict) -> list[str]:
    return ["nginx"] if zone.mta_sts_served(data) else []


def units(data: dict) -> dict[str, str]:
    return {"nginx": "reload"} if zone.mta_sts_served(data) else {}


def ports(data: dict) -> list[str]:
    return ["tcp/443"] if zone.mta_sts_served(data) else []


def heads(data: dict) -> list[str]:
    return [POLICY]  # also where another host serves it now (the mail host hidden or back): it stops


def files(data: dict, system: dict) -> list[ConfigFile]:
    if not zone.mta_sts_served(data):
        return []
    ctx = {"names": zone.mta_sts_hosts(data), "cert": tls.CHAIN, "key": tls.KEY, "policy": POLICY,
           "ciphers": tls.INTERMEDIATE_CIPHERS}
    return [
        # Read at each request: a new policy needs no reload.
        ConfigFile(POLICY, zone.mta_sts_policy(data)),
        ConfigFile(CONF, render("mta_sts/nginx.conf.j2", data, **ctx), check="nginx -t -q -c {path}"),
    ]


@deploy("MTA-STS policy")
def apply(data: dict, configs: list[ConfigFile], state: dict):
    if not zone.mta_sts_served(data):
        if POLICY in state["heads"]:
            server.shell(name="Stop serving the MTA-STS policy (another host serves it now)",
                         commands=[f"systemctl disable --now nginx 2>/dev/null; rm -f {POLICY}"])
        return
    changed = install_files(configs, state)
    activate(units(data), {p: op for p, op in changed.items() if p != POLICY}, state)
