"""The production check's judgements that need no network: SPF as RFC 7208 evaluates the
mechanisms it follows, the tag lists of DMARC, TLS-RPT and MTA-STS records, TXT strings as
name servers present them, and a zone's keys against the DS at its parent."""

import json
import subprocess

import dns.dnssec
import dns.name
import dns.rdata
import dns.rrset
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tasks import check
from tasks.check import Bogus, match, spf_allows, tags, text_of

MX = ["203.0.113.10", "2001:db8::10", "198.51.100.20"]


@pytest.mark.parametrize(("record", "address", "verdict"), [
    ("v=spf1 mx -all", "203.0.113.10", "pass"),
    ("v=spf1 mx -all", "2001:db8::10", "pass"),
    ("v=spf1 mx -all", "192.0.2.1", "fail"),
    ("v=spf1 ip4:198.51.100.0/24 -all", "198.51.100.20", "pass"),
    ("v=spf1 ip6:2001:db8::/32 -all", "203.0.113.10", "fail"),
    ("v=spf1 a ~all", "203.0.113.10", "pass"),
    ("v=spf1 a ~all", "198.51.100.20", "fail"),  # softfail authorises nothing
    ("v=spf1 -mx +all", "203.0.113.10", "fail"),
    ("v=spf1 include:_spf.example.net -all", "203.0.113.10", None),  # not followed: said so
    ("v=spf1", "203.0.113.10", "fail"),
])
def test_spf_is_judged_as_rfc_7208_evaluates_it(record, address, verdict):
    assert spf_allows(record, address, MX, MX[:2]) == verdict


def test_tags_and_txt_strings():
    assert tags("v=DMARC1; p=reject; rua=mailto:dmarc@example.org") == {
        "v": "DMARC1", "p": "reject", "rua": "mailto:dmarc@example.org"}
    assert tags("v=STSv1;id=abc;") == {"v": "STSv1", "id": "abc"}
    first = {("example.org", "TXT"): ['"v=spf1 mx" " -all"', '"google-site-verification=x"']}
    assert text_of(first, "example.org", "TXT") == ["v=spf1 mx -all", "google-site-verification=x"]
    assert text_of(first, "example.org", "MX") == []


def test_a_zone_key_must_be_the_one_the_ds_names():
    name = dns.name.from_text("example.org")

    def dnskey() -> dns.rdata.Rdata:
        public = ec.generate_private_key(ec.SECP256R1()).public_key()
        return dns.dnssec.make_dnskey(public, dns.dnssec.Algorithm.ECDSAP256SHA256, flags=257)

    served, other = dnskey(), dnskey()
    keyset = dns.rrset.from_rdata(name, 3600, served)
    match("example.org", keyset, [dns.dnssec.make_ds(name, served, "SHA256")])
    with pytest.raises(Bogus, match="no DNSKEY of example.org matches a DS"):
        match("example.org", keyset, [dns.dnssec.make_ds(name, other, "SHA256")])


def test_reports_of_others_warn_and_never_fail(monkeypatch):
    """The mail host's summary of DMARC and TLS reports: a failing source or failed TLS
    sessions are shown as warnings (anyone can mail a report); none, one ok line."""
    summary = {"since": "2026-11-25T00:00:00+01:00", "until": "2026-12-02T00:00:00+01:00",
               "reports": {"dmarc": 2, "tlsrpt": 1},
               "dmarc": {"example.org": {"sources": {
                   "192.0.2.7": {"messages": 5, "dmarc": {"pass": 0, "fail": 5}, "reporters": ["google.com"]},
                   "203.0.113.10": {"messages": 9, "dmarc": {"pass": 9, "fail": 0}, "reporters": ["google.com"]}}}},
               "tlsrpt": {"example.org": {"successful": 7, "failed": 3,
                                          "failures": {"by_result": {"validation-failure": 3}}}}}
    host = {"fqdn": "mx.example.org", "ipv4": "203.0.113.10", "ipv6": None}
    data = {"admin_user": "ops"}

    def answer(stdout, rc=0):
        monkeypatch.setattr(check, "over_ssh", lambda *a: subprocess.CompletedProcess([], rc, stdout, ""))
        report = check.Report()
        check.judge_reports(data, host, report)
        return report

    report = answer(json.dumps(summary))
    assert report.failed == 0 and report.lines == [
        "WARN  mx.example.org reports: DMARC: 5 of 5 messages from 192.0.2.7 as example.org failed "
        "(google.com; delivered 2026-11-25 to 2026-12-02)",
        "WARN  mx.example.org reports: TLS-RPT: 3 of 10 sessions to example.org's MX failed "
        "(validation-failure 3; delivered 2026-11-25 to 2026-12-02)"]
    summary["dmarc"]["example.org"]["sources"].pop("192.0.2.7")
    summary["tlsrpt"]["example.org"]["failed"] = 0
    assert answer(json.dumps(summary)).lines == [
        "ok    mx.example.org reports: 2 DMARC and 1 TLS reports delivered 2026-11-25 to 2026-12-02: no failure"]
    assert answer("", rc=1).lines[0].startswith("WARN  mx.example.org reports: no summary")
    assert answer("[not json").failed == 0
