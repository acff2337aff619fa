#!/usr/bin/env python3
"""Benchmark: what a deploy costs on one fresh lab host, against the floor of a bare
`apt-get install` of the same packages on an identical fresh host; then what zones cost
on master and secondary, for 1, 10 and 100 domains; then mail throughput, and the latency
a hidden home's relay and link add to an inbound message; then backups of 10,000 messages
and a rebuild of the mail host from a fresh disk; then the no-op run on 1, 4 and 8 hosts.
Prints figures.

    sudo .venv/bin/python lab/benchmark.py [--release trixie|bookworm] [--only hardening|zones|mail|link|rebuild|scale]
    sudo .venv/bin/python lab/benchmark.py --resident lab1     (a running lab's host: its memory only)

Boots its own lab of three hosts (replacing any running lab), and takes it down at the end.
Remote commands are counted inside pyinfra (every shell command and file upload its SSH
connector makes): round trips dominate a no-op run.
"""

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LAB = REPO / ".lab"
PYTHON = REPO / ".venv/bin/python"
BOOTSTRAPPED: set[str] = set()

# Runs pyinfra's CLI with its SSH connector counting what it sends.
COUNTING_PYINFRA = """
import atexit, json, sys
from pyinfra.connectors.ssh import SSHConnector
counts = {"commands": 0, "uploads": 0}
def counting(method, key):
    def wrapped(self, *a, **kw):
        counts[key] += 1
        return method(self, *a, **kw)
    return wrapped
SSHConnector.run_shell_command = counting(SSHConnector.run_shell_command, "commands")
SSHConnector.put_file = counting(SSHConnector.put_file, "uploads")
out = sys.argv.pop(1)
atexit.register(lambda: open(out, "w").write(json.dumps(counts)))
from pyinfra_cli.main import main
sys.argv[0] = "pyinfra"
main()
"""


def sh(*cmd, env=None, check=True):
    return subprocess.run([str(c) for c in cmd], cwd=REPO, check=check, capture_output=True, text=True,
                          env=env)


def lab_ssh(host, user, command, check=True):
    return sh("ssh", "-F", "/dev/null", "-i", LAB / "id_ed25519", "-o", f"UserKnownHostsFile={LAB / 'known_hosts'}",
              "-o", "BatchMode=yes", f"{user}@{host}", command, check=check)


