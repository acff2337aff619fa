"""Mail, observed as the rest of the internet and the users see it: mail from outside lands
in the right Maildir and is read back over IMAPS; users' mail reaches the outside host over
TLS, DKIM-signed, passing SPF and DMARC; nothing relays for strangers; logins only over
TLS; unknown recipients are refused at RCPT. lab3 plays the rest of the internet
(outside.test, a stock postfix, and pebble, the ACME CA); this machine is a stranger on the
lab network. Against a real server only what a stranger may try runs: no mail is sent
(sessions end before DATA), no login is tried; the rest is marked `lab`.
"""

import email
import email.policy
import imaplib
import re
import smtplib
import socket
import uuid

import dkim
import dns.message
import dns.query
import dns.resolver
import pytest
import spf

from tasks import dkim as dkim_keys
from tasks import mail, tls
from tests.helpers import OUTSIDE_USER, Endpoint, inbox, outside_maildir, send_from_outside, vantage

pytestmark = [pytest.mark.mta]


@pytest.mark.lab("sends mail from outside.test and reads it with the users' passwords")
def test_mail_from_outside_reaches_users_and_aliases(outside, mx, mail_data, passwords):
    token = uuid.uuid4().hex[:12]
    assert mail.admin(mail_data) == "alice@inhouse.test"
    # Each address, and the user whose INBOX it must reach.
    expect = {"alice@inhouse.test": ["alice@inhouse.test"], "bob@second.test": ["bob@second.test"],
              "info@inhouse.test": ["alice@inhouse.test"],
              "team@second.test": ["alice@inhouse.test", "bob@second.test"],
              "postmaster@second.test": ["alice@inhouse.test"], "abuse@inhouse.test": ["alice@inhouse.test"],
              "hostmaster@inhouse.test": ["alice@inhouse.test"], "root@second.test": ["alice@inhouse.test"]}
    for address in expect:
        send_from_outside(outside, address, f"{token} for {address}")
    for user in passwords:
        got = {m["Subject"].split(" for ")[1]: m for m in inbox(mx, user, passwords[user], token, count=sum(
            user in users for users in expect.values()))}
        assert set(got) == {a for a, users in expect.items() if user in users}, user
        for m in got.values():
            # The MX's own verdict (opendkim's and opendmarc's headers, or rspamd's one).
            ours = " ".join(str(h) for h in m.get_all("Authentication-Results", [])
                            if str(h).lower().startswith(mail_data["fqdn"]))
            assert re.search(r";\s*spf=pass", ours) and "dmarc=" in ours and "dkim=" in ours, ours
            assert any(re.search(r"with ESMTPS", str(r), re.I) for r in m.get_all("Received"))  # over TLS


@pytest.mark.lab("sends mail from outside.test")
def test_results_a_message_brings_that_claim_the_mx_are_dropped(outside, mx, mail_data, passwords):
    """RFC 8601 section 5: a verdict in the MX's name that came with the mail is a forgery
    (here one that would pass DMARC); the only ones in its name left are its own. Others'
    verdicts may stay or go (postfix keeps them, exim drops them all: section 5 allows both)."""
    user, token, name = "alice@inhouse.test", f"forged-{uuid.uuid4().hex[:8]}", mail_data["fqdn"]
    forged = (f"Authentication-Results: {name}; dmarc=pass (forged) header.from=outside.test\n"
              f"Authentication-Results: (comment) {name.upper()}; dkim=pass (forged) header.d=outside.test\n"
              "Authentication-Results: mail.outside.test; spf=pass (the sender's own) smtp.mailfrom=outside.test\n")
    send_from_outside(outside, user, token, headers=forged)
    [m] = inbox(mx, user, passwords[user], token)
    results = [str(h) for h in m.get_all("Authentication-Results", [])]
    assert not [r for r in results if "forged" in r], results
    ours = " ".join(r for r in results if r.lower().startswith(name))
    assert "spf=pass" in ours and "dmarc=" in ours, ours


