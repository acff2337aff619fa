"""After everything else (conftest runs this file last): the mail services logged no error."""

import re

import pytest

pytestmark = [pytest.mark.mta]

# Lines that say something broke; failed logins and refused relays are warnings, not these.
PROBLEM = re.compile(r"\b(error|fatal|panic)\b|permission denied|configuration error", re.I)
# What clients break on purpose: handshakes of TLS scanners trying old protocols and suites
# (dovecot: SSL_accept, SSL_read; postfix: "TLS library problem"; exim: "TLS error on
# connection from"), and the relay tests' malformed commands (exim: "SMTP syntax error").
# A server whose TLS is broken for everyone fails the TLS tests instead.
CLIENT_FAULT = re.compile(r"SSL_(accept|read|write)|TLS handshak|TLS library problem|TLS error on connection from"
                          r"|SMTP (syntax|protocol) error")


@pytest.mark.lab("judges the journal since boot: a real server's holds the internet's traffic too")
def test_mail_logs_have_no_errors(on_server, services):
    units = [u for u in services if u in ("postfix", "exim4", "dovecot", "opendkim", "opendmarc")]
    assert units, "no mail services on the server"
    # Debian 13 runs postfix as postfix.service, Debian 12 as postfix@-.service.
    flags = " ".join(f"-u {'postfix -u postfix@-' if u == 'postfix' else u}" for u in units)  # names, no quoting
    log = on_server.check_output(f"journalctl -b --no-pager -o cat {flags}")
    assert log, "nothing logged at all"
    problems = [line for line in log.splitlines() if PROBLEM.search(line) and not CLIENT_FAULT.search(line)]
    assert not problems, "\n".join(problems[:20])
