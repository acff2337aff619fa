"""Key rollovers decided from the host's key files and what the name servers serve (asked
of a stand-in for the DNS here; the lab rolls against real name servers, tests/lab/test_rollover.py)."""

import time

import pytest

from tasks import dkim, rollover, tls, zone

NOW = time.time()
DAY = 86400
NS = {"mail": [{"fqdn": "mx.example.org", "ipv4": "192.0.2.1", "ipv6": "2001:db8::1"}],
      "relay": [{"fqdn": "vps.example.org", "ipv4": "192.0.2.2", "ipv6": None}]}
NEXT = "3 1 1 " + "cd" * 32


@pytest.fixture
def data(tmp_path):
    def make(**changes) -> dict:
        return {"fqdn": "mx.example.org", "domain": "example.org", "extra_domains": ["example.net"],
                "secrets_dir": str(tmp_path), "zone_hosts": NS, "tls_key_days": 365, "tls_key_made_after": "",
                "dkim_selector": "", "dkim_key_days": 183, "dkim_key_made_after": "", "dkim_retire_days": 7,
                "mta": "postfix", "zone_dnssec_key_made_after": ""} | changes
    return make


@pytest.fixture
def dns(monkeypatch):
    """What each name server address serves: {address: {(name, type): ([records], ttl)}}."""
    zones: dict = {}
    monkeypatch.setattr(rollover, "served", lambda address, name, rtype: zones.get(address, {}).get((name, rtype)))
    return zones


def serve(dns, name, rtype, records, ttl=3600, addresses=("192.0.2.1", "2001:db8::1", "192.0.2.2")):
    for a in addresses:
        dns.setdefault(a, {})[(name, rtype)] = (records, ttl)


def tls_heads(made):
    return {tls.TLSA: "3 1 1 " + "ab" * 32, tls.NEXT_TLSA: NEXT, tls.MADE: f"{made:.0f}"}


def test_a_tls_key_rolls_when_old_or_asked_for(data):
    assert tls.roll_due(data(), tls_heads(NOW - 10 * DAY), NOW) == ""
    assert "days old, tls_key_days is 365" in tls.roll_due(data(), tls_heads(NOW - 366 * DAY), NOW)
    assert tls.roll_due(data(tls_key_days=0), tls_heads(NOW - 3000 * DAY), NOW) == ""
    asked = data(tls_key_made_after=time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(NOW)))
    assert "tls_key_made_after" in tls.roll_due(asked, tls_heads(NOW - 60), NOW)
    assert tls.roll_due(asked, tls_heads(NOW + 60), NOW + 120) == ""  # the key made since
    assert tls.roll_due(data(), {}, NOW) == ""  # no key yet: the first run makes one


def test_a_tls_key_rolls_only_after_every_server_served_its_record_twice_its_ttl(data, dns):
    d, heads, name = data(), tls_heads(NOW - 400 * DAY), "_25._tcp.mx.example.org"
    serve(dns, name, "TLSA", ["3 1 1 " + "ab" * 32, NEXT], addresses=("192.0.2.1", "2001:db8::1"))
    assert not tls.ready(d, heads, "old", NOW)  # the secondary lags
    serve(dns, name, "TLSA", ["3 1 1 " + "ab" * 32, NEXT.upper()], ttl=300)
    assert not tls.ready(d, heads, "old", NOW)  # served everywhere from now on ...
    assert not tls.ready(d, heads, "old", NOW + 599)
    assert tls.ready(d, heads, "old", NOW + 600)  # ... for twice the TTL
    serve(dns, name, "TLSA", ["3 1 1 " + "ab" * 32], addresses=("192.0.2.2",))
    assert not tls.ready(d, heads, "old", NOW + 700)  # gone from one server: the wait starts again
    serve(dns, name, "TLSA", ["3 1 1 " + "ab" * 32, NEXT], ttl=300)
    assert not tls.ready(d, heads, "old", NOW + 800)
    assert tls.ready(d, heads, "old", NOW + 1400)
    other = heads | {tls.NEXT_TLSA: "3 1 1 " + "ef" * 32}  # another next key: its own wait
    serve(dns, name, "TLSA", ["3 1 1 " + "ab" * 32, NEXT, "3 1 1 " + "ef" * 32], ttl=300)
    assert not tls.ready(d, other, "old", NOW + 1500)


def dkim_system(cur=None, nxt=None, old=None):
    heads = {}
    for path, value in ((dkim.CURRENT, cur), (dkim.NEXT, nxt), (dkim.RETIRING, old)):
        if value:
            heads[path] = "\n".join(str(v) for v in value)
    return {"debian": 13, "container": "none", "heads": heads}


