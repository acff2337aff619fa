"""Fast tier (no lab): zones from data. Records say what the data says, the serial rises
only with the content and never goes backwards, and bad records are named."""

import re

import pytest

from tasks import zone
from tasks.data import DEFAULTS, problems, read_group_data, with_roles
from tasks.registry import by_name

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDk5GBqO9XcVtHc1M7Zm8dCk6h0pY8XzS3jDhHk9P1dx me@laptop"
GROUPS = {
    "mail": [("mx.example.org", {"ipv4": "203.0.113.10", "ipv6": "2001:db8::10"})],
    "relay": [("vps.example.org", {"ipv4": "198.51.100.20", "ipv6": None})],
}


def data(host="mx.example.org", **changes) -> dict:
    base = DEFAULTS | read_group_data("all") | {
        "domain": "example.org", "extra_domains": ["example.net"], "admin_user": "alice",
        "admin_ssh_keys": [KEY], "ipv4": "203.0.113.10", "ipv6": "2001:db8::10", "secrets_dir": "/nonexistent",
        "mail_enabled": False,  # zones only: tests/test_mail_data.py has the mail data
    }
    return with_roles(host, base | changes, GROUPS)


def test_master_and_secondary_roles_come_from_the_groups():
    assert zone.role(data()) == "master"
    assert zone.role(data("vps.example.org")) == "secondary"
    assert zone.role(data("other.example.org")) == "none"


def test_records_of_the_primary_and_of_another_domain():
    primary = {(n, t, d) for n, t, d in zone.records(data(), "example.org")}
    other = {(n, t, d) for n, t, d in zone.records(data(), "example.net")}
    assert {("@", "NS", "ns1.example.org."), ("@", "NS", "ns2.example.org.")} <= primary & other
    assert {("ns1", "A", "203.0.113.10"), ("ns1", "AAAA", "2001:db8::10"), ("ns2", "A", "198.51.100.20"),
            ("mx", "A", "203.0.113.10"), ("vps", "A", "198.51.100.20")} <= primary
    assert not [r for r in other if r[1] in ("A", "AAAA")], "glue only in the primary zone"
    assert {("@", "MX", "10 mx.example.org."), ("@", "MX", "20 vps.example.org."),
            ("@", "TXT", '"v=spf1 mx -all"')} <= other
    assert ("example.net._report._dmarc", "TXT", '"v=DMARC1"') in primary
    (dmarc,) = [d for n, t, d in other if n == "_dmarc"]
    assert "p=quarantine" in dmarc and "rua=mailto:dmarc-reports@example.org" in dmarc


def test_a_hidden_home_is_named_by_no_record_and_transfers_inside_the_link():
    hidden = {"link_enabled": True, "link_home_hidden": True}
    keys = {"tlsa": {"mx.example.org": ["3 1 1 " + "a" * 64], "vps.example.org": ["3 1 1 " + "b" * 64]}}
    primary = set(zone.records(data(**hidden, zone_keys=keys), "example.org"))
    assert {r for r in primary if r[1] in ("NS", "MX")} == {("@", "NS", "ns1.example.org."),
                                                           ("@", "MX", "10 vps.example.org.")}
    assert not [r for r in primary if "203.0.113.10" in r[2] or "2001:db8::10" in r[2] or r[0].startswith("mx")]
    assert [r[0] for r in primary if r[1] == "TLSA"] == ["_25._tcp.vps"]
    assert ("_submission._tcp", "SRV", "0 0 0 .") in primary and ("_imap._tcp", "SRV", "0 0 0 .") in primary
    assert ("_submissions._tcp", "SRV", "0 1 465 vps.example.org.") in primary
    assert not [r for r in primary if "mta-sts" in r[0]]  # no mail served: no policy
    # The relay serves the MTA-STS policy, which names it alone.
    served = data(mail_enabled=True, **hidden)
    assert not zone.mta_sts_served(served) and zone.mta_sts_served(data("vps.example.org", mail_enabled=True, **hidden))
    assert ("mta-sts", "A", "198.51.100.20") in zone.records(served, "example.org")
    assert [m for m in zone.mta_sts_policy(served).split("\r\n") if m.startswith("mx:")] == ["mx: vps.example.org"]
    master, secondary = zone.context(data(**hidden)), zone.context(data("vps.example.org", **hidden))
    assert [m["xfr"] for m in master["masters"]] == ["10.254.254.1"] and master["listen"] == ["10.254.254.1"]
    assert [s["xfr"] for s in secondary["secondaries"]] == ["10.254.254.2"] and secondary["listen"] == ["10.254.254.2"]
    assert zone.context(data())["listen"] == [] and zone.context(data())["masters"][0]["xfr"] == "203.0.113.10"


