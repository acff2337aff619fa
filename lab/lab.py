#!/usr/bin/env python3
"""The lab: disposable Debian hosts that look like fresh VPSes, on this machine.

Each host is a real Debian system with systemd as PID 1 under systemd-nspawn, in a
network namespace of its own, wired by a veth pair to the bridge `ihlab0`
(10.77.0.0/24 and fd77:1ab::/64). The bridge has no route out: hosts reach only each
other, this machine (the operator, 10.77.0.1) and, through apt-cacher-ng on the
bridge, Debian's archive. Facts and traps behind these choices: ../shared/notes/lab.md.

    lab.py up [-n N] [--release trixie|bookworm] [--zone-server bind|nsd]
                                                   boot N fresh hosts (tidies leftovers first)
    lab.py status                                  one line per host
    lab.py shell NAME                              root shell inside a host (no SSH needed)
    lab.py rebuild NAME                            throw NAME's disk away and boot it fresh:
                                                   same name and addresses, new host keys
    lab.py down                                    remove everything the lab made

`up` writes .lab/inventory.py (pyinfra inventory and test targets), .lab/ssh_config and
.lab/known_hosts beside this checkout. Runs as root: it makes namespaces and mounts.
"""

import argparse
import ctypes
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / ".lab"  # what the deploy and the tests read
STATE = Path("/var/lib/inhouse-lab")  # hosts' roots; survives nothing but the cache
CACHE = Path("/var/cache/inhouse-lab")  # base images and apt cache, kept between labs
HOSTS = STATE / "hosts"
BRIDGE = "ihlab0"
NET4, NET6 = "10.77.0", "fd77:1ab:"
OPERATOR4, OPERATOR6 = f"{NET4}.1", f"{NET6}:1"
APT_PORT = 13142  # not apt-cacher-ng's usual 3142, which the machine's own cache may hold
PREFIX = "ihlab-"  # netns and cgroup names; a name the lab owns
RELEASES = ("trixie", "bookworm")
MAX_HOSTS = 20

