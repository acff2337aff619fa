#!/usr/bin/env python3
"""Benchmark: what a deploy costs on one fresh lab host, against the floor of a bare
`apt-get install` of the same packages on an identical fresh host. Prints figures.

    sudo .venv/bin/python lab/benchmark.py [--release trixie|bookworm]

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


def deploy(host: str, bootstrap: bool) -> tuple[float, dict]:
    counts = LAB / "counts.json"
    env = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin"} | ({"INHOUSE_BOOTSTRAP": "1"} if bootstrap else {})
    start = time.monotonic()
    r = sh(PYTHON, "-c", COUNTING_PYINFRA, counts, "-y", LAB / "inventory.py", "deploy.py",
           "--limit", host, env=env, check=False)
    elapsed = time.monotonic() - start
    if r.returncode:
        sys.exit(f"benchmark: deploy failed:\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
    return elapsed, json.loads(counts.read_text())


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--release", default="trixie", choices=["trixie", "bookworm"])
    release = p.parse_args().release
    sys.path.insert(0, str(REPO))
    sh(sys.executable, REPO / "lab/lab.py", "up", "-n", "2", "--release", release)
    try:
        hosts = json.loads((LAB / "hosts.json").read_text())["hosts"]
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
        cold_time, cold = deploy("lab1", bootstrap=True)
        noop_time, noop = deploy("lab1", bootstrap=False)
    finally:
        sh(sys.executable, REPO / "lab/lab.py", "down", check=False)
    print(f"Debian {release}, one lab host, {len(packages.split())} packages")
    print(f"  apt-get update + install (floor)  {floor_time:6.1f} s")
    print(f"  cold converge from a fresh host   {cold_time:6.1f} s  "
          f"{cold['commands']} remote commands, {cold['uploads']} uploads  "
          f"({cold_time / floor_time:.2f} x the floor)")
    print(f"  no-op re-run                      {noop_time:6.1f} s  "
          f"{noop['commands']} remote commands, {noop['uploads']} uploads")


def packages_of_deploy() -> set[str]:
    """The packages a deploy with every component on installs (from the task modules)."""
    from tasks.data import COMPONENTS

    return {p for c in COMPONENTS for p in c.PACKAGES}


if __name__ == "__main__":
    main()