def test_long_txt_is_split_into_strings_of_255():
    text = "v=DKIM1; k=rsa; p=" + "A" * 400
    parts = re.findall(r'"([^"]*)"', zone.quote(text))
    assert [len(p) for p in parts] == [255, len(text) - 255] and "".join(parts) == text


def test_serial_rises_only_with_the_content_and_never_goes_back():
    first = zone.zone_file(data(), "example.org", None)
    serial, content = zone.parse_head(first)
    assert serial >= 2026010100 and content
    head = "\n".join(first.splitlines()[:3])
    assert zone.zone_file(data(), "example.org", head) == first  # same data: same file
    changed = zone.zone_file(data(zone_ttl=600), "example.org", head)
    assert zone.parse_head(changed)[0] == serial + 1
    future = head.replace(f"serial {serial}", "serial 2099010100")
    assert zone.parse_head(zone.zone_file(data(zone_ttl=600), "example.org", future))[0] == 2099010101


@pytest.mark.parametrize(("records", "says"), [
    ([{"name": "@", "type": "CNAME", "data": "example.com."}], "zone_records['example.org'][0]: CNAME at the apex"),
    ([{"name": "www", "type": "A", "data": "192.0.2.300"}], "zone_records['example.org'][0]: www A '192.0.2.300'"),
    ([{"name": "www", "type": "AAA", "data": "2001:db8::1"}], "zone_records['example.org'][0]: www AAA"),
    ([{"name": "www", "type": "A", "data": "192.0.2.1"}, {"name": "www", "type": "CNAME", "data": "x.example."}],
     "zone_records['example.org'][1]: www has a CNAME and other records"),
    ([{"name": "autoconfig", "type": "A", "data": "192.0.2.1"}],
     "zone_records['example.org'][0]: autoconfig has a CNAME and other records"),
    ([{"name": "www", "type": "A", "data": "192.0.2.1"}, {"name": "www", "type": "A", "data": "192.0.2.1"}],
     "zone_records['example.org'][1]: www A 192.0.2.1 is there twice"),
    # One line each: zone files end a record at the line's end (RFC 1035 5.1).
    ([{"name": "www", "type": "A", "data": "192.0.2.1\nmail A 192.0.2.66"}],
     "zone_records['example.org'][0]: data '192.0.2.1\\nmail A 192.0.2.66' must be one line"),
    ([{"name": "www\r@", "type": "A", "data": "192.0.2.1"}], "name 'www\\r@' is not a name relative to the zone"),
    ([{"name": "www.example.com.", "type": "A", "data": "192.0.2.1"}], "is not a name relative to the zone"),
    ([{"name": "www", "type": "A A", "data": "192.0.2.1"}], "type 'A A' is not a record type"),
    ([{"name": "@", "type": "dnskey", "data": "257 3 13 AA=="}], "DNSKEY records are made by the name server"),
])
def test_bad_records_are_named(records, says):
    found = problems("mx.example.org", data(zone_records={"example.org": records}))
    assert len(found) == 1 and says in found[0], found


def test_zone_records_must_have_their_shape():
    for bad in ({"example.com": []}, {"example.org": [{"name": "www", "type": "A"}]}, ["www A 192.0.2.1"]):
        assert problems("mx", data(zone_records=bad)) == [
            'mx: zone_records: must map each of your domains to a list of {"name", "type", "data"}']


@pytest.mark.parametrize(("changes", "says"), [
    ({"zone_ttl": "3600\n@ A 192.0.2.66"}, "zone_ttl: '3600\\n@ A 192.0.2.66' is not a number of seconds"),
    ({"zone_ttl": True}, "zone_ttl: True is not a number of seconds"),
    ({"zone_ttl": 2**31}, "zone_ttl: 2147483648 is not a number of seconds"),
    ({"zone_server": "djbdns"}, "zone_server: 'djbdns' is not one of bind, nsd"),
    ({"zone_spf": 'v=spf1 mx" "-all'}, "zone_spf: 'v=spf1 mx\" \"-all' is not an SPF record"),
    ({"zone_spf": "v=spf1 mx\n-all"}, "zone_spf: "),
    ({"zone_caa_issuers": "letsencrypt.org"}, "zone_caa_issuers: 'letsencrypt.org' is not a list"),
    ({"zone_tls_reports": "tls@reports"}, "zone_tls_reports: 'tls@reports' is not a local part"),
    ({"domain": "a" * 64 + ".org"}, "domain: 'aaaa"),
    ({"domain": "example..org"}, "domain: 'example..org' is not a valid lower-case domain name"),
    ({"ipv4": None}, "ipv4: missing; a name server needs its public address"),
])
def test_bad_zone_data_is_named_before_anything_else(changes, says):
    found = problems("mx.example.org", data(**changes))
    assert any(says in p for p in found), found