def test_unknown_recipient_is_refused_at_rcpt(mx, mail_data):
    with mx.smtp(25) as s:
        for domain in mail.domains(mail_data):
            s.mail("")  # a bounce: no SPF of a sender domain in the way
            code, reply = s.rcpt(f"nobody-{uuid.uuid4().hex[:8]}@{domain}")
            assert code == 550 and b"User unknown" in reply, (domain, reply)
            assert s.rcpt(f"postmaster@{domain}")[0] == 250, domain  # RFC 5321 4.5.1: always there
            s.rset()  # and no DATA: nothing is sent


@pytest.mark.lab("needs outside.test's SPF record")
def test_spf_failure_is_refused_at_rcpt(mx):
    with mx.smtp(25) as s:
        # Mail from outside.test, but not from its address: SPF fails, refused (strict).
        s.mail(OUTSIDE_USER)
        code, reply = s.rcpt("alice@inhouse.test")
        assert code == 550 and b"SPF" in reply, reply


def lab_resolver(address: str) -> dns.resolver.Resolver:
    r = dns.resolver.Resolver(configure=False)
    r.nameservers = [address]
    return r


@pytest.mark.lab("sends mail to outside.test with a user's password")
@pytest.mark.parametrize("port", [587, 465])
def test_submitted_mail_reaches_outside_signed_and_passes_spf_and_dmarc(port, mx, outside, mail_data, passwords,
                                                                          server, on_server):
    token = f"out{port}-{uuid.uuid4().hex[:12]}"
    sender = "alice@inhouse.test"
    with mx.smtp(port) as s:
        s.login(sender, passwords[sender])
        s.sendmail(sender, [OUTSIDE_USER], f"From: {sender}\r\nTo: {OUTSIDE_USER}\r\nSubject: {token}\r\n\r\nhi\r\n")
    raw = outside_maildir(outside, token)
    message = email.message_from_bytes(raw)
    # Received over TLS by outside.test, from the mail host itself.
    received = message.get_all("Received")[0]
    assert "using TLS" in received and mail_data["fqdn"] in received, received
    # outside.test publishes TLSA: the mail host checked its certificate by DANE.
    log = on_server.check_output("journalctl -u postfix -u postfix@- -u exim4 --since -5min -o cat")
    assert re.search(r"Verified TLS connection established to mail\.outside\.test|H=mail\.outside\.test .*CV=dane",
                     log), log[-2000:]
    client_ip = received.split("[")[1].split("]")[0].removeprefix("IPv6:")
    # DKIM: the signature verifies against the key published in the zone.
    resolver = lab_resolver(server.ipv4)

    def txt(name, timeout=5):
        answer = dns.query.udp(dns.message.make_query(name.decode(), "TXT"), server.ipv4, timeout=timeout)
        return b"".join(s for rrset in answer.answer for r in rrset for s in r.strings)

    assert dkim.verify(raw, dnsfunc=txt), "DKIM signature does not verify"
    assert "d=inhouse.test;" in message["DKIM-Signature"]
    # SPF of the envelope sender's domain passes for the address the mail came from...
    dns.resolver.default_resolver = resolver
    result, _ = spf.check2(i=client_ip, s=sender, h=mail_data["fqdn"])
    assert result == "pass", (client_ip, result)
    # ...and DMARC passes: SPF and DKIM both pass and align with the From domain.
    (dmarc,) = [b"".join(r.strings).decode() for r in resolver.resolve("_dmarc.inhouse.test", "TXT")]
    assert dmarc.startswith("v=DMARC1") and message["From"].split("@")[1] == "inhouse.test"


def relay_attempts(domain: str, host: dict, world) -> list[tuple[str, str]]:
    """Relay attempts from a stranger to `host` (MAIL FROM, RCPT TO). Each must be refused."""
    stranger, carol = f"someone@{world.stranger}", f"carol@{world.stranger}"
    return [
        (stranger, carol),  # plain
        (stranger, f"carol%{world.stranger}@{domain}"),  # percent hack
        (stranger, f"{world.stranger}!carol@{domain}"),  # bang path
        (stranger, f"{world.stranger}!carol"),  # bare bang path
        (stranger, f'"{carol}"@{domain}'),  # quoted local part
        (stranger, f"@{domain}:{carol}"),  # source route
        ("", carol),  # null sender
        (f"postmaster@{domain}", carol),  # forged local sender
        (f"postmaster@{host['fqdn']}", carol),  # forged host sender
        (stranger, f"carol@{world.stranger_literal}"),  # address literal
        (stranger, f"{carol}@{domain}"),  # double at
        (stranger, f"carol%{world.stranger}@[{host['ipv4']}]"),  # percent hack to our literal
        (stranger, carol.upper()),  # case games
        (stranger, f"{carol}."),  # trailing dot
        (stranger, "carol@localhost"),  # local delivery by name
        (stranger, "root@[127.0.0.1]"),  # loopback literal
    ]


