"""The day-two steps on a rehearsed site (`lab/rehearse --day-two`), with the README's own
commands against the lab's copy of your inventory: a rebuild of the mail host ("Rebuild a
server"), a roll of the TLS and DKIM keys, and a roll of the DNSSEC keys with the
registrar's step ("Keys that roll"). After each, what others pinned is as it should be
(the same keys after a rebuild, the new ones after a roll), the mail is still there, a
further deploy changes nothing and the check passes.

    .venv/bin/python lab/day_two.py ROOTS.pem [STEP...]   (after lab/rehearse; ROOTS: the lab CA's)

STEP: rebuild, roll_tls_and_dkim, roll_dnssec (all three, in this order, by default).

Prints one line per step, `ok` or `FAIL`, and exits 1 if a step failed. The lab's TTLs are
seconds (lab/site_inventory.py.in), so the rolls wait seconds where yours wait hours.
"""

import datetime
import imaplib
import json
import os
import re
import runpy
import shlex
import socket
import ssl
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import dns.rdatatype  # noqa: E402

from tasks import backup, check, mail, registrar, zone  # noqa: E402
from tasks.data import inventory_hosts  # noqa: E402

LAB = REPO / ".lab"
INVENTORY = LAB / "inventory.py"


class Failed(Exception):
    pass


def deploy(name: str, *args: str, bootstrap: bool = False) -> tuple[str, int]:
    """The README's deploy command on the lab's inventory, its output kept in .lab/NAME.log:
    (output, operations that changed something)."""
    env = os.environ | ({"INHOUSE_BOOTSTRAP": "1"} if bootstrap else {})
    r = subprocess.run([str(REPO / ".venv/bin/pyinfra"), "-y", str(INVENTORY), "deploy.py", *args], cwd=REPO,
                       env=env, capture_output=True, text=True, timeout=1200)
    out = re.sub(r"\x1b\[[0-9;]*m", "", r.stdout + r.stderr)
    (LAB / f"{name}.log").write_text(out)
    if r.returncode != 0:
        raise Failed(f"the deploy failed (.lab/{name}.log): {out.strip().splitlines()[-1] if out.strip() else ''}")
    return out, len(re.findall(r"^\s+\[[^]]+\] Success", out, re.M))


def settled(name: str) -> None:
    _, changed = deploy(name)
    if changed:
        raise Failed(f"a further deploy changed {changed} operation(s) (.lab/{name}.log)")


