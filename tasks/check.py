"""Is the mail system still right? Judged from the operator's machine, as the rest of the
internet sees it, with an exit code fit for cron or a monitoring system:

    .venv/bin/python -m tasks.check inventory.py [--ca ROOTS.pem] [--quiet]

For every domain and every name server address (IPv4 and IPv6): the zone's keys match the
DS at the parent, found from the root down with every signature checked (RFC 4035 section
5, the root's anchor from dns-root-data, or the inventory's own root); each name server
serves the same serial and records (the secondary is in sync); signatures do not expire
within `SIGNATURE_DAYS`; the DKIM record is the key the mail host signs with (the key
escrow in secrets_dir says which); SPF authorises every MX address; DMARC, TLS-RPT and
MTA-STS records parse, and the MTA-STS policy served names every MX. For every MX host and
address: the key served on port 25 is the one its TLSA record names, and the certificate
does not expire within `CERT_DAYS`. For every relay: its queue holds no mail older than a
day (it would be waiting for a mail host that does not take it). From the mail host: what
the DMARC and TLS reports of others said (tasks/reports.py), as warnings.

Exit 0: all is right; 1: a problem (each line starting FAIL says what and where); 2: the
check could not run (a bad inventory). WARN lines do not fail the check.
"""

import argparse
import datetime
import hashlib
import ipaddress
import json
import re
import runpy
import smtplib
import socket
import ssl
import subprocess
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import dns.dnssec
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rdatatype
import dns.rrset
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tasks import dkim, keys, mail, reports, zone
from tasks.data import inventory_hosts

SIGNATURE_DAYS = 3  # bind and the NSD signer refresh signatures days before they expire
CERT_DAYS = 14  # the renewal timer renews 30 days before expiry: 14 left means it failed twice
QUEUE_HOURS = 24
ROOT_ANCHORS = Path("/usr/share/dns/root.ds")  # Debian's dns-root-data
ROOT_HINTS = Path("/usr/share/dns/root.hints")


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    failed: int = 0

    def ok(self, where: str, what: str) -> None:
        self.lines.append(f"ok    {where}: {what}")

    def fail(self, where: str, what: str) -> None:
        self.failed += 1
        self.lines.append(f"FAIL  {where}: {what}")

    def warn(self, where: str, what: str) -> None:
        self.lines.append(f"WARN  {where}: {what}")


class Bogus(Exception):
    """An answer that does not validate, or does not come."""


def ask(address: str, name: str, rtype: str) -> dns.message.Message:
    """A resolver's question to one server: no recursion, DNSSEC records wanted."""
    query = dns.message.make_query(name, rtype, want_dnssec=True)
    query.flags &= ~dns.flags.RD
    try:
        return dns.query.udp_with_fallback(query, address, timeout=5)[0]
    except (dns.exception.DNSException, OSError) as e:
        raise Bogus(f"{address} did not answer {name} {rtype} ({type(e).__name__})") from None


def signed(reply: dns.message.Message, name: str, rtype: str) -> tuple[dns.rrset.RRset, dns.rrset.RRset]:
    kind, owner = dns.rdatatype.from_text(rtype), dns.name.from_text(name)
    rrset = next((r for r in reply.answer if r.rdtype == kind and r.name == owner), None)
    sigs = next((r for r in reply.answer if r.rdtype == dns.rdatatype.RRSIG and r.covers == kind
                 and r.name == owner), None)
    if rrset is None:
        raise Bogus(f"no {rtype} record for {name}")
    if sigs is None:
        raise Bogus(f"{name} {rtype} is not signed")
    return rrset, sigs


def verify(rrset, sigs, keyset: dns.rrset.RRset) -> None:
    """The signature checks with these keys and is in its validity period; and it will be
    for SIGNATURE_DAYS more."""
    try:
        dns.dnssec.validate(rrset, sigs, {keyset.name: keyset})
    except dns.dnssec.ValidationFailure as e:
        what = f"{rrset.name} {dns.rdatatype.to_text(rrset.rdtype)}"
        raise Bogus(f"{what}: the signature does not validate ({e})") from None
    soon = datetime.datetime.now(datetime.UTC).timestamp() + SIGNATURE_DAYS * 86400
    if all(s.expiration < soon for s in sigs):
        raise Bogus(f"{rrset.name} {dns.rdatatype.to_text(rrset.rdtype)}: its signatures expire "
                    f"within {SIGNATURE_DAYS} days")


