"""A dead disk, rehearsed as the README's "Rebuild a server" tells: the mail host (lab1:
the mail, DNS master) and then the relay (lab2: backup MX, DNS secondary, the backups)
lose their disks (`lab/lab.py rebuild`: the base image again, same addresses, new SSH
host keys) and come back with the deploy alone. Seen from outside, nothing that others
pinned changed: every zone validates from the lab root through the DS records of before,
on each name server; the TLSA and DKIM records and the served keys are those of before;
every message is back with its UID, flags and UIDVALIDITY, and the mail that came while
the host was away waited on the backup MX and arrives. A further deploy changes nothing.

Runs last (conftest): it throws away what the other tests left on the hosts.
"""

import hashlib
import re
import subprocess
import time
import uuid

import dns.dnssec
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rdatatype
import pytest

from tasks import backup, dkim, mail, tls, zone
from tests.helpers import REPO, Endpoint, inbox, send_from_outside, served_certificate, spki_sha256

pytestmark = [pytest.mark.lab("throws the lab hosts' disks away and deploys them again"),
              pytest.mark.zone_server, pytest.mark.mta]


def rebuild(name: str) -> None:
    r = subprocess.run(["python3", str(REPO / "lab/lab.py"), "rebuild", name], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


def wait(what: str, condition, timeout: float = 90, step: float = 1):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s")
        time.sleep(step)
    return result


# DNSSEC, checked here as a validating resolver does it (RFC 4035 section 5), but against
# one name server at a time: a resolver may ask either.

def answer(address: str, name: str, rtype: str) -> tuple[dns.rrset.RRset | None, dns.rrset.RRset | None]:
    """(RRset, its RRSIGs) of `name` at the name server `address`."""
    query = dns.message.make_query(name, rtype, want_dnssec=True)
    query.flags &= ~dns.flags.RD
    reply = dns.query.udp_with_fallback(query, address, timeout=5)[0]
    kind = dns.rdatatype.from_text(rtype)
    rrset = next((r for r in reply.answer if r.rdtype == kind), None)
    sigs = next((r for r in reply.answer if r.rdtype == dns.rdatatype.RRSIG and r.covers == kind), None)
    return rrset, sigs


def validated(address: str, name: str, rtype: str, keys: dict) -> list[str]:
    """The records of name/rtype at `address`, once their signature verifies with `keys`."""
    rrset, sigs = answer(address, name, rtype)
    assert rrset is not None and sigs is not None, (address, name, rtype, "no signed answer")
    dns.dnssec.validate(rrset, sigs, keys)  # raises ValidationFailure
    return sorted(r.to_text() for r in rrset)


def chain(root: str, anchors: list[str], server: str, z: str) -> dict:
    """The zone's DNSKEY set as served by `server`, validated from the lab root: the root's
    keys by the anchor, the zone's DS by the root's keys, the zone's keys by that DS."""
    origin = dns.name.root
    root_keys, root_sigs = answer(root, ".", "DNSKEY")
    anchored = {a.split()[3] for a in anchors}  # key tags
    assert any(str(dns.dnssec.key_id(k)) in anchored for k in root_keys)
    dns.dnssec.validate(root_keys, root_sigs, {origin: root_keys})
    ds, ds_sigs = answer(root, z, "DS")
    dns.dnssec.validate(ds, ds_sigs, {origin: root_keys})
    keys, key_sigs = answer(server, z, "DNSKEY")
    name = dns.name.from_text(z)
    assert any(dns.dnssec.make_ds(name, k, d.digest_type) == d for k in keys for d in ds), (server, z, "no DS key")
    dns.dnssec.validate(keys, key_sigs, {name: keys})
    return {name: keys}


def pinned_names(data: dict, z: str, selector: str) -> list[tuple[str, str]]:
    """What others pin or cache in zone z: its keys (the DS names one), DKIM, MX, and in the
    primary zone the MX hosts' TLSA."""
    out = [(z, "DNSKEY"), (f"{selector}._domainkey.{z}", "TXT"), (z, "MX")]
    if z == data["domain"]:
        out += [(f"_25._tcp.{h['fqdn']}", "TLSA") for g in ("mail", "relay") for h in zone.servers(data, g)]
    return out


def served(data: dict, world, selector: str) -> dict:
    """Each name server's answers for the pinned names, each validated from the lab root,
    and its SOA serial of each zone; once the secondaries serve the master's serials (a
    zone re-signed a moment ago reaches them by NOTIFY within seconds)."""
    root = data["resolver_root_hints"][1].split()[-1]
    servers = zone.servers(data, "mail") + zone.servers(data, "relay")

    def serials():
        found = {tuple(answer(ns["ipv4"], z, "SOA")[0][0].serial for z in zone.zones(data)) for ns in servers}
        return found if len(found) == 1 else None

    (serial,) = wait("the secondaries serve the master's serials", serials, timeout=30)
    out = {}
    for ns in servers:
        answers = {}
        for z, number in zip(zone.zones(data), serial, strict=True):
            keys = chain(root, world.anchors, ns["ipv4"], z)
            for name, rtype in pinned_names(data, z, selector):
                answers[(name, rtype)] = validated(ns["ipv4"], name, rtype, keys)
            answers[(z, "SOA")] = [str(number)]
        out[ns["fqdn"]] = answers
    return out


def served_key(fqdn: str, address: str, context) -> str:
    """SHA-256 of the public key served on 25 (what a TLSA 3 1 1 record names)."""
    return spki_sha256(served_certificate(Endpoint(fqdn, address, context), 25))


def mailbox(mx: Endpoint, user: str, password: str) -> tuple[int, dict[int, tuple[str, str]]]:
    """UIDVALIDITY of the INBOX and each message by UID: (flags, SHA-256 of the message)."""
    with mx.imap() as imap:
        imap.login(user, password)
        imap.select("INBOX", readonly=True)
        validity = int(re.search(rb"\d+", imap.response("UIDVALIDITY")[1][0]).group())
        _, data = imap.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[])")
    messages = {}
    for item in data:
        if isinstance(item, tuple):
            uid = int(re.search(rb"UID (\d+)", item[0]).group(1))
            flags = " ".join(sorted(re.search(rb"FLAGS \(([^)]*)\)", item[0]).group(1).decode().split()))
            messages[uid] = (flags, hashlib.sha256(item[1]).hexdigest())
    return validity, messages


