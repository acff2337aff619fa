"""Reports: what other mail servers say about our mail, summed up every week.

Receivers that honour the DMARC record of our domains (tasks/zone.py) send aggregate
reports (RFC 7489 section 7.2) to zone_dmarc_reports at the primary domain: for each
address that sent mail with one of our domains in From, how many messages, whether DKIM and
SPF passed aligned, and what the receiver did with them. Senders that honour our TLS-RPT
record send TLS reports (RFC 8460) to zone_tls_reports: how many TLS sessions to our MX
hosts succeeded, and why the others failed (an expired certificate, a TLSA record or
MTA-STS policy that does not match). Both arrive as attachments (gzip, zip or plain XML and
JSON) in Maildirs nobody logs in to (tasks/mail.py). Unread, they tell no one that a
forger uses the domain or that senders cannot reach the MX over TLS.

inhouse-reports (files/reports/inhouse_reports.py, Python with defusedxml only) reads them
and writes the summary to /var/lib/inhouse/reports.json: the reports delivered in the last
reports_days days, per DMARC domain each source address with its counts and reporters, per
TLS-RPT policy domain the sessions and failures by result type and MX, and the messages it
skipped (not a report, malformed, hostile: too big unpacked, XML with a DTD) with the reason.
Each run reads the whole window again: runs are idempotent, no message is moved. A timer
runs it every Monday for the whole days before, and mails the text to mail_admin
(reports_weekly).
Reads: reports_*, domain, extra_domains, zone_dmarc_reports, zone_tls_reports, mail_admin.
"""

from pyinfra.api import deploy

from tasks import mail
from tasks.util import FILES, ConfigFile, activate, install_files, reload_unit_files, render
from tasks.validate import BOOLEAN, is_integer, rule, scalar

DEFAULTS = {
    # Mail the summary of the DMARC and TLS reports to mail_admin every Monday morning
    # (False: the timer still writes /var/lib/inhouse/reports.json, and mails nothing).
    "reports_weekly": True,
    # Days of reports each summary covers, by delivery: the weekly mail and reports.json.
    # More than 7 makes the weekly mails overlap.
    "reports_days": 7,
}
# The type and format of each setting, checked before anything connects (tasks/data.py).
CHECKS = {
    "reports_weekly": scalar(BOOLEAN),
    "reports_days": scalar(rule(lambda v: is_integer(v, 1, 366), "is not a number of days from 1 to 366")),
}
PACKAGES = ["python3", "python3-defusedxml"]
UNITS = {"inhouse-reports.timer": ""}
SCRIPT = "/usr/local/sbin/inhouse-reports"
CONFIG = "/etc/inhouse/reports.conf"
SUMMARY = "/var/lib/inhouse/reports.json"
UNIT = "/etc/systemd/system/inhouse-reports"


def maildirs(data: dict) -> list[tuple[str, str]]:
    """(address, Maildir) of each report mailbox, where dovecot keeps it (its mail_home)."""
    out = []
    for address in mail.report_mailboxes(data):
        local, domain = address.split("@")
        out.append((address, f"{mail.MAIL_HOME}/{domain}/{local}/Maildir"))
    return out


def files(data: dict, system: dict) -> list[ConfigFile]:
    ctx = {"maildirs": maildirs(data), "domains": mail.domains(data), "admin": mail.admin(data),
           "summary": SUMMARY, "user": mail.VMAIL, "script": SCRIPT, "config": CONFIG}
    return [
        # The script runs its own --help: Python, defusedxml and the syntax are there.
        ConfigFile(SCRIPT, (FILES / "reports/inhouse_reports.py").read_text(), check="{path} --help", mode="755",
                   checker="python3"),
        ConfigFile(CONFIG, render("reports/reports.conf.j2", data, **ctx), check=f"{SCRIPT} --check --config {{path}}",
                   checker="inhouse-reports"),
        ConfigFile(f"{UNIT}.service", render("reports/inhouse-reports.service.j2", data, **ctx)),
        ConfigFile(f"{UNIT}.timer", render("reports/inhouse-reports.timer.j2", data, **ctx)),
    ]


@deploy("Reports")
def apply(data: dict, configs: list[ConfigFile], state: dict):
    changed = install_files(configs, state)
    reload_unit_files(changed, UNIT)
    activate(UNITS, changed, state)