class Chain:
    """The chain of trust from the root down to a zone's parent, followed from the root's
    servers through referrals and checked at each step."""

    def __init__(self, anchors: list[str], root_servers: list[str]):
        self.anchors = [dns.rdata.from_text("IN", "DS", " ".join(a.split()[-4:])) for a in anchors]
        self.root_servers = root_servers
        self.keys: dict[str, dns.rrset.RRset] = {}

    def resolve(self, name: str, rtype: str) -> dns.message.Message:
        """The answer to name/rtype from the servers that are authoritative for it, found by
        following referrals from the root (glue first, else the name servers' addresses)."""
        servers = list(self.root_servers)
        for _ in range(16):
            reply = None
            for address in servers:
                try:
                    reply = ask(address, name, rtype)
                    break
                except Bogus:
                    continue
            if reply is None:
                raise Bogus(f"no server answered {name} {rtype} ({', '.join(servers)})")
            if reply.answer or reply.flags & dns.flags.AA:
                return reply
            referral = [r for r in reply.authority if r.rdtype == dns.rdatatype.NS]
            if not referral:
                raise Bogus(f"{name} {rtype}: neither an answer nor a referral")
            names = {str(ns.target) for ns in referral[0]}
            glue = [str(a) for r in reply.additional if str(r.name) in names
                    and r.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA) for a in r]
            servers = glue or [str(a) for n in names for a in self.addresses(n)]
        raise Bogus(f"{name} {rtype}: too many referrals")

    def addresses(self, host: str) -> list[str]:
        out = []
        for rtype in ("A", "AAAA"):
            reply = self.resolve(host, rtype)
            out += [str(a) for r in reply.answer if r.rdtype == dns.rdatatype.from_text(rtype) for a in r]
        return out

    def keys_of(self, zone_name: str) -> dns.rrset.RRset:
        """The validated DNSKEY set of a zone above ours (the root, a TLD...)."""
        if zone_name in self.keys:
            return self.keys[zone_name]
        reply = self.resolve(zone_name, "DNSKEY")
        keyset, sigs = signed(reply, zone_name, "DNSKEY")
        if zone_name == ".":
            trusted = self.anchors
        else:
            trusted = self.ds(zone_name)
        match(zone_name, keyset, trusted)
        verify(keyset, sigs, keyset)
        self.keys[zone_name] = keyset
        return keyset

    def ds(self, zone_name: str) -> list:
        """The DS set of a zone, as its parent publishes it, validated with the parent's keys."""
        reply = self.resolve(zone_name, "DS")
        ds, sigs = signed(reply, zone_name, "DS")
        verify(ds, sigs, self.keys_of(str(next(iter(sigs)).signer)))
        return list(ds)


def match(zone_name: str, keyset, ds_set: list) -> None:
    """Some key of the set is the one a DS names (digest and algorithm)."""
    owner = dns.name.from_text(zone_name)
    for ds in ds_set:
        for key in keyset:
            try:
                if dns.dnssec.make_ds(owner, key, ds.digest_type) == ds:
                    return
            except (dns.dnssec.UnsupportedAlgorithm, ValueError):
                continue
    raise Bogus(f"no DNSKEY of {zone_name} matches a DS at the parent: a validating resolver finds it bogus")


def text(rrset) -> list[str]:
    return [b"".join(r.strings).decode(errors="replace") for r in rrset]


def tags(record: str) -> dict[str, str]:
    """k=v; pairs of DMARC, TLS-RPT and MTA-STS records."""
    return {k.strip(): v.strip() for k, _, v in (p.partition("=") for p in record.split(";")) if k.strip()}