def maildir_files(host) -> dict[str, int]:
    """Every message file of every Maildir on the host by content hash: how many."""
    out = host.check_output(f"find {mail.MAIL_HOME} -type f -path '*/cur/*' -o -type f -path '*/new/*' "
                            "| xargs -r sha256sum | cut -c1-64 | sort")
    counts: dict[str, int] = {}
    for digest in out.split():
        counts[digest] = counts.get(digest, 0) + 1
    return counts


def queued(host, recipient: str) -> bool:
    return recipient in host.check_output("mailq")


def test_a_backup_to_an_unreachable_repository_fails_visibly(on_server, deploy, mx, mail_data, passwords):
    """The repository out of reach (its SSH port refused): the run fails, says why in the
    status the deploy reads, and mails the postmaster (the admin's INBOX)."""
    relay = zone.servers(mail_data, "relay")[0]["ipv4"]
    block = f"OUTPUT -d {relay} -p tcp --dport 22 -j REJECT"
    on_server.check_output(f"iptables -I {block}")
    try:
        failed = on_server.run("systemctl start inhouse-backup.service")
    finally:
        on_server.check_output(f"iptables -D {block}")
    assert failed.rc != 0 and on_server.run("systemctl is-failed -q inhouse-backup.service").rc == 0
    status = on_server.file(backup.STATUS).content_string
    assert status.startswith("failed ") and "cannot" in status, status
    user = mail.admin(mail_data)
    assert inbox(mx, user, passwords[user], "backup", timeout=60), "no mail to the postmaster"
    result, _, _ = deploy("--limit", "lab1", "--dry")
    assert "the last backup failed" in result.stdout + result.stderr, result.stderr[-2000:]
    # Reachable again: the next run succeeds.
    on_server.check_output("systemctl start inhouse-backup.service")
    assert on_server.file(backup.STATUS).content_string.startswith("ok ")


