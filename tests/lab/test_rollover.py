"""Keys others look up roll with no broken moment (tasks/rollover.py), on demand as the
README says (tls_key_made_after, dkim_key_made_after set to now), against the lab's real
name servers, with the lab's short TTL (20 s) and the production logic:

- a probe asks every name server address for the TLSA records of both MX hosts and
  fetches the key served on their port 25, every second, through the whole roll; at no
  moment is a key served that a record set served within the last TTL (what a sender's
  resolver may hold) lacks;
- mail submitted during the roll reaches outside.test with a DKIM signature that verifies
  against the zone, some signed with the old selector and some with the new one; mail
  from outside.test (whose postfix checks DANE) keeps arriving;
- the old DKIM record stays published after the roll, and goes with dkim_retire_days;
- a run after all that changes nothing, and the check command finds nothing wrong.
"""

import email
import re
import subprocess
import sys
import threading
import time
import uuid

import dkim
import dns.message
import dns.query
import dns.rdatatype
import pytest

from tasks import check
from tasks import dkim as dkim_keys
from tests.helpers import LAB, OUTSIDE_USER, REPO, inbox, outside_maildir, send_from_outside

pytestmark = [pytest.mark.lab("rolls the TLS and DKIM keys of the lab's hosts"),
              pytest.mark.zone_server, pytest.mark.mta]


class DaneProbe(threading.Thread):
    """Every second: the TLSA set each name server address serves for each MX host, and the
    key each MX host serves on port 25."""

    def __init__(self, hosts: list[dict], name_servers: list[str]):
        super().__init__(daemon=True)
        self.hosts, self.name_servers = hosts, name_servers
        self.records: list[tuple[float, str, set[str], int]] = []  # (when, fqdn, TLSA set, TTL)
        self.served: list[tuple[float, str, str]] = []  # (when, fqdn, SHA-256 of the key)
        self.errors: list[str] = []
        self.stopping = threading.Event()

    def run(self):
        while not self.stopping.is_set():
            for host in self.hosts:
                name = f"_25._tcp.{host['fqdn']}"
                for address in self.name_servers:
                    try:
                        answer = dns.query.udp(dns.message.make_query(name, "TLSA"), address, timeout=2)
                    except Exception as e:  # noqa: BLE001 (a lost answer is recorded, not fatal)
                        self.errors.append(f"{address} {name}: {type(e).__name__}")
                        continue
                    sets = [r for r in answer.answer if r.rdtype == dns.rdatatype.TLSA]
                    self.records.append((time.time(), host["fqdn"], {r.to_text().split()[-1].lower()
                                                                     for s in sets for r in s},
                                         max((s.ttl for s in sets), default=0)))
                try:
                    self.served.append((time.time(), host["fqdn"], check.spki(check.served_key(host["fqdn"],
                                                                                                host["ipv4"]))))
                except Exception as e:  # noqa: BLE001 (a reload's moment without a listener)
                    self.errors.append(f"{host['fqdn']} port 25: {type(e).__name__}")
            self.stopping.wait(1)

    def broken_moments(self) -> list[str]:
        """Each time a key was served that some TLSA set, served within one TTL before,
        did not name: a DANE sender holding that set would defer the mail."""
        out = []
        for t, fqdn, key in self.served:
            for t2, fqdn2, names, ttl in self.records:
                if fqdn2 == fqdn and t - max(ttl, 1) <= t2 <= t and key not in names:
                    out.append(f"{time.strftime('%H:%M:%S', time.gmtime(t))} {fqdn} serves {key[:12]}, "
                               f"a set of {time.strftime('%H:%M:%S', time.gmtime(t2))} names {sorted(names)}")
                    break
        return out

    def keys(self, fqdn: str) -> list[str]:
        """The keys served, in the order they were first seen."""
        return list(dict.fromkeys(k for _, f, k in self.served if f == fqdn))


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())


def txt_at(address: str):
    """dkimpy's DNS lookup, answered by one name server: what it serves now."""
    def txt(name, timeout=5):
        answer = dns.query.udp(dns.message.make_query(name.decode(), "TXT"), address, timeout=timeout)
        return b"".join(s for rrset in answer.answer for r in rrset for s in r.strings)
    return txt


