"""Zone: authoritative DNS for the mail domains, master on the mail host, secondary on the
relay (as "Making a Mailserver" has it: "the mailserver itself is the master nameserver", a
slave elsewhere), every record mail needs, signed with DNSSEC so DANE means something
("Hosting your own Email with DANE").
This module makes the zones from data; zone_bind.py and zone_nsd.py serve them (zone_server).

Zones are generated from data: SOA, NS with glue, A/AAAA of the servers, MX, SPF, DMARC,
TLS-RPT, MTA-STS, CAA, SRV and autoconfig names for mail clients, extra records. Each zone
file carries a hash of its content: the serial rises only when the content changes (no more
forgotten serial bumps), and never goes backwards. `named-checkzone` in strict mode must
accept a zone before it is loaded. Signing keys are made on the master, once, and stay.
Transfers to the secondaries are TSIG-signed and NOTIFY tells them at once; anyone else
is refused.
Reads: domain, extra_domains, zone_*, the ipv4/ipv6 and fqdn of the hosts in the `mail`
and `relay` groups; the TSIG secret from secrets_dir.
"""

import base64
import binascii
import calendar
import hashlib
import ipaddress
import re
import secrets as random
import time
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.SOA

from tasks.secrets_dir import write_secret
from tasks.util import ConfigFile, System, render
from tasks.validate import (
    CAA_PARAMETERS,
    MAILBOX,
    SPF,
    choice,
    is_hostname,
    is_integer,
    is_one_line,
    listing,
    moment,
    optional,
    rule,
    scalar,
    show,
)