def deploy(*args: str, bootstrap: bool = False) -> tuple[float, dict]:
    counts = LAB / "counts.json"
    env = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin"} | ({"INHOUSE_BOOTSTRAP": "1"} if bootstrap else {})
    start = time.monotonic()
    r = sh(PYTHON, "-c", COUNTING_PYINFRA, counts, "-y", LAB / "inventory.py", "deploy.py", *args,
           env=env, check=False)
    elapsed = time.monotonic() - start
    if r.returncode:
        sys.exit(f"benchmark: deploy failed:\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
    return elapsed, json.loads(counts.read_text())


def bootstrap(*names: str) -> None:
    """The first deploy (as root) of the hosts that have not had it yet."""
    for name in sorted(set(names) - BOOTSTRAPPED):
        deploy("--limit", name, bootstrap=True)
        BOOTSTRAPPED.add(name)


def limit(names: list[str]) -> list[str]:
    """pyinfra's --limit, once per host (a comma-separated list matches no host)."""
    return [a for n in names for a in ("--limit", n)]


def figures(label: str, seconds: float, counts: dict, extra: str = "") -> str:
    return f"  {label:34} {seconds:6.1f} s  {counts['commands']:3} remote commands, {counts['uploads']} uploads{extra}"


def hardening(hosts: dict) -> None:
    """Cold converge and no-op of the mail host, against the bare apt-get floor."""
    floor = hosts["lab2"]["ipv4"]
    packages = " ".join(sorted(packages_of_deploy()))
    # Warm the lab's apt cache with these packages, then drop the floor host's local
    # copies: both measurements then fetch from the same warm cache.
    lab_ssh(floor, "root", f"apt-get update -q && apt-get install -q -y -d --no-install-recommends {packages}"
                           " && apt-get clean && rm -rf /var/lib/apt/lists/*")
    start = time.monotonic()
    lab_ssh(floor, "root", "export DEBIAN_FRONTEND=noninteractive; apt-get update -q && "
                           f"apt-get install -q -y --no-install-recommends {packages}")
    floor_time = time.monotonic() - start
    # The relay, which the mail host's run asks for its TLS key (TLSA), as in the topology.
    bootstrap("lab2")
    cold_time, cold = deploy("--limit", "lab1", bootstrap=True)
    BOOTSTRAPPED.add("lab1")
    backup_done(hosts["lab1"]["ipv4"])
    # The registrar step (the lab root delegates, the ACME CA runs), then the second run
    # that gets the certificate and publishes the DKIM and TLSA records; then a no-op.
    bootstrap("lab3")
    sh(PYTHON, REPO / "lab/root.py", "publish")
    second_time, second = deploy("--limit", "lab1")
    noop_time, noop = deploy("--limit", "lab1")
    print(f"The mail host (lab1), {len(packages.split())} packages")
    print(f"  {'apt-get update + install (floor)':34} {floor_time:6.1f} s")
    print(figures("cold converge from a fresh host", cold_time, cold, f"  ({cold_time / floor_time:.2f} x the floor)"))
    print(figures("second run (after the registrar)", second_time, second))
    print(figures("no-op re-run", noop_time, noop))


def backup_done(address: str) -> None:
    """Wait for the first backup (started at the end of a first run) to end: the runs
    measured next must not share the host's two cores with borg."""
    state = "systemctl show -P ActiveState inhouse-backup.service"
    while lab_ssh(address, "ops", state, check=False).stdout.strip() in ("activating", "active"):
        time.sleep(1)


def zones() -> None:
    """Master (lab1) and secondary (lab2): add N zones, then change all N (regenerate,
    check, reload, re-sign, NOTIFY; with the mail configs of N domains), for N = 1, 10,
    100; then a no-op run with 100."""
    bootstrap("lab1", "lab2", "lab3")
    print("Zones on master and secondary (both hosts in one run)")
    # Mail only for the primary domain: the lab's other users live in second.test.
    mail = ["--data", 'mail_users=["alice@inhouse.test"]', "--data", "mail_aliases={}"]
    for n in (1, 10, 100):
        extra = json.dumps([f"d{i}.test" for i in range(1, n)])
        seconds, counts = deploy("--data", f"extra_domains={extra}", *mail)
        print(figures(f"{n} zone(s): first run", seconds, counts))
        seconds, counts = deploy("--data", f"extra_domains={extra}", "--data", "zone_ttl=1800", *mail)
        print(figures(f"{n} zone(s): change all", seconds, counts))
    seconds, counts = deploy("--data", f"extra_domains={extra}", "--data", "zone_ttl=1800", *mail)
    print(figures("100 zones: no-op", seconds, counts))
    deploy()  # back to the inventory's domains


def throughput(outside: str, target: str, recipient: str, count: int, delivered: str) -> tuple[float, float]:
    """smtp-source on the outside host sends `count` messages of 4 kB over 10 sessions;
    returns (accepted, delivered) messages per second, `delivered` counting on the mail host."""
    start = time.monotonic()
    lab_ssh(outside, "ops", f"/usr/sbin/smtp-source -s 10 -l 4096 -m {count} -M mail.outside.test "
                            f"-f carol@outside.test -t {recipient} {target}")
    accepted = time.monotonic() - start
    while int(lab_ssh(target.split(":")[0], "ops", f"sudo sh -c '{delivered}'").stdout.strip() or 0) < count:
        if time.monotonic() - start > 600:
            sys.exit("benchmark: mail was not delivered within 10 minutes")
        time.sleep(0.2)
    return count / accepted, count / (time.monotonic() - start)


def mail_throughput(hosts: dict, count: int = 500) -> None:
    """Port 25 of the mail host with everything on (SPF policy, DKIM and DMARC milters, LMTP
    to a Maildir), against a stock postfix instance on the same host (port 2525, no milter,
    no policy, local delivery to an mbox), both fed from the outside host."""
    bootstrap(*hosts)
    sh(PYTHON, REPO / "lab/root.py", "publish")
    deploy()
    mx, outside = hosts["lab1"]["ipv4"], hosts["lab3"]["ipv4"]
    ours = throughput(outside, f"{mx}:25", "alice@inhouse.test", count,
                      "ls /var/mail/vhosts/inhouse.test/alice/Maildir/new | wc -l")
    stock = ("id bench >/dev/null 2>&1 || useradd -m bench; postmulti -e init; "
             "postmulti -I postfix-stock -e create; postmulti -i postfix-stock -e enable; "
             "postmulti -i postfix-stock -x postconf -e inet_interfaces=all master_service_disable= "
             "mydestination=bench.test "
             "'smtpd_milters=' 'non_smtpd_milters=' 'smtpd_recipient_restrictions=' alias_maps= "
             "'local_recipient_maps=proxy:unix:passwd.byname' "
             "&& postmulti -i postfix-stock -x postconf -MX smtp/inet "
             "&& postmulti -i postfix-stock -x postconf -M '2525/inet=2525 inet n - y - - smtpd' "
             "&& postmulti -i postfix-stock -p start && iptables -I INPUT -p tcp --dport 2525 -j ACCEPT")
    lab_ssh(mx, "ops", f'sudo sh -c "{stock}"')
    try:
        base = throughput(outside, f"{mx}:2525", "bench@bench.test", count,
                          'grep -c "^From " /var/mail/bench || true')
    finally:
        lab_ssh(mx, "ops", "sudo sh -c 'postmulti -i postfix-stock -p stop; iptables -D INPUT -p tcp --dport 2525 "
                           "-j ACCEPT'")
    print(f"Mail through port 25 of the mail host, {count} messages of 4 kB over 10 sessions from outside.test")
    print(f"  {'inhouse (SPF, DKIM, DMARC, spam filter, Maildir)':50} {ours[0]:6.1f} accepted/s  "
          f"{ours[1]:6.1f} delivered/s")
    print(f"  {'stock postfix, same host (no checks)':50} {base[0]:6.1f} accepted/s  {base[1]:6.1f} delivered/s")
    print(f"  ratio to stock: {ours[0] / base[0]:.2f} accepted, {ours[1] / base[1]:.2f} delivered (aim: 0.5 or more)")
    resident(mx, "(the mail host) after the mail above")


# What every process on a host holds in memory (proportional set size: a page shared by
# n processes counts 1/n to each, so the sum is what the host really uses), by name.
RESIDENT = r"""for p in /proc/[0-9]*; do
  c=$(cat $p/comm 2>/dev/null) && awk -v c="$c" '/^Pss:/ {print c, $2}' $p/smaps_rollup 2>/dev/null
done"""
BUDGET_KIB = 1024 * 1024  # the whole mail host, every daemon: 1 GiB


def resident(address: str, when: str) -> None:
    """Print the resident memory of the whole host (every process), and the largest."""
    out = lab_ssh(address, "ops", "sudo sh -c " + shlex.quote(RESIDENT)).stdout
    by_name: dict[str, int] = {}
    for line in out.splitlines():
        name, kib = line.rsplit(" ", 1)
        by_name[name] = by_name.get(name, 0) + int(kib)
    total = sum(by_name.values())
    top = sorted(by_name.items(), key=lambda kv: -kv[1])[:8]
    print(f"Resident memory of {address}, every process, {when}: {total / 1024:.0f} MiB of the "
          f"{BUDGET_KIB / 1024:.0f} MiB budget ({'within' if total <= BUDGET_KIB else 'OVER'})")
    print("  " + ", ".join(f"{n} {k / 1024:.0f}" for n, k in top) + " (MiB)")


def inbound_latency(outside: str, target: str, mx: str, count: int) -> list[float]:
    """Seconds from the end of an SMTP session on the outside host to `target` until the
    message is in alice's Maildir on the mail host `mx`, one message at a time."""
    maildir = "/var/mail/vhosts/inhouse.test/alice/Maildir/new"
    out = []
    for _ in range(count):
        before = int(lab_ssh(mx, "ops", f"sudo ls {maildir} | wc -l").stdout)
        lab_ssh(outside, "ops", f"/usr/sbin/smtp-source -l 1024 -m 1 -M mail.outside.test -f carol@outside.test "
                                f"-t alice@inhouse.test {target}")
        start = time.monotonic()
        # One command polls on the host: no SSH round trip in the figure.
        lab_ssh(mx, "ops", f"sudo timeout 120 sh -c 'while [ $(ls {maildir} | wc -l) -le {before} ]; do "
                           "sleep 0.02; done'")
        out.append(time.monotonic() - start)
    return sorted(out)


def link_latency(hosts: dict, count: int = 20) -> None:
    """What the hidden home's path costs an inbound message (outside.test to the relay,
    inside the link to home, to the INBOX) against the direct path (outside.test to the
    mail host's port 25)."""
    bootstrap(*hosts)
    sh(PYTHON, REPO / "lab/root.py", "publish")
    deploy()
    mx, relay, outside = hosts["lab1"]["ipv4"], hosts["lab2"]["ipv4"], hosts["lab3"]["ipv4"]
    direct = inbound_latency(outside, f"{mx}:25", mx, count)
    hidden = ("--data", "link_enabled=True", "--data", "link_home_hidden=True")
    deploy(*hidden)
    deploy(*hidden)  # the second run gives each end of the link the other's key
    time.sleep(30)  # the link's first handshake
    through = inbound_latency(outside, f"{relay}:25", mx, count)
    seconds, counts = deploy(*hidden)
    deploy()
    print(f"Inbound latency, {count} messages of 1 kB one at a time from outside.test to alice's Maildir")
    for label, got in (("direct (mail host's port 25)", direct), ("hidden home (relay, link)", through)):
        print(f"  {label:32} median {got[len(got) // 2] * 1000:7.0f} ms   max {got[-1] * 1000:7.0f} ms")
    print(f"  added by the relay and the link: {(through[len(through) // 2] - direct[len(direct) // 2]) * 1000:.0f} ms "
          "(median)")
    print(figures("no-op deploy, hidden home (both hosts)", seconds, counts))


def rebuild(hosts: dict, count: int = 10000) -> None:
    """Backups of `count` messages (first and incremental: time, repository size), then the
    mail host's disk thrown away: the time from the fresh disk to mail flowing again (the
    two deploys of README "Rebuild a server", then a message from outside in the INBOX)."""
    bootstrap(*hosts)
    sh(PYTHON, REPO / "lab/root.py", "publish")
    deploy()
    mx, relay, outside = (hosts[n]["ipv4"] for n in ("lab1", "lab2", "lab3"))
    maildir = "/var/mail/vhosts/inhouse.test/alice/Maildir"
    # Messages of 2 to 6 kB (text, as mail is: compressible), written straight into cur/.
    fill = (f"mkdir -p {maildir}/cur {maildir}/new {maildir}/tmp; i=0; while [ $i -lt {{n}} ]; do i=$((i+1)); "
            f"f={maildir}/cur/$(date +%s).bench$i.{{tag}}:2,S; "
            "{{ printf 'From: carol@outside.test\nTo: alice@inhouse.test\nSubject: bench %s\n\n' $i; "
            "seq $i $((i + 400 + i % 800)); }} > $f; done; chown -R vmail:vmail " + maildir)
    lab_ssh(mx, "ops", "sudo sh -c " + shlex.quote(fill.format(n=count, tag="a")))

    def backup_run() -> tuple[float, int]:
        start = time.monotonic()
        lab_ssh(mx, "ops", "sudo systemctl start inhouse-backup.service")
        seconds = time.monotonic() - start
        size = lab_ssh(relay, "ops", "sudo du -sb /var/backups/inhouse").stdout.split()[0]
        return seconds, int(size)

    first = backup_run()
    lab_ssh(mx, "ops", "sudo sh -c " + shlex.quote(fill.format(n=100, tag="b")))
    incremental = backup_run()
    print(f"Backup of the mail host to the relay (borg, zstd), {count} messages")
    print(f"  {'first':34} {first[0]:6.1f} s  repository {first[1] / 2**20:.1f} MiB")
    print(f"  {'incremental (100 more messages)':34} {incremental[0]:6.1f} s  "
          f"repository {incremental[1] / 2**20:.1f} MiB")
    start = time.monotonic()
    sh(sys.executable, REPO / "lab/lab.py", "rebuild", "lab1")
    booted = time.monotonic() - start
    first_run, counts = deploy("--limit", "lab1", bootstrap=True)
    second_run, second = deploy()
    token = f"rebuilt{int(time.time())}"
    lab_ssh(outside, "ops", f"printf 'Subject: {token}\n\nhello\n' | /usr/sbin/sendmail -f carol@outside.test "
                            "alice@inhouse.test")
    while lab_ssh(mx, "ops", f"sudo grep -rlq {token} {maildir}/new", check=False).returncode:
        if time.monotonic() - start > 1200:
            sys.exit("benchmark: no mail after the rebuild within 20 minutes")
        time.sleep(0.5)
    restored = lab_ssh(mx, "ops", f"sudo ls {maildir}/cur | wc -l").stdout.strip()
    print(f"Rebuild of the mail host from a fresh disk ({restored} messages restored)")
    print(f"  {'fresh disk, booted':34} {booted:6.1f} s")
    print(figures("first run (keys, mail, services)", first_run, counts))
    print(figures("second run", second_run, second))
    print(f"  {'fresh disk to mail flowing':34} {time.monotonic() - start:6.1f} s")


def scale(release: str) -> None:
    """The no-op run on 1, 4 and 8 hosts with the hardening components (the lab's hosts
    outside the site), with its remote commands per host: hosts run in parallel, so 8 hosts
    should cost little more than one."""
    sh(sys.executable, REPO / "lab/lab.py", "up", "-n", "10", "--release", release)
    sh(PYTHON, REPO / "lab/root.py", "init")
    BOOTSTRAPPED.clear()
    names = [f"lab{i}" for i in range(3, 11)]
    deploy(*limit(names), bootstrap=True)
    print("No-op run, hardening components (admin, ssh, bans, clock, upgrades, resolver, firewall)")
    one = None
    for n in (1, 4, 8):
        seconds, counts = deploy(*limit(names[:n]))
        one = one or seconds
        print(figures(f"{n} host(s)", seconds, {k: round(v / n) for k, v in counts.items()},
                      f" per host  ({seconds / one:.2f} x one host)"))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--release", default="trixie", choices=["trixie", "bookworm"])
    p.add_argument("--only", choices=["hardening", "zones", "mail", "link", "rebuild", "scale"], help="one part only")
    p.add_argument("--resident", metavar="HOST", help="only print the memory of a running lab's HOST (lab/test "
                                                      "does, after the tests)")
    a = p.parse_args()
    if a.resident:
        hosts = json.loads((LAB / "hosts.json").read_text())["hosts"]
        return resident(hosts[a.resident]["ipv4"], f"({a.resident}) now")
    sys.path.insert(0, str(REPO))
    if a.only != "scale":
        sh(sys.executable, REPO / "lab/lab.py", "up", "-n", "3", "--release", a.release)
        sh(PYTHON, REPO / "lab/root.py", "init")
    hosts = json.loads((LAB / "hosts.json").read_text())["hosts"] if a.only != "scale" else {}
    try:
        print(f"Debian {a.release}")
        if a.only in (None, "hardening"):
            hardening(hosts)
        if a.only in (None, "zones"):
            zones()
        if a.only in (None, "mail"):
            mail_throughput(hosts)
        if a.only in (None, "link"):
            link_latency(hosts)
        if a.only in (None, "rebuild"):
            rebuild(hosts)
        if a.only in (None, "scale"):
            scale(a.release)
    finally:
        sh(sys.executable, REPO / "lab/lab.py", "down", check=False)


def packages_of_deploy() -> set[str]:
    """The packages the mail host's deploy installs (from the task modules)."""
    from tasks.data import inventory_hosts
    from tasks.registry import enabled

    site = inventory_hosts(runpy_inventory())["lab1"]
    return {p for c in enabled(site) for p in c.packages(site)}


def runpy_inventory() -> dict:
    import runpy

    return runpy.run_path(str(LAB / "inventory.py"))


if __name__ == "__main__":
    main()
