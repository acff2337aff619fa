"""Fast tier (no lab): inhouse-reports (files/reports/inhouse_reports.py) reads DMARC
aggregate reports (RFC 7489 appendix C) and TLS reports (RFC 8460) as reporters send them,
sums them up, and skips what is malformed or hostile with a reason, never crashing; the
component renders its config, unit and timer from data."""

import datetime
import email.policy
import gzip
import importlib.util
import io
import json
import os
import pwd
import re
import subprocess
import sys
import time
import zipfile
from email.message import EmailMessage
from pathlib import Path

import pytest

from tasks import mail, reports
from tasks.data import DEFAULTS, read_group_data

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "files/reports/inhouse_reports.py"
_spec = importlib.util.spec_from_file_location("inhouse_reports", SCRIPT)
ir = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ir)

YESTERDAY = int(time.time()) - 86400
DAY = (1764460800, 1764547199)  # 2025-11-30, as reporters give a whole UTC day


def dmarc_xml(domain: str = "example.org", report_id: str = "13044917469151229617", org: str = "google.com",
              namespace: str = "") -> bytes:
    """An aggregate report as Google sends them: two sources, one of ours, one forging."""
    return f"""<?xml version="1.0" encoding="UTF-8" ?>
<feedback{namespace}>
  <version>1.0</version>
  <report_metadata>
    <org_name>{org}</org_name>
    <email>noreply-dmarc-support@google.com</email>
    <extra_contact_info>https://support.google.com/a/answer/2466580</extra_contact_info>
    <report_id>{report_id}</report_id>
    <date_range><begin>{DAY[0]}</begin><end>{DAY[1]}</end></date_range>
  </report_metadata>
  <policy_published>
    <domain>{domain}</domain><adkim>r</adkim><aspf>r</aspf><p>quarantine</p><sp>quarantine</sp><pct>100</pct>
  </policy_published>
  <record>
    <row>
      <source_ip>203.0.113.10</source_ip>
      <count>12</count>
      <policy_evaluated><disposition>none</disposition><dkim>pass</dkim><spf>pass</spf></policy_evaluated>
    </row>
    <identifiers><header_from>{domain}</header_from></identifiers>
    <auth_results>
      <dkim><domain>{domain}</domain><result>pass</result><selector>202611</selector></dkim>
      <spf><domain>{domain}</domain><result>pass</result></spf>
    </auth_results>
  </record>
  <record>
    <row>
      <source_ip>2001:DB8::66</source_ip>
      <count>3</count>
      <policy_evaluated><disposition>quarantine</disposition><dkim>fail</dkim><spf>fail</spf></policy_evaluated>
    </row>
    <identifiers><header_from>{domain}</header_from></identifiers>
    <auth_results><spf><domain>forger.example</domain><result>softfail</result></spf></auth_results>
  </record>
  <record>
    <row>
      <source_ip>203.0.113.10</source_ip>
      <count>2</count>
      <policy_evaluated><disposition>none</disposition><dkim>pass</dkim><spf>fail</spf></policy_evaluated>
    </row>
    <identifiers><header_from>{domain}</header_from></identifiers>
    <auth_results><dkim><domain>{domain}</domain><result>pass</result></dkim></auth_results>
  </record>
</feedback>
""".encode()


def tlsrpt_json(domain: str = "example.org", report_id: str = "2025-11-30T00:00:00Z_example.org") -> bytes:
    """A TLS report as in RFC 8460 section 4.5, about our domain's STS policy."""
    return json.dumps({
        "organization-name": "Google Inc.",
        "date-range": {"start-datetime": "2025-11-30T00:00:00Z", "end-datetime": "2025-11-30T23:59:59Z"},
        "contact-info": "smtp-tls-reporting@google.com", "report-id": report_id,
        "policies": [{
            "policy": {"policy-type": "sts", "policy-string": ["version: STSv1", "mode: enforce",
                                                               "mx: mx.example.org", "max_age: 604800"],
                       "policy-domain": domain, "mx-host": ["mx.example.org"]},
            "summary": {"total-successful-session-count": 40, "total-failure-session-count": 5},
            "failure-details": [
                {"result-type": "certificate-expired", "sending-mta-ip": "2001:db8:abcd:12::1",
                 "receiving-mx-hostname": "mx.example.org.", "failed-session-count": 3},
                {"result-type": "starttls-not-supported", "sending-mta-ip": "198.51.100.7",
                 "receiving-ip": "203.0.113.25", "failed-session-count": 2}]}]}).encode()