DEFAULTS = {
    # The authoritative server: bind (signs inline) or nsd (zones signed by dnssec-signzone).
    "zone_server": "bind",
    # Default TTL of the records, in seconds.
    "zone_ttl": 3600,
    # DMARC policy for the domains: none, quarantine or reject.
    "zone_dmarc_policy": "quarantine",
    # Local part (at the primary domain) that receives DMARC aggregate and failure reports.
    "zone_dmarc_reports": "dmarc-reports",
    # Local part that receives TLS-RPT reports (RFC 8460).
    "zone_tls_reports": "tls-reports",
    # SPF policy of every domain: by default only its MX hosts may send its mail.
    "zone_spf": "v=spf1 mx -all",
    # CAs allowed to issue certificates for the domains (CAA, RFC 8659).
    "zone_caa_issuers": ["letsencrypt.org"],
    # MTA-STS mode of the policy the mail host serves (tasks/mta_sts.py): enforce, testing, or
    # none to withdraw it (RFC 8461 sections 5 and 8.3).
    "zone_mta_sts_mode": "enforce",
    # How long senders may cache the MTA-STS policy, in seconds (RFC 8461 section 3.2: at
    # most 31557600; section 10 suggests weeks). One week: a sender keeps enforcing TLS
    # through a week-long outage of the policy host; a change of MX hosts reaches every
    # sender within a week (publish the new hosts before you move mail to them).
    "mta_sts_max_age": 604800,
    # DNSSEC key rolls (RFC 6781 section 4.1.2, RFC 7583): roll every signing key made
    # before this moment (ISO 8601, UTC: "2027-01-15" or "2027-01-15T10:00:00"). The new
    # key is published first; its DS must then be set at the registrar (tasks.registrar
    # says what to change); the old key is removed only once the signer has seen, through
    # the host's validating resolver, the new DS at the parent and the old one gone.
    "zone_dnssec_key_made_after": "",
    # TTL of the DS records at the parent (the registry's; many TLDs use a day), seconds.
    "zone_parent_ds_ttl": 86400,
    # How long a change takes to reach every name server of the zones, in seconds.
    "zone_propagation_delay": 300,
    # How long a DS change takes to reach every server of the parent once the registrar took it.
    "zone_parent_propagation_delay": 3600,
    # A safety margin on each step of a DNSSEC key roll, in seconds.
    "zone_dnssec_safety": 3600,
    # More records, per domain: {"example.org": [{"name": "www", "type": "A",
    # "data": "192.0.2.10"}]}; name relative to the zone ("@" for the apex).
    "zone_records": {},
}
# The type and format of each setting, checked before anything connects (tasks/data.py).
CHECKS = {
    "zone_server": scalar(choice("bind", "nsd")),
    # RFC 2181 8: a TTL is an unsigned 31-bit number of seconds.
    "zone_ttl": scalar(rule(lambda v: is_integer(v, 1, 2**31 - 1), "is not a number of seconds")),
    "zone_dmarc_policy": scalar(choice("none", "quarantine", "reject")),
    "zone_dnssec_key_made_after": scalar(optional(rule(lambda v: moment(v) is not None,
                                                       "is not a moment (2027-01-15 or 2027-01-15T10:00:00, UTC)"))),
    **{k: scalar(rule(lambda v: is_integer(v, 0, 2**31 - 1), "is not a number of seconds"))
       for k in ("zone_parent_ds_ttl", "zone_propagation_delay", "zone_parent_propagation_delay",
                 "zone_dnssec_safety")},
    "zone_mta_sts_mode": scalar(choice("none", "testing", "enforce")),
    "mta_sts_max_age": scalar(rule(lambda v: is_integer(v, 1, 31557600),
                                   "is not a number of seconds up to 31557600 (RFC 8461 section 3.2)")),
    **{k: scalar(rule(lambda v: isinstance(v, str) and MAILBOX.fullmatch(v),
                      "is not a local part (lower case, digits, . _ -)"))
       for k in ("zone_dmarc_reports", "zone_tls_reports")},
    "zone_spf": scalar(rule(lambda v: isinstance(v, str) and SPF.fullmatch(v) and len(v) <= 450,
                            "is not an SPF record (v=spf1 ... , printable, no quotes)")),
    "zone_caa_issuers": listing(rule(lambda v: isinstance(v, str) and is_hostname(v.split(";")[0])
                                     and CAA_PARAMETERS.fullmatch(v[len(v.split(";")[0]):]),
                                     "is not a CA's domain (letsencrypt.org)")),
    "zone_records": lambda key, value: zone_records_shape(key, value),  # noqa: PLW0108 (defined below)
}
TSIG_NAME = "inhouse-transfer"
TSIG_FILE = "tsig-transfer.key"  # in secrets_dir
# Owner names of zone_records: relative to the zone (RFC 1035 5.1), "@" for the apex,
# "*" for a wildcard; underscores for service labels (RFC 8552).
RELATIVE_NAME = re.compile(r"@|(\*\.)?[A-Za-z0-9_-]{1,63}(\.[A-Za-z0-9_-]{1,63})*|\*")
# Records the name servers make themselves (SOA; DNSSEC, RFC 4034, RFC 5155, RFC 7344).
GENERATED_TYPES = {"SOA", "DNSKEY", "RRSIG", "NSEC", "NSEC3", "NSEC3PARAM", "CDS", "CDNSKEY"}
# RFC 1912 timers: refresh, retry, expire; then the negative-answer TTL (RFC 2308: an
# hour, or zone_ttl if shorter, which is what resolvers use anyway: the SOA's own TTL caps
# it). Never above zone_ttl: bind gives NSEC3PARAM that TTL, and a signed zone with a
# record above max-zone-ttl (zone_ttl, templates/zone/bind/named.conf.options.j2) does not
# load again after a restart.
SOA_TIMERS = "7200 3600 1209600"


def soa_timers(data: dict) -> str:
    return f"{SOA_TIMERS} {min(data['zone_ttl'], 3600)}"


