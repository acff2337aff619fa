#!/usr/bin/env python3
"""Benchmark: what a deploy costs on one fresh lab host, against the floor of a bare
`apt-get install` of the same packages on an identical fresh host; then what zones cost
on master and secondary, for 1, 10 and 100 domains. Prints figures.

    sudo .venv/bin/python lab/benchmark.py [--release trixie|bookworm] [--only hardening|zones]

Boots its own lab of two hosts (replacing any running lab), and takes it down at the end.
Remote commands are counted inside pyinfra (every shell command and file upload its SSH
connector makes): round trips dominate a no-op run.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LAB = REPO / ".lab"
PYTHON = REPO / ".venv/bin/python"

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


def lab_ssh(host, user, command):
    return sh("ssh", "-F", "/dev/null", "-i", LAB / "id_ed25519", "-o", f"UserKnownHostsFile={LAB / 'known_hosts'}",
              "-o", "BatchMode=yes", f"{user}@{host}", command)


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
    cold_time, cold = deploy("--limit", "lab1", bootstrap=True)
    noop_time, noop = deploy("--limit", "lab1")
    print(f"The mail host (lab1), {len(packages.split())} packages")
    print(f"  {'apt-get update + install (floor)':34} {floor_time:6.1f} s")
    print(figures("cold converge from a fresh host", cold_time, cold, f"  ({cold_time / floor_time:.2f} x the floor)"))
    print(figures("no-op re-run", noop_time, noop))


def zones() -> None:
    """Master (lab1) and secondary (lab2): add N zones, then change all N (regenerate,
    check, reload, re-sign, NOTIFY), for N = 1, 10, 100; then a no-op run with 100."""
    deploy("--limit", "lab2", bootstrap=True)  # the relay, which the hardening figures left fresh
    print("Zones on master and secondary (both hosts in one run)")
    for n in (1, 10, 100):
        extra = json.dumps([f"d{i}.test" for i in range(1, n)])
        seconds, counts = deploy("--data", f"extra_domains={extra}")
        print(figures(f"{n} zone(s): first run", seconds, counts))
        seconds, counts = deploy("--data", f"extra_domains={extra}", "--data", "zone_ttl=1800")
        print(figures(f"{n} zone(s): change all", seconds, counts))
    seconds, counts = deploy("--data", f"extra_domains={extra}", "--data", "zone_ttl=1800")
    print(figures("100 zones: no-op", seconds, counts))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--release", default="trixie", choices=["trixie", "bookworm"])
    p.add_argument("--only", choices=["hardening", "zones"], help="one part only")
    a = p.parse_args()
    sys.path.insert(0, str(REPO))
    sh(sys.executable, REPO / "lab/lab.py", "up", "-n", "2", "--release", a.release)
    sh(PYTHON, REPO / "lab/root.py", "init")
    try:
        print(f"Debian {a.release}")
        if a.only != "zones":
            hardening(json.loads((LAB / "hosts.json").read_text())["hosts"])
        if a.only != "hardening":
            zones()
    finally:
        sh(sys.executable, REPO / "lab/lab.py", "down", check=False)


def packages_of_deploy() -> set[str]:
    """The packages the mail host's deploy installs (from the task modules)."""
    from tasks import zone_bind
    from tasks.data import COMPONENTS

    return {p for c in [*COMPONENTS, zone_bind] for p in getattr(c, "PACKAGES", [])}


if __name__ == "__main__":
    main()
