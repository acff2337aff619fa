"""Authoritative DNS and the chain of trust, observed as resolvers and strangers see them:
every mail record validates from the root down (the lab's root, or the real one), every
name server answers with authority and the same data, a broken signature is refused,
changes reach the secondary at once, transfers and recursion are refused to strangers."""

import json
import re
import subprocess
import time

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from tasks import zone, zone_nsd
from tests.helpers import HERE

pytestmark = [pytest.mark.zone_server]


@pytest.fixture(scope="session")
def zone_data(site) -> dict:
    assert zone.role(site) == "master", "the server under test must be the DNS master"
    return site


@pytest.fixture(scope="session")
def validate(on_server, world):
    """delv as a validating resolver of the server's world sees a name: from the inventory's
    own root (the lab's, its anchor in the data) through the server's own resolver, which
    alone recurses for it; else from the real root (delv's built-in anchor) through this
    machine's resolver. Either way the chain runs from the root through each parent's DS."""
    if not world.anchors:
        return lambda name, rtype: subprocess.run(["delv", name, rtype], capture_output=True, text=True, timeout=30)
    anchors = [a.split() for a in world.anchors]
    text = "trust-anchors {\n" + "".join(
        f'  "{name}" static-ds {tag} {alg} {digest_type} "{digest}";\n' for name, _, _, tag, alg, digest_type, digest
        in anchors) + "};\n"
    on_server.run("printf '%%s' %s > /tmp/inhouse-anchor.conf", text)
    return lambda name, rtype: on_server.run("delv -a /tmp/inhouse-anchor.conf @127.0.0.1 %s %s", name, rtype)


def names_to_check(data: dict, z: str, selector: str) -> list[tuple[str, str]]:
    primary, public = data["domain"], zone.public_servers(data)  # a hidden home is neither MX nor NS
    out = [(z, "MX"), (z, "TXT"), (f"_dmarc.{z}", "TXT"), (f"_smtp._tls.{z}", "TXT"), (f"_mta-sts.{z}", "TXT"),
           (z, "CAA"), (f"_submission._tcp.{z}", "SRV"), (f"autoconfig.{z}", "CNAME"), (z, "SOA"), (z, "NS"),
           (f"{selector}._domainkey.{z}", "TXT")]
    if z == primary:
        out += [(public[0]["fqdn"], "A"), (f"ns1.{primary}", "A")]
        out += [(public[0]["fqdn"], "AAAA")] if public[0]["ipv6"] else []
        out += [(f"ns2.{primary}", "AAAA") for h in public[1:2] if h["ipv6"]]
        # DANE: the TLSA of every MX host (the mail host unless hidden, the relays).
        out += [(f"_25._tcp.{h['fqdn']}", "TLSA") for h in public]
    return out


def test_every_mail_record_is_fully_validated_from_the_root(on_server, zone_data, validate):
    selector = on_server.check_output("head -n 1 /etc/inhouse/dkim/current")  # the host made it
    for z in zone.zones(zone_data):
        for name, rtype in names_to_check(zone_data, z, selector):
            out = validate(name, rtype)
            assert "; fully validated" in out.stdout, (name, rtype, out.stdout, out.stderr)
            # The server's own resolver validates too (the MTA's DANE depends on it).
            answer = on_server.check_output("dig +noall +comments %s %s", name, rtype)
            assert re.search(r"flags: [a-z ]*\bad\b", answer), (name, rtype, answer)


@pytest.mark.lab("broken.test is a zone of the lab's root")
def test_broken_signature_gives_servfail(on_server):
    assert "status: SERVFAIL" in on_server.check_output("dig www.broken.test A")
    # The data is there: only its signature is wrong.
    assert "192.0.2.66" in on_server.check_output("dig +cd +short www.broken.test A")


def soa_serial(host, address: str, z: str) -> int:
    r = host.run("dig", "+norec", "+short", f"@{address}", z, "SOA")
    return int(r.stdout.split()[2]) if r.returncode == 0 and r.stdout.split() else 0