def hosts_by_group(groups: dict[str, list[tuple[str, dict]]]) -> dict[str, list[dict]]:
    """The name servers, as the zones see them: {"mail": [{"fqdn", "ipv4", "ipv6"}], "relay": ...}."""
    return {
        group: [{"fqdn": d.get("fqdn") or name, "ipv4": d.get("ipv4"), "ipv6": d.get("ipv6")} for name, d in members]
        for group, members in groups.items()
    }


def zones(data: dict) -> list[str]:
    return [data["domain"], *data["extra_domains"]]


def servers(data: dict, group: str) -> list[dict]:
    """The hosts of an inventory group, as the zone sees them: name and addresses."""
    return data.get("zone_hosts", {}).get(group, [])


def hidden(data: dict) -> bool:
    """Whether the mail host is a home server hidden behind the relays (tasks/link.py,
    link_home_hidden): it signs the zones and keeps the mail, but no public record names it;
    the relays are the name servers, the MX hosts and the front door."""
    return data.get("link_enabled") is True and data.get("link_home_hidden") is True and bool(servers(data, "relay"))


def public_servers(data: dict) -> list[dict]:
    """The name servers and MX hosts the world sees: the mail host (unless hidden), the relays."""
    return ([] if hidden(data) else servers(data, "mail")) + servers(data, "relay")


def front_door(data: dict) -> dict | None:
    """Where users' programs connect (IMAP, submission): the mail host, or the first relay's
    front door for a hidden home (tasks/proxy.py)."""
    doors = public_servers(data)
    return doors[0] if doors else None


def records(data: dict, zone: str) -> list[tuple[str, str, str]]:
    """(name, type, data) of every record of `zone` but the SOA; names relative to it."""
    primary = data["domain"]
    masters, relays = ([] if hidden(data) else servers(data, "mail")), servers(data, "relay")
    nameservers = public_servers(data)
    out = [("@", "NS", f"ns{i}.{primary}.") for i in range(1, len(nameservers) + 1)]
    if zone == primary:
        for i, host in enumerate(nameservers, 1):  # glue: the registrar gets the same
            out += [(f"ns{i}", "A", host["ipv4"])] + ([(f"ns{i}", "AAAA", host["ipv6"])] if host["ipv6"] else [])
        for host in nameservers:
            label = host["fqdn"].removesuffix(f".{primary}")
            out += [(label, "A", host["ipv4"])] + ([(label, "AAAA", host["ipv6"])] if host["ipv6"] else [])
    out += [("@", "MX", f"10 {h['fqdn']}.") for h in masters]
    out += [("@", "MX", f"{20 if masters else 10} {h['fqdn']}.") for h in relays]
    # Where users' programs connect: the mail host, or the relay's front door (tasks/proxy.py),
    # which has TLS from the first byte only (RFC 8314): STARTTLS cannot pass a TLS proxy.
    mx = door["fqdn"] if (door := front_door(data)) else primary
    starttls = "0 0 0 ." if hidden(data) else None
    dmarc = f"mailto:{data['zone_dmarc_reports']}@{primary}"
    out += [
        ("@", "TXT", quote(data["zone_spf"])),
        ("_dmarc", "TXT", quote(f"v=DMARC1; p={data['zone_dmarc_policy']}; rua={dmarc}; ruf={dmarc}; fo=1")),
        ("_smtp._tls", "TXT", quote(f"v=TLSRPTv1; rua=mailto:{data['zone_tls_reports']}@{primary}")),
        *[("@", "CAA", f'0 issue "{ca}"') for ca in data["zone_caa_issuers"]],
        ("@", "CAA", f'0 iodef "mailto:hostmaster@{primary}"'),
        # Client autoconfiguration (RFC 6186, RFC 8314): IMAP over TLS and submission.
        ("_imaps._tcp", "SRV", f"0 1 993 {mx}."),
        ("_imap._tcp", "SRV", starttls or f"10 1 143 {mx}."),
        ("_submissions._tcp", "SRV", f"0 1 465 {mx}."),
        ("_submission._tcp", "SRV", starttls or f"10 1 587 {mx}."),
        ("_pop3._tcp", "SRV", "0 0 0 ."),
        ("_pop3s._tcp", "SRV", "0 0 0 ."),
        ("autoconfig", "CNAME", f"{mx}."),
        ("autodiscover", "CNAME", f"{mx}."),
    ]
    out += mta_sts_records(data)
    # Keys made on the hosts (deploy.py reads them): DKIM of the mail host, TLSA of each MX.
    keys = data.get("zone_keys", {})
    for selector, public in keys.get("dkim", []):  # the signing key, the next, the last for a while
        out.append((f"{selector}._domainkey", "TXT", quote(f"v=DKIM1; k=rsa; p={public}")))
    if zone == primary:
        public = {h["fqdn"] for h in nameservers}  # a hidden mail host is no MX: no TLSA
        for fqdn, tlsa in sorted(t for t in keys.get("tlsa", {}).items() if t[0] in public):  # current, next
            out += [(f"_25._tcp.{fqdn.removesuffix(f'.{primary}')}", "TLSA", t) for t in tlsa]
    if zone == primary:  # other domains' DMARC reports may go to the primary (RFC 7489 7.1)
        out += [(f"{other}._report._dmarc", "TXT", '"v=DMARC1"') for other in data["extra_domains"]]
    return out + [(r["name"], r["type"].upper(), r["data"]) for r in data["zone_records"].get(zone, [])]