def zipped(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, data)
    return buffer.getvalue()


def report_mail(attachment: bytes | None, subtype: str = "gzip", filename: str = "report.xml.gz",
                subject: str = "Report domain: example.org Submitter: google.com", tls: bool = False) -> bytes:
    """A report as reporters mail it: text, then the report attached (RFC 7489 7.2.1.1;
    TLS-RPT as multipart/report, RFC 8460 section 5.3)."""
    m = EmailMessage()
    m["From"] = "noreply-dmarc-support@google.com"
    m["To"] = "dmarc-reports@example.org"
    m["Subject"] = subject
    m.set_content("This is an aggregate report from Google.\n")
    if attachment is not None:
        m.add_attachment(attachment, maintype="application", subtype=subtype, filename=filename)
    if tls:
        m.set_type("multipart/report")
        m.set_param("report-type", "tlsrpt")
    return m.as_bytes()


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE feedback [
  <!ENTITY lol "lol">
  <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol9 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
]>
<feedback><report_metadata><org_name>&lol9;</org_name></report_metadata></feedback>
"""
EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE feedback [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<feedback><report_metadata><org_name>&xxe;</org_name></report_metadata></feedback>
"""
OVER = ir.MAX_UNPACKED + 1024  # unpacked: just over the limit


def many_files() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for i in range(ir.MAX_MEMBERS + 1):
            z.writestr(f"{i}.xml", dmarc_xml(report_id=str(i)))
    return buffer.getvalue()


# Attachments that must be skipped, and what the reason says.
HOSTILE = {
    "billion laughs": (gzip.compress(BILLION_LAUGHS), "gzip", "XML with a DTD"),
    "external entity": (EXTERNAL_ENTITY, "xml", "XML with a DTD"),
    "gzip bomb": (gzip.compress(b"<" + b" " * OVER), "gzip", "gzip unpacks to more than 20 MiB"),
    "zip bomb": (zipped("report.xml", b"<" + b" " * OVER), "zip", "zip unpacks to more than 20 MiB"),
    "zip of many files": (many_files(), "zip", "zip with 11 files"),
    "truncated gzip": (gzip.compress(dmarc_xml())[:-40], "gzip", "truncated gzip"),
    "broken gzip": (b"\x1f\x8b" + b"\x00" * 30, "gzip", "broken gzip"),
    "broken zip": (b"PK\x03\x04" + b"\x00" * 30, "zip", "broken zip"),
    "JSON of the wrong shape": (gzip.compress(b'{"policies": "none", "date-range": {}}'), "tlsrpt+gzip",
                                "not a TLS report (RFC 8460 section 4.4): organization-name is missing"),
    "JSON counts as strings": (gzip.compress(tlsrpt_json().replace(b": 40,", b': "40",')), "tlsrpt+gzip",
                               "total-successful-session-count is missing or not a number"),
    "JSON nested too deep": (b'{"a":' * 100_000, "tlsrpt+json", "broken JSON"),
    "a TLS report of no policy": (re.sub(rb'"policies": \[.*\]}$', b'"policies": []}', tlsrpt_json()),
                                  "tlsrpt+json", "a TLS report without policies"),
    "broken XML": (dmarc_xml()[:-30], "xml", "broken XML"),
    "XML but no report": (b"<html><body>hello</body></html>", "xml", "not a DMARC report (<html>"),
    "a bad source address": (dmarc_xml().replace(b"203.0.113.10", b"203.0.113.300"), "xml",
                             "'203.0.113.300' is not an IP address"),
    "a strange disposition": (dmarc_xml().replace(b"<disposition>none", b"<disposition>delete"), "xml",
                              "disposition 'delete' is not one of none, quarantine, reject"),
    "neither XML nor JSON": (b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, "gzip", "neither a DMARC report"),
}


def read(raw: bytes, tmp_path: Path) -> tuple[list[dict], list[str]]:
    path = tmp_path / "message"
    path.write_bytes(raw)
    reports_found, problems, _ = ir.read_message(path)
    return reports_found, problems