@pytest.mark.lab("deploys changed zone data")
def test_changed_data_raises_the_serial_and_reaches_the_secondary(deploy, server, observer, zone_data):
    z, secondary = zone_data["domain"], zone.servers(zone_data, "relay")[0]["ipv4"]
    before = soa_serial(observer, server.ipv4, z)
    deadline = time.time() + 30  # a re-signing of a moment ago may still be on its way
    while time.time() < deadline and soa_serial(observer, secondary, z) != before:
        time.sleep(1)
        before = soa_serial(observer, server.ipv4, z)
    assert before and soa_serial(observer, secondary, z) == before
    probe = {z: [{"name": "probe", "type": "TXT", "data": f'"deployed at {time.time()}"'}]}
    result, changed, failed = deploy("--limit", server.name, "--data", f"zone_records={json.dumps(probe)}")
    assert result.returncode == 0 and changed and not failed, result.stderr[-3000:]
    after = soa_serial(observer, server.ipv4, z)
    assert after > before
    deadline = time.time() + 10  # NOTIFY: the secondary asks at once
    while time.time() < deadline and soa_serial(observer, secondary, z) != after:
        time.sleep(0.2)
    assert soa_serial(observer, secondary, z) == after, "the secondary did not follow"
    assert "deployed at" in observer.run("dig", "+short", f"@{secondary}", f"probe.{z}", "TXT").stdout
    # The same data again changes nothing, and the serial stays.
    result, changed, _ = deploy("--limit", server.name, "--data", f"zone_records={json.dumps(probe)}")
    assert result.returncode == 0 and changed == 0 and soa_serial(observer, server.ipv4, z) == after
    # Back to the inventory's data: the probe goes, the serial rises again.
    result, _, _ = deploy("--limit", server.name)
    assert result.returncode == 0 and soa_serial(observer, server.ipv4, z) > after


@pytest.mark.lab("signs the zone again on the server")
def test_each_signing_serves_a_serial_of_its_own(on_server, observer, zone_data):
    """A re-signing (NSD's daily signer, bind's `rndc sign`) is a new version of the zone:
    with no new serial the secondary keeps the old signatures until they expire (RFC 1996).
    The signer runs here with the host's date a day ahead of UTC (a time zone east of it):
    a serial from the local date once gave two versions of a zone the same serial."""
    z, secondary = zone_data["domain"], zone.servers(zone_data, "relay")[0]["ipv4"]
    sign = (f"TZ=Etc/GMT-14 {zone_nsd.SIGNER} {z}" if zone_data["zone_server"] == "nsd"
            else f"rndc sign {z}")
    for _ in range(2):
        before = soa_serial(observer, zone_data["ipv4"], z)
        on_server.check_output(sign)
        deadline = time.time() + 15  # bind signs in the background; NOTIFY, then the transfer
        while time.time() < deadline and not (soa_serial(observer, zone_data["ipv4"], z) > before
                                              and soa_serial(observer, secondary, z) > before):
            time.sleep(0.5)
        after = soa_serial(observer, zone_data["ipv4"], z)
        assert after > before, f"signed again, still serial {after}"
        assert soa_serial(observer, secondary, z) == after, "the secondary did not follow"


def name_servers(data: dict) -> list[dict]:
    """Every name server of the zones: the master (mail group) and the secondaries (relay)."""
    return zone.servers(data, "mail") + zone.servers(data, "relay")


def ask(address: str, name: str, rtype: str) -> dns.message.Message:
    """A resolver's question to a name server: no recursion wanted, DNSSEC records too."""
    query = dns.message.make_query(name, rtype, want_dnssec=True)
    query.flags &= ~dns.flags.RD
    return dns.query.udp_with_fallback(query, address, timeout=5)[0]


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_every_name_server_answers_with_authority_and_the_same_data(family, on_server, zone_data):
    """Each name server answers for the zones itself (aa), and the secondaries serve what the
    master does: the same SOA serial, records and signatures."""
    selector = on_server.check_output("head -n 1 /etc/inhouse/dkim/current")
    servers = {ns["fqdn"]: HERE.route_to(ns[family], f"{ns['fqdn']}'s {family} address")
               for ns in name_servers(zone_data)}
    assert len(servers) >= 2, "a master and a secondary"
    for z in zone.zones(zone_data):
        # A zone that changed a moment ago (bind re-signs and raises the serial) reaches the
        # secondaries by NOTIFY and a transfer within seconds (RFC 1996): until then, ask again.
        deadline = time.monotonic() + 30
        while True:
            answers = {(name, rtype): authoritative(servers, name, rtype)
                       for name, rtype in names_to_check(zone_data, z, selector)}
            differ = {k: a for k, a in answers.items() if len({tuple(v) for v in a.values()}) > 1}
            if not differ or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert not differ, differ


def authoritative(servers: dict[str, str], name: str, rtype: str) -> dict[str, list[str]]:
    """Each server's answer for name/rtype, record by record (servers may order an RRset
    differently); each must answer NOERROR with authority."""
    answers = {}
    for ns, address in servers.items():
        reply = ask(address, name, rtype)
        assert reply.rcode() == dns.rcode.NOERROR and reply.flags & dns.flags.AA, (ns, name, rtype, reply)
        answers[ns] = sorted(f"{rrset.name} {rrset.ttl} {rd}" for rrset in reply.answer for rd in rrset)
    assert answers[next(iter(servers))], (name, rtype, "no answer")
    return answers


