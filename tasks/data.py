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

import difflib
import ipaddress
import os
import sys
import types
from collections.abc import Callable
from pathlib import Path

from pyinfra.api.exceptions import PyinfraError
from pyinfra.connectors.ssh import connector_data_meta

from tasks import keys, link, mail, spam, tls, zone
from tasks.registry import COMPONENTS, DEFAULTS, SHARED
from tasks.validate import (
    BOOLEAN,
    DOMAIN,
    RESERVED_USERS,
    TIMEZONES,
    USERNAME,
    address_problem,
    choice,
    connector_check,
    is_address,
    is_hostname,
    is_integer,
    is_one_line,
    listing,
    network_problem,
    no_duplicates,
    optional,
    rule,
    scalar,
    show,
    ssh_keys,
    ssh_user,
)

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



class InventoryError(PyinfraError):
    """pyinfra prints these as a plain error, without a traceback."""


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
    # Components: their CHECKS, next to their DEFAULTS.
    **{k: v for m in [*SHARED, *(c.module for c in COMPONENTS)] for k, v in getattr(m, "CHECKS", {}).items()},
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
    # A hidden home (link_home_hidden) sits on its LAN: the world never sees its address.
    private_ok = data.get("lab_private_addresses") is True or (zone.role(data) == "master" and zone.hidden(data))
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
    if not bad & {"fqdn", "secrets_dir"} and data.get("fqdn"):
        out += [f"secrets_dir: {p}" for p in keys.problems(data)]
    if "fqdn" not in bad and "link_enabled" not in bad:
        out += guarded("link", lambda: link.problems(data), set())
    if data.get("mail_enabled") is True and "fqdn" not in bad and mail.role(data) != "none":
        out += guarded("mail", lambda: mail.problems(data), bad & MAIL_INPUTS)
    if not bad & {"spam_junk_score", "spam_reject_score"}:
        out += spam.problems(data)
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
    if data["zone_dnssec_key_made_after"] and data["resolver_enabled"] is not True:
        out.append("zone_dnssec_key_made_after: a DNSSEC key roll needs resolver_enabled: the signer looks "
                   "at the DS of the parent through the host's validating resolver before the old key goes")
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


def unchecked_groups(path: Path) -> dict[str, tuple[list, dict]]:
    """parse_groups of an inventory file, read without the data check it calls (which
    wants that site's secrets): lab/rehearse plays the site with the lab's own."""
    scope: dict = {"__file__": str(path), "__name__": "their_inventory"}
    module = sys.modules[__name__]
    check, module.check_inventory = module.check_inventory, lambda *a, **k: None
    try:
        exec(compile(path.read_text(), str(path), "exec"), scope)
    finally:
        module.check_inventory = check
    hosts, malformed = parse_groups(scope)
    if malformed:
        raise InventoryError(f"{where(path)}: {malformed[0]}")
    return hosts


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


def data_overrides(pairs: list[str]) -> dict:
    """`--data key=value` given to one of inhouse's own commands (the registrar, the check),
    read as pyinfra reads them, so that they see the site the deploy with the same flags made."""
    from pyinfra_cli.cli import _set_override_data

    bad = [p for p in pairs if "=" not in p]
    if bad:
        raise ValueError(f"--data {bad[0]}: give key=value")
    return _set_override_data(pairs, None, None, None, None, None)


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
