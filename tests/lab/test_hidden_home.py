"""The home server hidden behind the relay (link_home_hidden, tasks/link.py and tasks/proxy.py)
on the lab's real hosts: lab1 is home, lab2 the VPS, lab3 the internet.

- home lets nothing of the lab's other hosts in (25, 53, 993, SSH: closed from lab2's and
  lab3's public addresses); only the link, which home opens;
- the zones name only the relay (NS, MX, no address record of home) and validate from the
  lab root through the relay's own resolver, which home does not answer;
- lab3 sends to a user at home through lab2, and a user at home sends to lab3 through
  lab2's front door (submission 465), whose mail shows no address of home; the user reads
  the INBOX over IMAP from lab3 through lab2 (993), logins judged by home with lab3's
  address (the PROXY header);
- lab2 judges the mail it takes in (SPF, DKIM, DMARC, in its name), home adds no verdict
  of its own, and verdicts that came with the mail in either's name are dropped;
- with home powered off, lab2 takes and queues the mail; it reaches the INBOX soon after
  home is back (home's probe asks for it: ETRN), not at the relay's next retry;
- the relay serves the MTA-STS policy, naming itself alone;
- a second deploy changes nothing; the lab's own data then brings the direct topology back.
"""

import re
import subprocess
import uuid

import pytest

from tasks import link, zone
from tests.helpers import (
    LAB,
    REPO,
    Endpoint,
    inbox,
    outside_maildir,
    play_registrar,
    send_from_outside,
    vantage,
    wait_until,
)

pytestmark = [pytest.mark.lab("hides the lab's mail host behind the relay, then brings it back"),
              pytest.mark.zone_server, pytest.mark.any_release, pytest.mark.postfix]
HIDDEN = ("--data", "link_enabled=True", "--data", "link_home_hidden=True")

# A client run inside lab3's network namespace (the internet), with this machine's Python:
# argv: the relay's address, the CA's roots, the user, the password, the message's subject.
CLIENT = r"""
import imaplib, smtplib, socket, ssl, sys
address, roots, user, password, subject, name = sys.argv[1:]
context = ssl.create_default_context(cadata=open(roots).read())
class Imap(imaplib.IMAP4_SSL):
    def _create_socket(self, timeout):
        return self.ssl_context.wrap_socket(socket.create_connection((address, 993), timeout), server_hostname=name)
with Imap(name, 993, ssl_context=context, timeout=20) as imap:
    imap.login(user, password)
    print("imap", imap.select("INBOX")[0])
class Smtp(smtplib.SMTP_SSL):
    def _get_socket(self, host, port, timeout):
        return self.context.wrap_socket(socket.create_connection((address, 465), timeout), server_hostname=host)
with Smtp(name, 465, context=context, timeout=20) as smtp:
    smtp.login(user, password)
    message = f"From: {user}\r\nTo: carol@outside.test\r\nSubject: {subject}\r\n\r\nhi\r\n"
    smtp.sendmail(user, ["carol@outside.test"], message)
    print("sent")
"""