@pytest.mark.parametrize("host", ["mail", "relay"])
def test_no_open_relay(host, mx, mail_data, world):
    target = mail_data["zone_hosts"][host][0]
    endpoint = Endpoint(target["fqdn"], target["ipv4"], mx.context)
    accepted = []
    for sender, recipient in relay_attempts(mail_data["domain"], target, world):
        with endpoint.smtp(25, tls=False) as s:  # the session ends before DATA: nothing is sent
            s.ehlo_or_helo_if_needed()
            code, _ = s.docmd(f"MAIL FROM:<{sender}>")
            if code == 250:
                code, reply = s.docmd(f"RCPT TO:<{recipient}>")
            if code < 500:  # accepted, or only deferred: a refusal must be for good
                accepted.append((sender, recipient, code))
    assert not accepted, f"not refused for good: {accepted}"
    # AUTH over plaintext is not even offered, on 25 or (before STARTTLS) on 587.
    with endpoint.smtp(25, tls=False) as s:
        assert not s.has_extn("auth")
        assert s.docmd("AUTH PLAIN AGFsaWNlAHg=")[0] >= 500


def test_submission_needs_a_login_and_tls(mx, mail_data, world):
    sender = f"postmaster@{mail_data['domain']}"
    if 587 in mx.ports:
        with mx.smtp(587, tls=False) as s:
            assert s.has_extn("starttls") and not s.has_extn("auth"), "AUTH offered before STARTTLS"
            assert s.docmd(f"MAIL FROM:<{sender}>")[0] >= 500  # TLS first
    else:  # a hidden home's front door: submissions (465) alone, no port that starts in clear
        with pytest.raises(OSError):
            socket.create_connection((mx.address, 587), 5).close()
    for port in [p for p in (587, 465) if p in mx.ports]:
        with mx.smtp(port) as s:
            assert s.has_extn("auth")
            s.mail(sender)
            assert s.rcpt(f"carol@{world.stranger}")[0] >= 500, "relayed without a login"


@pytest.mark.lab("needs the users' passwords")
def test_wrong_password_is_refused(mx, passwords):
    user = "alice@inhouse.test"
    with mx.smtp(587) as s, pytest.raises(smtplib.SMTPAuthenticationError):
        s.login(user, passwords[user] + "x")
    with mx.imap() as imap, pytest.raises(imaplib.IMAP4.error):
        imap.login(user, passwords[user] + "x")


@pytest.mark.lab("needs the users' passwords")
def test_users_send_only_as_their_own_addresses(mx, passwords):
    user = "bob@second.test"
    with mx.smtp(587) as s:
        s.login(user, passwords[user])
        s.mail("alice@inhouse.test")  # not bob's
        assert s.rcpt(OUTSIDE_USER)[0] >= 500
        s.rset()
        s.mail("team@second.test")  # an alias that delivers to bob: his to use
        assert s.rcpt(OUTSIDE_USER)[0] == 250


