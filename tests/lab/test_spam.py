"""The spam filter (tasks/spam.py), seen from outside:

- GTUBE, the standard test of spam filters, is refused at SMTP time with a 5xx by every MX,
  the relay too (the relay refuses what the mail host refuses);
- mail the filter finds suspect (rspamd's test pattern for that verdict) lands in Junk,
  and ham in the INBOX with SPF, DKIM and DMARC in its Authentication-Results;
- moving a message into Junk teaches the filter: the same text, sent again, is then filed
  into Junk; a message moved into Junk and out again still reaches the INBOX.
"""

import base64
import random
import re
import time
import uuid

import pytest

from tasks import zone
from tests.helpers import OUTSIDE_USER, Endpoint, inbox, send_from_outside

pytestmark = [pytest.mark.mta]

# The GTUBE line (rspamd: refused); the same with Y first: "add header" (filed into Junk),
# answered only where the site turned rspamd's test patterns on (spam_test_patterns).
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
SUSPECT = "Y" + GTUBE[1:]
# rspamd looks for the pattern in a text part of at least 68 bytes.
FILLER = "This message tests the spam filter of the receiving server, as its operator asked.\n"


def gtube_message(recipient: str) -> str:
    return (f"From: <postmaster@outside.test>\r\nTo: <{recipient}>\r\nSubject: GTUBE {uuid.uuid4().hex[:8]}\r\n"
            f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime())}\r\n"
            f"Message-ID: <{uuid.uuid4().hex}@outside.test>\r\n\r\n{FILLER}{GTUBE}\r\n{FILLER}")


def mx_hosts(mail_data: dict) -> list[dict]:
    """The MX hosts: the mail host (unless hidden) and the relays."""
    return zone.public_servers(mail_data)


def test_gtube_is_refused_at_smtp_by_every_mx(mail_data, tls_context):
    for host in mx_hosts(mail_data):
        mx = Endpoint(host["fqdn"], host["ipv4"], tls_context)
        with mx.smtp(25) as s:
            s.mail("")  # a bounce: no sender domain's SPF in the way
            assert s.rcpt(f"postmaster@{mail_data['domain']}")[0] == 250, host["fqdn"]
            code, reply = s.data(gtube_message(f"postmaster@{mail_data['domain']}"))
            assert 500 <= code < 600, (host["fqdn"], code, reply)


def arrived(mx: Endpoint, user: str, password: str, token: str, timeout: float = 30) -> tuple[str, bytes]:
    """The folder (INBOX or Junk) and the text of the message whose subject has `token`,
    once it is there; ("", b"") when time is up."""
    deadline = time.time() + timeout
    while True:
        with mx.imap() as imap:
            imap.login(user, password)
            for box in ("INBOX", "Junk"):
                imap.select(box, readonly=True)
                _, ids = imap.search(None, "SUBJECT", token)
                if ids[0]:
                    return box, imap.fetch(ids[0].split()[0], "(RFC822)")[1][0][1]
        if time.time() > deadline:
            return "", b""
        time.sleep(0.5)


def move(mx: Endpoint, user: str, password: str, token: str, source: str, target: str) -> None:
    """What a mail program does when its user drags a message to another folder (MOVE, RFC 6851)."""
    with mx.imap() as imap:
        imap.login(user, password)
        imap.select(source)
        _, ids = imap.search(None, "SUBJECT", token)
        assert ids[0], f"{token} is not in {source}"
        for i in ids[0].split():
            typ, data = imap._simple_command("MOVE", i.decode(), target)
            assert typ == "OK", data


def send_body(outside, recipient: str, subject: str, body: str) -> None:
    """Like send_from_outside, with a body of our own."""
    message = f"From: {OUTSIDE_USER}\nTo: {recipient}\nSubject: {subject}\n\n{body}\n"
    outside.check_output("echo %s | base64 -d | sendmail -f %s %s",
                         base64.b64encode(message.encode()).decode(), OUTSIDE_USER, recipient)