def lab_power(verb: str, name: str) -> None:
    """Power a lab host off, or on again (lab/lab.py stop/start: its disk stays)."""
    r = subprocess.run(["python3", str(REPO / "lab/lab.py"), verb, name], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def forget(outside, data: dict) -> None:
    """The internet's resolvers (the ACME CA's, on lab3) forget the site's names, as they
    would after a TTL."""
    for z in zone.zones(data):
        outside.run("unbound-control flush_zone %s", z)


def deployed(deploy, *args, changes: int | None = None):
    result, changed, failed = deploy(*args)
    assert result.returncode == 0 and failed == 0, (result.stdout[-4000:], result.stderr[-2000:])
    if changes is not None:  # the operations that changed something, by name
        table = (result.stdout + result.stderr).split("Operation", 1)[-1].splitlines()
        ran = [line.strip() for line in table if re.search(r"\s\d+\s+[1-9]\d*\s+[-\d]+\s+[-\d]+\s*$", line)
               and "Grand total" not in line]
        assert changed == changes, ran
    return changed


def test_a_home_hidden_behind_the_relay_is_reached_only_through_it(deploy, site, inventory, on_server, lab_host,
                                                                   outside, passwords, world, tls_context):
    relay_host = lab_host("lab2")
    home, relay, internet = (vantage(inventory, n) for n in ("lab1", "lab2", "lab3"))
    hidden = site | {"link_enabled": True, "link_home_hidden": True}
    relay_fqdn = zone.servers(hidden, "relay")[0]["fqdn"]
    user, password = next(iter(passwords.items()))
    try:
        # The link's keys first, then each end gets the other's and the link comes up; the
        # relay's zones are current only then, after its certificate was asked for: the third
        # run's CA finds mta-sts.DOMAIN at the relay (as the timer's next try would). After
        # the first, the operator sets what the registrar command now prints (the relay as
        # the only name server): the internet stops asking home, which no longer answers.
        for run in range(3):
            deployed(deploy, *HIDDEN)
            if run == 0:
                play_registrar(*HIDDEN)
            forget(outside, hidden)
        relay_end = link.ends(hidden)[1]["link"]
        wait_until("home reaches the relay across the link",
                   lambda: on_server.run("timeout 3 bash -c %s", f"</dev/tcp/{relay_end}/25").rc == 0, 90)
        # Nothing of the lab's other hosts gets in at home: only the link, which home opens.
        for port in (25, 53, 465, 993, 22):
            for seen_from in (relay, internet):
                assert not seen_from.tcp_open(home.ipv4, port), f"{seen_from.name} reaches home's port {port}"
        # The zones name only the relay, and validate from the lab root without home.
        domain = site["domain"]
        for name, rtype, want in ((domain, "MX", f"10 {relay_fqdn}."), (domain, "NS", f"ns1.{domain}."),
                                  (f"_imaps._tcp.{domain}", "SRV", f"0 1 993 {relay_fqdn}.")):
            answer = relay.run("dig", "+short", f"@{relay.ipv4}", name, rtype).stdout.split("\n")
            assert [a for a in answer if a] == [want], (name, rtype, answer)
        assert relay.run("dig", "+short", f"@{relay.ipv4}", site["fqdn"], "A").stdout.strip() == ""
        anchors = "".join(f'  "{n}" static-ds {t} {a} {d} "{x}";\n' for n, _, _, t, a, d, x in
                          (a.split() for a in world.anchors))
        relay_host.run("printf '%%s' %s > /tmp/inhouse-anchor.conf", "trust-anchors {\n" + anchors + "};\n")
        relay_host.run("unbound-control flush_zone %s", site["domain"])
        out = relay_host.run("delv -a /tmp/inhouse-anchor.conf @127.0.0.1 %s MX", site["domain"]).stdout
        assert "; fully validated" in out and relay_fqdn in out, out

        # lab3 -> home, through the relay, judged there; read from lab3 through the front door.
        front = Endpoint(relay_fqdn, relay.ipv4, tls_context)
        token = f"hidden-in-{uuid.uuid4().hex[:8]}"
        forged = "".join(f"Authentication-Results: {n}; dmarc=pass (forged) header.from=outside.test\n"
                         for n in (relay_fqdn, site["fqdn"]))
        send_from_outside(outside, user, token, headers=forged)
        [message] = inbox(front, user, password, token, timeout=60) or [None]
        assert message, f"{token} did not reach {user} at home"
        results = [str(h) for h in message.get_all("Authentication-Results", [])]
        assert not [r for r in results if "forged" in r or r.startswith(site["fqdn"])], results
        verdicts = " ".join(r for r in results if r.startswith(f"{relay_fqdn};"))
        assert all(k in verdicts for k in ("spf=pass", "dkim=", "dmarc=")), results
        roots = LAB / "hidden-home-roots.pem"
        roots.write_text(world.ca_roots)
        token = f"hidden-out-{uuid.uuid4().hex[:8]}"
        client = internet.run(str(REPO / ".venv/bin/python"), "-c", CLIENT, relay.ipv4, str(roots), user, password,
                              token, relay_fqdn)
        assert client.returncode == 0 and "imap OK" in client.stdout and "sent" in client.stdout, client.stderr[-2000:]
        delivered = outside_maildir(outside, token, timeout=60).decode()
        assert home.ipv4 not in delivered, delivered  # the world never sees home's address
        assert f"d={site['domain']};" in delivered.split("\n\n")[0], delivered  # signed at home
        # The relay serves the MTA-STS policy, which names it alone (home is no MX).
        policy_host = f"mta-sts.{domain}"
        assert relay.run("dig", "+short", f"@{relay.ipv4}", policy_host, "A").stdout.split() == [relay.ipv4]
        policy = internet.run("curl", "-sS", "--cacert", str(roots), "--resolve", f"{policy_host}:443:{relay.ipv4}",
                              f"https://{policy_host}/.well-known/mta-sts.txt")
        assert policy.returncode == 0, policy.stderr
        assert [m for m in policy.stdout.splitlines() if m.startswith("mx:")] == [f"mx: {relay_fqdn}"], policy.stdout
        logins = on_server.run("journalctl -u dovecot --since -5min -o cat | grep -c %s", f"rip={internet.ipv4}")
        assert logins.stdout.strip() not in ("", "0"), "home's dovecot did not see lab3's address"

        # Home powered off: the relay takes the mail and queues it; home back, its probe
        # asks for the queue (ETRN) as soon as the link is up.
        lab_power("stop", "lab1")
        token = f"hidden-queued-{uuid.uuid4().hex[:8]}"
        send_from_outside(outside, user, token)
        wait_until("the relay queues the mail for home",
                   lambda: f'"address":"{user}"' in relay_host.run("postqueue -j").stdout.replace(" ", ""), 60)
        lab_power("start", "lab1")
        found = inbox(front, user, password, token, timeout=120)
        assert found, f"{token} did not reach {user} after home started again"

        # Settled: a further run changes nothing.
        deployed(deploy, *HIDDEN, changes=0)
    finally:
        play_registrar()  # the lab's own data: the direct topology, no link
        forget(outside, hidden)
        result, _, failed = deploy()
        assert result.returncode == 0 and failed == 0, (result.stdout[-4000:], result.stderr[-2000:])
    assert internet.tcp_open(home.ipv4, 25) and not relay_host.socket("tcp://0.0.0.0:993").is_listening
    deployed(deploy, changes=0)
