"""Pure validators of data values: formats (RFCs and the man pages of the programs that
read them), and small combinators that make one-line problems ("key: value is not ...").
Imports no component: the components build their CHECKS from these, next to their
DEFAULTS, and tasks/data.py runs them all.
"""

import base64
import binascii
import datetime
import ipaddress
import re
import zoneinfo
from collections.abc import Callable

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_ssh_public_key

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


def show(value, limit: int = 60) -> str:
    """A value for a message: its repr, cut short (a pasted certificate is long)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "...'"


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


def moment(value) -> float | None:
    """Seconds since 1970 of an ISO 8601 date or date and time, read as UTC; None if it is not one."""
    if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d\d-\d\d([T ]\d\d:\d\d(:\d\d)?)?", value):
        return None
    try:
        return datetime.datetime.fromisoformat(value).replace(tzinfo=datetime.UTC).timestamp()
    except ValueError:
        return None


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


def ssh_user(v) -> str | None:
    return None if v is None or (isinstance(v, str) and USERNAME.fullmatch(v)) else f"{show(v)} is not a user name"


def connector_check(default) -> Check:
    """pyinfra's own keys: the type of their default, where there is one."""
    kind = type(default)
    if default is None:  # a file name, a user...: text
        return rule(lambda v: v is None or is_one_line(v), "must be one line of text")
    says = {bool: "True or False", int: "a whole number", float: "a number", str: "text"}.get(kind, kind.__name__)
    return rule(lambda v: type(v) is kind or (kind is float and is_integer(v, 0, 3600)), f"is not {says}")