def mta_sts_server(data: dict) -> dict | None:
    """The host that serves the MTA-STS policy (tasks/mta_sts.py): the mail host, which is
    the primary MX; a hidden one, which the world cannot reach, leaves it to the first relay."""
    return next(iter(servers(data, "relay" if hidden(data) else "mail")), None)


def mta_sts_published(data: dict) -> bool:
    """Whether the zones announce a policy: wherever a host of the site serves mail."""
    return data.get("mail_enabled") is True and mta_sts_server(data) is not None


def mta_sts_served(data: dict) -> bool:
    """Whether this host serves the MTA-STS policy."""
    return mta_sts_published(data) and mta_sts_server(data)["fqdn"] == data.get("fqdn")


def mta_sts_hosts(data: dict) -> list[str]:
    """The names the policy is served under, one per domain (RFC 8461 section 3.3)."""
    return [f"mta-sts.{d}" for d in zones(data)]


def mta_sts_policy(data: dict) -> str:
    """The policy (RFC 8461 section 3.2): CRLF-separated key: value lines, an mx line for
    every MX host (the mail host unless hidden, the relays). No comment: the format has none."""
    mx = [h["fqdn"] for h in public_servers(data)]
    lines = ["version: STSv1", f"mode: {data['zone_mta_sts_mode']}", *[f"mx: {m}" for m in mx],
             f"max_age: {data['mta_sts_max_age']}"]
    return "".join(f"{line}\r\n" for line in lines)


def mta_sts_policy_id(text: str) -> str:
    """The id the TXT record announces (1 to 32 letters and digits, RFC 8461 section 3.1):
    a hash of the policy, so it changes when the policy does and only then."""
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def mta_sts_records(data: dict) -> list[tuple[str, str, str]]:
    """MTA-STS (RFC 8461): the policy host, the host that serves the policy, and the TXT
    record announcing it (section 3: the policy first, served by the run that publishes it);
    its id changes with the policy (section 3.1)."""
    if not mta_sts_published(data):
        return []
    host = mta_sts_server(data)
    policy_id = mta_sts_policy_id(mta_sts_policy(data))
    return [("mta-sts", "A", host["ipv4"]), *([("mta-sts", "AAAA", host["ipv6"])] if host["ipv6"] else []),
            ("_mta-sts", "TXT", quote(f"v=STSv1; id={policy_id}"))]


def quote(text: str) -> str:
    """A TXT value as quoted strings of at most 255 characters each (RFC 1035 3.3.14)."""
    return " ".join(f'"{text[i:i + 255]}"' for i in range(0, len(text), 255))