def test_a_new_host_makes_its_signing_key_and_the_next_one(data):
    plan = dkim.plan(data(), dkim_system(), NOW)
    today = time.strftime("%Y%m%d", time.gmtime(NOW))
    assert plan == {"selector": today, "make": {"current": today, "next": today + "b"}, "roll": "", "retire": ""}
    named = dkim.plan(data(dkim_selector="mail"), dkim_system(), NOW)
    assert named["selector"] == "mail" and named["make"] == {"current": "mail", "next": today}


def test_a_kept_key_signs_and_nothing_is_made(data):
    system = dkim_system(("20260101", "K1", NOW - DAY), ("20260101b", "K2"))
    assert dkim.plan(data(), system, NOW) == {"selector": "20260101", "make": {}, "roll": "", "retire": ""}
    assert dkim.published(data(), system, NOW) == [("20260101", "K1"), ("20260101b", "K2")]
    without_next = dkim_system(("20260101", "K1", NOW - DAY))  # keys made before the next key existed
    assert dkim.plan(data(), without_next, NOW)["make"] == {"next": time.strftime("%Y%m%d", time.gmtime(NOW))}


def test_dkim_rolls_to_a_published_key_then_retires_the_old_one(data, dns):
    d = data()
    system = dkim_system(("20260101", "K1", NOW - 200 * DAY), ("20260101b", "K2"))
    for z in ("example.org", "example.net"):
        serve(dns, f"20260101b._domainkey.{z}", "TXT", ['"v=DKIM1; k=rsa; p=K" "2"'], ttl=600)
    assert dkim.plan(d, system, NOW)["roll"] == ""  # served from now: one TTL to wait
    plan = dkim.plan(d, dkim_system(("20260101", "K1", NOW - 200 * DAY), ("20260101b", "K2")), NOW + 600)
    today = time.strftime("%Y%m%d", time.gmtime(NOW + 600))
    assert plan["selector"] == "20260101b" and "200 days old" in plan["roll"] and plan["make"] == {"next": today}
    # After the roll: the old key published for dkim_retire_days, then dropped with its key.
    after = dkim_system(("20260101b", "K2", NOW + 600), (today, "K3"), ("20260101", "K1", NOW + 600))
    assert dkim.published(d, after, NOW + DAY) == [("20260101b", "K2"), (today, "K3"), ("20260101", "K1")]
    assert dkim.plan(d, after, NOW + DAY)["retire"] == ""
    assert dkim.published(d, after, NOW + 8 * DAY) == [("20260101b", "K2"), (today, "K3")]
    assert dkim.plan(d, after, NOW + 8 * DAY)["retire"] == "20260101"
    script = dkim.script(d, dkim.plan(d, after, NOW + 8 * DAY), NOW + 8 * DAY)
    assert f"rm -f {dkim.RETIRING} {dkim.DIR}/20260101.private" in script


def test_a_selector_named_in_data_is_published_before_it_signs(data, dns):
    d = data(dkim_selector="s2")
    system = dkim_system(("20260101", "K1", NOW - DAY), ("20260101b", "K2"))
    plan = dkim.plan(d, system, NOW)
    assert plan["selector"] == "20260101" and plan["make"] == {"next": "s2"} and not plan["roll"]
    published = dkim_system(("20260101", "K1", NOW - DAY), ("s2", "KS"))
    for z in ("example.org", "example.net"):
        serve(dns, f"s2._domainkey.{z}", "TXT", ['"v=DKIM1; k=rsa; p=KS"'], ttl=60)
    assert dkim.plan(d, published, NOW)["roll"] == ""
    assert dkim.plan(d, dkim_system(("20260101", "K1", NOW - DAY), ("s2", "KS")), NOW + 60)["selector"] == "s2"


def test_a_second_roll_waits_for_the_last_key_to_retire(data, dns):
    system = dkim_system(("s2", "KS", NOW - DAY), ("20260101c", "K3"), ("20260101", "K1", NOW - DAY))
    for z in ("example.org", "example.net"):
        serve(dns, f"20260101c._domainkey.{z}", "TXT", ['"v=DKIM1; k=rsa; p=K3"'], ttl=1)
    asked = data(dkim_key_made_after=time.strftime("%Y-%m-%d", time.gmtime(NOW + DAY)))
    assert dkim.plan(asked, system, NOW + 10)["roll"] == ""
    assert dkim.plan(asked, system, NOW + 7 * DAY)["retire"] == "20260101"  # retired now: the roll goes on
    assert dkim.plan(asked, system, NOW + 7 * DAY + 2)["roll"]