# A fresh VPS: systemd, sshd, root login by key. Nothing else of ours but the apt proxy.
IMAGE_PACKAGES = "systemd,systemd-sysv,dbus,libpam-systemd,openssh-server,iproute2,procps,ca-certificates"
SOURCES = """Types: deb
URIs: http://deb.debian.org/debian
Suites: {r} {r}-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: {r}-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""
# Per-host identity (machine-id, SSH host keys) is made at boot time, not shared.
IMAGE_HOOKS = [
    'rm -f "$1"/etc/ssh/ssh_host_*',
    ': > "$1"/etc/machine-id',
    # No pipelining through the cache: hosts fetching the same file at once hung there.
    f'printf \'Acquire::http::Proxy "http://{OPERATOR4}:{APT_PORT}";\\nAcquire::http::Pipeline-Depth "0";'
    f'\\nAcquire::http::Timeout "30";\\nAcquire::Retries "3";\\n\' > "$1"/etc/apt/apt.conf.d/00lab-proxy',
    ': > "$1"/etc/resolv.conf',
    # dpkg syncs every file it unpacks; on the lab's overlay that made package installs
    # crawl. The hosts are disposable, so no sync (as Debian's container images do).
    'echo force-unsafe-io > "$1"/etc/dpkg/dpkg.cfg.d/lab-unsafe-io',
]
IMAGE_RECIPE = f"{IMAGE_PACKAGES} {SOURCES} {IMAGE_HOOKS}"


def run(*cmd, check=True, **kw):
    return subprocess.run([str(c) for c in cmd], check=check, text=True, **kw)


def quiet(*cmd):
    return run(*cmd, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def log(msg):
    print(f"lab: {msg}", flush=True)


# --- hosts ------------------------------------------------------------------------------


def host_names():
    return sorted((p.name for p in HOSTS.glob("*") if p.is_dir()), key=lambda n: int(n[3:]))


def address(name, v6=False):
    n = 10 + int(name[3:])
    return f"{NET6}:{n:x}" if v6 else f"{NET4}.{n}"


def read_pid(path):
    try:
        return int(Path(path).read_text())
    except (OSError, ValueError):
        return None


def cmdline(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def children(pid):
    try:
        return [int(c) for t in Path(f"/proc/{pid}/task").iterdir() for c in (t / "children").read_text().split()]
    except OSError:
        return []


def container_init(name):
    """PID (on this machine) of the host's systemd: the launcher's descendant that is PID 1."""
    todo = [read_pid(HOSTS / name / "nspawn.pid")] if (HOSTS / name / "nspawn.pid").exists() else []
    while todo:
        pid = todo.pop()
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        nspid = next(ln.split()[1:] for ln in status.splitlines() if ln.startswith("NSpid"))
        if len(nspid) > 1 and nspid[-1] == "1":
            return pid
        todo += children(pid)
    return None


# --- leftovers --------------------------------------------------------------------------


def our_processes():
    """Processes the lab started: launchers, nspawn, apt-cacher-ng (hosts' own: by cgroup)."""
    mine = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        line = cmdline(proc.name)  # empty for zombies, which need no stopping
        if str(STATE) in line and ("lab.py boot" in line or "systemd-nspawn" in line or "apt-cacher-ng" in line):
            mine.append(int(proc.name))
    return mine


CGROUPS = Path("/sys/fs/cgroup")


def cgroup_roots() -> list[Path]:
    """Where a launcher makes its own cgroup: the named systemd hierarchy and the unified one
    of a hybrid machine (this project's CI); the one tree of a machine on cgroup v2 alone
    (most VMs today: not yet tested)."""
    hybrid = [CGROUPS / h for h in ("systemd", "unified") if (CGROUPS / h).is_dir()]
    return hybrid or [CGROUPS]


def cgroup_dirs():
    """The lab's cgroups in every hierarchy, deepest first."""
    return sorted([*CGROUPS.glob(f"*/{PREFIX}*"), *CGROUPS.glob(f"{PREFIX}*")], key=lambda p: -len(p.parts))


def tidy():
    """Remove whatever a previous lab left behind, dead or alive. Only lab-made things."""
    pids = our_processes()
    for pid in pids:  # launchers stop their nspawn, which powers the host off cleanly
        if "systemd-nspawn" not in cmdline(pid):
            quiet("kill", "-TERM", pid)
    deadline = time.time() + 20
    while time.time() < deadline and any(Path(f"/proc/{p}").exists() for p in our_processes()):
        time.sleep(0.3)
    for pid in our_processes():
        quiet("kill", "-KILL", pid)
    for cg in cgroup_dirs():  # deepest first; kill stragglers still charged to them
        for sub in sorted(cg.rglob("cgroup.procs"), key=lambda p: -len(p.parts)):
            for pid in sub.read_text().split():
                quiet("kill", "-KILL", pid)
    time.sleep(0.2)
    for cg in cgroup_dirs():
        for d in sorted((p for p in cg.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            quiet("rmdir", d)
        quiet("rmdir", cg)
    with open("/proc/mounts") as f:
        mounts = [ln.split()[1] for ln in f if str(STATE) in ln.split()[1]]
    for m in sorted(mounts, key=len, reverse=True):
        quiet("umount", "-l", m)
    for ns in run("ip", "netns", "list", capture_output=True).stdout.split("\n"):
        if ns.startswith(PREFIX):
            quiet("ip", "netns", "delete", ns.split()[0])
    # A veth outlives its namespace for as long as something still holds that namespace.
    for link in run("ip", "-o", "link", "show", capture_output=True).stdout.splitlines():
        name = link.split(":")[1].strip().split("@")[0]
        if name.startswith("ihl-"):
            quiet("ip", "link", "delete", name)
    quiet("ip", "link", "delete", BRIDGE)
    close_forward()
    if STATE.exists():
        shutil.rmtree(STATE)


# --- image ------------------------------------------------------------------------------


def image(release):
    """Build the base root filesystem once per release and recipe; cached in CACHE."""
    root = CACHE / "images" / release
    stamp = CACHE / "images" / f"{release}.stamp"
    want = hashlib.sha256(IMAGE_RECIPE.encode()).hexdigest()
    if root.is_dir() and stamp.exists() and stamp.read_text() == want:
        return root
    log(f"building the {release} base image (once; cached in {root})")
    shutil.rmtree(root, ignore_errors=True)
    root.parent.mkdir(parents=True, exist_ok=True)
    sources = root.parent / f"{release}.sources"
    sources.write_text(SOURCES.format(r=release))
    run(
        "mmdebstrap", "--quiet", "--variant=minbase", f"--include={IMAGE_PACKAGES}",
        *[f"--customize-hook={h}" for h in IMAGE_HOOKS], release, root, sources,
    )
    stamp.write_text(want)
    return root


# --- network ----------------------------------------------------------------------------


# Docker (running on GitHub's hosted runners, among others) sets the policy of the FORWARD
# chain to DROP, and with br_netfilter the frames between two ports of a bridge cross that
# chain: the lab's hosts could not reach each other. The lab lets its own bridge through,
# the way Docker's documentation says (a rule ahead of its own), and takes the rule away.
FORWARD_RULE = ("FORWARD", "-i", BRIDGE, "-o", BRIDGE, "-m", "comment", "--comment", f"{PREFIX}bridge", "-j", "ACCEPT")


def iptables():
    return [t for t in ("iptables", "ip6tables") if shutil.which(t)]


def open_forward():
    for tool in iptables():
        if subprocess.run([tool, "-w", "-C", *FORWARD_RULE], capture_output=True).returncode:
            run(tool, "-w", "-I", *FORWARD_RULE)


def close_forward():
    for tool in iptables():
        while not subprocess.run([tool, "-w", "-D", *FORWARD_RULE], capture_output=True).returncode:
            pass


def reachable(src, dst, v6=False):
    """From inside src's network namespace, does dst's SSH port answer?"""
    target = address(dst, v6)
    return not subprocess.run(
        ["ip", "netns", "exec", PREFIX + src, "timeout", "5", "bash", "-c", f"echo > /dev/tcp/{target}/22"],
        capture_output=True,
    ).returncode


def bridge():
    open_forward()
    run("ip", "link", "add", BRIDGE, "type", "bridge")
    run("ip", "addr", "add", f"{OPERATOR4}/24", "dev", BRIDGE)
    run("ip", "addr", "add", f"{OPERATOR6}/64", "dev", BRIDGE, "nodad")
    run("ip", "link", "set", BRIDGE, "up")


def wire(name):
    ns = PREFIX + name
    run("ip", "netns", "add", ns)
    run("ip", "link", "add", f"ihl-{name}", "type", "veth", "peer", "name", "eth0", "netns", ns)
    run("ip", "link", "set", f"ihl-{name}", "master", BRIDGE, "up")
    run("ip", "-n", ns, "addr", "add", f"{address(name)}/24", "dev", "eth0")
    run("ip", "-n", ns, "addr", "add", f"{address(name, True)}/64", "dev", "eth0", "nodad")
    run("ip", "-n", ns, "link", "set", "lo", "up")
    run("ip", "-n", ns, "link", "set", "eth0", "up")


def warm_apt_cache(release, cache: subprocess.Popen):
    """Fetch the release's InRelease files through the cache once: when several hosts asked
    for one the cache did not have yet, some got a short answer and apt hung. Also the proof
    that the cache runs and reaches Debian's archive, before any host depends on it."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": f"http://{OPERATOR4}:{APT_PORT}"}))
    suites = (f"debian/dists/{release}", f"debian/dists/{release}-updates", f"debian-security/dists/{release}-security")
    for path in suites:
        for attempt in range(50):  # the cache takes a moment to listen
            try:
                opener.open(f"http://deb.debian.org/{path}/InRelease", timeout=30).read()
                break
            except OSError as e:
                if cache.poll() is not None or attempt == 49:
                    tail = (STATE / "apt-cacher-ng/log/stdout").read_text().strip().splitlines()[-3:]
                    sys.exit(f"lab: the apt cache on {OPERATOR4}:{APT_PORT} got no {path}/InRelease ({e}); "
                             f"its log: {' / '.join(tail) or '(empty)'}")
                time.sleep(0.2)


def apt_cache():
    """apt-cacher-ng on the bridge: the hosts' only way to Debian's archive."""
    conf = STATE / "apt-cacher-ng"
    (conf / "log").mkdir(parents=True)
    (CACHE / "apt").mkdir(parents=True, exist_ok=True)
    # Debian's stock config answers "503 Host not found" here: no Remap lines.
    (conf / "acng.conf").write_text(
        f"CacheDir: {CACHE / 'apt'}\nLogDir: {conf / 'log'}\nSupportDir: /usr/lib/apt-cacher-ng\n"
        f"BindAddress: {OPERATOR4}\nPort: {APT_PORT}\nForeGround: 1\nPidFile: {conf / 'pid'}\n"
        "ExThreshold: 4\n"
    )
    with open(conf / "log" / "stdout", "w") as out:
        return subprocess.Popen(["apt-cacher-ng", "-c", str(conf)], stdout=out, stderr=out, start_new_session=True)


# --- boot -------------------------------------------------------------------------------


def prepare(name, base, key):
    d = HOSTS / name
    for sub in ("upper", "work", "root"):
        (d / sub).mkdir(parents=True)
    run("mount", "-t", "overlay", "overlay", "-o",
        f"lowerdir={base},upperdir={d / 'upper'},workdir={d / 'work'}", d / "root")
    root = d / "root"
    (root / "etc/hostname").write_text(f"{name}\n")
    hosts = "127.0.0.1 localhost\n::1 localhost\n" + "".join(
        f"{address(n)} {n}\n{address(n, True)} {n}\n" for n in host_names()
    )
    (root / "etc/hosts").write_text(hosts)
    for kind in ("ed25519", "rsa", "ecdsa"):
        run("ssh-keygen", "-q", "-t", kind, "-N", "", "-C", f"root@{name}",
            "-f", root / f"etc/ssh/ssh_host_{kind}_key")
    ssh = root / "root/.ssh"
    ssh.mkdir(mode=0o700, exist_ok=True)
    (ssh / "authorized_keys").write_text(key)
    (ssh / "authorized_keys").chmod(0o600)


CLONE_NEWTIME, CLOCK_BOOTTIME = 0x80, 7


def new_boot_clock():
    """Put this launcher's next children in a new time namespace whose boot clock starts at
    0, as after a reboot (time_namespaces(7)). `unshare --time --boottime=-N` does the same,
    but util-linux 2.39 (Ubuntu 24.04's) refuses a negative offset."""
    uptime = int(float(Path("/proc/uptime").read_text().split()[0]))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWTIME):
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWTIME)")
    # Writable until a process enters the namespace: the nspawn started next.
    Path("/proc/self/timens_offsets").write_text(f"{CLOCK_BOOTTIME} -{uptime} 0\n")


def boot(name):
    """Launcher, detached from `up`: runs nspawn and turns exit code 133 into a reboot."""
    d = HOSTS / name
    for root in cgroup_roots():  # nspawn --keep-unit nests in our cgroup
        cg = root / (PREFIX + name)
        cg.mkdir(exist_ok=True)
        (cg / "cgroup.procs").write_text(str(os.getpid()))
    child = None

    def stop(*_):
        (d / "stop").touch()
        if child:  # nspawn powers the host off cleanly
            child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    while True:
        new_boot_clock()
        child = subprocess.Popen([
            "systemd-nspawn", "--quiet", "--register=no", "--keep-unit", "--console=passive",
            "-D", str(d / "root"), "-M", name, f"--network-namespace-path=/run/netns/{PREFIX}{name}",
            "--capability=CAP_NET_ADMIN", "--resolv-conf=off", "--timezone=off",
            "--link-journal=no", "-b",
        ])
        (d / "nspawn.pid").write_text(str(child.pid))
        rc = child.wait()
        if rc != 133 or (d / "stop").exists():
            return rc
        log(f"{name} reboots")


def wait_ssh(addr, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection((addr, 22), timeout=1) as s:
                if s.recv(16).startswith(b"SSH-"):
                    return True
        except OSError:
            time.sleep(0.2)
    return False


def write_outputs(key_file, release, zone_server, mta):
    names = host_names()
    known = []
    for n in names:
        for kind in ("ed25519", "rsa", "ecdsa"):
            pub = (HOSTS / n / "root" / f"etc/ssh/ssh_host_{kind}_key.pub").read_text().split()
            known.append(f"{n},{address(n)},{address(n, True)} {pub[0]} {pub[1]}")
    (OUT / "known_hosts").write_text("\n".join(known) + "\n")
    (OUT / "hosts.json").write_text(json.dumps({
        "release": release, "zone_server": zone_server, "mta": mta, "operator": [OPERATOR4, OPERATOR6],
        "key": str(key_file),
        "hosts": {n: {"ipv4": address(n), "ipv6": address(n, True), "netns": PREFIX + n} for n in names},
    }, indent=2))
    # The lab's own example site, or the operator's that lab/rehearse put there (site.json).
    template = "site_inventory.py.in" if (OUT / "site.json").exists() else "inventory.py.in"
    (OUT / "inventory.py").write_text((REPO / "lab" / template).read_text())


def up(count, release, zone_server, mta="postfix"):
    if not 1 <= count <= MAX_HOSTS:
        sys.exit(f"lab: -n must be between 1 and {MAX_HOSTS}")
    if os.geteuid() != 0:
        sys.exit("lab: run as root (namespaces, mounts, bridge)")
    tidy()
    base = image(release)
    OUT.mkdir(exist_ok=True)
    # New hosts are a new site: nothing of the last lab's site may make them look like
    # hosts it knew (its key escrow would turn the first deploy into a rebuild).
    for made in ("secrets", "root"):
        shutil.rmtree(OUT / made, ignore_errors=True)
    for made in ("mail-users.json", "site.json"):
        (OUT / made).unlink(missing_ok=True)
    key_file = OUT / "id_ed25519"
    if not key_file.exists():
        run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "inhouse-lab", "-f", key_file)
    key = Path(f"{key_file}.pub").read_text()
    names = [f"lab{i}" for i in range(1, count + 1)]
    HOSTS.mkdir(parents=True)
    for n in names:
        (HOSTS / n).mkdir()
    bridge()
    warm_apt_cache(release, apt_cache())
    for n in names:
        prepare(n, base, key)
        wire(n)
        with open(HOSTS / n / "console.log", "w") as out:
            subprocess.Popen([sys.executable, __file__, "boot", n, "--state", str(STATE)],
                             stdout=out, stderr=out, stdin=subprocess.DEVNULL, start_new_session=True)
    write_outputs(key_file, release, zone_server, mta)
    late = [n for n in names if not wait_ssh(address(n))]
    if late:
        status()  # with the console of each host that is not running
        sys.exit(f"lab: no SSH answer from {', '.join(late)}; see {HOSTS}/<name>/console.log")
    pair = names[:2] if count > 1 else []
    blocked = [f"IPv{6 if v6 else 4}" for v6 in (False, True) if pair and not reachable(*pair, v6)]
    if blocked:
        sys.exit(f"lab: {names[0]} cannot reach {names[1]} over the bridge {BRIDGE} ({', '.join(blocked)}): "
                 "a firewall of this machine drops the traffic between its ports (its forward chain)")
    log(f"{count} {release} host(s) up; inventory: {OUT / 'inventory.py'}")
    status()


def rebuild(name):
    """A dead disk, rehearsed: stop the host, drop everything it wrote (the overlay's upper
    layer), boot the base image again under the same name and addresses. Its SSH host keys
    are new, as on a reinstalled server; .lab/known_hosts learns them."""
    d = HOSTS / name
    hosts = json.loads((OUT / "hosts.json").read_text())
    stop(name)
    quiet("umount", d / "root")
    shutil.rmtree(d)
    d.mkdir()
    key = Path(f"{OUT / 'id_ed25519'}.pub").read_text()
    prepare(name, image(hosts["release"]), key)
    start(name)
    write_outputs(Path(hosts["key"]), hosts["release"], hosts["zone_server"], hosts.get("mta", "postfix"))
    log(f"{name} rebuilt from the {hosts['release']} base image")


def stop(name):
    """Power a host off (its disk and addresses stay): the launcher stops nspawn, whose
    SIGTERM makes systemd inside shut down as on a real machine."""
    if not (HOSTS / name).is_dir():
        sys.exit(f"lab: no host {name}")
    launchers = [p for p in our_processes() if f"lab.py boot {name} " in cmdline(p)]
    for pid in launchers:
        quiet("kill", "-TERM", pid)
    deadline = time.time() + 30
    while time.time() < deadline and any(Path(f"/proc/{p}").exists() for p in launchers):
        time.sleep(0.3)
    for pid in launchers:
        quiet("kill", "-KILL", pid)
    (HOSTS / name / "stop").unlink(missing_ok=True)


def start(name):
    """Boot a stopped host again and wait for its SSH."""
    d = HOSTS / name
    if not d.is_dir():
        sys.exit(f"lab: no host {name}")
    if container_init(name):
        sys.exit(f"lab: {name} is running")
    with open(d / "console.log", "a") as out:
        subprocess.Popen([sys.executable, __file__, "boot", name, "--state", str(STATE)],
                         stdout=out, stderr=out, stdin=subprocess.DEVNULL, start_new_session=True)
    if not wait_ssh(address(name)):
        sys.exit(f"lab: no SSH answer from {name}; see {d}/console.log")


def status():
    names = host_names() if HOSTS.exists() else []
    if not names:
        print("lab: no hosts (lab.py up)")
        return 1
    for n in names:
        init = container_init(n)
        state = "down"
        if init:
            r = run("nsenter", "-t", init, "-m", "-u", "-i", "-n", "-p", "systemctl",
                    "is-system-running", check=False, capture_output=True)
            state = r.stdout.strip() or "unknown"
        print(f"{n:6} {address(n):12} {address(n, True):16} {state}")
        if state != "running" and (HOSTS / n / "console.log").exists():
            # What the host last said on its console: why it is down, or what holds it.
            for line in (HOSTS / n / "console.log").read_text(errors="replace").splitlines()[-12:]:
                print(f"       | {line}")
    return 0


def shell(name, command):
    init = container_init(name)
    if not init:
        sys.exit(f"lab: {name} is not running")
    cmd = command or ["/bin/bash", "-l"]
    os.execvp("nsenter", ["nsenter", "-t", str(init), "-m", "-u", "-i", "-n", "-p", "--", *cmd])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="verb", required=True)
    u = sub.add_parser("up", help="boot N fresh hosts")
    u.add_argument("-n", type=int, default=2)
    u.add_argument("--release", choices=RELEASES, default="trixie")
    u.add_argument("--zone-server", choices=("bind", "nsd"), default="bind", help="for the lab inventory")
    u.add_argument("--mta", choices=("postfix", "exim4"), default="postfix", help="for the lab inventory")
    sub.add_parser("status", help="show the hosts")
    s = sub.add_parser("shell", help="root shell (or a command) inside a host")
    s.add_argument("name")
    s.add_argument("command", nargs=argparse.REMAINDER)
    r = sub.add_parser("rebuild", help="throw a host's disk away and boot it fresh")
    r.add_argument("name")
    for verb, what in (("stop", "power a host off, its disk kept"), ("start", "boot a stopped host again")):
        sub.add_parser(verb, help=what).add_argument("name")
    sub.add_parser("down", help="remove everything the lab made")
    b = sub.add_parser("boot", help=argparse.SUPPRESS)
    b.add_argument("name")
    b.add_argument("--state")  # only to mark the launcher's command line as the lab's
    a = p.parse_args()
    if a.verb == "up":
        up(a.n, a.release, a.zone_server, a.mta)
    elif a.verb == "status":
        sys.exit(status())
    elif a.verb == "shell":
        shell(a.name, a.command)
    elif a.verb == "rebuild":
        rebuild(a.name)
    elif a.verb == "stop":
        stop(a.name)
        log(f"{a.name} stopped")
    elif a.verb == "start":
        start(a.name)
        log(f"{a.name} started")
    elif a.verb == "down":
        tidy()
        log("down")
    elif a.verb == "boot":
        sys.exit(boot(a.name))


if __name__ == "__main__":
    main()
