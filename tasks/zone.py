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
import hashlib
import secrets as random
import time
from pathlib import Path

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from tasks.util import ConfigFile, render

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
    # More records, per domain: {"example.org": [{"name": "www", "type": "A",
    # "data": "192.0.2.10"}]}; name relative to the zone ("@" for the apex).
    "zone_records": {},
}
TSIG_NAME = "inhouse-transfer"
# RFC 1912 timers: refresh, retry, expire, negative-answer TTL.
SOA_TIMERS = "7200 3600 1209600 3600"


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


def records(data: dict, zone: str) -> list[tuple[str, str, str]]:
    """(name, type, data) of every record of `zone` but the SOA; names relative to it."""
    primary = data["domain"]
    masters, relays = servers(data, "mail"), servers(data, "relay")
    nameservers = masters + relays
    out = [("@", "NS", f"ns{i}.{primary}.") for i in range(1, len(nameservers) + 1)]
    if zone == primary:
        for i, host in enumerate(nameservers, 1):  # glue: the registrar gets the same
            out += [(f"ns{i}", "A", host["ipv4"])] + ([(f"ns{i}", "AAAA", host["ipv6"])] if host["ipv6"] else [])
        for host in nameservers:
            label = host["fqdn"].removesuffix(f".{primary}")
            out += [(label, "A", host["ipv4"])] + ([(label, "AAAA", host["ipv6"])] if host["ipv6"] else [])
    out += [("@", "MX", f"10 {h['fqdn']}.") for h in masters]
    out += [("@", "MX", f"20 {h['fqdn']}.") for h in relays]
    mx = masters[0]["fqdn"] if masters else primary
    dmarc = f"mailto:{data['zone_dmarc_reports']}@{primary}"
    out += [
        ("@", "TXT", quote(data["zone_spf"])),
        ("_dmarc", "TXT", quote(f"v=DMARC1; p={data['zone_dmarc_policy']}; rua={dmarc}; ruf={dmarc}; fo=1")),
        ("_smtp._tls", "TXT", quote(f"v=TLSRPTv1; rua=mailto:{data['zone_tls_reports']}@{primary}")),
        *[("@", "CAA", f'0 issue "{ca}"') for ca in data["zone_caa_issuers"]],
        ("@", "CAA", f'0 iodef "mailto:hostmaster@{primary}"'),
        # Client autoconfiguration (RFC 6186, RFC 8314): IMAP over TLS and submission.
        ("_imaps._tcp", "SRV", f"0 1 993 {mx}."),
        ("_imap._tcp", "SRV", f"10 1 143 {mx}."),
        ("_submissions._tcp", "SRV", f"0 1 465 {mx}."),
        ("_submission._tcp", "SRV", f"10 1 587 {mx}."),
        ("_pop3._tcp", "SRV", "0 0 0 ."),
        ("_pop3s._tcp", "SRV", "0 0 0 ."),
        ("autoconfig", "CNAME", f"{mx}."),
        ("autodiscover", "CNAME", f"{mx}."),
    ]
    out += mta_sts_records(data, masters)
    # Keys made on the hosts (deploy.py reads them): DKIM of the mail host, TLSA of each MX.
    keys = data.get("zone_keys", {})
    selector, public = keys.get("dkim", ("", ""))
    if public:
        out.append((f"{selector}._domainkey", "TXT", quote(f"v=DKIM1; k=rsa; p={public}")))
    if zone == primary:
        for fqdn, tlsa in sorted(keys.get("tlsa", {}).items()):
            out.append((f"_25._tcp.{fqdn.removesuffix(f'.{primary}')}", "TLSA", tlsa))
    if zone == primary:  # other domains' DMARC reports may go to the primary (RFC 7489 7.1)
        out += [(f"{other}._report._dmarc", "TXT", '"v=DMARC1"') for other in data["extra_domains"]]
    return out + [(r["name"], r["type"].upper(), r["data"]) for r in data["zone_records"].get(zone, [])]


def mta_sts_records(data: dict, masters: list[dict]) -> list[tuple[str, str, str]]:
    """MTA-STS (RFC 8461): the policy host, the mail host that serves the policy, and the
    TXT record announcing it, only when the mail host serves it (section 3: the policy
    first); its id changes with the policy (section 3.1)."""
    from tasks import mta_sts

    if not (masters and mta_sts.serves(data)):
        return []
    host = masters[0]
    policy_id = mta_sts.policy_id(mta_sts.policy(data))
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


def implementation(data: dict):
    """The module that runs the zones on this host: tasks/zone_bind.py or tasks/zone_nsd.py."""
    from tasks import zone_bind, zone_nsd

    return {"bind": zone_bind, "nsd": zone_nsd}[data["zone_server"]]


def zone_path(data: dict, zone: str) -> str:
    """Where the unsigned zone file of `zone` lives on this host."""
    return f"{implementation(data).ZONE_DIR}/db.{zone}"


def zone_files(data: dict, system: dict) -> list[ConfigFile]:
    """The unsigned zone files of a master, each checked strictly by named-checkzone."""
    return [
        ConfigFile(zone_path(data, z), zone_file(data, z, system["heads"].get(zone_path(data, z))),
                   check=f"named-checkzone -q -k fail -m fail -M fail -n fail -S fail {z} {{path}}",
                   group=implementation(data).GROUP)
        for z in zones(data)
    ]


def zone_file(data: dict, zone: str, old_head: str | None) -> str:
    """The zone file; the serial rises only when the rest changed (old_head: its first lines)."""
    body = render("zone/db.zone.j2", data, zone=zone, records=records(data, zone), serial="{serial}",
                  primary=data["domain"], timers=SOA_TIMERS, content="{content}")
    content = hashlib.sha256(body.encode()).hexdigest()[:32]
    old_serial, old_content = parse_head(old_head)
    if old_content == content:
        serial = old_serial
    else:  # YYYYMMDDnn, or one more than before when that is larger (several changes a day)
        serial = max(int(time.strftime("%Y%m%d00", time.gmtime())), old_serial + 1)
    return body.replace("{serial}", str(serial)).replace("{content}", content)


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
    path = Path(data["secrets_dir"]) / "tsig-transfer.key"
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.write_text(base64.b64encode(random.token_bytes(32)).decode() + "\n")
        path.chmod(0o600)
    return path.read_text().strip()


def context(data: dict) -> dict:
    """What the server templates need: this host's role, the zones, the other servers."""
    return {"role": role(data), "zones": zones(data), "masters": servers(data, "mail"),
            "secondaries": servers(data, "relay"), "tsig_name": TSIG_NAME, "secret": tsig_secret(data)}


def role(data: dict) -> str:
    name = data.get("fqdn")
    if any(h["fqdn"] == name for h in servers(data, "mail")):
        return "master"
    return "secondary" if any(h["fqdn"] == name for h in servers(data, "relay")) else "none"