def spf_allows(record: str, address: str, mx_addresses: list[str], a_addresses: list[str]) -> str | None:
    """Whether an SPF record (RFC 7208) passes `address`: 'pass', 'fail', or None when it
    uses what this check does not follow (include, redirect, exists, macros)."""
    ip = ipaddress.ip_address(address)
    for term in record.split()[1:]:
        qualifier, mechanism = (term[0], term[1:]) if term[0] in "+-~?" else ("+", term)
        name, _, arg = mechanism.partition(":")
        name, _, cidr = name.partition("/")
        verdict = "pass" if qualifier == "+" else "fail"
        if name == "all":
            return verdict
        if name in ("ip4", "ip6"):
            if ip in ipaddress.ip_network(arg, strict=False):
                return verdict
        elif name in ("mx", "a") and not arg and not cidr:
            if address in (mx_addresses if name == "mx" else a_addresses):
                return verdict
        else:
            return None
    return "fail"  # neutral by default: not an authorisation


def served_key(fqdn: str, address: str) -> x509.Certificate:
    """The certificate on port 25 after STARTTLS; not judged by a CA (DANE judges it)."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with smtplib.SMTP(timeout=20, local_hostname="check.invalid") as s:
        s._host = fqdn  # the name STARTTLS asks for (SNI); the connection goes to the address
        s.connect(address, 25)
        s.ehlo()
        s.starttls(context=context)
        return x509.load_der_x509_certificate(s.sock.getpeercert(binary_form=True))


def spki(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).hexdigest()


def escrowed_dkim(data: dict) -> tuple[str, str] | None:
    """(selector, public key) the mail host signs with, from its key escrow."""
    path = keys.escrow_path(data)
    if not path.exists():
        return None
    with tarfile.open(path, "r:gz") as tar:
        try:
            member = tar.extractfile(dkim.CURRENT.lstrip("/"))
        except KeyError:
            return None
        lines = member.read().decode().split() if member else []
    return (lines[0], lines[1]) if len(lines) >= 2 else None


def check(data: dict, anchors: list[str], root_servers: list[str], ca: str | None, report: Report) -> None:
    chain = Chain(anchors, root_servers)
    servers = [(ns["fqdn"], a) for ns in zone.public_servers(data) for a in (ns["ipv4"], ns["ipv6"]) if a]
    mx_hosts = zone.public_servers(data)  # a hidden mail host is neither
    mx_addresses = [a for h in mx_hosts for a in (h["ipv4"], h["ipv6"]) if a]
    signing = escrowed_dkim(data)
    primary: dict = {}  # the primary zone's validated answers (the TLSA records)
    for z in zone.zones(data):
        where = z
        try:
            ds = chain.ds(z)
        except Bogus as e:
            report.fail(where, f"the DS at the parent: {e}")
            continue
        wanted = zone.cds(data["ipv4"], z)
        if wanted and sorted(wanted) != sorted(r.to_text() for r in ds):  # RFC 7344 section 4
            report.warn(z, "a DNSSEC key roll waits for the DS at the registrar: run `python -m tasks.registrar`")
        names = [(z, "SOA"), (z, "MX"), (z, "TXT"), (f"_dmarc.{z}", "TXT"), (f"_smtp._tls.{z}", "TXT")]
        if zone.mta_sts_published(data):
            names += [(f"_mta-sts.{z}", "TXT"), (f"mta-sts.{z}", "A")]
        if signing:
            names.append((f"{signing[0]}._domainkey.{z}", "TXT"))
        if z == data["domain"]:
            names += [(f"_25._tcp.{h['fqdn']}", "TLSA") for h in mx_hosts]
        answers: dict[str, dict] = {}
        for fqdn, address in servers:
            at = f"{z} at {fqdn} ({address})"
            try:
                keyset, sigs = signed(ask(address, z, "DNSKEY"), z, "DNSKEY")
                match(z, keyset, ds)
                verify(keyset, sigs, keyset)
                got = {}
                for name, rtype in names:
                    rrset, rsigs = signed(ask(address, name, rtype), name, rtype)
                    verify(rrset, rsigs, keyset)
                    got[(name, rtype)] = sorted(r.to_text() for r in rrset)
                answers[at] = got
            except Bogus as e:
                report.fail(at, str(e))
        if not answers:
            continue
        first = next(iter(answers.values()))
        if z == data["domain"]:
            primary = first
        differ = [at for at, got in answers.items() if got != first]
        if differ:
            report.fail(z, "the name servers serve different data (serial or records): " + "; ".join(
                f"{at}: serial {got.get((z, 'SOA'), ['? ? ?'])[0].split()[2]}" for at, got in answers.items()))
        else:
            report.ok(z, f"validates from the root on {len(answers)} name server addresses, all in sync "
                         f"(serial {first[(z, 'SOA')][0].split()[2]})")
        judge_records(data, z, first, signing, mx_addresses, report)
        if zone.mta_sts_published(data):
            judge_mta_sts(data, z, first, ca, report)
    for host in mx_hosts:  # the TLSA records as validated above, in the primary zone
        tlsa = {r.split()[-1].lower() for r in primary.get((f"_25._tcp.{host['fqdn']}", "TLSA"), [])
                if r.startswith("3 1 1 ")}
        for address in (host["ipv4"], host["ipv6"]):
            if address:
                judge_tls(host["fqdn"], address, tlsa, report)
    for relay in zone.servers(data, "relay"):
        judge_queue(data, relay, report)
    for host in zone.servers(data, "mail"):
        judge_reports(data, host, report)


def judge_records(data, z, first, signing, mx_addresses, report) -> None:
    spf = [t for t in text_of(first, z, "TXT") if t.startswith("v=spf1")]
    if len(spf) != 1:
        report.fail(z, f"{len(spf)} SPF records (RFC 7208 wants exactly one)")
    else:
        a_addresses = [a for h in zone.servers(data, "mail") for a in (h["ipv4"], h["ipv6"]) if a]
        verdicts = {a: spf_allows(spf[0], a, mx_addresses, a_addresses) for a in mx_addresses}
        refused = [a for a, v in verdicts.items() if v == "fail"]
        if refused:
            report.fail(z, f"SPF does not authorise the MX addresses {', '.join(refused)}: {spf[0]}")
        elif None in verdicts.values():
            report.warn(z, f"SPF uses what this check does not follow: {spf[0]}")
        else:
            report.ok(z, "SPF authorises every MX address")
    dmarc = [t for t in text_of(first, f"_dmarc.{z}", "TXT") if t.startswith("v=DMARC1")]
    d = tags(dmarc[0]) if len(dmarc) == 1 else {}
    if d.get("p") in ("none", "quarantine", "reject") and d.get("rua", "").startswith("mailto:"):
        report.ok(z, f"DMARC p={d['p']}, reports to {d['rua'][7:]}")
    else:
        report.fail(z, f"DMARC record missing or malformed: {dmarc}")
    tlsrpt = [t for t in text_of(first, f"_smtp._tls.{z}", "TXT") if t.startswith("v=TLSRPTv1")]
    if len(tlsrpt) == 1 and re.match(r"(mailto:|https:)", tags(tlsrpt[0]).get("rua", "")):
        report.ok(z, "TLS-RPT record")
    else:
        report.fail(z, f"TLS-RPT record missing or malformed: {tlsrpt}")
    if signing:
        selector, public = signing
        found = [tags(t).get("p", "").replace(" ", "") for t in text_of(first, f"{selector}._domainkey.{z}", "TXT")]
        if public in found:
            report.ok(z, f"DKIM record of selector {selector} is the signing key")
        else:
            report.fail(z, f"DKIM record of selector {selector} is not the key the mail host signs with")
    else:
        report.warn(z, "no key escrow in secrets_dir: the DKIM record cannot be compared with the signing key")


def text_of(first: dict, name: str, rtype: str) -> list[str]:
    """TXT strings from presentation form ("a" "b" -> ab)."""
    return ["".join(re.findall(r'"((?:[^"\\]|\\.)*)"', r)) for r in first.get((name, rtype), [])]


def judge_mta_sts(data, z, first, ca, report) -> None:
    record = [t for t in text_of(first, f"_mta-sts.{z}", "TXT") if t.startswith("v=STSv1")]
    if len(record) != 1 or not re.fullmatch(r"[A-Za-z0-9]{1,32}", tags(record[0]).get("id", "")):
        report.fail(z, f"MTA-STS record missing or malformed: {record}")
        return
    address = first.get((f"mta-sts.{z}", "A"), [""])[0]
    host = f"mta-sts.{z}"
    context = ssl.create_default_context(cafile=ca) if ca else ssl.create_default_context()
    try:
        with socket.create_connection((address, 443), timeout=20) as sock, \
                context.wrap_socket(sock, server_hostname=host) as conn:
            conn.sendall(f"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            raw = b""
            while chunk := conn.recv(65536):
                raw += chunk
    except (OSError, ssl.SSLError) as e:
        report.fail(z, f"the MTA-STS policy at https://{host}/ cannot be fetched ({type(e).__name__}: {e})")
        return
    head, _, body = raw.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        report.fail(z, f"the MTA-STS policy at https://{host}/ answered {head.splitlines()[0][:60]!r}")
        return
    policy = dict(line.split(":", 1) for line in body.decode().splitlines() if ":" in line)
    mx = {v.strip() for k, v in (line.split(":", 1) for line in body.decode().splitlines() if ":" in line)
          if k.strip() == "mx"}
    want = {h["fqdn"] for h in zone.public_servers(data)}
    if policy.get("version", "").strip() != "STSv1" or mx != want:
        report.fail(z, f"the MTA-STS policy names {sorted(mx)}, the MX hosts are {sorted(want)}")
    else:
        report.ok(z, f"MTA-STS policy (mode {policy.get('mode', '').strip()}) names every MX")


def judge_tls(fqdn: str, address: str, tlsa: set[str], report: Report) -> None:
    where = f"{fqdn} ({address}) port 25"
    try:
        cert = served_key(fqdn, address)
    except (OSError, smtplib.SMTPException, ssl.SSLError) as e:
        report.fail(where, f"no TLS session ({type(e).__name__}: {e})")
        return
    if spki(cert) not in tlsa:
        report.fail(where, "the key served is not the one the TLSA record names: DANE senders defer all mail")
    else:
        report.ok(where, "the key served is the one the TLSA record names")
    left = cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    if left < datetime.timedelta(days=CERT_DAYS):
        report.fail(where, f"the certificate expires in {left.days} days (renewal is failing)")
    else:
        report.ok(where, f"the certificate is good for {left.days} more days")


def over_ssh(data: dict, host: dict, command: str) -> subprocess.CompletedProcess:
    """A command on one of the site's hosts, as pyinfra logs in (the inventory's admin, sudo)."""
    user = data.get("ssh_user") or data["admin_user"]
    options = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-p", str(data.get("ssh_port") or 22)]
    if data.get("ssh_key"):
        options += ["-i", str(data["ssh_key"]), "-o", "IdentitiesOnly=yes"]
    if data.get("ssh_known_hosts_file"):
        options += ["-o", f"UserKnownHostsFile={data['ssh_known_hosts_file']}"]
    return subprocess.run(["ssh", *options, f"{user}@{host['ipv4'] or host['ipv6']}", command],
                          capture_output=True, text=True, timeout=60)


def judge_queue(data: dict, relay: dict, report: Report) -> None:
    """Mail older than QUEUE_HOURS on the relay: the mail host does not take it."""
    spool = {"postfix": "/var/spool/postfix/deferred -type f",  # a file a message
             "exim4": "/var/spool/exim4/input -name '*-H'"}[data["mta"]]  # a header file a message
    r = over_ssh(data, relay, f"sudo -n find {spool} -mmin +{QUEUE_HOURS * 60} | wc -l")
    where = f"{relay['fqdn']} queue"
    if r.returncode != 0 or not r.stdout.strip().isdigit():
        report.warn(where, f"cannot be read over SSH ({r.stderr.strip()[-120:]})")
    elif int(r.stdout) > 0:
        report.fail(where, f"{int(r.stdout)} messages waiting more than {QUEUE_HOURS} hours for the mail host")
    else:
        report.ok(where, f"nothing waiting more than {QUEUE_HOURS} hours")


def judge_reports(data: dict, host: dict, report: Report) -> None:
    """What others reported (tasks/reports.py's summary on the mail host): sources that fail
    DMARC, TLS sessions to our MX hosts that failed. Anyone may mail a report, so these warn;
    they never fail the check."""
    r = over_ssh(data, host, f"sudo -n cat {reports.SUMMARY}")
    where = f"{host['fqdn']} reports"
    try:
        summary = json.loads(r.stdout) if r.returncode == 0 else None
    except ValueError:
        summary = None
    if not isinstance(summary, dict):
        report.warn(where, f"no summary of DMARC and TLS reports yet ({reports.SUMMARY})")
        return
    span = f"delivered {summary.get('since', '?')[:10]} to {summary.get('until', '?')[:10]}"
    quiet = True
    for domain, d in sorted(summary.get("dmarc", {}).items()):
        for source, s in sorted(d.get("sources", {}).items()):
            if s.get("dmarc", {}).get("fail"):
                quiet = False
                report.warn(where, f"DMARC: {s['dmarc']['fail']} of {s.get('messages', '?')} messages from {source} "
                                   f"as {domain} failed ({', '.join(s.get('reporters', []))}; {span})")
    for domain, d in sorted(summary.get("tlsrpt", {}).items()):
        if d.get("failed"):
            quiet = False
            reasons = ", ".join(f"{k} {v}" for k, v in sorted(d.get("failures", {}).get("by_result", {}).items()))
            report.warn(where, f"TLS-RPT: {d['failed']} of {d['failed'] + d.get('successful', 0)} sessions to "
                               f"{domain}'s MX failed ({reasons}; {span})")
    if quiet:
        report.ok(where, f"{summary.get('reports', {}).get('dmarc', 0)} DMARC and "
                         f"{summary.get('reports', {}).get('tlsrpt', 0)} TLS reports {span}: no failure")


def root_of(data: dict) -> tuple[list[str], list[str]]:
    """The root's anchors and servers: the inventory's own root (the lab's), else the
    internet's from dns-root-data."""
    if data["resolver_trust_anchors"]:
        hints = [line.split()[-1] for line in data["resolver_root_hints"] if line.split()[-2] in ("A", "AAAA")]
        return data["resolver_trust_anchors"], hints
    if not ROOT_ANCHORS.exists() or not ROOT_HINTS.exists():
        sys.exit(f"check: {ROOT_ANCHORS} not found: install dns-root-data (the root's keys and servers)")
    anchors = [line for line in ROOT_ANCHORS.read_text().splitlines() if " DS " in line]
    hints = [line.split()[-1] for line in ROOT_HINTS.read_text().splitlines()
             if not line.startswith(";") and line.split()[-2:-1] in (["A"], ["AAAA"])]
    return anchors, hints


def main() -> int:
    p = argparse.ArgumentParser(description="Judge the mail system from outside; exit 1 on a problem.")
    p.add_argument("inventory")
    p.add_argument("--ca", help="PEM roots to trust for the MTA-STS policy (default: this machine's)")
    p.add_argument("--quiet", action="store_true", help="only problems")
    a = p.parse_args()
    try:
        hosts = inventory_hosts(runpy.run_path(a.inventory))
    except Exception as e:  # the inventory's own checks name the host and the field
        print(f"check: {a.inventory}: {e}", file=sys.stderr)
        return 2
    data = next((d for d in hosts.values() if mail.role(d) == "mail"), None)
    if data is None:
        print("check: no host in the mail group", file=sys.stderr)
        return 2
    anchors, root_servers = root_of(data)
    report = Report()
    check(data, anchors, root_servers, a.ca, report)
    for line in report.lines:
        if not a.quiet or not line.startswith("ok"):
            print(line)
    print(f"{'FAIL' if report.failed else 'ok'}: {report.failed} problems")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
