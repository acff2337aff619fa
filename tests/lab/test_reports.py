"""Reports, as reporters send them: a DMARC aggregate report (RFC 7489 appendix C) and a TLS
report (RFC 8460), gzip attachments mailed from outside.test to the report addresses over
SMTP (MX lookup, DANE, SPF, as on the internet), are summed up by inhouse-reports on the
mail host: reports.json holds their counts, and the summary it mails reaches the admin's
INBOX, naming the source address that failed and the failed TLS sessions. Against a real
server only the timer and the config are looked at: no mail is sent.
"""

import base64
import datetime
import gzip
import ipaddress
import json
import re
import secrets
import time
import uuid
from email.message import EmailMessage

import pytest

from tasks import mail, reports
from tests.helpers import OUTSIDE_USER, inbox

pytestmark = [pytest.mark.mta]


def yesterday() -> tuple[datetime.datetime, datetime.datetime]:
    """The whole UTC day before today: the period reporters send a report for."""
    today = datetime.datetime.now(datetime.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - datetime.timedelta(days=1), today - datetime.timedelta(seconds=1)


def dmarc_report(domain: str, report_id: str, source: str) -> bytes:
    """From outside.test: `source` sent 5 messages as `domain`; 3 passed SPF aligned, 2
    failed both and were quarantined."""
    begin, end = yesterday()
    rows = [(3, "none", "fail", "pass"), (2, "quarantine", "fail", "fail")]
    records = "".join(f"""
  <record>
    <row><source_ip>{source}</source_ip><count>{n}</count>
      <policy_evaluated><disposition>{disposition}</disposition><dkim>{dkim}</dkim><spf>{spf}</spf></policy_evaluated>
    </row>
    <identifiers><header_from>{domain}</header_from></identifiers>
    <auth_results><spf><domain>{domain}</domain><result>{spf}</result></spf></auth_results>
  </record>""" for n, disposition, dkim, spf in rows)
    return f"""<?xml version="1.0" encoding="UTF-8" ?>
<feedback>
  <report_metadata>
    <org_name>outside.test</org_name><email>{OUTSIDE_USER}</email><report_id>{report_id}</report_id>
    <date_range><begin>{int(begin.timestamp())}</begin><end>{int(end.timestamp())}</end></date_range>
  </report_metadata>
  <policy_published><domain>{domain}</domain><adkim>r</adkim><aspf>r</aspf><p>quarantine</p></policy_published>
  {records}
</feedback>
""".encode()


def tls_report(domain: str, report_id: str, mx: str, address: str) -> bytes:
    """From outside.test: 7 sessions to the MX succeeded, 4 failed DANE validation."""
    begin, end = yesterday()
    return json.dumps({
        "organization-name": "outside.test", "contact-info": OUTSIDE_USER, "report-id": report_id,
        "date-range": {"start-datetime": f"{begin:%Y-%m-%dT%H:%M:%SZ}", "end-datetime": f"{end:%Y-%m-%dT%H:%M:%SZ}"},
        "policies": [{"policy": {"policy-type": "tlsa", "policy-domain": domain, "policy-string": []},
                      "summary": {"total-successful-session-count": 7, "total-failure-session-count": 4},
                      "failure-details": [{"result-type": "validation-failure", "sending-mta-ip": "192.0.2.1",
                                           "receiving-mx-hostname": mx, "receiving-ip": address,
                                           "failed-session-count": 4}]}]}).encode()


def send_report(outside, recipient: str, subject: str, report: bytes, subtype: str, filename: str) -> None:
    """A report mailed as reporters do (RFC 7489 7.2.1.1; RFC 8460 5.3: multipart/report),
    by outside.test's own MTA."""
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = OUTSIDE_USER, recipient, subject
    m.set_content(f"{subject}\n")
    m.add_attachment(gzip.compress(report), maintype="application", subtype=subtype, filename=filename)
    if subtype.startswith("tlsrpt"):
        m.set_type("multipart/report")
        m.set_param("report-type", "tlsrpt")
    outside.check_output("echo %s | base64 -d | sendmail -f %s %s", base64.b64encode(m.as_bytes()).decode(),
                         OUTSIDE_USER, recipient)


def wait_for_delivery(on_server, maildir: str, token: str, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while on_server.run("grep -rlF -- %s %s", token, maildir).rc != 0:
        if time.time() > deadline:
            pytest.fail(f"no message {token} reached {maildir}")
        time.sleep(0.5)


def summary(on_server, *options: str) -> dict:
    """Run inhouse-reports on the mail host; its reports.json."""
    on_server.check_output(" ".join([reports.SCRIPT, *options]))
    return json.loads(on_server.check_output("cat %s", reports.SUMMARY))


@pytest.mark.lab("sends reports from outside.test and reads the admin's mailbox with their password")
def test_reports_from_outside_are_summed_up_and_mailed_to_the_admin(outside, on_server, mx, mail_data, passwords):
    token = uuid.uuid4().hex[:12]
    domain, fqdn = mail_data["domain"], mail_data["fqdn"]
    # An address of this run alone: its counts are exactly this report's.
    source = str(ipaddress.ip_address(f"2001:db8:{secrets.randbelow(0xffff):x}::{secrets.randbelow(0xffff):x}"))
    before = summary(on_server).get("tlsrpt", {}).get(domain, {})
    (dmarc_to, dmarc_dir), (tls_to, tls_dir) = reports.maildirs(mail_data)
    begin, end = (int(t.timestamp()) for t in yesterday())
    send_report(outside, dmarc_to, f"Report domain: {domain} Submitter: outside.test Report-ID: <{token}>",
                dmarc_report(domain, token, source), "gzip", f"outside.test!{domain}!{begin}!{end}.xml.gz")
    send_report(outside, tls_to, f"Report Domain: {domain} Submitter: outside.test Report-ID: <{token}@outside.test>",
                tls_report(domain, f"{token}@outside.test", fqdn, mail_data["ipv4"]), "tlsrpt+gzip",
                f"outside.test!{domain}!{begin}!{end}!001.json.gz")
    wait_for_delivery(on_server, dmarc_dir, token)
    wait_for_delivery(on_server, tls_dir, token)

    after = summary(on_server, "--mail")
    assert not [s for s in after["skipped"] if token in s["subject"]], after["skipped"]
    assert after["errors"] == []
    # (a) The DMARC report's source, with its counts; the TLS report added to the domain's.
    assert after["dmarc"][domain]["sources"][source] == {
        "messages": 5, "dmarc": {"pass": 3, "fail": 2}, "dkim": {"pass": 0, "fail": 5}, "spf": {"pass": 3, "fail": 2},
        "disposition": {"none": 3, "quarantine": 2, "reject": 0}, "reporters": ["outside.test"]}
    tls = after["tlsrpt"][domain]
    assert tls["reports"] - before.get("reports", 0) == 1
    assert (tls["successful"] - before.get("successful", 0), tls["failed"] - before.get("failed", 0)) == (7, 4)
    was = before.get("failures", {"by_result": {}, "by_mx": {}})
    assert tls["failures"]["by_result"]["validation-failure"] - was["by_result"].get("validation-failure", 0) == 4
    assert tls["failures"]["by_mx"][fqdn] - was["by_mx"].get(fqdn, 0) == 4
    # (b) The summary in the admin's INBOX (its subject names the run), naming the source
    # and its failures: messages, DMARC, DKIM, SPF failed, quarantined, rejected.
    admin = mail.admin(mail_data)
    (message,) = inbox(mx, admin, passwords[admin], after["generated"])
    body = message.get_content().replace("\r\n", "\n")
    assert re.search(rf"^  {re.escape(source)} +5 +2 +5 +2 +2 +0  outside\.test$", body, re.M), body
    assert f"{tls['successful']} sessions succeeded, {tls['failed']} failed" in body, body
    assert re.search(rf"failed by MX: .*\b{re.escape(fqdn)}: {tls['failures']['by_mx'][fqdn]}\b", body), body
    assert message["Auto-Submitted"] == "auto-generated"


def test_the_weekly_summary_is_scheduled_and_its_config_checks(on_server, mail_data):
    timer = on_server.service("inhouse-reports.timer")
    assert timer.is_enabled and timer.is_running
    on_server.check_output("%s --check", reports.SCRIPT)
    config = on_server.file(reports.CONFIG).content_string
    for address, maildir in reports.maildirs(mail_data):
        assert f"    {address} {maildir}\n" in config
    # Read as the Maildirs' owner, never as root.
    assert f"\nuser = {mail.VMAIL}\n" in config
