"""Inventory data: defaults, merging and checks, before pyinfra connects anywhere.

An inventory file ends with `check_inventory(globals())`: every host's data is merged the
way pyinfra merges it (task DEFAULTS < group_data/all.py < group_data/<group>.py < inline
group data < host data) and checked. A bad value stops the run with one line per problem,
each naming the host and the field, and no host is touched.
"""

import difflib
import ipaddress
import os
import re
import zoneinfo
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_ssh_public_key
from pyinfra.api.exceptions import PyinfraError
from pyinfra.connectors.ssh import connector_data_meta

from tasks import admin, bans, clock, dkim, firewall, mail, mta_sts, resolver, ssh, tls, upgrades, zone

REPO = Path(__file__).resolve().parent.parent
# Per-host settings of the inventory: public addresses and DNS name (default: the host name).
HOST_KEYS = ("ipv4", "ipv6", "fqdn")
COMPONENTS = [admin, ssh, bans, clock, firewall, upgrades, zone, resolver, mail, tls, dkim, mta_sts]
# Inventory groups with a role: the mail host (DNS master), the relay (DNS secondary).
ROLE_GROUPS = ("mail", "relay")
DEFAULTS = {k: v for c in COMPONENTS for k, v in c.DEFAULTS.items()}

HOSTNAME = re.compile(r"^(?=.{1,253}$)((?!-)[a-z0-9-]{1,63}(?<!-)\.)*(?!-)[a-z0-9-]{1,63}(?<!-)$")
USERNAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
PORT = re.compile(r"^(tcp|udp)/(\d{1,5})$")
DURATION = re.compile(r"^\d+[smhdw]?$")
# Accounts Debian or the mail stack own; the admin must be a person's login.
RESERVED_USERS = {"root", "daemon", "bin", "sys", "nobody", "postfix", "dovecot", "mail", "bind"}


class InventoryError(PyinfraError):
    """pyinfra prints these as a plain error, without a traceback."""


def read_group_data(name: str) -> dict:
    path = REPO / "group_data" / f"{name}.py"
    if not path.exists():
        return {}
    scope: dict = {}
    exec(compile(path.read_text(), str(path), "exec"), scope)
    return {k: v for k, v in scope.items() if not k.startswith("__")}


def connection(admin_user: str | None = None) -> dict:
    """How pyinfra logs in: as the admin with sudo; as root for the first run on a fresh
    server (INHOUSE_BOOTSTRAP=1), before the admin exists and root logins are refused."""
    if os.environ.get("INHOUSE_BOOTSTRAP") == "1":
        return {"ssh_user": "root", "_sudo": False}
    return {"ssh_user": admin_user or read_group_data("all")["admin_user"], "_sudo": True}


def is_hostname(value) -> bool:
    # A numeric last label is a mistyped IP address, never a top-level domain.
    return (isinstance(value, str) and bool(HOSTNAME.match(value.rstrip(".")))
            and not value.rstrip(".").rsplit(".", 1)[-1].isdigit())


def is_address(value) -> bool:
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return False


def is_network(value) -> bool:
    try:
        ipaddress.ip_network(value, strict=False)
        return True
    except (ValueError, TypeError):
        return False


def is_mail_address(value) -> bool:
    local, _, domain = value.rpartition("@") if isinstance(value, str) else ("", "", "")
    return bool(re.fullmatch(r"[a-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}", local, re.I)) and is_hostname(domain.lower())


def key_problem(key) -> str | None:
    if not isinstance(key, str):
        return "is not a string"
    try:
        loaded = load_ssh_public_key(key.strip().encode())
    except (ValueError, TypeError) as e:
        return f"is not an OpenSSH public key ({e})"
    if isinstance(loaded, rsa.RSAPublicKey) and loaded.key_size < 3072:
        return f"is an RSA key of {loaded.key_size} bits; use 3072 or more, or Ed25519"
    if not isinstance(loaded, (rsa.RSAPublicKey, ed25519.Ed25519PublicKey, ec.EllipticCurvePublicKey)):
        return "is of an unsupported type"
    return None