def test_a_dmarc_report_reads_the_same_in_gzip_zip_and_plain(tmp_path):
    xml = dmarc_xml()
    found = [read(report_mail(a, subtype, name), tmp_path) for a, subtype, name in [
        (gzip.compress(xml), "gzip", "google.com!example.org!1764460800!1764547199.xml.gz"),
        (zipped("google.com!example.org!1764460800!1764547199.xml", xml), "zip", "report.zip"),
        (xml, "xml", "report.xml")]]
    assert all(problems == [] for _, problems in found), found
    assert found[0][0] == found[1][0] == found[2][0]
    (report,) = found[0][0]
    assert report == {
        "kind": "dmarc", "org": "google.com", "id": "13044917469151229617", "begin": DAY[0], "end": DAY[1],
        "domain": "example.org", "rows": [
            {"ip": "203.0.113.10", "count": 12, "disposition": "none", "dkim": "pass", "spf": "pass"},
            {"ip": "2001:db8::66", "count": 3, "disposition": "quarantine", "dkim": "fail", "spf": "fail"},
            {"ip": "203.0.113.10", "count": 2, "disposition": "none", "dkim": "pass", "spf": "fail"}]}


def test_a_dmarc_report_with_a_namespace_reads_too():
    report = ir.parse(dmarc_xml(namespace=' xmlns="urn:ietf:params:xml:ns:dmarc-2.0"'))
    assert report["domain"] == "example.org" and len(report["rows"]) == 3


def test_a_tls_report_reads_from_gzip(tmp_path):
    (report,), problems = read(report_mail(gzip.compress(tlsrpt_json()), "tlsrpt+gzip",
                                           "google.com!example.org!1764460800!1764547199!001.json.gz", tls=True),
                               tmp_path)
    assert problems == []
    assert report == {
        "kind": "tlsrpt", "org": "Google Inc.", "id": "2025-11-30T00:00:00Z_example.org", "begin": DAY[0],
        "end": DAY[1], "policies": [{"domain": "example.org", "type": "sts", "successful": 40, "failed": 5,
                                     "failures": [
                                         {"result": "certificate-expired", "mx": "mx.example.org", "count": 3},
                                         {"result": "starttls-not-supported", "mx": "203.0.113.25", "count": 2}]}]}


@pytest.mark.parametrize("case", HOSTILE)
def test_a_malformed_or_hostile_report_is_skipped_with_its_reason(case, tmp_path):
    attachment, subtype, says = HOSTILE[case]
    found, problems = read(report_mail(attachment, subtype, f"report.{subtype}"), tmp_path)
    assert found == [] and len(problems) == 1 and says in problems[0], problems


def test_a_mail_with_no_report_is_skipped(tmp_path):
    assert read(report_mail(None, subject="Buy now"), tmp_path) == ([], ["no report attached"])


def test_an_oversized_message_is_not_read(tmp_path):
    assert read(b"Subject: big\n\n" + b"x" * (ir.MAX_MESSAGE + 1), tmp_path) == (
        [], ["message larger than 20 MiB, not read"])


def test_text_from_reports_cannot_add_lines_or_turn_around():
    assert ir.clean("evil\r\nBcc: x\u202eorg" + "x" * 300) == "evil Bcc: x org" + "x" * 185


# --- The whole script, on Maildirs ------------------------------------------------------

def deliver(maildir: Path, name: str, raw: bytes, when: float = YESTERDAY, folder: str = "cur") -> None:
    """A message as dovecot leaves it: a file in new/ (unread) or cur/, its mtime the delivery."""
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    path = maildir / folder / (f"{int(when)}.M1P{abs(hash(name)) % 10000}.mx,S={len(raw)}"
                               + (":2,S" if folder == "cur" else ""))
    path.write_bytes(raw)
    os.utime(path, (when, when))


