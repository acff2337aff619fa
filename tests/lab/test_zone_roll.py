"""A DNSSEC key roll that cannot go bogus (RFC 6781 section 4.1.2, RFC 7583), on demand as
the README says (zone_dnssec_key_made_after set to now), against the lab's real name
servers and root, with the lab's short TTLs and the production logic:

- bind publishes the new key beside the old one, then asks for its DS (CDS, which the
  registrar command prints); the old key stays, for as long as it takes, while the parent
  still has the old DS;
- the registrar's step (the lab root takes the new DS); bind sees it through the host's
  validating resolver, and only then takes the old key out of the chain;
- all along, a caching validating resolver of the internet (lab3's unbound, as a sender's)
  and a validator without a cache, on every name server address, never fail;
- bind's dnssec-policy and NSD's signer (inhouse-zone-sign) alike.
"""

import json
import re
import subprocess
import sys
import threading
import time

import pytest

from tasks import check, zone
from tests.helpers import LAB, REPO, play_registrar

pytestmark = [pytest.mark.lab("rolls the DNSSEC keys of the lab's zones"), pytest.mark.zone_server]


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())


class ValidationProbe(threading.Thread):
    """Every second, for each zone: the DNSKEY, SOA and MX of every name server address checked
    against the DS the root serves now (no cache: a resolver arriving fresh)."""

    def __init__(self, data: dict, addresses: list[str]):
        super().__init__(daemon=True)
        self.data, self.addresses = data, addresses
        self.anchors, self.roots = check.root_of(data)
        self.checks, self.failures = 0, []
        self.stopping = threading.Event()

    def run(self):
        while not self.stopping.is_set():
            chain = check.Chain(self.anchors, self.roots)
            for z in zone.zones(self.data):
                try:
                    ds = chain.ds(z)
                except check.Bogus as e:
                    self.failures.append(f"{time.strftime('%H:%M:%S')} {z} DS: {e}")
                    continue
                for address in self.addresses:
                    try:
                        keyset, sigs = check.signed(check.ask(address, z, "DNSKEY"), z, "DNSKEY")
                        check.match(z, keyset, ds)
                        check.verify(keyset, sigs, keyset)
                        # The SOA is signed again at every change; the MX keeps its signatures
                        # until they come up for refresh, days later: both must validate.
                        for rtype in ("SOA", "MX"):
                            rrset, rrsigs = check.signed(check.ask(address, z, rtype), z, rtype)
                            check.verify(rrset, rrsigs, keyset)
                        self.checks += 1
                    except check.Bogus as e:
                        self.failures.append(f"{time.strftime('%H:%M:%S')} {z} at {address}: {e}")
            self.stopping.wait(1)


def key_states(on_server, site: dict, z: str) -> dict[int, tuple[str, str]]:
    """{key id: (goal, DS state)} of zone z, read as the deploy reads them (its System fact)."""
    keys = zone.dnssec_keys_on(site, lambda command: on_server.check_output("sh -c %s", command))
    return {k["id"]: (k["goal"], k["ds"]) for k in keys.get(z, [])}


def wait_for(what: str, test, timeout: float, nudge=None):
    """Poll `test` until it is true; `nudge` now and then (bind's hourly look at the
    parent, asked for now: the lab compresses time, not logic)."""
    deadline, last = time.time() + timeout, 0.0
    while time.time() < deadline:
        if result := test():
            return result
        if nudge and time.time() - last > 10:
            nudge()
            last = time.time()
        time.sleep(1)
    raise AssertionError(f"{what}: not within {timeout:.0f} s")


def registrar(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tasks.registrar", str(LAB / "inventory.py"), *args],
                          cwd=REPO, capture_output=True, text=True, timeout=120)


