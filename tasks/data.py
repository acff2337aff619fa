"""Inventory data: defaults, merging and checks, before pyinfra connects anywhere.

An inventory file ends with `check_inventory(globals())`: every host's data is merged the
way pyinfra merges it (task DEFAULTS < group_data/all.py < inline group data <
group_data/<group>.py < host data < `--data` on the command line) and checked. A bad value
stops the run with one line per problem, each naming the host and the field, all of them
at once, and no host is touched.

Every known key has a type and a format check (FORMATS). Values reach config files and
shell commands on the hosts, so the formats are strict: no value can add a line or a
command. Settings that would open a server to the whole internet (relay, resolver,
never-banned networks) are refused.
"""

import base64
import binascii
import difflib
import ipaddress
import os
import re
import types
import zoneinfo
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_ssh_public_key
from pyinfra.api.exceptions import PyinfraError
from pyinfra.connectors.ssh import connector_data_meta

from tasks import mail, tls, zone
from tasks.registry import DEFAULTS

REPO = Path(__file__).resolve().parent.parent
# Per-host settings of the inventory: public addresses and DNS name (default: the host name).
HOST_KEYS = ("ipv4", "ipv6", "fqdn")
# Site settings, documented in group_data/all.py (the components' own are their DEFAULTS).
ENABLED_KEYS = ("bans_enabled", "clock_enabled", "firewall_enabled", "upgrades_enabled", "zone_enabled",
                "resolver_enabled", "mail_enabled")
SITE_KEYS = ("domain", "extra_domains", "admin_user", "admin_ssh_keys", "operator_networks", "ssh_port", "timezone",
             "secrets_dir", "lab_private_addresses", *ENABLED_KEYS)
# Made by deploy.py, never set by hand.
DERIVED_KEYS = ("zone_hosts", "zone_keys")
# Inventory groups with a role: the mail host (DNS master), the relay (DNS secondary).
ROLE_GROUPS = ("mail", "relay")
KNOWN = {*DEFAULTS, *SITE_KEYS, *HOST_KEYS, *DERIVED_KEYS, *connector_data_meta}

# RFC 1035 2.3.1 (with digits first, RFC 1123 2.1): labels of 1-63 letters, digits and
# inner hyphens, 253 characters in all. fullmatch everywhere: `$` would match before a
# trailing newline.
LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
HOSTNAME = re.compile(rf"(?=.{{1,253}}\Z)({LABEL}\.)*{LABEL}")
USERNAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
# A strict subset of RFC 5321's dot-atom: addresses land in MTA maps, dovecot's
# colon-separated passwd-file and certbot's command line.
LOCAL_PART = re.compile(r"(?=.{1,64}\Z)[a-z0-9_+-]+(\.[a-z0-9_+-]+)*", re.I)
PORT = re.compile(r"(tcp|udp)/(\d{1,5})")
DURATION = re.compile(r"\d+[smhdw]?")  # fail2ban's time syntax
CLOCK_TIME = re.compile(r"([01]\d|2[0-3]):[0-5]\d")
# One line: no control characters (newline, carriage return, NUL...) and no Unicode line
# separators. A value that holds one could add a line to the config file it lands in.
ONE_LINE = re.compile(r"[^\x00-\x1f\x7f-\x9f\u2028\u2029]*")
# chrony.conf(5): a source directive, a host name or address, options.
NTP_SOURCE = re.compile(r"(server|pool|peer) [A-Za-z0-9.:-]+( [a-z0-9]+)*")
# unbound.conf(5) forward-addr: ADDRESS[@PORT][#TLS-NAME].
FORWARD = re.compile(r"(?P<address>[0-9a-fA-F.:]+)(@(?P<port>\d{1,5}))?(#(?P<name>[a-z0-9.-]+))?")
# The ACME directory: https, a host name or address, a path; nothing a shell would read.
ACME_URL = re.compile(r"https://(?P<host>[a-z0-9.-]+|\[[0-9a-f:]+\])(:\d{1,5})?(/[A-Za-z0-9._~/-]*)?")
# An iptables-save rule for the filter table, appended or inserted.
IPTABLES_RULE = re.compile(r"-[AI] [A-Za-z0-9_-]+ .+")
# A DNS selector (RFC 6376 3.1) is a label: the host's shell and file names use it too.
SELECTOR = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
# Local parts of the report mailboxes at the primary domain.
MAILBOX = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?")
# An SPF record (RFC 7208 4.5): printable ASCII terms, no quotes the TXT quoting would break.
SPF = re.compile(r"v=spf1( [!#-\[\]-~]+)*")
# A CAA issuer (RFC 8659 4.2): a domain name, parameters after a semicolon.
CAA_PARAMETERS = re.compile(r"(; ?[A-Za-z0-9]+=[A-Za-z0-9.-]*)*")
# Accounts Debian or the mail stack own; the admin must be a person's login.
RESERVED_USERS = {"root", "daemon", "bin", "sys", "nobody", "postfix", "dovecot", "mail", "bind", "vmail",
                  "opendkim", "opendmarc", "unbound", "nsd", "sshd", "www-data", "messagebus", "systemd-network"}