def problems(name: str, data: dict) -> list[str]:
    """Everything wrong with one host's merged data, as 'field: what is wrong' lines."""
    out = []
    known = set(DEFAULTS) | set(read_group_data("all")) | set(connector_data_meta) | set(HOST_KEYS)
    known |= {"zone_hosts", "zone_keys"}  # made by deploy.py
    for key in sorted(data):
        if key.startswith("_") or key in known:
            continue
        hint = difflib.get_close_matches(key, known, n=1)
        out.append(f"{key}: unknown setting" + (f" (did you mean {hint[0]}?)" if hint else ""))

    def need(key):
        if key not in data:
            out.append(f"{key}: missing")
            return False
        return True

    if not is_hostname(name) and not is_address(name):
        out.append(f"host name {name!r}: not a valid host name")
    if "ssh_hostname" in data and not (is_address(data["ssh_hostname"]) or is_hostname(data["ssh_hostname"])):
        out.append(f"ssh_hostname: {data['ssh_hostname']!r} is neither an IP address nor a host name")
    for key, version in (("ipv4", 4), ("ipv6", 6)):
        value = data.get(key)
        if value is not None and not (is_address(value) and ipaddress.ip_address(value).version == version):
            out.append(f"{key}: {value!r} is not an IPv{version} address")
    if data.get("fqdn") is not None and not is_hostname(data["fqdn"]):
        out.append(f"fqdn: {data['fqdn']!r} is not a host name")
    if need("domain"):
        d = data["domain"]
        if not is_hostname(d) or "." not in d.strip(".") or d != d.lower():
            out.append(f"domain: {d!r} is not a valid lower-case domain name (like example.org)")
    if need("extra_domains"):
        for i, d in enumerate(data["extra_domains"]):
            if not is_hostname(d) or "." not in d or d != d.lower():
                out.append(f"extra_domains[{i}]: {d!r} is not a valid lower-case domain name")
            elif d == data.get("domain") or data["extra_domains"].index(d) != i:
                out.append(f"extra_domains[{i}]: {d!r} is listed twice")
    out += zone_problems(data)
    if data.get("mail_enabled") and mail.role(data) != "none":
        out += mail.problems(data, is_mail_address, is_network) + mta_sts.problems(data)
    if need("admin_user"):
        u = data["admin_user"]
        if not isinstance(u, str) or not USERNAME.match(u):
            out.append(f"admin_user: {u!r} is not a valid user name (lower case, digits, - and _)")
        elif u in RESERVED_USERS:
            out.append(f"admin_user: {u!r} is a system account; choose a person's login name")
    if need("admin_ssh_keys"):
        keys = data["admin_ssh_keys"]
        if not isinstance(keys, list) or not keys:
            out.append(
                "admin_ssh_keys: no key given; refusing to turn off SSH password logins, "
                "which would lock you out. Add your public key (ssh-ed25519 AAAA...)."
            )
        else:
            for i, key in enumerate(keys):
                if (p := key_problem(key)) is not None:
                    out.append(f"admin_ssh_keys[{i}]: {p}")
    if need("timezone") and data["timezone"] not in zoneinfo.available_timezones():
        out.append(f"timezone: {data['timezone']!r} is not a tz database name (like Europe/Berlin)")
    for key in ("operator_networks", "resolver_networks", "resolver_addresses"):
        for i, net in enumerate(data.get(key) or []):
            try:
                ipaddress.ip_network(net, strict=False)
            except (ValueError, TypeError):
                out.append(f"{key}[{i}]: {net!r} is not an IP address or network")
    if need("ssh_port") and not (isinstance(data["ssh_port"], int) and 0 < data["ssh_port"] < 65536):
        out.append(f"ssh_port: {data['ssh_port']!r} is not a port number")
    for i, p in enumerate(data.get("firewall_extra_ports", [])):
        m = PORT.match(str(p))
        if not m or not 0 < int(m.group(2)) < 65536:
            out.append(f"firewall_extra_ports[{i}]: {p!r} is not tcp/PORT or udp/PORT")
    for key in ("bans_time", "bans_find_time"):
        if key in data and not DURATION.match(str(data[key])):
            out.append(f"{key}: {data[key]!r} is not a duration (600, 10m, 1h, 1d)")
    if "bans_max_retry" in data and not (isinstance(data["bans_max_retry"], int) and data["bans_max_retry"] > 0):
        out.append(f"bans_max_retry: {data['bans_max_retry']!r} is not a positive number")
    for key in [k for k in known if k.endswith("_enabled")]:
        if key in data and not isinstance(data[key], bool):
            out.append(f"{key}: {data[key]!r} is not True or False")
    need("operator_networks")
    for key in ("ssh_extra_config", "firewall_extra_rules", "clock_ntp_servers", "resolver_forward_tls",
                "resolver_root_hints", "resolver_trust_anchors"):
        if any(not isinstance(line, str) or "\n" in line for line in data.get(key, [])):
            out.append(f"{key}: each entry must be one line of text")
    return [f"{name}: {p}" for p in out]