@pytest.mark.lab("sends mail through the relay from outside.test")
def test_the_backup_mx_passes_mail_on(inventory, mx, mail_data, passwords):
    """Mail for the domains that reaches the relay (MX 20) arrives in the Maildir too."""
    token = f"via-relay-{uuid.uuid4().hex[:12]}"
    relay = mail_data["zone_hosts"]["relay"][0]
    # A whole message (Date, Message-ID, To): one without them is suspect to the spam filter.
    code = ("import smtplib, email.utils\n"
            "head = f'Date: {email.utils.formatdate()}\\r\\nMessage-ID: {email.utils.make_msgid()}\\r\\n'\n"
            f"with smtplib.SMTP('{relay['ipv4']}', 25, local_hostname='mail.outside.test', timeout=20) as s:\n"
            f"    s.sendmail('{OUTSIDE_USER}', ['alice@inhouse.test'], head + 'From: {OUTSIDE_USER}\\r\\n"
            f"To: alice@inhouse.test\\r\\nSubject: {token}\\r\\n\\r\\nhi\\r\\n')\n")
    sent = vantage(inventory, "lab3").run("python3", "-c", code)  # from outside.test's address: SPF passes
    assert sent.returncode == 0, sent.stderr
    (message,) = inbox(mx, "alice@inhouse.test", passwords["alice@inhouse.test"], token)
    assert any(f"by {relay['fqdn']}" in str(r) for r in message.get_all("Received"))


@pytest.mark.lab("deploys the observer into mail_relay_networks")
def test_hosts_listed_in_data_may_relay_and_others_not(deploy, server, observer, mx):
    """"Machines to relay mail for" ("Making a Mailserver (Part 4)"): the observer may send without a login once
    listed in mail_relay_networks; the same attempt before that is refused."""
    # A connection refused is tried again for a few seconds: exim re-executes itself on a reload.
    code = ("import smtplib, time\n"
            "for attempt in range(20):\n"
            "    try:\n"
            f"        s = smtplib.SMTP('{server.ipv4}', 25, local_hostname='printer.inhouse.test', timeout=20)\n"
            "        break\n"
            "    except ConnectionRefusedError:\n"
            "        time.sleep(0.5)\n"
            "s.ehlo()\ns.mail('')\n"
            f"print(s.rcpt('{OUTSIDE_USER}')[0])\n")
    assert observer.run("python3", "-c", code).stdout.strip().startswith("5")  # refused for good
    try:
        result, _, failed = deploy("--limit", server.name, "--data", f'mail_relay_networks=["{observer.ipv4}/32"]')
        assert result.returncode == 0 and not failed, result.stderr[-3000:]
        assert observer.run("python3", "-c", code).stdout.strip() == "250"
    finally:
        result, _, _ = deploy("--limit", server.name)
    assert result.returncode == 0


def imap_143(mx: Endpoint) -> imaplib.IMAP4:
    """A plain IMAP session on 143 to the mail host's address."""
    address = mx.address

    class Plain(imaplib.IMAP4):
        def _create_socket(self, timeout):
            return socket.create_connection((address, 143), timeout)

    return Plain(mx.name, 143, timeout=20)


def test_imap_on_143_offers_logins_only_after_starttls(mx):
    if 143 not in mx.ports:  # a hidden home's front door: IMAPS alone, no plain port to try
        with pytest.raises(OSError):
            socket.create_connection((mx.address, 143), 5).close()
        return
    with imap_143(mx) as imap:
        assert "LOGINDISABLED" in imap.capabilities and "STARTTLS" in imap.capabilities
        imap.starttls(ssl_context=mx.context)
        assert "LOGINDISABLED" not in imap.capabilities and "AUTH=PLAIN" in imap.capabilities


@pytest.mark.lab("needs a user's password")
def test_imap_on_143_logs_in_only_after_starttls(mx, passwords):
    user = "alice@inhouse.test"
    with imap_143(mx) as imap:
        with pytest.raises(imaplib.IMAP4.error):
            imap.login(user, passwords[user])
        imap.starttls(ssl_context=mx.context)
        assert imap.login(user, passwords[user])[0] == "OK"


def test_private_keys_are_readable_only_by_those_who_use_them(on_server, mail_data):
    selector = on_server.check_output("head -n 1 %s", dkim_keys.CURRENT)
    signer = dkim_keys.signer(mail_data)
    key = dkim_keys.key_path(selector)
    assert on_server.check_output("stat -c '%%a %%U %%G' %s", key) == f"600 {signer} {signer}"
    mode, owner, group = on_server.check_output("stat -c '%%a %%U %%G' %s", tls.KEY).split()
    assert owner == "root" and (mode, group) in (("600", "root"), ("640", "Debian-exim")), (mode, group)