def record_problems(data: dict) -> list[str]:
    """What is wrong with the zones' records: bad syntax, a CNAME at the apex or beside other
    records, the same record twice. Generated records come from checked data, so a problem
    is named after the extra record (zone_records) that causes it."""
    out = []
    extra = data["zone_records"]
    if not isinstance(extra, dict) or any(
        z not in zones(data) or not isinstance(rs, list)
        or any(not isinstance(r, dict) or set(r) != {"name", "type", "data"} for r in rs)
        for z, rs in extra.items()
    ):
        return ['zone_records: must map each of your domains to a list of {"name", "type", "data"}']
    for zone in zones(data):
        origin = dns.name.from_text(zone)
        generated = len(records({**data, "zone_records": {}}, zone))
        seen: dict[str, set[str]] = {}
        for i, (name, rtype, rdata) in enumerate(records(data, zone)):
            where = f"zone_records[{zone!r}][{i - generated}]" if i >= generated else f"zone {zone}"
            try:
                owner = dns.name.from_text(name, origin).relativize(origin).to_text()
                value = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(rtype), rdata, origin)
            except Exception as e:  # dnspython raises many kinds, each with a clear message
                out.append(f"{where}: {name} {rtype} {rdata!r}: {e}")
                continue
            types = seen.setdefault(owner, set())
            if rtype == "CNAME" and owner == "@":
                out.append(f"{where}: CNAME at the apex of {zone} (RFC 1034 3.6.2)")
            elif (rtype == "CNAME" and types) or ("CNAME" in {t.split()[0] for t in types}):
                out.append(f"{where}: {owner} has a CNAME and other records (RFC 1034 3.6.2)")
            elif f"{rtype} {value}" in types:
                out.append(f"{where}: {owner} {rtype} {rdata} is there twice")
            types.add(f"{rtype} {value}")
    return out


# Where each zone server keeps the zones, and the group that reads them:
# bind writes .signed and .jnl beside the zone, so it must own the folder; /var/lib/nsd
# is the only place, with /etc/nsd, NSD's unit lets it write.
SERVERS = {"bind": {"dir": "/var/lib/bind", "group": "bind"}, "nsd": {"dir": "/var/lib/nsd", "group": "nsd"}}


def zone_path(data: dict, zone: str) -> str:
    """Where the unsigned zone file of `zone` lives on this host."""
    return f"{SERVERS[data['zone_server']]['dir']}/db.{zone}"


def heads(data: dict) -> list[str]:
    """A master's zone files: their first lines hold the serial and the content's hash."""
    return [zone_path(data, z) for z in zones(data)] if role(data) == "master" else []


def zone_files(data: dict, system: dict) -> list[ConfigFile]:
    """The unsigned zone files of a master, each checked strictly by named-checkzone."""
    return [
        ConfigFile(zone_path(data, z), zone_file(data, z, system["heads"].get(zone_path(data, z)),
                                                 served_serial(data, z) if zone_path(data, z) not in system["heads"]
                                                 else 0),
                   check=f"named-checkzone -q -k fail -m fail -M fail -n fail -S fail {z} {{path}}",
                   group=SERVERS[data["zone_server"]]["group"])
        for z in zones(data)
    ]


def zone_file(data: dict, zone: str, old_head: str | None, served: int = 0) -> str:
    """The zone file; the serial rises only when the rest changed (old_head: its first lines),
    and is always above `served` (what the zone's servers served before this master lost its
    file: a rebuild), so that one serial never means two versions of the zone (RFC 1996)."""
    body = render("zone/db.zone.j2", data, zone=zone, records=records(data, zone), serial="{serial}",
                  primary=data["domain"], timers=soa_timers(data), content="{content}")
    content = hashlib.sha256(body.encode()).hexdigest()[:32]
    old_serial, old_content = parse_head(old_head)
    if old_content == content:
        serial = old_serial
    else:  # YYYYMMDDnn, or one more than before when that is larger (several changes a day)
        serial = max(int(time.strftime("%Y%m%d00", time.gmtime())), old_serial + 1, served + 1)
    if serial > remembered_serial(data, zone):
        write_secret(serial_path(data, zone), f"{serial}\n")
    return body.replace("{serial}", str(serial)).replace("{content}", content)