# Key types OpenSSH and paramiko both speak; RSA only with 3072 bits or more.
SSH_KEY_TYPES = ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
                 "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com")
# Networks that may skip a safeguard (relay without login, recursion, bans) must be a LAN
# or a few machines, never a big share of the internet: at least /8 (IPv4) or /16 (IPv6).
WIDEST = {4: 8, 6: 16}
# Not a public address (RFC 1918, RFC 6598 shared, RFC 4193 unique local, RFC 3879
# site-local). The documentation ranges (RFC 5737, RFC 3849) are allowed: the examples
# use them, and nobody reaches a server there by mistake.
PRIVATE = [ipaddress.ip_network(n) for n in
           ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7", "fec0::/10")]


TIMEZONES = zoneinfo.available_timezones()  # reads the whole tz database: once


class InventoryError(PyinfraError):
    """pyinfra prints these as a plain error, without a traceback."""


def show(value, limit: int = 60) -> str:
    """A value for a message: its repr, cut short (a pasted certificate is long)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "...'"


def group_data_files() -> dict[str, list[Path]]:
    """The group data files pyinfra reads, by group: group_data/*.py, then those of
    `--group-data` (a folder or a file), which win."""
    out: dict[str, list[Path]] = {}
    for place in [REPO / "group_data", *map(Path, cli_params().get("group_data") or ())]:
        for path in ([place] if place.is_file() else sorted(place.glob("*.py"))):
            out.setdefault(path.stem, []).append(path)
    return out


def read_group_data(name: str) -> dict:
    """The settings of a group's data files, merged as pyinfra merges them."""
    data: dict = {}
    for path in group_data_files().get(name, []):
        data |= read_data_file(path)
    return data


def read_data_file(path: Path) -> dict:
    """The settings of one group data file, as pyinfra reads them (imports left out)."""
    scope: dict = {}
    try:
        exec(compile(path.read_text(), str(path), "exec"), scope)
    except Exception as e:  # a broken file is a bad inventory, not a crash
        raise InventoryError(f"{where(path)}: cannot be read: {type(e).__name__}: {e}") from None
    return {k: v for k, v in scope.items() if not k.startswith("__")
            and not isinstance(v, (types.ModuleType, types.FunctionType, type))}


def where(path: Path) -> str:
    """A file's name for messages: relative to the repository when it is in it."""
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def connection(admin_user: str | None = None) -> dict:
    """How pyinfra logs in: as the admin with sudo; as root for the first run on a fresh
    server (INHOUSE_BOOTSTRAP=1), before the admin exists and root logins are refused."""
    if os.environ.get("INHOUSE_BOOTSTRAP") == "1":
        return {"ssh_user": "root", "_sudo": False}
    return {"ssh_user": admin_user or read_group_data("all").get("admin_user"), "_sudo": True}


def is_hostname(value) -> bool:
    # A numeric last label is a mistyped IP address, never a top-level domain.
    return (isinstance(value, str) and bool(HOSTNAME.fullmatch(value.removesuffix(".")))
            and not value.removesuffix(".").rsplit(".", 1)[-1].isdigit())


def is_domain(value) -> bool:
    """A lower-case domain name of two labels or more, without the root's dot."""
    return is_hostname(value) and "." in value and not value.endswith(".") and value == value.lower()


# Digits, dots and colons only: Python's ipaddress takes an IPv6 scope ("fe80::1%eth0"),
# whose text could be anything, a newline or a shell command too.
ADDRESS_CHARACTERS = re.compile(r"[0-9a-fA-F.:]+(/\d{1,3})?")


def is_address(value, version: int | None = None) -> bool:
    if not isinstance(value, str) or not ADDRESS_CHARACTERS.fullmatch(value) or "/" in value:
        return False
    try:
        return ipaddress.ip_address(value).version in ((4, 6) if version is None else (version,))
    except ValueError:
        return False


def is_mail_address(value) -> bool:
    local, _, domain = value.rpartition("@") if isinstance(value, str) else ("", "", "")
    return bool(LOCAL_PART.fullmatch(local)) and is_domain(domain.lower())


def is_integer(value, low: int, high: int) -> bool:
    # bool is an int in Python: True must not pass as 1.
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def is_one_line(value) -> bool:
    return isinstance(value, str) and bool(ONE_LINE.fullmatch(value))


def network_problem(value) -> str | None:
    """Why `value` is no address or network the firewall and daemons accept, or too wide."""
    if not isinstance(value, str):
        return f"{show(value)} is not an IP address or network (a string like 192.0.2.0/24)"
    if not ADDRESS_CHARACTERS.fullmatch(value):
        return f"{show(value)} is not an IP address or network"
    try:
        net = ipaddress.ip_network(value)
    except ValueError:
        try:
            exact = ipaddress.ip_network(value, strict=False)
        except ValueError:
            return f"{show(value)} is not an IP address or network"
        return f"{show(value)} has host bits set; write the network, {exact}"
    if net.prefixlen < WIDEST[net.version]:
        return (f"{value} opens this to the whole internet or a large part of it; "
                f"list your networks, /{WIDEST[net.version]} or narrower")
    if net.version == 6 and net.overlaps(ipaddress.ip_network("::ffff:0:0/96")):
        return f"{value} is IPv4-mapped; write the IPv4 address or network"
    return None


def address_problem(value, version: int, private_ok: bool) -> str | None:
    """Why `value` is not a public address of a server of this IP version."""
    if not is_address(value, version):
        return f"{show(value)} is not an IPv{version} address"
    a = ipaddress.ip_address(value)
    for kind in ("loopback", "link_local", "multicast", "unspecified", "reserved"):
        if getattr(a, f"is_{kind}"):
            return f"{value} is a {kind.replace('_', '-')} address, not the server's public one"
    if not private_ok and any(a in n for n in PRIVATE):
        return (f"{value} is a private address, not the server's public one "
                "(the lab sets lab_private_addresses = True)")
    return None


def key_problem(key) -> str | None:
    """Why `key` is not one line of authorized_keys: a public key, no options. Never says
    the key itself: a pasted private key must not land in a log."""
    if not isinstance(key, str):
        return "is not a string"
    if "PRIVATE KEY" in key:
        return "is a PRIVATE key: remove it from the inventory now and give the .pub file's line"
    if not is_one_line(key.strip()):
        return "must be one line: give each key as its own string"
    kind, _, rest = key.strip().partition(" ")
    if kind not in SSH_KEY_TYPES:
        if "=" in kind or "," in kind:
            return "starts with options (from=, command=...); give the bare key: TYPE BASE64 [comment]"
        return f"is not an OpenSSH public key (type {kind[:30]!r}; use one of {', '.join(SSH_KEY_TYPES[:5])})"
    blob = rest.split(" ", 1)[0]
    try:
        raw = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        return "is not an OpenSSH public key (its base64 part is broken)"
    if kind.startswith("sk-"):  # FIDO keys: cryptography cannot load them; check the blob names its type
        return None if raw[4:4 + len(kind)] == kind.encode() else "is not an OpenSSH public key (type and data differ)"
    try:
        loaded = load_ssh_public_key(f"{kind} {blob}".encode())
    except Exception as e:  # cryptography raises ValueError or UnsupportedAlgorithm
        return f"is not an OpenSSH public key ({e})"
    if isinstance(loaded, rsa.RSAPublicKey) and loaded.key_size < 3072:
        return f"is an RSA key of {loaded.key_size} bits; use 3072 or more, or Ed25519"
    if not isinstance(loaded, (rsa.RSAPublicKey, ed25519.Ed25519PublicKey, ec.EllipticCurvePublicKey)):
        return "is of an unsupported type"
    return None


def pem_problem(value) -> str | None:
    if value == "":
        return None
    if not isinstance(value, str):
        return f"{show(value)} is not PEM text"
    try:
        x509.load_pem_x509_certificates(value.encode())
    except Exception as e:
        return f"is not PEM certificates ({e})"
    if value.strip().splitlines()[0] != "-----BEGIN CERTIFICATE-----":
        return "must hold only PEM certificates (-----BEGIN CERTIFICATE----- ...)"
    return None


def forward_problem(value) -> str | None:
    m = FORWARD.fullmatch(value) if isinstance(value, str) else None
    if not m or not is_address(m["address"]) or (m["port"] and not is_integer(int(m["port"]), 1, 65535)):
        return f"{show(value)} is not ADDRESS[@PORT][#TLS-NAME] (like 9.9.9.9@853#dns.quad9.net)"
    return None


# Element checks: value -> why it is wrong, or None.
Check = Callable[[object], "str | None"]


def rule(predicate: Callable[[object], bool], says: str) -> Check:
    def check(v) -> str | None:
        try:
            ok = predicate(v)
        except Exception:  # a value of a type the predicate did not foresee
            ok = False
        return None if ok else f"{show(v)} {says}"
    return check


def choice(*allowed) -> Check:
    return lambda v: None if isinstance(v, str) and v in allowed else f"{show(v)} is not one of {', '.join(allowed)}"


ONE_LINE_TEXT = rule(is_one_line, "must be one line of text")
BOOLEAN = rule(lambda v: isinstance(v, bool), "is not True or False")
DOMAIN = rule(is_domain, "is not a valid lower-case domain name (like example.org)")


def scalar(check: Check) -> Callable[[str, object], list[str]]:
    return lambda key, v: [f"{key}: {p}" for p in [check(v)] if p]


def listing(check: Check) -> Callable[[str, object], list[str]]:
    def checked(key: str, value) -> list[str]:
        if not isinstance(value, list):
            return [f"{key}: {show(value)} is not a list (use [] for none)"]
        return [f"{key}[{i}]: {p}" for i, v in enumerate(value) if (p := check(v))]
    return checked


def optional(check: Check) -> Check:
    """Text that may be empty ("": the default's meaning)."""
    return lambda v: None if v == "" else check(v)


def no_duplicates(key: str, value) -> list[str]:
    return [f"{key}[{i}]: {v!r} is listed twice" for i, v in enumerate(value) if value.index(v) != i]


def ssh_keys(key: str, value) -> list[str]:
    if not isinstance(value, list) or not value:
        return ["admin_ssh_keys: no key given; refusing to turn off SSH password logins, "
                "which would lock you out. Add your public key (ssh-ed25519 AAAA...)."]
    return [f"{key}[{i}]: {p}" for i, k in enumerate(value) if (p := key_problem(k))]


def aliases_shape(key: str, value) -> list[str]:
    if not isinstance(value, dict):
        return [f"{key}: must map an address to a list of addresses"]
    out = []
    for alias, targets in value.items():
        if not is_mail_address(alias):
            out.append(f"{key}[{alias!r}]: not an address in one of your domains")
        if not isinstance(targets, list) or not targets or any(not is_mail_address(t) for t in targets):
            out.append(f"{key}[{alias!r}]: must be a list of addresses")
    return out


def zone_records_shape(key: str, value) -> list[str]:
    """The shape of zone_records, and each field on one line: dnspython checks the rest
    (tasks/zone.py), after the domains are known to be good."""
    shape = 'must map each of your domains to a list of {"name", "type", "data"}'
    if not isinstance(value, dict) or any(
        not isinstance(rs, list) or any(not isinstance(r, dict) or set(r) != {"name", "type", "data"} for r in rs)
        for rs in value.values()
    ):
        return [f"{key}: {shape}"]
    out = []
    for z, rs in value.items():
        for i, r in enumerate(rs):
            if not isinstance(r["name"], str) or not zone.RELATIVE_NAME.fullmatch(r["name"]):
                out.append(f"{key}[{z!r}][{i}]: name {show(r['name'])} is not a name relative to the zone "
                           "(www, _dmarc, @ for the apex)")
            if not isinstance(r["type"], str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9]{0,15}", r["type"]):
                out.append(f"{key}[{z!r}][{i}]: type {show(r['type'])} is not a record type")
            elif r["type"].upper() in zone.GENERATED_TYPES:
                out.append(f"{key}[{z!r}][{i}]: {r['type'].upper()} records are made by the name server")
            if not is_one_line(r["data"]) or not r["data"].strip():
                out.append(f"{key}[{z!r}][{i}]: data {show(r['data'])} must be one line of text")
    return out


def ssh_user(v) -> str | None:
    return None if v is None or (isinstance(v, str) and USERNAME.fullmatch(v)) else f"{show(v)} is not a user name"


def connector_check(default) -> Check:
    """pyinfra's own keys: the type of their default, where there is one."""
    kind = type(default)
    if default is None:  # a file name, a user...: text
        return rule(lambda v: v is None or is_one_line(v), "must be one line of text")
    says = {bool: "True or False", int: "a whole number", float: "a number", str: "text"}.get(kind, kind.__name__)
    return rule(lambda v: type(v) is kind or (kind is float and is_integer(v, 0, 3600)), f"is not {says}")


# Type and format of every known key (per host, site, component, pyinfra's SSH connector);
# each check takes (key, value), whatever the value's type, and returns problem lines.
FORMATS: dict[str, Callable[[str, object], list[str]]] = {
    **{k: scalar(connector_check(m.default)) for k, m in connector_data_meta.items()},
    "ssh_hostname": scalar(rule(lambda v: v is None or is_address(v) or is_hostname(v),
                                "is neither an IP address nor a host name")),
    "ssh_user": scalar(ssh_user),
    "ssh_strict_host_key_checking": scalar(choice("yes", "no", "off", "accept-new")),
    "ssh_file_transfer_protocol": scalar(choice("sftp", "scp")),
    "ssh_paramiko_connect_kwargs": scalar(rule(lambda v: v is None or isinstance(v, dict), "is not a dict")),
    **{k: scalar(lambda v: None if v is None or is_one_line(v) else "must be one line of text (not shown: a secret)")
       for k in ("ssh_password", "ssh_key_password")},
    # Host: the address checks need the site's lab_private_addresses (problems()).
    "fqdn": scalar(optional(rule(is_hostname, "is not a host name"))),
    # Site (group_data/all.py).
    "domain": scalar(DOMAIN),
    "extra_domains": lambda k, v: listing(DOMAIN)(k, v) or no_duplicates(k, v),
    "admin_user": scalar(rule(lambda v: isinstance(v, str) and USERNAME.fullmatch(v),
                              "is not a valid user name (lower case, digits, - and _)")),
    "admin_ssh_keys": ssh_keys,
    "operator_networks": listing(network_problem),
    "ssh_port": scalar(rule(lambda v: is_integer(v, 1, 65535), "is not a port number")),
    "timezone": scalar(rule(lambda v: isinstance(v, str) and v in TIMEZONES,
                            "is not a tz database name (like Europe/Berlin)")),
    "secrets_dir": scalar(rule(lambda v: is_one_line(v) and v.strip() != "", "is not a folder name")),
    **{k: scalar(BOOLEAN) for k in (*ENABLED_KEYS, "lab_private_addresses")},
    # Components (their DEFAULTS).
    "ssh_extra_config": listing(ONE_LINE_TEXT),
    **{k: scalar(rule(lambda v: is_integer(v, 1, 10**9) or isinstance(v, str) and DURATION.fullmatch(v),
                      "is not a duration (600, 10m, 1h, 1d)")) for k in ("bans_time", "bans_find_time")},
    "bans_max_retry": scalar(rule(lambda v: is_integer(v, 1, 1000), "is not a positive number")),
    "clock_ntp_servers": listing(rule(lambda v: isinstance(v, str) and NTP_SOURCE.fullmatch(v),
                                      "is not a chrony source line (pool 2.debian.pool.ntp.org iburst)")),
    "firewall_extra_ports": listing(rule(lambda v: isinstance(v, str) and (m := PORT.fullmatch(v))
                                         and 0 < int(m[2]) < 65536, "is not tcp/PORT or udp/PORT")),
    "firewall_extra_rules": listing(rule(lambda v: is_one_line(v) and IPTABLES_RULE.fullmatch(v),
                                         "is not one iptables rule (-A INPUT ... -j ACCEPT)")),
    "upgrades_reboot": scalar(BOOLEAN),
    "upgrades_reboot_time": scalar(rule(lambda v: isinstance(v, str) and CLOCK_TIME.fullmatch(v),
                                        "is not a time of day (HH:MM)")),
    "zone_server": scalar(choice("bind", "nsd")),
    # RFC 2181 8: a TTL is an unsigned 31-bit number of seconds.
    "zone_ttl": scalar(rule(lambda v: is_integer(v, 1, 2**31 - 1), "is not a number of seconds")),
    "zone_dmarc_policy": scalar(choice("none", "quarantine", "reject")),
    "zone_mta_sts_mode": scalar(choice("none", "testing", "enforce")),
    **{k: scalar(rule(lambda v: isinstance(v, str) and MAILBOX.fullmatch(v),
                      "is not a local part (lower case, digits, . _ -)"))
       for k in ("zone_dmarc_reports", "zone_tls_reports")},
    "zone_spf": scalar(rule(lambda v: isinstance(v, str) and SPF.fullmatch(v) and len(v) <= 450,
                            "is not an SPF record (v=spf1 ... , printable, no quotes)")),
    "zone_caa_issuers": listing(rule(lambda v: isinstance(v, str) and is_hostname(v.split(";")[0])
                                     and CAA_PARAMETERS.fullmatch(v[len(v.split(";")[0]):]),
                                     "is not a CA's domain (letsencrypt.org)")),
    "zone_records": zone_records_shape,
    "resolver_networks": listing(network_problem),
    "resolver_addresses": listing(rule(is_address, "is not an IP address of this host")),
    "resolver_forward_tls": listing(forward_problem),
    **{k: listing(rule(lambda v: is_one_line(v) and '"' not in v and v.strip(), "must be one line of text"))
       for k in ("resolver_root_hints", "resolver_trust_anchors")},
    "mta": scalar(choice("postfix", "exim4")),
    "mail_users": lambda k, v: listing(rule(is_mail_address, "is not an address like alice@example.org"))(k, v)
    or no_duplicates(k, v),
    "mail_aliases": aliases_shape,
    "mail_admin": scalar(optional(rule(is_mail_address, "is not an address"))),
    "mail_relay_networks": listing(network_problem),
    "mail_outbound_relay": scalar(BOOLEAN),
    "mail_max_size": scalar(rule(lambda v: is_integer(v, 1024 * 1024, 2**40),
                                 "is not a size in bytes of at least 1 MB")),
    "tls_acme_server": scalar(rule(lambda v: isinstance(v, str) and ACME_URL.fullmatch(v),
                                   "is not an https URL (https://host[:port]/path)")),
    "tls_acme_email": scalar(optional(rule(is_mail_address, "is not an address like hostmaster@example.org"))),
    "tls_acme_ca_bundle": scalar(pem_problem),
    "dkim_selector": scalar(optional(rule(lambda v: isinstance(v, str) and SELECTOR.fullmatch(v),
                                          "is not a selector (lower case, digits, -)"))),
}
# What each later check reads: it runs only once these have their right type and format.
ZONE_INPUTS = {"domain", "extra_domains", "fqdn", "ipv4", "ipv6", "secrets_dir", *zone.DEFAULTS}
MAIL_INPUTS = {"domain", "extra_domains", "fqdn", "secrets_dir", "zone_dmarc_reports", "zone_tls_reports",
               *mail.DEFAULTS}


def unknown(key: str, where: str = "") -> str:
    hint = difflib.get_close_matches(key, KNOWN, n=1)
    return f"{where}{key}: unknown setting" + (f" (did you mean {hint[0]}?)" if hint else "")


def problems(name: str, data: dict) -> list[str]:
    """Everything wrong with one host's merged data, as 'HOST: field: what is wrong' lines."""
    out = [unknown(str(k)) for k in sorted(data, key=str) if not (str(k).startswith("_") or k in KNOWN)]
    if not is_hostname(name) and not is_address(name):
        out.append(f"host name {name!r}: not a valid host name")
    bad = set()
    for key in sorted(KNOWN):
        if key == "fqdn" and data.get("fqdn") == name and is_address(name):
            continue  # a host named by its address: no DNS name, fine unless it has a role (zone_problems)
        if key in SITE_KEYS and key not in data:
            out.append(f"{key}: missing")
            bad.add(key)
        elif key in FORMATS and key in data and (found := FORMATS[key](key, data[key])):
            out += found
            bad.add(key)
    private_ok = data.get("lab_private_addresses") is True
    for key, version in (("ipv4", 4), ("ipv6", 6)):
        if data.get(key) not in (None, "") and (p := address_problem(data[key], version, private_ok)):
            out.append(f"{key}: {p}")
            bad.add(key)
    if "admin_user" not in bad and data["admin_user"] in RESERVED_USERS:
        out.append(f"admin_user: {data['admin_user']!r} is a system account; choose a person's login name")
    if "domain" not in bad and "extra_domains" not in bad and data["domain"] in data["extra_domains"]:
        out.append(f"extra_domains[{data['extra_domains'].index(data['domain'])}]: {data['domain']!r} is listed twice")
        bad.add("extra_domains")
    out += guarded("zone", lambda: zone_problems(data), bad & ZONE_INPUTS)
    if data.get("mail_enabled") is True and "fqdn" not in bad and mail.role(data) != "none":
        out += guarded("mail", lambda: mail.problems(data), bad & MAIL_INPUTS)
    return [f"{name}: {p}" for p in out]


def guarded(area: str, check: Callable[[], list[str]], bad: set) -> list[str]:
    """A check that needs good inputs: skipped while they are bad (their problems are
    named already); an unexpected error is a problem line too, never a traceback."""
    if bad:
        return []
    try:
        return check()
    except Exception as e:
        return [f"{area}: could not be checked ({type(e).__name__}: {e})"]


def zone_problems(data: dict) -> list[str]:
    if zone.role(data) != "none" and not in_domain(data["fqdn"], data["domain"]):
        return [f"fqdn: {data['fqdn']!r} is not a name under {data['domain']}; the primary zone publishes "
                "the address records of the mail and relay hosts"]
    if data.get("zone_enabled") is not True or zone.role(data) == "none":
        return []
    out = []
    if not data.get("ipv4"):
        out.append("ipv4: missing; a name server needs its public address")
    if not zone.servers(data, "mail"):
        out.append("zone: a relay (DNS secondary) needs a host in the mail group (DNS master)")
    if zone.role(data) == "master":
        out += [f"secrets_dir: {p}" for p in tls.remembered_problems(data)]
    out += [f"secrets_dir: {p}" for p in zone.tsig_problems(data)]
    return out or zone.record_problems(data)


def in_domain(fqdn, domain: str) -> bool:
    return isinstance(fqdn, str) and fqdn.removesuffix(".").endswith(f".{domain}")


def with_roles(name: str, data: dict, groups: dict[str, list[tuple[str, dict]]]) -> dict:
    """Data a host needs about the others: its own fqdn, and the hosts with a DNS role.
    Missing addresses are None: a host without IPv6 is normal."""
    return {"ipv4": None, "ipv6": None} | data | {
        "fqdn": data.get("fqdn") or name, "zone_hosts": zone.hosts_by_group(groups)}


def merged(groups: list[tuple[str, dict]], host_data: dict, overrides: dict | None = None) -> dict:
    data = dict(DEFAULTS) | read_group_data("all")
    for group, inline in groups:  # pyinfra: group_data/<group>.py wins over inline group data
        data |= inline | read_group_data(group)
    return data | host_data | (overrides or {})


def inventory_hosts(scope: dict, overrides: dict | None = None) -> dict[str, dict]:
    """Every host of an inventory module (its globals) with its merged data.

    Groups are the module's lists of hosts, each host a name or (name, data), or a
    (hosts, data) tuple for group-wide data, as pyinfra reads them.
    """
    hosts, _ = parse_groups(scope)
    data = {name: merged(groups, host_data, overrides) for name, (groups, host_data) in hosts.items()}
    roles = {g: [(n, data[n]) for n, (gs, _) in hosts.items() if g in dict(gs)] for g in ROLE_GROUPS}
    return {name: with_roles(name, d, roles) for name, d in data.items()}


def parse_groups(scope: dict) -> tuple[dict[str, tuple[list, dict]], list[str]]:
    """{host: ([(group, inline data)], host data)} of an inventory module, and what is
    malformed in it (a group that is not a list, a host that is not a name)."""
    hosts: dict[str, tuple[list, dict]] = {}
    out = []
    for group, value in scope.items():
        if not isinstance(group, str) or group.startswith("_") or not isinstance(value, (list, tuple)):
            continue
        if isinstance(value, tuple):
            if len(value) != 2 or not isinstance(value[0], list) or not isinstance(value[1], dict):
                out.append(f"inventory: group {group}: must be a list of hosts or a tuple (hosts, data)")
                continue
            members, inline = value
        else:
            members, inline = value, {}
        for member in members:
            name, data = member if isinstance(member, tuple) and len(member) == 2 else (member, {})
            if not isinstance(name, str) or not isinstance(data, dict):
                out.append(f"inventory: group {group}: {show(member)} is not a host name or (name, data)")
                continue
            groups, host_data = hosts.setdefault(name, ([], {}))
            groups.append((group, inline))
            host_data.update(data)  # as pyinfra does, for a host listed in several groups
    return hosts, out


def cli_params() -> dict:
    """The options of the pyinfra command loading this inventory; empty outside pyinfra."""
    try:
        import click
    except ImportError:
        return {}
    ctx = click.get_current_context(silent=True)
    return ctx.params if ctx is not None and "data" in ctx.params else {}


def cli_overrides() -> dict:
    """`--data key=value` (and --user, --port...) of the pyinfra command that is loading
    this inventory: pyinfra applies them after the inventory file, so they are checked here
    too, before it connects. Parsed by pyinfra's own code."""
    p = cli_params()
    if not p:
        return {}
    from pyinfra_cli.cli import _set_override_data

    return _set_override_data(p["data"], p.get("ssh_user"), p.get("ssh_key"), p.get("ssh_key_password"),
                              p.get("ssh_port"), p.get("ssh_password"))


def group_data_problems() -> list[str]:
    """Misspelt keys in every group_data file, also of groups no host is in yet."""
    paths = [p for ps in group_data_files().values() for p in ps]
    return [unknown(k, f"{where(p)}: ") for p in paths for k in read_data_file(p) if not (k[0] == "_" or k in KNOWN)]


def inventory_problems(hosts: dict[str, dict], groups: dict[str, list[str]]) -> list[str]:
    """What is wrong across hosts: the roles, and names or addresses given twice."""
    out = []
    if not hosts:
        out.append("inventory: no hosts; put the mail host in the mail group (see inventory.py)")
    if len(groups.get("mail", [])) > 1:
        out.append(f"inventory: mail group: {', '.join(groups['mail'])}: one mail host only (it keeps the mail "
                   "and is the DNS master); put the others in the relay group")
    for name in set(groups.get("mail", [])) & set(groups.get("relay", [])):
        out.append(f"{name}: in both the mail and the relay group; a host has one role")
    for key in ("fqdn", "ipv4", "ipv6"):
        owners: dict[str, list[str]] = {}
        for name, data in hosts.items():
            value = data.get(key)
            if isinstance(value, str) and value:  # addresses as ipaddress writes them: 2001:db8:0::1 is 2001:db8::1
                same = str(ipaddress.ip_address(value)) if is_address(value) else value.lower().removesuffix(".")
                owners.setdefault(same, []).append(name)
        out += [f"{', '.join(ns)}: {key}: {v} is given to {len(ns)} hosts" for v, ns in owners.items() if len(ns) > 1]
    role_hosts = [n for g in ROLE_GROUPS for n in groups.get(g, []) if n in hosts]
    for key in ("domain", "extra_domains", "secrets_dir"):
        values = {repr(hosts[n].get(key)) for n in role_hosts}
        if len(values) > 1:
            out.append(f"{', '.join(role_hosts)}: {key}: differs between the mail and relay hosts "
                       "(they serve the same domains, with the same transfer key)")
    return out


def check_inventory(scope: dict) -> None:
    """Check every host of an inventory module and raise on any problem."""
    hosts_by_name, errors = parse_groups(scope)
    errors += group_data_problems()
    try:
        overrides = cli_overrides()
    except Exception as e:
        overrides, errors = {}, [*errors, f"--data: cannot be read ({e})"]
    hosts = inventory_hosts(scope, overrides)
    groups = {g: [n for n, (gs, _) in hosts_by_name.items() if g in dict(gs)] for g in ROLE_GROUPS}
    errors += inventory_problems(hosts, groups)
    errors += [p for name, data in hosts.items() for p in problems(name, data)]
    if errors:
        raise InventoryError("bad inventory data, nothing was changed:\n  " + "\n  ".join(errors))