@pytest.fixture(scope="module")
def mail_host_rebuilt(deploy, on_server, server, observer, outside, lab_host, mx, mail_data, passwords, world,
                      tls_context):
    """lab1 before and after its rebuild: what the tests compare."""
    user = mail.admin(mail_data)
    relay = zone.servers(mail_data, "relay")[0]
    on_relay = lab_host("lab2")
    token, during = uuid.uuid4().hex[:12], uuid.uuid4().hex[:12]
    send_from_outside(outside, user, f"{token} before the rebuild")
    assert inbox(mx, user, passwords[user], token), "the message of before did not land"
    with mx.imap() as imap:  # read and flagged, as a client leaves it
        imap.login(user, passwords[user])
        imap.select("INBOX")
        _, ids = imap.search(None, "SUBJECT", token)
        imap.store(ids[0].split()[0], "+FLAGS", "(\\Seen \\Flagged)")
    # The nightly backup, now (what the timer runs).
    on_server.check_output("systemctl start inhouse-backup.service")
    assert on_server.file(backup.STATUS).content_string.startswith("ok ")
    selector = on_server.check_output(f"head -n 1 {dkim.CURRENT}")
    before = {"mailbox": mailbox(mx, user, passwords[user]), "files": maildir_files(on_server),
              "served": served(mail_data, world, selector), "selector": selector,
              "key": served_key(mail_data["fqdn"], mx.address, tls_context)}

    rebuild("lab1")
    # The mail host is away (its fresh disk has no MTA yet): the backup MX takes the mail.
    send_from_outside(outside, user, f"{during} during the rebuild")
    wait("the relay queued the mail of the mail host", lambda: queued(on_relay, user))

    # First with the backup out of reach (the relay refuses the mail host's SSH): the run
    # must stop at the mail and start no service that would serve an empty mailbox.
    block = f"INPUT -s {server.ipv4} -p tcp --dport 22 -j REJECT"
    on_relay.check_output(f"iptables -I {block}")
    try:
        stopped = deploy("--limit", "lab1", bootstrap=True)
        listening = {port: observer.tcp_open(server.ipv4, port) for port in (25, 53, 143, 465, 587, 993)}
    finally:
        on_relay.check_output(f"iptables -D {block}")
    bootstrap = deploy("--limit", "lab1", bootstrap=True)  # the same command again, the relay reachable
    again = deploy()
    further = deploy()
    return {"user": user, "during": during, "before": before, "relay": relay, "listening": listening,
            "runs": {"stopped": stopped, "bootstrap": bootstrap, "second": again, "further": further}}


def test_a_rebuild_that_cannot_read_the_backup_stops_and_serves_nothing(mail_host_rebuilt):
    result, _, failed = mail_host_rebuilt["runs"]["stopped"]
    out = result.stdout + result.stderr
    assert result.returncode != 0 and failed, out[-3000:]
    assert "Put back the keys" in out and "cannot read ssh://" in out, out[-3000:]
    assert not any(mail_host_rebuilt["listening"].values()), mail_host_rebuilt["listening"]


def test_the_rebuild_is_the_deploy(mail_host_rebuilt):
    for run in ("bootstrap", "second", "further"):
        result, _, failed = mail_host_rebuilt["runs"][run]
        assert result.returncode == 0 and not failed, (run, result.stdout[-3000:], result.stderr[-2000:])
    # The same command again goes on: the mail back, the relay asked for what it kept.
    result = mail_host_rebuilt["runs"]["bootstrap"][0]
    out = result.stdout + result.stderr
    assert "Put back the mail" in out and "ETRN" in out and "The rebuild is complete" in out, out[-3000:]
    assert "did not take ETRN" not in out, out[-3000:]
    second = mail_host_rebuilt["runs"]["second"][0]
    assert "Put back the mail" not in second.stdout + second.stderr  # once complete, an ordinary run


def test_a_further_deploy_changes_nothing(mail_host_rebuilt):
    result, changed, failed = mail_host_rebuilt["runs"]["further"]
    assert (changed, failed) == (0, 0), result.stdout[-3000:]


def test_every_message_is_back_with_its_uid_flags_and_uidvalidity(mail_host_rebuilt, mx, on_server, passwords):
    user, before = mail_host_rebuilt["user"], mail_host_rebuilt["before"]
    validity, messages = mailbox(mx, user, passwords[user])
    assert validity == before["mailbox"][0], "UIDVALIDITY changed: clients would fetch everything again"
    old = before["mailbox"][1]
    assert {uid: messages.get(uid) for uid in old} == old
    assert any("\\Flagged" in flags for flags, _ in old.values())
    # Every Maildir of every user, file by file.
    files = maildir_files(on_server)
    assert {d: files.get(d, 0) for d in before["files"]} == before["files"]