def test_zone_transfer_needs_the_key(server, observer, attacker, zone_data, tmp_path):
    z = zone_data["domain"]
    for ns in name_servers(zone_data):
        # Strangers, and the secondary's own address asking the master: the address is not enough.
        for stranger in {attacker.name: attacker, observer.name: observer}.values():
            if stranger.ipv4 == ns["ipv4"]:
                continue
            out = stranger.run("dig", f"@{ns['ipv4']}", z, "AXFR").stdout
            assert "Transfer failed" in out and "SOA" not in out.split("Transfer failed")[0], (ns["fqdn"], out)
    key = tmp_path / "transfer.key"
    key.write_text(f'key "{zone.TSIG_NAME}" {{ algorithm hmac-sha256; secret "{zone.tsig_secret(zone_data)}"; }};\n')
    signed = observer.run("dig", "-k", str(key), f"@{server.ipv4}", z, "AXFR").stdout
    assert signed.count("SOA") >= 2 and "RRSIG" in signed


def test_signed_zones_pass_ldns_verify_zone(server, observer, zone_data, tmp_path):
    key = tmp_path / "transfer.key"
    key.write_text(f'key "{zone.TSIG_NAME}" {{ algorithm hmac-sha256; secret "{zone.tsig_secret(zone_data)}"; }};\n')
    for z in zone.zones(zone_data):
        text = observer.run("dig", "+noall", "+answer", "-k", str(key), f"@{server.ipv4}", z, "AXFR").stdout
        path = tmp_path / f"{z}.zone"
        path.write_text(text)
        # Signatures valid for a week at least, NSEC3 chain complete.
        r = subprocess.run(["ldns-verify-zone", "-e", "P7D", str(path)], capture_output=True, text=True)
        assert r.returncode == 0 and "Zone is verified and complete" in r.stdout + r.stderr, r.stdout + r.stderr


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_recursion_is_refused_to_strangers(family, attacker, zone_data):
    for ns in name_servers(zone_data):
        address = attacker.route_to(ns[family], f"{ns['fqdn']}'s {family} address")
        # A name outside our zones, so only recursion could answer it.
        out = attacker.run("dig", f"@{address}", "www.example.com", "A").stdout
        assert "status: REFUSED" in out and not re.search(r"flags: [a-z ]*\bra\b", out), (ns["fqdn"], out)


def query(address: str, name: str, rtype: str) -> list[str]:
    answer = dns.query.udp(dns.message.make_query(name, rtype), address, timeout=5)
    return [b"".join(r.strings).decode() for rrset in answer.answer for r in rrset
            if rrset.rdtype == dns.rdatatype.TXT]


def test_spf_and_dmarc_say_what_the_data_says(server, zone_data):
    primary = zone_data["domain"]
    for z in zone.zones(zone_data):
        spf = [t for t in query(server.ipv4, z, "TXT") if t.startswith("v=spf1")]
        assert spf == [zone_data["zone_spf"]]
        (dmarc,) = query(server.ipv4, f"_dmarc.{z}", "TXT")
        tags = dict(tag.strip().split("=", 1) for tag in dmarc.split(";") if tag.strip())
        assert tags["v"] == "DMARC1" and tags["p"] == zone_data["zone_dmarc_policy"]
        assert tags["rua"] == f"mailto:{zone_data['zone_dmarc_reports']}@{primary}"
        if z != primary:  # the primary agrees to receive the other domains' reports
            assert query(server.ipv4, f"{z}._report._dmarc.{primary}", "TXT") == ["v=DMARC1"]


@pytest.mark.lab("deploys a LAN address")
def test_resolver_serves_its_lan_and_refuses_others(deploy, on_server, server, observer, attacker):
    # The home network of "Bringing E-Mail Server In-House": a LAN address of the server, which the observer is on.
    lan = server.ipv4.rsplit(".", 1)[0] + ".111"
    on_server.check_output("ip addr add %s/24 dev eth0", lan)
    lan_data = [f'resolver_addresses=["{lan}"]', f'resolver_networks=["{observer.ipv4}/32"]']
    try:
        result, _, failed = deploy("--limit", server.name, *[a for d in lan_data for a in ("--data", d)])
        assert result.returncode == 0 and not failed, result.stderr[-3000:]
        answer = observer.run("dig", f"@{lan}", "mx.inhouse.test", "A").stdout
        assert "status: NOERROR" in answer and re.search(r"flags: [a-z ]*\bad\b", answer), answer
        # Port 53 is open here (a name server), so it is unbound that refuses the stranger.
        refused = attacker.run("dig", "+tries=1", "+time=2", f"@{lan}", "mx.inhouse.test", "A").stdout
        assert "status: REFUSED" in refused, refused
    finally:
        result, _, _ = deploy("--limit", server.name)
        on_server.run("ip addr del %s/24 dev eth0", lan)
    assert result.returncode == 0