def score(raw: bytes) -> float:
    """The filter's score, from the header it adds (postfix: X-Spam-Status; exim: X-Spam-Score)."""
    head = raw.split(b"\r\n\r\n", 1)[0].decode(errors="replace")
    m = re.search(r"^X-Spam-(?:Status:.*?score=|Score: )(-?[\d.]+)", head, re.M | re.I)
    assert m, head
    return float(m.group(1))


@pytest.mark.lab("needs rspamd's test patterns, which only the lab's data turns on")
def test_suspect_mail_goes_to_junk_and_ham_to_the_inbox(outside, mx, mail_data, passwords):
    user = "alice@inhouse.test"
    token = f"ham-{uuid.uuid4().hex[:8]}"
    send_from_outside(outside, user, token)
    [ham] = inbox(mx, user, passwords[user], token) or [None]
    assert ham, f"{token} did not reach the INBOX"
    results = " ".join(str(h) for h in ham.get_all("Authentication-Results", []))
    assert all(k in results for k in ("spf=pass", "dkim=", "dmarc=")), results
    assert ham["X-Spam"] is None, ham["X-Spam"]

    token = f"suspect-{uuid.uuid4().hex[:8]}"
    send_body(outside, user, token, f"{FILLER}{SUSPECT}\n{FILLER}")
    box, junk = arrived(mx, user, passwords[user], token)
    assert box == "Junk", f"{token}: in {box or 'no folder'}"
    assert b"\r\nX-Spam: Yes\r\n" in junk.split(b"\r\n\r\n", 1)[0] + b"\r\n", junk[:2000]


# Words of an offer and of a meeting's minutes; each test draws its own text from them
# (rspamd's Bayes skips made-up words, and a text it learnt in an earlier run would not
# show learning).
OFFER = ("order watch luxury discount price offer free shipping today only limited exclusive brand genuine "
         "quality deal save money cheap best seller gift voucher claim click link now hurry stock clearance "
         "warehouse original authentic designer collection premium bargain special promotion customer delivery "
         "worldwide secure payment guarantee refund bonus reward winner selected lucky chance instant").split()
MINUTES = ("meeting minutes agenda budget review project schedule team members present discussed decided action "
           "items next steps quarter report draft proposal approved pending feedback department manager update "
           "timeline resources planning goals progress milestone risks assigned follow week monday").split()


def words(vocabulary: list[str], count: int = 120) -> str:
    return " ".join(random.choice(vocabulary) for _ in range(count))


@pytest.mark.lab("teaches the lab's filter")
def test_moving_a_message_to_junk_teaches_the_filter(outside, mx, mail_data, passwords):
    user, password = "bob@second.test", passwords["bob@second.test"]
    # A message the user calls spam (not suspect enough for Junk by itself), and one they
    # keep (moved into Junk by mistake and out again: ham).
    offer, minutes = words(OFFER), words(MINUTES)
    mark, kept = f"offer-{uuid.uuid4().hex[:8]}", f"minutes-{uuid.uuid4().hex[:8]}"
    send_body(outside, user, kept, minutes)
    send_body(outside, user, mark, offer)
    for token in (kept, mark):
        box, first = arrived(mx, user, password, token)
        assert box == "INBOX", f"{token}: in {box or 'no folder'} before any learning"
    before = score(first)
    move(mx, user, password, kept, "INBOX", "Junk")
    move(mx, user, password, kept, "Junk", "INBOX")
    move(mx, user, password, mark, "INBOX", "Junk")
    # The same texts again, under other subjects: the offer is now filed into Junk, the
    # minutes still into the INBOX. Learning takes a moment (the controller writes to redis).
    deadline = time.time() + 30
    while True:
        token = f"offer-{uuid.uuid4().hex[:8]}"
        send_body(outside, user, token, offer)
        box, again = arrived(mx, user, password, token)
        if box != "INBOX" or time.time() > deadline:
            break
    assert box == "Junk", f"{token}: in {box or 'no folder'} after its text was moved into Junk"
    assert score(again) > before, (score(again), before)
    token = f"minutes-{uuid.uuid4().hex[:8]}"
    send_body(outside, user, token, minutes)
    assert arrived(mx, user, password, token)[0] == "INBOX", f"{token}: ham, moved out of Junk, is not in the INBOX"