def test_mail_that_came_during_the_rebuild_arrives(mail_host_rebuilt, mx, passwords, lab_host):
    user = mail_host_rebuilt["user"]
    # ETRN at the end of the rebuild's run: seconds, not the relay's next retry.
    assert inbox(mx, user, passwords[user], mail_host_rebuilt["during"], timeout=60), "the queued mail did not arrive"
    assert not queued(lab_host("lab2"), user)


def test_zones_validate_with_the_ds_of_before_on_every_name_server(mail_host_rebuilt, mail_data, world):
    before = mail_host_rebuilt["before"]
    after = served(mail_data, world, before["selector"])  # validates each answer from the root
    for ns, answers in after.items():
        for key, records in answers.items():
            if key[1] == "SOA":  # one serial never means two versions of a zone (RFC 1996)
                assert int(records[0]) > int(before["served"][ns][key][0]), (ns, key)
            else:  # DNSKEY, DKIM, TLSA: what others pinned
                assert records == before["served"][ns][key], (ns, key)
    first, *others = after.values()
    assert all(o == first for o in others), "the secondary does not answer as the master"


def test_the_served_tls_key_is_the_one_of_before(mail_host_rebuilt, mail_data, mx, tls_context, on_server):
    assert served_key(mail_data["fqdn"], mx.address, tls_context) == mail_host_rebuilt["before"]["key"]
    assert on_server.file(tls.ISSUER).exists  # the CA's certificate, not a self-signed one


def test_mail_from_outside_lands_after_the_rebuild(mail_host_rebuilt, outside, mx, passwords):
    user, token = mail_host_rebuilt["user"], uuid.uuid4().hex[:12]
    send_from_outside(outside, user, f"{token} after the rebuild")  # DANE from outside.test
    assert inbox(mx, user, passwords[user], token, timeout=60)


@pytest.fixture(scope="module")
def relay_rebuilt(mail_host_rebuilt, deploy, lab_host, mail_data, world, tls_context, on_server):
    """lab2, the relay, rebuilt after lab1."""
    relay = mail_host_rebuilt["relay"]
    selector = on_server.check_output(f"head -n 1 {dkim.CURRENT}")
    before = {"served": served(mail_data, world, selector),
              "key": served_key(relay["fqdn"], relay["ipv4"], tls_context)}
    rebuild("lab2")
    runs = {"bootstrap": deploy("--limit", "lab2", bootstrap=True), "second": deploy(), "further": deploy()}
    return {"before": before, "runs": runs, "relay": relay, "selector": selector}


def test_the_relay_comes_back_with_its_keys_and_zones(relay_rebuilt, mail_data, world, tls_context):
    for run, (result, _, failed) in relay_rebuilt["runs"].items():
        assert result.returncode == 0 and not failed, (run, result.stdout[-3000:], result.stderr[-2000:])
    result, changed, _ = relay_rebuilt["runs"]["further"]
    assert changed == 0, result.stdout[-3000:]
    relay = relay_rebuilt["relay"]
    assert served_key(relay["fqdn"], relay["ipv4"], tls_context) == relay_rebuilt["before"]["key"]
    after, before = served(mail_data, world, relay_rebuilt["selector"]), relay_rebuilt["before"]["served"]
    # The same keys and records (the serials may have risen since: bind re-signs).
    assert {k: v for k, v in after[relay["fqdn"]].items() if k[1] != "SOA"} == {
        k: v for k, v in before[relay["fqdn"]].items() if k[1] != "SOA"}


def test_backups_go_on_to_the_rebuilt_relay(relay_rebuilt, on_server):
    # Its repository went with its disk: the next backup starts a new one (the mail host kept the mail).
    on_server.check_output("systemctl start inhouse-backup.service")
    assert on_server.file(backup.STATUS).content_string.startswith("ok ")


def test_the_rebuilt_relay_is_backup_mx_again(relay_rebuilt, mail_data, tls_context):
    relay = relay_rebuilt["relay"]
    with Endpoint(relay["fqdn"], relay["ipv4"], tls_context).smtp(25) as s:
        s.mail("")
        assert s.rcpt(f"nobody-{uuid.uuid4().hex[:8]}@{mail_data['domain']}")[0] == 550
        assert s.rcpt(mail.admin(mail_data))[0] == 250
        s.rset()

