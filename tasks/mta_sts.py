"""MTA-STS: the policy that tells sending MTAs to reach our MX hosts only over TLS with a
valid certificate (RFC 8461), served where senders fetch it:
https://mta-sts.DOMAIN/.well-known/mta-sts.txt, for every domain.

The mail host serves it with nginx on 443 (tcp/443 opens); mta-sts.DOMAIN of every zone
points at it, and its ACME certificate names them all (tasks/tls.py, same key, so TLSA
stays). nginx serves that one file and nothing else: no default site, no version, no
other name (the TLS handshake is refused for them). The zones publish the `_mta-sts`
TXT record only where the mail host serves the policy (RFC 8461 section 3: the policy
comes first; until the CA has signed, a sender finds no valid policy and delivers as
without one, section 3.3); its id is a hash of the policy, so it changes exactly when the
policy does (section 3.1), and senders fetch it again. To retire the policy set zone_mta_sts_mode =
"none": the policy then says so and stays served, as section 8.3 asks.
Reads: zone_mta_sts_mode, mta_sts_max_age, domain, extra_domains, the MX hosts.
"""

import hashlib

from pyinfra.api import deploy

from tasks import mail, tls, zone
from tasks.util import ConfigFile, activate, install_files, render

DEFAULTS = {
    # How long senders may cache the policy, in seconds (RFC 8461 section 3.2: at most
    # 31557600; section 10 suggests weeks). One week: a sender keeps enforcing TLS through
    # a week-long outage of the policy host; a change of MX hosts reaches every sender
    # within a week (publish the new hosts before you move mail to them).
    "mta_sts_max_age": 604800,
}
PACKAGES = ["nginx"]
PORTS = ["tcp/443"]
UNITS = {"nginx": "reload"}
CONF = "/etc/nginx/nginx.conf"
POLICY = "/var/www/mta-sts/mta-sts.txt"
MAX_AGE = 31557600  # RFC 8461 section 3.2


def serves(data: dict) -> bool:
    """Whether this host serves the policy: the mail host (DNS master, primary MX)."""
    return data["mail_enabled"] and mail.role(data) == "mail"


def policy_hosts(data: dict) -> list[str]:
    """The names the policy is served under, one per domain (RFC 8461 section 3.3)."""
    return [f"mta-sts.{d}" for d in zone.zones(data)]


def policy(data: dict) -> str:
    """The policy (RFC 8461 section 3.2): CRLF-separated key: value lines, an mx line for
    every MX host (the mail host and the relay). No comment: the format has none."""
    mx = [h["fqdn"] for g in ("mail", "relay") for h in zone.servers(data, g)]
    lines = ["version: STSv1", f"mode: {data['zone_mta_sts_mode']}", *[f"mx: {m}" for m in mx],
             f"max_age: {data['mta_sts_max_age']}"]
    return "".join(f"{line}\r\n" for line in lines)


def policy_id(text: str) -> str:
    """The id the TXT record announces (1 to 32 letters and digits, RFC 8461 section 3.1):
    a hash of the policy, so it changes when the policy does and only then."""
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def problems(data: dict) -> list[str]:
    age = data["mta_sts_max_age"]
    if not isinstance(age, int) or isinstance(age, bool) or not 0 < age <= MAX_AGE:
        return [f"mta_sts_max_age: {age!r} is not a number of seconds up to {MAX_AGE} (RFC 8461 section 3.2)"]
    return []


def files(data: dict, system: dict) -> list[ConfigFile]:
    ctx = {"names": policy_hosts(data), "cert": tls.CHAIN, "key": tls.KEY, "policy": POLICY,
           "ciphers": tls.INTERMEDIATE_CIPHERS}
    return [
        # Read at each request: a new policy needs no reload.
        ConfigFile(POLICY, policy(data)),
        ConfigFile(CONF, render("mta_sts/nginx.conf.j2", data, **ctx), check="nginx -t -q -c {path}"),
    ]


@deploy("MTA-STS policy")
def apply(data: dict, configs: list[ConfigFile], state: dict):
    changed = install_files(configs, state)
    activate(UNITS, {p: op for p, op in changed.items() if p != POLICY}, state)