def bind_keys(*keys) -> dict[str, list[dict]]:
    """bind's key states as the System fact reads them: (id, made YYYYMMDDhhmmss, goal, DS)."""
    return zone.dnssec_keys([f"Kexample.org.+013+{i:05d}.state Generated:{made} GoalState:{goal} DSState:{ds}"
                             for i, made, goal, ds in keys])


def test_dnssec_key_states_are_read_with_their_moment_in_utc():
    keys = bind_keys((4711, "20261203151244", "omnipresent", "rumoured"))
    assert keys == {"example.org": [{"id": 4711, "made": 1796310764.0, "goal": "omnipresent", "ds": "rumoured",
                                     "dnskey": "", "zrrsig": "", "removed": 0.0}]}


def test_a_dnssec_roll_is_asked_once_for_keys_made_before_the_moment(data):
    old = bind_keys((4711, "20261203151244", "omnipresent", "omnipresent"))
    asked = data(zone_dnssec_key_made_after="2026-12-04")
    assert zone.dnssec_rolls(asked, old, now=1796342400 + 1) == {"example.org": [4711]}
    # Not before the moment; not when nothing is asked.
    assert zone.dnssec_rolls(asked, old, now=1796342400 - 1) == {}
    assert zone.dnssec_rolls(data(zone_dnssec_key_made_after=""), old, now=NOW) == {}
    # Once bind made the successor (the old key on its way out), the roll is not asked again.
    rolling = bind_keys((4711, "20261203151244", "hidden", "unretentive"), (815, "20261204090000", "omnipresent",
                                                                          "rumoured"))
    assert zone.dnssec_rolls(asked, rolling, now=1796342400 + 86400) == {}


def test_a_dnssec_roll_waits_until_the_last_rolls_old_key_has_left_the_zone(data):
    # bind's state files as the System fact reads them: the old key of a finished roll is out
    # of the chain (DS hidden) but its signatures are still in the zone until 2026-12-16.
    line = ("Kexample.org.+013+{:05d}.state Generated:{} GoalState:{} DSState:{} DNSKEYState:{} "
            "ZRRSIGState:{}{}")
    leaving = zone.dnssec_keys([
        line.format(4711, "20261203151244", "hidden", "hidden", "omnipresent", "unretentive",
                    " Removed:20261216064138"),
        line.format(815, "20261204090000", "omnipresent", "omnipresent", "omnipresent", "rumoured", "")])
    asked = data(zone_dnssec_key_made_after="2026-12-05")
    now = 1796342400 + 2 * 86400
    assert zone.dnssec_rolls(asked, leaving, now=now) == {}
    assert zone.dnssec_deferred(asked, leaving, now=now) == {"example.org": 1797403298.0}
    assert "after 2026-12-16 06:41 UTC" in zone.dnssec_deferred_note(asked | {"fqdn": "ns1.example.org"},
                                                                    zone.dnssec_deferred(asked, leaving, now=now))
    # Out of the zone: the roll goes ahead; nothing asked, nothing deferred.
    gone = zone.dnssec_keys([
        line.format(4711, "20261203151244", "hidden", "hidden", "hidden", "hidden", " Removed:20261216064138"),
        line.format(815, "20261204090000", "omnipresent", "omnipresent", "omnipresent", "omnipresent", "")])
    assert zone.dnssec_rolls(asked, gone, now=now) == {"example.org": [815]}
    assert zone.dnssec_deferred(asked, gone, now=now) == {}
    assert zone.dnssec_deferred(data(zone_dnssec_key_made_after=""), leaving, now=now) == {}
    # NSD's signer keeps an old key's file (no DNSKEY state) only while it is in the zone.
    nsd = bind_keys((4711, "20261203151244", "hidden", "hidden"), (815, "20261204090000", "omnipresent",
                                                                   "omnipresent"))
    assert zone.dnssec_deferred(asked, nsd, now=now) == {"example.org": 0.0}


def test_the_registrar_is_asked_for_only_while_an_old_key_waits_for_its_ds_to_go():
    steady = bind_keys((4711, "20261203151244", "omnipresent", "rumoured"))
    assert zone.dnssec_waiting(steady) == {}  # a first key before the check of the parent: the deploy says nothing
    rolling = bind_keys((4711, "20261203151244", "hidden", "unretentive"),
                        (815, "20261204090000", "omnipresent", "rumoured"))
    assert zone.dnssec_waiting(rolling) == {"example.org": [815, 4711]}
    done = bind_keys((4711, "20261203151244", "hidden", "hidden"), (815, "20261204090000", "omnipresent",
                                                                    "omnipresent"))
    assert zone.dnssec_waiting(done) == {}