def checked(roots: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "tasks.check", str(INVENTORY), "--ca", str(roots), "--quiet"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise Failed("the check: " + "; ".join(line for line in r.stdout.splitlines() if line.startswith("FAIL")))


def wait(what: str, test, timeout: float, nudge=None):
    """Poll `test` until it is true; `nudge` every 10 s (what a timer would do within the hour)."""
    deadline, last = time.time() + timeout, 0.0
    while time.time() < deadline:
        if result := test():
            return result
        if nudge and time.time() - last > 10:
            nudge()
            last = time.time()
        time.sleep(1)
    raise Failed(f"{what}: not within {timeout:.0f} s")


def records(address: str, name: str, rtype: str) -> list[str]:
    try:
        reply = check.ask(address, name, rtype)
    except Exception:  # noqa: BLE001 (a server not answering yet has no records)
        return []
    return sorted(r.to_text() for rrset in reply.answer if rrset.rdtype == dns.rdatatype.from_text(rtype)
                  for r in rrset)


class Site:
    def __init__(self, roots: Path):
        self.hosts = inventory_hosts(runpy.run_path(str(INVENTORY)))
        self.name, self.data = next((n, d) for n, d in self.hosts.items() if mail.role(d) == "mail")
        lab = json.loads((LAB / "hosts.json").read_text())["hosts"]
        self.lab_host = next(n for n, h in lab.items() if h["ipv4"] == self.data["ipv4"])
        self.roots = roots
        self.servers = [a for ns in zone.public_servers(self.data) for a in (ns["ipv4"], ns["ipv6"]) if a]
        self.mx_hosts = zone.public_servers(self.data)
        # Where users read their mail: the mail host, or a hidden home's front door (the relay).
        self.door = zone.front_door(self.data)

    def ssh(self, command: str, host: dict | None = None) -> str:
        r = check.over_ssh(self.data, host or self.data, command)
        if r.returncode != 0:
            raise Failed(f"{command} on {(host or self.data)['fqdn']}: {r.stderr.strip()[-300:]}")
        return r.stdout

    def pins(self) -> dict:
        """What others pin, as every name server serves it: the DS the zones ask for, their
        DNSKEYs, the TLSA records, the DKIM record of the selector in use; and the key each
        MX serves on port 25."""
        selector = (check.escrowed_dkim(self.data) or ("?", ""))[0]
        out: dict = {"ds": {z: d["ds"] for z, d in registrar.delegations(self.data).items()}, "selector": selector}
        for address in self.servers:
            for z in zone.zones(self.data):
                out[(address, z)] = (records(address, z, "DNSKEY"),
                                     records(address, f"{selector}._domainkey.{z}", "TXT"))
            out[(address, "tlsa")] = [records(address, f"_25._tcp.{h['fqdn']}", "TLSA") for h in self.mx_hosts]
        for h in self.mx_hosts:
            out[h["fqdn"]] = check.spki(check.served_key(h["fqdn"], h["ipv4"]))
        return out

    def in_sync(self) -> bool:
        """Every name server serves the master's serial of every zone."""
        return all(len({tuple(records(a, z, "SOA")) for a in self.servers}) == 1 for z in zone.zones(self.data))

    def imap(self) -> imaplib.IMAP4_SSL:
        address, context = self.door["ipv4"], ssl.create_default_context(cafile=str(self.roots))

        class Connection(imaplib.IMAP4_SSL):
            def _create_socket(self, timeout):
                return self.ssl_context.wrap_socket(socket.create_connection((address, self.port), timeout),
                                                    server_hostname=self.host)

        return Connection(self.door["fqdn"], 993, ssl_context=context, timeout=20)

    def mailbox(self, user: str, password: str) -> tuple[int, dict[int, bytes]]:
        """UIDVALIDITY of the INBOX, and each message's headers by UID."""
        with self.imap() as imap:
            imap.login(user, password)
            imap.select("INBOX", readonly=True)
            validity = int(re.search(rb"\d+", imap.response("UIDVALIDITY")[1][0]).group())
            _, got = imap.uid("FETCH", "1:*", "(BODY.PEEK[HEADER])")
        return validity, {int(re.search(rb"UID (\d+)", i[0]).group(1)): i[1] for i in got if isinstance(i, tuple)}


def rebuild(site: Site) -> str:
    """The mail host's disk dies: the lab boots it from the base image again (same
    addresses, new SSH host keys), then "Rebuild a server"'s two deploys."""
    if not backup.on(site.data):
        raise Failed("backups are off in this inventory: a rebuild would come back without the mail")
    user, password = next(iter(json.loads((LAB / "mail-users.json").read_text()).items()))
    token = f"rebuild-{uuid.uuid4().hex[:10]}"
    with site.imap() as imap:  # a message in the mailbox, as a client would leave it
        imap.login(user, password)
        imap.append("INBOX", r"(\Seen \Flagged)", None,
                    f"From: {user}\r\nTo: {user}\r\nSubject: {token}\r\n\r\nkept\r\n".encode())
    site.ssh("sudo -n systemctl start inhouse-backup.service")  # the nightly backup, now
    wait("the secondaries serve the master's serials", site.in_sync, 60)
    before, box = site.pins(), site.mailbox(user, password)
    r = subprocess.run(["python3", str(REPO / "lab/lab.py"), "rebuild", site.lab_host], capture_output=True,
                       text=True, timeout=300)
    if r.returncode != 0:
        raise Failed(f"lab/lab.py rebuild {site.lab_host}: {(r.stdout + r.stderr).strip()[-300:]}")
    deploy("day-two-rebuild", "--limit", site.name, bootstrap=True)
    deploy("day-two-rebuild-second")
    settled("day-two-rebuild-further")
    wait("the secondaries serve the master's serials", site.in_sync, 60)
    changed = [str(k) for k, v in site.pins().items() if before[k] != v]
    if changed:
        raise Failed(f"pinned keys changed in the rebuild: {', '.join(changed)}")
    if site.mailbox(user, password) != box:
        raise Failed(f"{user}'s INBOX is not what it was (messages, UIDs or UIDVALIDITY)")
    checked(site.roots)
    return (f"{site.name} rebuilt: the same DS, DNSKEY, TLSA and DKIM records and TLS keys; {user}'s INBOX back "
            f"({len(box[1])} message(s), the same UIDs and UIDVALIDITY)")


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")


def roll_tls_and_dkim(site: Site) -> str:
    """"Keys that roll": tls_key_made_after and dkim_key_made_after set to now, then the
    deploy, again once the run says when."""
    before = site.pins()
    asked = now_iso()
    time.sleep(1)  # keys made in this second are "made after" it
    roll = ["--data", f"tls_key_made_after={asked}", "--data", f"dkim_key_made_after={asked}"]
    for attempt in range(1, 6):
        out, _ = deploy(f"day-two-roll-{attempt}", *roll)
        after = re.findall(r"rolls in a run after (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC", out)
        if not after:
            break
        moment = max(datetime.datetime.strptime(a, "%Y-%m-%d %H:%M:%S").replace(tzinfo=datetime.UTC) for a in after)
        time.sleep(max(0.0, (moment - datetime.datetime.now(datetime.UTC)).total_seconds()) + 1)
    else:
        raise Failed("the keys did not roll in 5 runs")
    deploy("day-two-roll-next", *roll)  # the run after a roll publishes the new next keys
    settled("day-two-roll-further")
    wait("the secondaries serve the master's serials", site.in_sync, 60)
    after = site.pins()
    same = [h["fqdn"] for h in site.mx_hosts if after[h["fqdn"]] == before[h["fqdn"]]]
    if same:
        raise Failed(f"still the TLS key of before on port 25: {', '.join(same)}")
    if after["selector"] == before["selector"]:
        raise Failed(f"the mail host still signs with DKIM selector {before['selector']}")
    for address in site.servers:
        if not all(before[(address, z)][1] == records(address, f"{before['selector']}._domainkey.{z}", "TXT")
                   for z in zone.zones(site.data)):
            raise Failed(f"{address} no longer serves the old DKIM record: mail on its way would fail")
    checked(site.roots)
    return (f"TLS keys of {', '.join(h['fqdn'] for h in site.mx_hosts)} rolled; DKIM {before['selector']} to "
            f"{after['selector']} (the old record stays dkim_retire_days)")


def roll_dnssec(site: Site) -> str:
    """"Keys that roll", DNSSEC: zone_dnssec_key_made_after set to now, the deploy, the
    registrar's step once the zones ask for the new DS (lab/root.py publish plays it)."""
    zones = zone.zones(site.data)

    def nudge():  # bind's look at the parent (rndc loadkeys), NSD's signer's timer: hourly, now
        if site.data["zone_server"] == "bind":
            site.ssh("; ".join(f"sudo -n rndc loadkeys {z}" for z in zones))
        else:
            site.ssh("sudo -n systemctl start inhouse-zone-sign.service")

    def ds():
        return {z: d["ds"] for z, d in registrar.delegations(site.data).items()}

    def keys(z: str) -> set[str]:
        return {r.split()[0] + " " + r.split()[-1] for r in records(site.data["ipv4"], z, "DNSKEY")}

    def states() -> dict[str, dict[int, tuple[str, str]]]:
        """{zone: {key id: (goal, DS state)}}, read as the deploy reads them (its System fact)."""
        found = zone.dnssec_keys_on(site.data, lambda command: site.ssh("sudo -n sh -c " + shlex.quote(command)))
        return {z: {k["id"]: (k["goal"], k["ds"]) for k in found.get(z, [])} for z in zones}

    def out_of_the_chain(z: str, old: set[int]) -> bool:
        """The signer saw the old DS gone from the parent and the new one there (NSD's
        signer moves an old key's files away, bind keeps them); with bind, the old key's
        signature of the DNSKEY set has gone too (`rndc dnssec -status`, RFC 7583's states)."""
        now = states()[z]
        if not (all(now.get(k, ("hidden", "hidden")) == ("hidden", "hidden") for k in old)
                and any(s == ("omnipresent", "omnipresent") for k, s in now.items() if k not in old)):
            return False
        if site.data["zone_server"] != "bind":
            return True
        said = site.ssh(f"sudo -n rndc dnssec -status {z}")
        status = {int(k): dict(re.findall(r"- ([a-z ]+):\s+(\w+)", block))
                  for k, block in re.findall(r"key: (\d+) (.*?)(?=\nkey: |\Z)", said, re.S)}
        return all(status.get(k, {}).get("key rrsig", "hidden") == "hidden" for k in old)

    before, keys_before, old_ids = ds(), {z: keys(z) for z in zones}, {z: set(k) for z, k in states().items()}
    asked = now_iso()
    time.sleep(1)
    out, _ = deploy("day-two-dnssec", "--limit", site.name, "--data", f"zone_dnssec_key_made_after={asked}")
    if f"Roll the DNSSEC keys of {', '.join(zones)}" not in out:
        raise Failed("the deploy did not start the DNSSEC roll (.lab/day-two-dnssec.log)")
    wanted = wait("the zones ask for the new DS (CDS)",
                  lambda: (w := ds()) and all(w[z] != before[z] for z in zones) and w, 240, nudge)
    told = subprocess.run([sys.executable, "-m", "tasks.registrar", str(INVENTORY)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    if "A KEY ROLL WAITS FOR YOU" not in told.stdout:
        raise Failed("the registrar command does not say that a roll waits for the DS")
    r = subprocess.run([str(REPO / ".venv/bin/python"), "lab/root.py", "publish"], cwd=REPO, capture_output=True,
                       text=True, timeout=300)
    if r.returncode != 0:
        raise Failed(f"lab/root.py publish: {(r.stdout + r.stderr).strip()[-300:]}")
    for z in zones:  # the signer sees the new DS at the parent, then takes the old key out of the chain
        wait(f"{z}: the old DS seen gone, the new one there", lambda z=z: out_of_the_chain(z, old_ids[z]), 240, nudge)
    # Then out of the zone. NSD's signer drops it at once. bind keeps it while signatures it
    # made may be in the zone: their validity less their refresh (signatures-validity 14
    # days, signatures-refresh 5 days: 9 days, which the lab does not compress).
    if site.data["zone_server"] != "bind":
        for z in zones:
            wait(f"{z}: the old key out of the zone", lambda z=z: keys(z) and not keys(z) & keys_before[z], 120, nudge)
    wait("the secondaries serve the master's serials", site.in_sync, 60)
    deploy("day-two-dnssec-keep")  # the run after the roll keeps the keys' new state in secrets_dir
    settled("day-two-dnssec-further")
    told = subprocess.run([sys.executable, "-m", "tasks.registrar", str(INVENTORY)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    if "A KEY ROLL WAITS FOR YOU" in told.stdout or "nothing to change" not in told.stdout:
        raise Failed("the registrar command still asks for a change")
    checked(site.roots)
    gone = "; bind drops the old DNSKEY once its signatures are replaced" if site.data["zone_server"] == "bind" else ""
    return "DNSSEC keys of " + ", ".join(f"{z} (DS {' '.join(wanted[z])[:24]}...)" for z in zones) + " rolled" + gone


def main() -> int:
    site = Site(Path(sys.argv[1]))
    steps = ((rebuild, f"Rebuild {site.name}: a new disk, the README's two deploys"),
             (roll_tls_and_dkim, "Roll the TLS and DKIM keys (tls_key_made_after, dkim_key_made_after)"),
             (roll_dnssec, "Roll the DNSSEC keys (zone_dnssec_key_made_after, the registrar's step)"))
    chosen = sys.argv[2:]
    if unknown := set(chosen) - {s.__name__ for s, _ in steps}:
        names = ", ".join(s.__name__ for s, _ in steps)
        sys.exit(f"day_two.py: no step {', '.join(sorted(unknown))}; the steps: {names}")
    failed = 0
    for step, title in steps:
        if chosen and step.__name__ not in chosen:
            continue
        started = time.time()
        print(f"\n=== {title}", flush=True)
        try:
            said = step(site)
            print(f"ok ({time.time() - started:.0f} s): {said}", flush=True)
        except Failed as e:
            failed += 1
            print(f"FAIL ({time.time() - started:.0f} s): {step.__name__}: {e}", flush=True)
            if step is rebuild:  # the rolls need the mail host back
                break
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