def test_a_broken_transfer_key_is_named_without_its_content(tmp_path):
    (tmp_path / zone.TSIG_FILE).write_text("c2hvcnQ=\n")  # 5 bytes
    found = problems("mx.example.org", data(secrets_dir=str(tmp_path)))
    assert len(found) == 1 and "tsig-transfer.key is not a base64 key of 32 bytes or more (5 bytes)" in found[0]
    assert "c2hvcnQ" not in found[0]


def test_bad_zone_settings_are_named():
    assert "zone_dmarc_policy: 'strict' is not one of" in problems("mx", data(zone_dmarc_policy="strict"))[0]
    assert "extra_domains[1]: 'example.net' is listed twice" in problems(
        "mx", data(extra_domains=["example.net", "example.net"]))[0]
    assert "extra_domains[0]: 'exa mple.net'" in problems("mx", data(extra_domains=["exa mple.net"]))[0]


@pytest.mark.parametrize("server", ["bind", "nsd"])
def test_master_notifies_and_serves_only_the_keyed_secondary(server, tmp_path):
    system = {"debian": 13, "container": "none", "heads": {}}
    master = {f.path: f.content for f in by_name(f"zone_{server}").module.files(
        data(zone_server=server, secrets_dir=str(tmp_path)), system)}
    secondary = {f.path: f.content for f in by_name(f"zone_{server}").module.files(
        data("vps.example.org", zone_server=server, secrets_dir=str(tmp_path), ipv4="198.51.100.20"), system)}
    conf = "\n".join(master.values())
    expected = {
        "bind": ["also-notify { 198.51.100.20 key inhouse-transfer; }", "allow-transfer { key inhouse-transfer; }"],
        "nsd": ["notify: 198.51.100.20 inhouse-transfer", "provide-xfr: 198.51.100.20 inhouse-transfer"],
    }[server]
    assert all(line in conf for line in expected), conf
    assert zone.tsig_secret(data(secrets_dir=str(tmp_path))) in conf
    assert "db.example.net" in " ".join(master) and not [p for p in secondary if "/db." in p]
    assert "203.0.113.10" in "\n".join(secondary.values())  # its primary
    assert (tmp_path / "tsig-transfer.key").stat().st_mode & 0o777 == 0o600


def test_mta_sts_policy_names_every_mx_and_its_id_changes_only_with_it():
    d = data(mail_enabled=True)
    policy = zone.mta_sts_policy(d)
    assert policy == ("version: STSv1\r\nmode: enforce\r\nmx: mx.example.org\r\nmx: vps.example.org\r\n"
                      "max_age: 604800\r\n")
    txt = ("_mta-sts", "TXT", f'"v=STSv1; id={zone.mta_sts_policy_id(policy)}"')
    for z in zone.zones(d):  # the policy host of every domain is the mail host
        assert {("mta-sts", "A", "203.0.113.10"), ("mta-sts", "AAAA", "2001:db8::10"), txt} <= set(zone.records(d, z))
    assert re.fullmatch(r"[0-9a-f]{32}", zone.mta_sts_policy_id(policy))
    same = [data(mail_enabled=True, zone_ttl=600), data(mail_enabled=True, zone_dmarc_policy="reject")]
    assert all(zone.mta_sts_policy_id(zone.mta_sts_policy(o)) == zone.mta_sts_policy_id(policy) for o in same)
    other = [data(mail_enabled=True, zone_mta_sts_mode="none"), data(mail_enabled=True, mta_sts_max_age=86400)]
    assert len({zone.mta_sts_policy_id(zone.mta_sts_policy(o)) for o in [d, *other]}) == 3
    # Nothing serves a policy without the mail host: no record announces one (RFC 8461 section 3).
    assert not [r for r in zone.records(data(), "example.org") if "mta-sts" in r[0]]
    assert "mx.example.org: mta_sts_max_age: 0 is not" in " ".join(problems("mx.example.org", data(mta_sts_max_age=0)))