@pytest.fixture
def site(tmp_path) -> Path:
    """Both report Maildirs with what a week brings, and the config naming them."""
    dmarc, tls = tmp_path / "dmarc-reports/Maildir", tmp_path / "tls-reports/Maildir"
    deliver(dmarc, "google", report_mail(gzip.compress(dmarc_xml()), "gzip", "google.xml.gz"), folder="new")
    deliver(dmarc, "google-copy", report_mail(gzip.compress(dmarc_xml()), "gzip", "google.xml.gz"))
    deliver(dmarc, "mailru", report_mail(zipped("r.xml", dmarc_xml(report_id="mailru-1", org="Mail.Ru")), "zip",
                                         "r.zip"))
    deliver(dmarc, "second", report_mail(dmarc_xml(domain="second.example.org", report_id="s-1"), "xml", "r.xml"))
    deliver(dmarc, "foreign", report_mail(dmarc_xml(domain="example.com", report_id="f-1"), "xml", "r.xml",
                                          subject="Report domain: example.com Submitter: google.com"))
    deliver(dmarc, "laughs", report_mail(gzip.compress(BILLION_LAUGHS), "gzip", "r.xml.gz", subject="lol"))
    deliver(dmarc, "bomb", report_mail(HOSTILE["zip bomb"][0], "zip", "r.zip", subject="boom"))
    deliver(dmarc, "truncated", report_mail(HOSTILE["truncated gzip"][0], "gzip", "r.xml.gz", subject="cut"))
    deliver(dmarc, "spam", report_mail(None, subject="Buy now"))
    deliver(dmarc, "old", report_mail(gzip.compress(dmarc_xml(report_id="old")), "gzip", "r.xml.gz"),
            when=time.time() - 30 * 86400)  # before the window
    deliver(tls, "google", report_mail(gzip.compress(tlsrpt_json()), "tlsrpt+gzip", "r.json.gz", tls=True))
    deliver(tls, "wrong", report_mail(HOSTILE["JSON of the wrong shape"][0], "tlsrpt+gzip", "r.json.gz",
                                      subject="shape", tls=True))
    (tmp_path / "reports.conf").write_text(f"""# made by the test
[reports]
mailboxes =
    dmarc-reports@example.org {dmarc}
    tls-reports@example.org {tls}
domains = example.org example.net
days = 7
admin = alice@example.org
summary = {tmp_path}/state/reports.json
user = {pwd.getpwuid(os.geteuid()).pw_name}
""")
    return tmp_path


EXPECTED_DMARC = {"example.org": {
    # google.com's report (its copy counted once), Mail.Ru's; the subdomain's separately.
    "reports": 2, "messages": 34, "reporters": {"google.com": 1, "Mail.Ru": 1},
    "begin": "2025-11-30T00:00:00Z", "end": "2025-11-30T23:59:59Z",
    "sources": {
        "203.0.113.10": {"messages": 28, "dmarc": {"pass": 28, "fail": 0}, "dkim": {"pass": 28, "fail": 0},
                         "spf": {"pass": 24, "fail": 4}, "disposition": {"none": 28, "quarantine": 0, "reject": 0},
                         "reporters": ["Mail.Ru", "google.com"]},
        "2001:db8::66": {"messages": 6, "dmarc": {"pass": 0, "fail": 6}, "dkim": {"pass": 0, "fail": 6},
                         "spf": {"pass": 0, "fail": 6}, "disposition": {"none": 0, "quarantine": 6, "reject": 0},
                         "reporters": ["Mail.Ru", "google.com"]}}}}
EXPECTED_TLSRPT = {"example.org": {
    "reports": 1, "reporters": {"Google Inc.": 1}, "successful": 40, "failed": 5,
    "begin": "2025-11-30T00:00:00Z", "end": "2025-11-30T23:59:59Z",
    "failures": {"by_result": {"certificate-expired": 3, "starttls-not-supported": 2},
                 "by_mx": {"mx.example.org": 3, "203.0.113.25": 2}}}}