def serial_path(data: dict, zone: str) -> Path:
    return Path(data["secrets_dir"]) / "zones" / f"{zone}.serial"


def remembered_serial(data: dict, zone: str) -> int:
    """The highest serial this machine wrote for `zone` (secrets_dir/zones/ZONE.serial)."""
    try:
        return int(serial_path(data, zone).read_text().strip())
    except (OSError, ValueError):
        return 0


def served_serial(data: dict, zone: str) -> int:
    """The highest serial of `zone` known: remembered here, or served now by its secondaries
    (asked over DNS, as any resolver would; a signer may have raised it since). Asked only
    when the master has no zone file: its first run, or after a rebuild."""
    serials = [remembered_serial(data, zone)]
    for server in servers(data, "relay"):
        for address in (server.get("ipv4"), server.get("ipv6")):
            if not address:
                continue
            try:
                answer = dns.query.udp(dns.message.make_query(zone, "SOA"), address, timeout=2)
            except (dns.exception.DNSException, OSError):
                continue
            serials += [r.serial for rrset in answer.answer for r in rrset if isinstance(r, dns.rdtypes.ANY.SOA.SOA)]
            break
    return max(serials)


def parse_head(head: str | None) -> tuple[int, str | None]:
    """(serial, content hash) from the first lines of a zone file we wrote, else (0, None)."""
    lines = (head or "").splitlines()
    fields = dict(line[2:].split(" ", 1) for line in lines if line.startswith("; ") and " " in line[2:])
    try:
        return int(fields.get("serial", 0)), fields.get("content")
    except ValueError:
        return 0, None


def tsig_secret(data: dict) -> str:
    """The transfer key, kept on the operator's machine (secrets_dir, never in git) so that
    master and secondaries get the same one in the same run; made once."""
    path = Path(data["secrets_dir"]) / TSIG_FILE
    if not path.exists():
        write_secret(path, base64.b64encode(random.token_bytes(32)).decode() + "\n")
    return path.read_text().strip()


def tsig_problems(data: dict) -> list[str]:
    """What is wrong with the transfer key file, if there is one (never its content)."""
    path = Path(data["secrets_dir"]) / TSIG_FILE
    if not path.exists():
        return []
    try:
        key = base64.b64decode(path.read_text().strip(), validate=True)
    except (OSError, UnicodeDecodeError, binascii.Error, ValueError) as e:
        key, error = b"", type(e).__name__
    else:
        error = f"{len(key)} bytes"
    if len(key) < 32:  # RFC 2104 3: no shorter than the hash's output (hmac-sha256: 32 bytes)
        return [f"{path} is not a base64 key of 32 bytes or more ({error}); remove it to make a new one, "
                "then deploy every name server"]
    return []


def context(data: dict) -> dict:
    """What the server templates need: this host's role, the zones, the other servers."""
    return {"role": role(data), "zones": zones(data), "secret": tsig_secret(data), "tsig_name": TSIG_NAME,
            "masters": [h | {"xfr": transfer_address(data, h)} for h in servers(data, "mail")],
            "secondaries": [h | {"xfr": transfer_address(data, h)} for h in servers(data, "relay")],
            "listen": [a for a in [link_address(data, data["fqdn"])] if a and hidden(data)]}


def link_address(data: dict, fqdn: str) -> str:
    """A host's address inside the link (tasks/link.py): the mail host takes the first of
    link_network, each relay the next ones; "" for a host outside it."""
    hosts = [h["fqdn"] for h in servers(data, "mail")[:1] + servers(data, "relay")]
    if fqdn not in hosts or not data.get("link_network"):
        return ""
    return str(ipaddress.ip_network(data["link_network"])[hosts.index(fqdn) + 1])