def test_tls_and_dkim_keys_roll_with_no_broken_moment(deploy, mail_data, mx, outside, passwords, server,
                                                      on_server, world, tmp_path):
    hosts = [h for g in ("mail", "relay") for h in mail_data["zone_hosts"][g]]
    name_servers = [a for h in hosts for a in (h["ipv4"], h["ipv6"]) if a]
    probe = DaneProbe(hosts, name_servers)
    selector_before = on_server.check_output("head -n 1 %s", dkim_keys.CURRENT)
    sent_out, sent_in = [], []
    sender = "alice@inhouse.test"

    def mail_both_ways():
        token = f"roll-{uuid.uuid4().hex[:10]}"
        for attempt in range(20):  # exim re-executes itself on a reload (a new certificate)
            try:
                s = mx.smtp(587)
                break
            except ConnectionRefusedError:
                if attempt == 19:
                    raise
                time.sleep(0.5)
        with s:
            s.login(sender, passwords[sender])
            s.sendmail(sender, [OUTSIDE_USER],
                       f"From: {sender}\r\nTo: {OUTSIDE_USER}\r\nSubject: {token}\r\n\r\nhi\r\n")
        sent_out.append(token)
        send_from_outside(outside, sender, f"{token}-in")
        sent_in.append(f"{token}-in")

    def run(*data: str) -> str:
        result, _, failed = deploy(*[a for d in data for a in ("--data", d)])
        assert result.returncode == 0 and failed == 0, result.stderr[-3000:]
        return result.stdout + result.stderr

    probe.start()
    try:
        asked = now_iso()
        roll = [f"tls_key_made_after={asked}", f"dkim_key_made_after={asked}"]
        time.sleep(1)  # keys made in this second are "made after" it
        # First run: due, and every server serves the next records; the wait starts now.
        first = run(*roll)
        assert "Roll the TLS key" not in first and "roll to" not in first
        assert re.search(r"mx\.inhouse\.test: the TLS key is due for a roll .* rolls in a run after", first), first
        mail_both_ways()
        ttl = max(t for *_, t in probe.records)
        deadline = time.time() + 2 * ttl + 2
        while time.time() < deadline:  # mail keeps flowing while the records age
            mail_both_ways()
            time.sleep(3)
        # Second run: both MX hosts roll to their next TLS key, the mail host to its next DKIM key.
        second = run(*roll)
        for fqdn in ("mx.inhouse.test", "relay.inhouse.test"):
            assert f"Roll the TLS key of {fqdn}" in second, second[-3000:]
        assert re.search(r"DKIM: .*roll to \S+ \(made before dkim_key_made_after", second), second[-3000:]
        mail_both_ways()
        # Third run: the new next keys are published, the old TLSA records go.
        run(*roll)
        mail_both_ways()
        deadline = time.time() + ttl + 2
        while time.time() < deadline:
            mail_both_ways()
            time.sleep(3)
    finally:
        probe.stopping.set()
        probe.join()
    assert not probe.broken_moments(), "\n".join(probe.broken_moments()[:10])
    assert len(probe.served) > 40 and len(probe.records) > 100, (len(probe.served), len(probe.records))
    for host in hosts:  # each served its next key from the roll on, and only it
        keys = probe.keys(host["fqdn"])
        assert len(keys) == 2, (host["fqdn"], keys)
        last = {frozenset(names) for t, f, names, _ in probe.records[-len(name_servers) * len(hosts):]
                if f == host["fqdn"]}
        (final,) = last  # every name server serves the same set
        assert keys[1] in final and keys[0] not in final and len(final) == 2, (keys, final)
    # Every message out arrived signed, each signature verified by the name servers' records
    # now; both selectors signed some.
    selectors = set()
    for token in sent_out:
        raw = outside_maildir(outside, token)
        assert dkim.verify(raw, dnsfunc=txt_at(server.ipv4)), f"{token}: the DKIM signature does not verify"
        selectors.add(re.search(r"\bs=([a-z0-9-]+);", email.message_from_bytes(raw)["DKIM-Signature"]).group(1))
    selector_after = on_server.check_output("head -n 1 %s", dkim_keys.CURRENT)
    assert selector_after != selector_before and selectors == {selector_before, selector_after}, selectors
    # Every message in arrived: outside.test's DANE checks never failed.
    assert len(inbox(mx, sender, passwords[sender], "roll-", count=len(sent_in), timeout=60)) >= len(sent_in)
    # The old DKIM record stays published (dkim_retire_days), then goes with its key.
    old_record = f"{selector_before}._domainkey.inhouse.test"
    assert txt_at(server.ipv4)(old_record.encode())
    run("dkim_retire_days=0")
    for address in name_servers:
        deadline = time.time() + 20
        while txt_at(address)(old_record.encode()) and time.time() < deadline:
            time.sleep(1)
        assert not txt_at(address)(old_record.encode()), f"{address} still serves {old_record}"
    assert on_server.run("test -e %s", dkim_keys.key_path(selector_before)).rc == 1
    # Settled: a run changes nothing; the check finds nothing wrong.
    result, changed, failed = deploy()
    assert (changed, failed) == (0, 0), result.stdout[-3000:]
    roots = tmp_path / "roots.pem"
    roots.write_text(world.ca_roots)
    r = subprocess.run([sys.executable, "-m", "tasks.check", str(LAB / "inventory.py"), "--ca", str(roots)],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