def test_dnssec_keys_roll_with_no_broken_moment(deploy, site, server, on_server, outside, world, tmp_path):
    zones = zone.zones(site)
    addresses = [a for g in ("mail", "relay") for h in site["zone_hosts"][g] for a in (h["ipv4"], h["ipv6"]) if a]

    def nudge():  # what bind (rndc loadkeys) or NSD's signer (its timer) does hourly, now
        if site["zone_server"] == "bind":
            on_server.run("; ".join(f"rndc loadkeys {z}" for z in zones))
        else:
            on_server.run("systemctl start inhouse-zone-sign.service")

    # Before: the current keys' DS confirmed at the parent (bind looked through its resolver).
    for z in zones:
        wait_for(f"{z}: the DS of the current key seen at the parent",
                 lambda z=z: any(s == ("omnipresent", "omnipresent") for s in key_states(on_server, site, z).values()),
                 180, nudge)
    before = {z: key_states(on_server, site, z) for z in zones}
    ds_before = json.loads(registrar("--json").stdout)
    # A sender's resolver: lab3's unbound, caching, validating, asked every second.
    names = [n for z in zones for n in (z, f"_dmarc.{z}")]
    script = ("set -- " + " ".join(names) + '; while :; do for n in "$@"; do dig +time=2 +tries=1 @127.0.0.1 $n SOA'
              ' | grep -o "status: [A-Z]*" || echo status: LOST; done; sleep 1; done')
    probe_pid = outside.check_output("nohup sh -c %s > /tmp/dnssec-probe.log 2>&1 & echo $!", script)
    fresh = ValidationProbe(site, addresses)
    fresh.start()
    try:
        asked = now_iso()
        time.sleep(1)  # keys made in this second are "made after" it
        result, _, failed = deploy("--limit", server.name, "--data", f"zone_dnssec_key_made_after={asked}")
        assert result.returncode == 0 and failed == 0, result.stderr[-3000:]
        assert f"Roll the DNSSEC keys of {', '.join(zones)}" in result.stdout + result.stderr
        # A successor for each zone, published beside the old key; then its CDS.
        for z in zones:
            new = wait_for(f"{z}: a successor key", lambda z=z: [k for k in key_states(on_server, site, z)
                                                                   if k not in before[z]], 60)
            assert len(new) == 1, new
        wanted = wait_for("the registrar asks for the new DS", lambda: (
            (w := json.loads(registrar("--json").stdout)) and all(w[z]["ds"] != ds_before[z]["ds"] for z in zones)
            and w), 120, nudge)
        told = registrar()
        assert told.returncode == 0 and "A KEY ROLL WAITS FOR YOU" in told.stdout, told.stdout + told.stderr
        for z in zones:
            assert all(f"{z}. DS {ds}" in told.stdout for ds in wanted[z]["ds"] + ds_before[z]["ds"]), told.stdout
        # The parent still has the old DS: however long that lasts (here longer than every
        # timer of the roll), the old key stays in the chain.
        time.sleep(35)
        nudge()
        time.sleep(5)
        for z in zones:
            states = key_states(on_server, site, z)
            assert all(states[k] == ("hidden", "unretentive") for k in before[z]), states
        result, _, failed = deploy("--limit", server.name)
        assert failed == 0 and "waits for the DS at the parent" in result.stdout + result.stderr
        # The registrar's step: the root takes the new DS. The signer sees it, then lets the old key go.
        play_registrar()
        def rolled(z: str) -> bool:  # bind keeps the old key's files; NSD's signer moves them away
            states = key_states(on_server, site, z)
            return (all(states.get(k, ("hidden", "hidden")) == ("hidden", "hidden") for k in before[z])
                    and any(s == ("omnipresent", "omnipresent") for k, s in states.items() if k not in before[z]))

        for z in zones:
            wait_for(f"{z}: the old DS seen gone and the new one there", lambda z=z: rolled(z), 240, nudge)
        time.sleep(15)  # the old key's DNSKEY signature goes next: resolvers keep validating
    finally:
        fresh.stopping.set()
        fresh.join()
        log = outside.check_output("kill %s; cat /tmp/dnssec-probe.log", probe_pid)
    statuses = re.findall(r"status: ([A-Z]+)", log)
    assert statuses.count("NOERROR") > 100 and set(statuses) == {"NOERROR"}, sorted(set(statuses))
    assert not fresh.failures and fresh.checks > 100, (fresh.checks, fresh.failures[:10])
    # Settled: the registrar has nothing to change; the check finds nothing wrong in DNSSEC.
    told = registrar()
    assert "A KEY ROLL WAITS FOR YOU" not in told.stdout and "nothing to change" in told.stdout, told.stdout
    roots = tmp_path / "roots.pem"
    roots.write_text(world.ca_roots)
    r = subprocess.run([sys.executable, "-m", "tasks.check", str(LAB / "inventory.py"), "--ca", str(roots)],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