def transfer_address(data: dict, host: dict) -> str:
    """Where zone transfers and NOTIFY reach a name server: its address inside the link when
    the master is hidden (nothing of the internet talks to home), else its public IPv4."""
    return link_address(data, host["fqdn"]) if hidden(data) else host["ipv4"]


def role(data: dict) -> str:
    name = data.get("fqdn")
    if any(h["fqdn"] == name for h in servers(data, "mail")):
        return "master"
    return "secondary" if any(h["fqdn"] == name for h in servers(data, "relay")) else "none"


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
            if not isinstance(r["name"], str) or not RELATIVE_NAME.fullmatch(r["name"]):
                out.append(f"{key}[{z!r}][{i}]: name {show(r['name'])} is not a name relative to the zone "
                           "(www, _dmarc, @ for the apex)")
            if not isinstance(r["type"], str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9]{0,15}", r["type"]):
                out.append(f"{key}[{z!r}][{i}]: type {show(r['type'])} is not a record type")
            elif r["type"].upper() in GENERATED_TYPES:
                out.append(f"{key}[{z!r}][{i}]: {r['type'].upper()} records are made by the name server")
            if not is_one_line(r["data"]) or not r["data"].strip():
                out.append(f"{key}[{z!r}][{i}]: data {show(r['data'])} must be one line of text")
    return out


def dnssec_key_dir(data: dict) -> str:
    """Where the state files of the DNSSEC keys are on a master (bind's, or NSD's signer's
    in the same words); "" elsewhere."""
    if role(data) != "master":
        return ""
    return SERVERS["bind"]["dir"] if data["zone_server"] == "bind" else f"{SERVERS['nsd']['dir']}/keys/state"


def dnssec_keys(lines: list[str]) -> dict[str, list[dict]]:
    """The keys by zone, from the System fact's `dnssec` lines ("Kzone.+013+12345.state
    Generated:YYYYMMDDhhmmss GoalState:omnipresent DSState:rumoured ..."): each with its id,
    when it was made (seconds since 1970), its goal (omnipresent: wanted; hidden: on its way
    out), the state of its DS at the parent, of its DNSKEY and of the zone's signatures made
    with it (RFC 7583 section 3.1's states, as bind names them; NSD's signer writes the first
    three), and when bind plans to take it out of the zone (0: no plan)."""
    def moment_of(stamp: str) -> float:
        try:
            return float(calendar.timegm(time.strptime(stamp, "%Y%m%d%H%M%S")))  # UTC
        except ValueError:
            return 0.0

    out: dict[str, list[dict]] = {}
    for line in lines:
        name, *fields = line.split()
        found = re.fullmatch(r"K(.+)\.\+\d{3}\+(\d{5})\.state", name)
        if not found:
            continue
        state = dict(f.split(":", 1) for f in fields if ":" in f)
        out.setdefault(found[1], []).append({
            "id": int(found[2]), "made": moment_of(state.get("Generated", "")), "goal": state.get("GoalState", ""),
            "ds": state.get("DSState", ""), "dnskey": state.get("DNSKEYState", ""),
            "zrrsig": state.get("ZRRSIGState", ""), "removed": moment_of(state.get("Removed", ""))})
    return out


def dnssec_keys_on(data: dict, run) -> dict[str, list[dict]]:
    """The master's keys by zone, read as the deploy reads them (the System fact's command),
    through `run`: a function that runs a shell command there as root and returns its output."""
    fact = System()
    return dnssec_keys(fact.process(run(fact.command([], key_dir=dnssec_key_dir(data))).splitlines())["dnssec"])