def run(site: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    r = subprocess.run([sys.executable, str(SCRIPT), "--config", str(site / "reports.conf"), *args],
                       capture_output=True, text=True, timeout=60)
    path = site / "state/reports.json"
    return r, json.loads(path.read_text()) if path.exists() else {}


def test_the_script_sums_up_the_maildirs_and_names_what_it_skipped(site):
    r, summary = run(site)
    assert r.returncode == 0, r.stderr
    assert summary["dmarc"]["example.org"] == EXPECTED_DMARC["example.org"]
    assert set(summary["dmarc"]) == {"example.org", "second.example.org"}  # a subdomain is ours
    assert summary["tlsrpt"] == EXPECTED_TLSRPT
    assert summary["reports"] == {"dmarc": 3, "tlsrpt": 1}
    assert summary["messages"] == 11 and summary["errors"] == [] and summary["days"] == 7
    reasons = {s["subject"]: s["reason"] for s in summary["skipped"]}
    assert summary["skipped_count"] == len(reasons) == 7, reasons
    assert reasons["lol"] == "r.xml.gz: XML with a DTD (refused: entities)"
    assert reasons["boom"] == "r.zip: zip unpacks to more than 20 MiB"
    assert reasons["cut"] == "r.xml.gz: truncated gzip"
    assert reasons["Buy now"] == "no report attached"
    assert "organization-name is missing" in reasons["shape"]
    assert reasons["Report domain: example.com Submitter: google.com"] == "a DMARC report about example.com, not ours"
    assert reasons["Report domain: example.org Submitter: google.com"] == (
        "a copy of report '13044917469151229617' of 'google.com', counted once")
    assert {s["mailbox"] for s in summary["skipped"]} == {"dmarc-reports@example.org", "tls-reports@example.org"}
    # Each skip is in the journal (stderr) too.
    assert r.stderr.count("inhouse-reports: skipped ") == 7
    # The file is private, and written whole.
    assert oct((site / "state/reports.json").stat().st_mode & 0o777) == "0o640"
    assert not list((site / "state").glob(".*"))


def test_runs_are_idempotent_and_whole_days_end_at_midnight(site):
    first, second = run(site)[1], run(site)[1]
    assert {**first, "generated": "", "until": ""} == {**second, "generated": "", "until": ""}
    # A message delivered today counts up to now, not up to last midnight.
    deliver(site / "dmarc-reports/Maildir", "today", report_mail(dmarc_xml(report_id="today"), "xml", "r.xml"),
            when=time.time() - 1)
    assert run(site)[1]["reports"]["dmarc"] == 4
    whole = run(site, "--whole-days")[1]
    assert whole["reports"]["dmarc"] == 3
    assert datetime.datetime.fromisoformat(whole["until"]).time() == datetime.time()  # local midnight


def test_a_missing_maildir_is_empty_and_an_unreadable_one_fails_the_run(site):
    config = ir.read_config(str(site / "reports.conf"))
    config["mailboxes"] = [("a@example.org", str(site / "nothing-yet")), ("b@example.org", str(site / "a-file"))]
    (site / "a-file").write_text("")
    now = datetime.datetime.now().astimezone()
    data = ir.summary(config | {"user": ""}, False, now)
    assert data["messages"] == 0 and data["errors"] == [f"b@example.org: cannot read {site}/a-file (Not a directory)"]


def in_process(site: Path) -> str:
    """The config, to run main() in this process: no child process (pyinfra's CLI, which
    other tests import, patches os.fork with gevent's; the script never runs under it)."""
    config = site / "reports.conf"
    config.write_text(re.sub(r"^user = .*$", "user =", config.read_text(), flags=re.M))
    return str(config)


def test_mail_names_sources_failures_and_skips(site, tmp_path, monkeypatch):
    out = tmp_path / "sent"
    fake = tmp_path / "sendmail"
    fake.write_text(f"#!/bin/sh\necho \"$@\" > {out}.args\ncat > {out}\n")
    fake.chmod(0o755)
    monkeypatch.setattr(ir, "SENDMAIL", [str(fake), "-odi", "-oi", "-t"])
    assert ir.main(["--config", in_process(site), "--mail"]) == 0
    message = email.message_from_bytes(out.read_bytes(), policy=email.policy.default)
    summary = json.loads((site / "state/reports.json").read_text())
    assert message["To"] == "alice@example.org" and message["Auto-Submitted"] == "auto-generated"
    assert re.fullmatch(r"DMARC and TLS reports for example\.org and 1 more, \d{4}-\d\d-\d\d to \d{4}-\d\d-\d\d "
                        rf"\({re.escape(summary['generated'])}\)", message["Subject"]), message["Subject"]
    body = message.get_content()
    assert "example.org: 2 reports (Mail.Ru 1, google.com 1), 34 messages, 6 failed DMARC" in body
    # The forger first: most DMARC failures.
    assert re.search(r"^  2001:db8::66 +6 +6 +6 +6 +6 +0  Mail\.Ru, google\.com\n  203\.0\.113\.10 +28 +0 +0 +4 +0 +0 ",
                     body, re.M), body
    assert "example.org: 1 report (Google Inc. 1), 40 sessions succeeded, 5 failed" in body
    assert "failed by reason: certificate-expired: 3, starttls-not-supported: 2" in body
    assert "failed by MX: mx.example.org: 3, 203.0.113.25: 2" in body
    assert "Skipped: 7 messages, not counted" in body and "r.xml.gz: XML with a DTD" in body
    assert (tmp_path / "sent.args").read_text().split() == ["-odi", "-oi", "-t"]


def test_a_failed_sendmail_fails_the_run(site, monkeypatch, capsys):
    monkeypatch.setattr(ir, "SENDMAIL", ["false"])
    assert ir.main(["--config", in_process(site), "--mail"]) == 1
    assert "sendmail failed" in capsys.readouterr().err
    assert (site / "state/reports.json").exists()  # the summary is written first


@pytest.mark.parametrize(("change", "says"), [
    (("days = 7", "days = 0"), "days: '0' is not a number of days"),
    (("admin = alice@example.org", "admin = alice"), "admin: 'alice' is not an address"),
    (("domains =", "domain ="), "unknown settings: domain"),
    (("    tls-reports@example.org ", "    tls-reports@example.org relative/"), "is not 'ADDRESS /PATH/TO/Maildir'"),
])
def test_a_bad_config_is_refused(site, change, says):
    config = site / "reports.conf"
    config.write_text(config.read_text().replace(*change))
    r, _ = run(site, "--check")
    assert r.returncode == 2 and says in r.stderr, r.stderr


# --- The component ---------------------------------------------------------------------

DATA = DEFAULTS | read_group_data("all") | {"domain": "example.org", "extra_domains": ["example.net"],
                                            "mail_users": ["alice@example.org", "bob@example.org"],
                                            "mail_admin": "bob@example.org", "fqdn": "mx.example.org"}


def test_the_component_renders_a_config_the_script_accepts(tmp_path):
    files = {f.path: f for f in reports.files(DATA, {"debian": 13, "container": "none"})}
    assert set(files) == {reports.SCRIPT, reports.CONFIG, f"{reports.UNIT}.service", f"{reports.UNIT}.timer"}
    assert files[reports.SCRIPT].content == SCRIPT.read_text() and files[reports.SCRIPT].mode == "755"
    (tmp_path / "reports.conf").write_text(files[reports.CONFIG].content)
    config = ir.read_config(str(tmp_path / "reports.conf"))
    assert config == {"mailboxes": [
        ("dmarc-reports@example.org", f"{mail.MAIL_HOME}/example.org/dmarc-reports/Maildir"),
        ("tls-reports@example.org", f"{mail.MAIL_HOME}/example.org/tls-reports/Maildir")],
        "domains": ["example.org", "example.net"], "days": 7, "admin": "bob@example.org",
        "summary": "/var/lib/inhouse/reports.json", "user": "vmail"}
    assert "ExecStart=/usr/local/sbin/inhouse-reports --whole-days --mail\n" in files[f"{reports.UNIT}.service"].content
    timer = files[f"{reports.UNIT}.timer"].content
    assert "OnCalendar=Mon *-*-* 06:00:00" in timer and "Persistent=true" in timer and "RandomizedDelaySec=" in timer
    for f in files.values():
        assert re.search(r"Managed by inhouse from (templates/\S+\.j2|files/\S+);", f.content), f.path


def test_the_weekly_mail_can_be_turned_off():
    service = {f.path: f.content for f in reports.files(DATA | {"reports_weekly": False, "reports_days": 14},
                                                        {"debian": 12, "container": "none"})}
    assert "ExecStart=/usr/local/sbin/inhouse-reports --whole-days\n" in service[f"{reports.UNIT}.service"]
    assert "\ndays = 14\n" in service[reports.CONFIG]


@pytest.mark.parametrize(("key", "value", "says"), [
    ("reports_days", 0, "reports_days: 0 is not a number of days from 1 to 366"),
    ("reports_days", "7", "reports_days: '7' is not a number of days"),
    ("reports_weekly", "yes", "reports_weekly: 'yes' is not True or False"),
])
def test_bad_report_settings_are_refused(key, value, says):
    (problem,) = reports.CHECKS[key](key, value)
    assert problem.startswith(says), problem