def zone_problems(data: dict) -> list[str]:
    if not data.get("zone_enabled") or zone.role(data) == "none":
        return []
    out = []
    for key, allowed in (("zone_dmarc_policy", ("none", "quarantine", "reject")),
                         ("zone_mta_sts_mode", ("none", "testing", "enforce"))):
        if data[key] not in allowed:
            out.append(f"{key}: {data[key]!r} is not one of {', '.join(allowed)}")
    if not data.get("ipv4"):
        out.append("ipv4: missing; a name server needs its public address")
    if not zone.servers(data, "mail"):
        out.append("zone: a relay (DNS secondary) needs a host in the mail group (DNS master)")
    if out:
        return out
    return zone.record_problems(data)


def with_roles(name: str, data: dict, groups: dict[str, list[tuple[str, dict]]]) -> dict:
    """Data a host needs about the others: its own fqdn, and the hosts with a DNS role."""
    return data | {"fqdn": data.get("fqdn") or name, "zone_hosts": zone.hosts_by_group(groups)}


def merged(groups: list[tuple[str, dict]], host_data: dict) -> dict:
    data = dict(DEFAULTS) | read_group_data("all")
    for group, inline in groups:
        data |= read_group_data(group) | inline
    return data | host_data


def inventory_hosts(scope: dict) -> dict[str, dict]:
    """Every host of an inventory module (its globals) with its merged data.

    Groups are the module's lists of hosts, each host a name or (name, data), or a
    (hosts, data) tuple for group-wide data, as pyinfra reads them.
    """
    hosts: dict[str, tuple[list, dict]] = {}
    for group, value in scope.items():
        if group.startswith("_") or not isinstance(value, (list, tuple)):
            continue
        members, inline = value if isinstance(value, tuple) else (value, {})
        for member in members:
            name, data = member if isinstance(member, tuple) else (member, {})
            hosts.setdefault(name, ([], data))[0].append((group, inline))
    data = {name: merged(groups, host_data) for name, (groups, host_data) in hosts.items()}
    roles = {g: [(n, data[n]) for n, (gs, _) in hosts.items() if g in dict(gs)] for g in ROLE_GROUPS}
    return {name: with_roles(name, d, roles) for name, d in data.items()}


def check_inventory(scope: dict) -> None:
    """Check every host of an inventory module and raise on any problem."""
    errors = [p for name, data in inventory_hosts(scope).items() for p in problems(name, data)]
    if errors:
        raise InventoryError("bad inventory data, nothing was changed:\n  " + "\n  ".join(errors))