def dnssec_leaving(keys: dict[str, list[dict]]) -> dict[str, float]:
    """Zones where the old key of the last roll is still in the zone, with when bind plans to
    take it out (0: when the signer sees the DS gone). bind replaces the signatures it made
    only as they come up for refresh (signatures-validity less signatures-refresh, 9 days);
    a roll begun meanwhile retires a successor that signs nothing yet, and bind was seen to
    leave records unsigned. NSD's signer moves an old key's files away once it is out."""
    out = {}
    for z, ks in keys.items():
        if leaving := [k for k in ks if k["goal"] == "hidden" and (k["dnskey"], k["zrrsig"]) != ("hidden", "hidden")]:
            out[z] = max(k["removed"] for k in leaving)
    return out


def dnssec_asked(data: dict, keys: dict[str, list[dict]], now: float | None = None) -> dict[str, list[int]]:
    """The keys a roll is asked for, by zone: those made before zone_dnssec_key_made_after,
    when no key made since is on its way in (a roll already asked for is not asked again)."""
    after = moment(data["zone_dnssec_key_made_after"]) if data["zone_dnssec_key_made_after"] else None
    if after is None or after > (time.time() if now is None else now):  # a moment to come: not yet
        return {}
    out = {}
    for z in zones(data):
        wanted = [k for k in keys.get(z, []) if k["goal"] == "omnipresent"]
        if wanted and all(k["made"] < after for k in wanted):
            out[z] = sorted(k["id"] for k in wanted)
    return out


def dnssec_rolls(data: dict, keys: dict[str, list[dict]], now: float | None = None) -> dict[str, list[int]]:
    """The keys to roll now: those asked for, once the last roll's old key has left the zone."""
    leaving = dnssec_leaving(keys)
    return {z: ks for z, ks in dnssec_asked(data, keys, now).items() if z not in leaving}


def dnssec_deferred(data: dict, keys: dict[str, list[dict]], now: float | None = None) -> dict[str, float]:
    """Zones whose asked roll waits for the last roll's old key to leave, with when bind plans it."""
    leaving = dnssec_leaving(keys)
    return {z: leaving[z] for z in dnssec_asked(data, keys, now) if z in leaving}


def dnssec_deferred_note(data: dict, deferred: dict[str, float]) -> str:
    """What a run says of the rolls dnssec_deferred holds back."""
    when = "; ".join(f"{z}: " + (time.strftime("after %Y-%m-%d %H:%M UTC", time.gmtime(t)) if t else
                                 "once the signer has seen the old DS gone") for z, t in deferred.items())
    return (f"{data['fqdn']}: the DNSSEC key roll asked for (zone_dnssec_key_made_after) waits until the last "
            f"roll's old key has left the zone, which keeps it until the signatures it made are replaced ({when}); "
            "a run after that rolls")


def dnssec_waiting(keys: dict[str, list[dict]]) -> dict[str, list[int]]:
    """Keys whose DS the parent should now add (wanted, DS rumoured) or drop (on the way
    out, DS unretentive), by zone: what the registrar must change for the roll to go on."""
    return {z: sorted(k["id"] for k in ks if (k["goal"], k["ds"]) in (("omnipresent", "rumoured"),
                                                                      ("hidden", "unretentive")))
            for z, ks in keys.items()
            if any((k["goal"], k["ds"]) == ("hidden", "unretentive") for k in ks)}


def cds(master: str, z: str) -> list[str]:
    """The DS the zone asks its parent for: the CDS records the master serves for `z` (RFC
    7344; not the "delete DNSSEC" one, RFC 8078); [] if none or no answer."""
    query = dns.message.make_query(z, dns.rdatatype.CDS, want_dnssec=True)
    query.flags &= ~dns.flags.RD
    try:
        answer, _ = dns.query.udp_with_fallback(query, master, timeout=5)
    except (dns.exception.DNSException, OSError):
        return []
    return [r.to_text() for rrset in answer.answer if rrset.rdtype == dns.rdatatype.CDS for r in rrset
            if r.algorithm != 0]
