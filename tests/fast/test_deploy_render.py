"""Fast tier (no lab): the whole deploy.py, rendered for a few inventories without
connecting. pyinfra loads the inventory file as its CLI does (group_data/ too, and the
inventory's own check_inventory), and runs deploy.py for one host as in a run's prepare
phase; every host is on pyinfra's @fake connector, which answers the deploy's two facts
(System, HostState) from canned output and records every command sent. What a host would
get is the list of its operations, by name, with their commands.

Two states of a host: fresh (Debian 13, nothing installed) and steady (every file, unit,
user and key as the deploy would leave them, computed from the files the deploy itself
rendered): a steady host gets no operation at all, after two remote commands.
"""

import io
import re
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pyinfra.api import Config, FileUploadCommand, State
from pyinfra.api.state import StateStage
from pyinfra.connectors.fake import FakeConnector
from pyinfra.context import ctx_config, ctx_host, ctx_inventory, ctx_state
from pyinfra_cli.inventory import make_inventory
from pyinfra_cli.util import exec_file

from tasks import backup, dkim, keys, link, tls, zone
from tasks.secrets_dir import write_secret

REPO = Path(__file__).resolve().parents[2]
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDk5GBqO9XcVtHc1M7Zm8dCk6h0pY8XzS3jDhHk9P1dx me@laptop"
HASH = "{SHA512-CRYPT}$6$rendersalt$" + "x" * 86
MX, VPS = "mx.example.org", "vps.example.org"
TLSA = "3 1 1 " + "ab" * 32


def example_inventory(**site) -> str:
    """inventory.py as shipped, its relay uncommented (the two sites of its example), with
    what group_data/all.py leaves to the operator: an SSH key, and `site`."""
    text = (REPO / "inventory.py").read_text()
    relay = re.search(r"^# relay = \($.*?^# \)$", text, re.M | re.S)[0]
    text = text.replace(relay, "\n".join(line.removeprefix("# ") for line in relay.splitlines()))
    return text.replace("connection()", f"connection() | {site | {'admin_ssh_keys': [KEY]}!r}")


def vps_inventory(**site) -> str:
    """One VPS alone: the mail host, DNS master, nothing else."""
    return example_inventory(**site).split("\nrelay = (")[0] + "\ncheck_inventory(globals())\n"


@dataclass
class Render:
    """What deploy.py did for one host: its operations (name, commands), the commands the
    fake hosts were sent meanwhile, the deploy's own variables (data, configs...), and what
    the fake hosts answered."""

    operations: list[tuple[str, list]]
    sent: dict[str, list[str]]
    scope: dict = field(repr=False)
    answers: dict = field(repr=False, default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.operations]

    def uploaded(self, path: str) -> str:
        """The content the operation installing `path` uploads."""
        for name, commands in self.operations:
            if name.endswith(f"install {path}") or name.endswith(f"Install {path}"):
                return next(c.src.getvalue() for c in commands if isinstance(c, FileUploadCommand))
        raise KeyError(path)


def render(inventory_file: Path, name: str, answers: dict[str, dict]) -> Render:
    """deploy.py for host `name`; answers: per host, command substring -> output lines."""
    state = State()
    with ctx_state.use(state):
        inventory = make_inventory(str(inventory_file), cwd=str(REPO))
    for h in inventory:
        h.connector_cls = FakeConnector
    state.init(inventory, Config())
    for h in inventory:
        h.connector.data.update(fake_delay=0, fake_delay_jitter=0, fake_responses=answers.get(h.name, {}))
    state.set_stage(StateStage.Prepare)
    host = inventory.get_host(name)
    with ctx_state.use(state), ctx_inventory.use(inventory), ctx_config.use(state.config.copy()), ctx_host.use(host):
        scope = exec_file(str(REPO / "deploy.py"))
        operations = []
        for op_hash in host.op_hash_order:
            (op_name,) = state.get_op_meta(op_hash).names
            operations.append((op_name, list(state.get_op_data_for_host(host, op_hash).command_generator())))
    return Render(operations, {h.name: list(h.connector.executed_commands) for h in inventory}, scope, answers)


def system(debian: int = 13, container: str = "none", heads: dict[str, str] | None = None,
           keys: str = "none") -> list[str]:
    """System's output: the digest of the key files (none: a fresh host), each head as the
    command prints it (first lines, "|"-joined)."""
    return [str(debian), container, f"keys {keys}",
            *[f"{path} {'|'.join(lines.splitlines())}|" for path, lines in (heads or {}).items()]]


FRESH_STATE = ["# packages", "# paths", "# units", "# users"]  # nothing of ours yet
FRESH = {"/etc/os-release": system(), "dpkg-query": FRESH_STATE}
# Keys made by earlier runs: the certificate signed by the CA, the DKIM key (mail host).
KEPT = "d" * 64  # the digest of the key files the escrow has
NEXT_TLSA = "3 1 1 " + "cd" * 32
MADE = str(int(time.time()) - 86400)  # keys a day old: no roll is due
KEYS = {tls.TLSA: TLSA, tls.NEXT_TLSA: NEXT_TLSA, tls.ISSUER: "acme", tls.MADE: MADE,
        dkim.CURRENT: f"20260101\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n{MADE}",
        dkim.NEXT: "20260101b\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEB",
        backup.STATUS: "ok 2026-01-01T03:41:07Z mx-2026-01-01T03:40:00"}  # and a backup made
WG_PUBLIC = "x" * 42 + "A="  # a link's public key (wg pubkey), on hosts that have a link


def steady_state(r: Render) -> list[str]:
    """HostState's output for a host that has what render `r` installs: every file as
    rendered, the other paths the run reads, every package, unit (enabled, running) and user."""
    data, components, configs = r.scope["data"], r.scope["components"], r.scope["configs"]
    link = f"link /usr/share/zoneinfo/{data['timezone']}"  # the time zone, as clock sets it
    others = [f"{p} {link if p == '/etc/localtime' else '0' * 64 + ' 644:root:root'}"
              for c in components for p in c.paths(data)]
    return [
        "# packages", *sorted({p for c in components for p in c.packages(data)}),
        "# paths", *[f"{f.path} {f.state}" for fs in configs.values() for f in fs],
        *others,
        "# units", *[f"{u} enabled active" for c in components for u in c.units(data)],
        "# users", data["admin_user"], "vmail", "inhouse-backup",
    ]


def in_order(names: list[str], *expected: str) -> bool:
    """Whether every one of `expected` is in `names`, in that order."""
    return [names.index(e) for e in expected] == sorted(names.index(e) for e in expected)


def facts_sent(r: Render, host: str) -> list[str]:
    """The deploy's own facts sent to `host`, by name (pyinfra's TmpDir aside)."""
    kinds = {"/etc/os-release": "System", "dpkg-query": "HostState"}
    return [kind for c in r.sent[host] for marker, kind in kinds.items() if marker in c]


@pytest.fixture
def site(tmp_path) -> dict:
    """Site data of every inventory here: secrets of their own (the users' password hashes;
    the transfer key is made there on the first render)."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "mail-passwords").write_text(f"alice@example.org {HASH}\n")
    return {"secrets_dir": str(secrets)}


def inventory(tmp_path, text: str) -> Path:
    path = tmp_path / "inventory.py"
    path.write_text(text)
    return path


def fresh_and_steady(path: Path, name: str, hosts: list[str]) -> tuple[Render, Render]:
    """deploy.py on `name`, fresh, then steady (its state from what the deploy rendered,
    with the keys earlier runs made); the other hosts answer as steady hosts."""
    fresh = render(path, name, {h: FRESH for h in hosts})
    # The names each host's certificate was signed for (the mail host's also names mta-sts.*).
    signed = {h: (fresh if h == name else render(path, h, {x: FRESH for x in hosts})).scope["data"] for h in hosts}
    # The zone files as the first run wrote them; the key files as the escrow has them.
    zones = {p: "\n".join(fresh.uploaded(p).splitlines()[:3]) for p in zone.heads(fresh.scope["data"])}
    for h in hosts:
        write_secret(keys.escrow_path(signed[h]).with_suffix(".sha256"), KEPT + "\n")
    keyed = {h: {"/etc/os-release": system(heads=KEYS | {tls.NAMES: " ".join(tls.names(signed[h]))}
                                           | ({link.PUBLIC: WG_PUBLIC} if link.role(signed[h]) != "none" else {})
                                           | (zones if h == name else {}), keys=KEPT),
                 "dpkg-query": FRESH_STATE} for h in hosts}
    steady = render(path, name, keyed | {name: {**keyed[name], "dpkg-query": steady_state(render(path, name, keyed))}})
    return fresh, steady


# The operations of a fresh Debian 13 VPS, alone: mail host and DNS master, bind and postfix.
VPS_PACKAGES = ("bind9, bind9-dnsutils, bind9-utils, certbot, chrony, dns-root-data, dovecot-imapd, dovecot-lmtpd, "
                "dovecot-sieve, "
                "fail2ban, iptables, iptables-persistent, netfilter-persistent, nftables, nginx, opendkim, "
                "opendkim-tools, "
                "openssh-server, openssl, postfix, postfix-policyd-spf-python, python3, python3-defusedxml, "
                "python3-systemd, redis-server, rspamd, sudo, "
                "tzdata, unattended-upgrades, unbound")


def test_a_fresh_vps_gets_everything_in_order(tmp_path, site):
    path = inventory(tmp_path, vps_inventory(**site))
    fresh, steady = fresh_and_steady(path, MX, [MX])
    names = fresh.names
    # One apt run first, for every package of every component.
    assert names[0] == f"Install {VPS_PACKAGES}"
    assert not [n for n in names[1:] if " | " not in n]
    # The admin exists and has their key before sshd stops root logins.
    assert in_order(names, "Admin user | Create user mailadmin",
                    "Admin user | Install /home/mailadmin/.ssh/authorized_keys",
                    "SSH | Check and install /etc/ssh/sshd_config.d/00-inhouse.conf", "SSH | Enable and start ssh")
    # The zone and resolver before the certificate (the CA checks the name); the certificate
    # before the services that serve it.
    assert in_order(names, "Zone (bind) | Enable and start named", "Resolver | Enable and start unbound",
                    "TLS certificate | Get a certificate for mx.example.org",
                    "MTA (postfix) | Enable and start postfix", "IMAP | Enable and start dovecot",
                    "MTA-STS policy | Enable and start nginx")
    # The DKIM keys (selectors: today's date), the signing one and the next, before
    # opendkim's config, whose check loads the signing one.
    (make_key,) = [i for i, n in enumerate(names)
                   if re.fullmatch(r"DKIM \| DKIM: make the current key \(\d{8}\), make the next key \(\d{8}b\)", n)]
    assert make_key < names.index("DKIM | Check and install /etc/opendkim/inhouse/keytable")
    # The firewall, with the ports of everything else, before the certificate: the ACME CA
    # checks port 80.
    assert in_order(names, "Firewall | Check and install /etc/iptables/rules.v4",
                    "Firewall | Check and install /etc/iptables/rules.v6",
                    "Firewall | Enable and start netfilter-persistent",
                    "TLS certificate | Get a certificate for mx.example.org")
    # Then the keys the run made, to the operator's machine.
    assert names[-1] == "Keys | Keep the keys in secrets_dir"
    rules = fresh.uploaded("/etc/iptables/rules.v4")
    assert sorted(set(re.findall(r"-p (tcp|udp) -m \1 --dport (\d+)", rules))) == [
        ("tcp", "143"), ("tcp", "22"), ("tcp", "25"), ("tcp", "443"), ("tcp", "465"), ("tcp", "53"), ("tcp", "587"),
        ("tcp", "80"), ("tcp", "993"), ("udp", "53")]
    # Units start once their config is in place: nothing to restart on top.
    assert not [n for n in names if "its config changed" in n]
    # Every file of every component, once each.
    files = [f.path for fs in fresh.scope["configs"].values() for f in fs]
    assert sorted(n.split(" install " if " install " in n else " Install ")[1] for n in names
                  if re.search(r"\| (Check and install|Install) /", n)) == sorted(files)
    # Reading the host: two remote commands (and pyinfra's temporary folder for uploads).
    assert facts_sent(fresh, MX) == ["System", "HostState"]
    # The same host, once deployed: nothing to do, and nothing sent but the two facts.
    assert steady.names == []
    assert facts_sent(steady, MX) == ["System", "HostState"] and len(steady.sent[MX]) == 2


def test_a_changed_file_is_installed_and_its_service_reloaded(tmp_path, site):
    path = inventory(tmp_path, vps_inventory(**site))
    _, steady = fresh_and_steady(path, MX, [MX])
    sshd = "/etc/ssh/sshd_config.d/00-inhouse.conf"
    state = [f"{sshd} {'0' * 64} 600:root:root" if line.startswith(f"{sshd} ") else line
             for line in steady_state(steady)]  # sshd's drop-in, edited by hand
    r = render(path, MX, {MX: {"/etc/os-release": steady.answers[MX]["/etc/os-release"], "dpkg-query": state}})
    # And a run that changes anything looks whether the keys changed too.
    assert r.names == [f"SSH | Check and install {sshd}", "SSH | Reload ssh: its config changed",
                       "Keys | Keep the keys in secrets_dir"]
    assert [str(c) for c in r.operations[1][1]] == ["systemctl reload ssh"]


@pytest.mark.parametrize(("site_data", "expect_packages", "absent_packages", "expect_ops"), [
    # inventory.py's example: bind and postfix; rspamd judges SPF, DKIM and DMARC (opendkim signs).
    ({}, ["bind9", "postfix", "opendkim", "rspamd"], ["nsd", "exim4-daemon-heavy", "opendmarc"],
     ["Zone (bind) | Check and install /var/lib/bind/db.example.org", "MTA (postfix) | Enable and start postfix"]),
    # exim4: DKIM and SPF of its own, DMARC by Mail::DMARC; no opendkim, no opendmarc.
    ({"mta": "exim4"}, ["exim4-daemon-heavy", "libmail-dmarc-perl", "openssl"], ["postfix", "opendkim", "opendmarc"],
     ["MTA (exim4) | Check and install /etc/exim4/exim4.conf", "MTA (exim4) | Enable and start exim4"]),
    # NSD: zones signed by the deploy's own signer, from a timer.
    ({"zone_server": "nsd"}, ["nsd", "bind9-utils"], ["bind9"],
     ["Zone (nsd) | Check and install /var/lib/nsd/db.example.org", "Zone (nsd) | Sign zones example.org",
      "Zone (nsd) | Enable and start inhouse-zone-sign.timer"]),
    # A home hidden behind the relay: the link, and haproxy's front door on the relay.
    ({"link_enabled": True, "link_home_hidden": True, "operator_networks": ["192.0.2.0/24"]},
     ["wireguard-go", "postfix", "dovecot-imapd"], ["haproxy"],
     ["Link | Make the link's key", "Link | Check and install /etc/wireguard/inhouse.conf"]),
])
def test_home_and_relay_for_each_mta_and_zone_server(tmp_path, site, site_data, expect_packages, absent_packages,
                                                     expect_ops):
    path = inventory(tmp_path, example_inventory(**site, **site_data))
    for name in (MX, VPS):
        fresh, steady = fresh_and_steady(path, name, [MX, VPS])
        packages = fresh.names[0].removeprefix("Install ").split(", ")
        if name == MX:
            assert set(expect_packages) <= set(packages) and not set(absent_packages) & set(packages), packages
            assert set(expect_ops) <= set(fresh.names), fresh.names
            # The master asks the relay for its TLSA record: one command to the relay.
            assert facts_sent(fresh, VPS) == ["System"]
        else:  # the relay: backup MX and DNS secondary, no mailboxes, keys or zone files of its own
            assert "dovecot-imapd" not in packages
            # It judges what it takes in (rspamd; exim: itself) but signs nothing: no opendkim.
            assert "rspamd" in packages and not {"opendkim", "opendmarc"} & set(packages), packages
            assert not [n for n in fresh.names if n.startswith(("IMAP", "DKIM | DKIM:")) or "/db." in n
                        or n.endswith(("keytable", "signingtable"))]
            # With a link, the mail host's public key: one command to it.
            assert facts_sent(fresh, MX) == (["System"] if site_data.get("link_enabled") else [])
        # Last, the keys to the operator's machine; and once the relay has its backup
        # account, the mail host's first backup.
        first = ["Backup | Start the first backup"] if name == MX else []
        assert fresh.names[-1 - len(first):] == ["Keys | Keep the keys in secrets_dir", *first]
        assert "Firewall | Enable and start netfilter-persistent" in fresh.names
        assert steady.names == [], f"{name}: a deployed host got {steady.names}"


def test_the_ipv4_only_relay_is_published_and_listens_on_ipv4_only(tmp_path, site):
    path = inventory(tmp_path, example_inventory(**site))  # the example's relay has no ipv6
    # A fresh mail host; the relay deployed already, with its certificate.
    mx = render(path, MX, {MX: FRESH, VPS: {"/etc/os-release": system(heads=KEYS), "dpkg-query": FRESH_STATE}})
    zone = mx.uploaded("/var/lib/bind/db.example.org")
    assert re.search(r"^vps\s.*\sA\s+198\.51\.100\.20$", zone, re.M) and re.search(r"^mx\s.*\sAAAA\s", zone, re.M)
    assert not re.search(r"^vps\s.*\sAAAA\s", zone, re.M)
    # The relay's TLSA record, asked from it, is in the master's zone.
    assert re.search(rf"^_25\._tcp\.vps\s.*\sTLSA\s+{TLSA}$", zone, re.M)
    assert re.search(rf"^_25\._tcp\.vps\s.*\sTLSA\s+{NEXT_TLSA}$", zone, re.M)  # its next key's, ahead
    relay, steady = fresh_and_steady(path, VPS, [MX, VPS])
    assert "listen-on-v6 { none; };" in relay.uploaded("/etc/bind/named.conf.options")
    # Its IPv6 firewall still denies by default: an address may come later.
    assert ":INPUT DROP" in relay.uploaded("/etc/iptables/rules.v6")
    assert steady.names == []


def test_a_debian_12_container_gets_its_own_files(tmp_path, site):
    path = inventory(tmp_path, vps_inventory(**site))
    r = render(path, MX, {MX: {"/etc/os-release": system(12, "systemd-nspawn"), "dpkg-query": FRESH_STATE}})
    assert {"Clock | Install /etc/systemd/system/chrony.service.d/inhouse-container.conf",
            "Clock | Install /etc/timezone", "Clock | Reload systemd units"} <= set(r.names)


def escrow(data: dict, files: dict[str, str]) -> None:
    """An escrow in secrets_dir with `files` (path -> content), as an earlier run kept them."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path, content in files.items():
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size = len(content.encode())
            tar.addfile(info, io.BytesIO(content.encode()))
    write_secret(keys.escrow_path(data), buffer.getvalue())


def test_a_rebuilt_mail_host_gets_keys_and_mail_back_before_any_service(tmp_path, site):
    path = inventory(tmp_path, example_inventory(**site))
    relay_steady = {"/etc/os-release": system(heads=KEYS), "dpkg-query": FRESH_STATE}
    data = render(path, MX, {MX: FRESH, VPS: relay_steady}).scope["data"]
    escrow(data, {dkim.CURRENT: "202601\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n", tls.TLSA: TLSA + "\n"})
    rebuilt = render(path, MX, {MX: FRESH, VPS: relay_steady})
    names = rebuilt.names
    # The keys of before (the escrow's DKIM selector, not a new one), then the mail, then
    # the services; the relay asked for the mail it kept; the rebuild marked complete last.
    assert in_order(names, f"Keys | Put back the keys of {MX} from secrets_dir",
                    "Backup | Put back the mail from the newest backup in "
                    f"ssh://inhouse-backup@198.51.100.20/var/backups/inhouse/{MX}",
                    "Zone (bind) | Enable and start named", "MTA (postfix) | Enable and start postfix",
                    "IMAP | Enable and start dovecot",
                    "Backup | Ask the relays for the mail they kept meanwhile (ETRN)", "Keys | The rebuild is complete")
    assert not [n for n in names if n.startswith("DKIM | Make the DKIM key")]
    assert re.search(r"^202601\._domainkey\s", rebuilt.uploaded("/var/lib/bind/db.example.org"), re.M)
    assert in_order(names, f"Keys | Install {keys.UPLOAD}", f"Keys | Put back the keys of {MX} from secrets_dir")
    # A rebuild that stopped after the keys (the backup out of reach) goes on restoring.
    resumed = render(path, MX, {MX: {"/etc/os-release": system(heads=KEYS | {keys.PENDING: "pending"}, keys=KEPT),
                                     "dpkg-query": FRESH_STATE}, VPS: relay_steady})
    assert not [n for n in resumed.names if n.startswith("Keys | Put back")]
    assert in_order(resumed.names, "Backup | Put back the mail from the newest backup in "
                    f"ssh://inhouse-backup@198.51.100.20/var/backups/inhouse/{MX}",
                    "MTA (postfix) | Enable and start postfix", "Keys | The rebuild is complete")
    # An ordinary host that lost nothing: no restore at all.
    _, steady = fresh_and_steady(path, MX, [MX, VPS])
    assert steady.names == []


HOME_KEY, VPS_KEY = "A" * 43 + "=", "B" * 42 + "E="  # WireGuard public keys (32 bytes, base64)


def test_the_link_from_home_dials_the_relay_which_listens(tmp_path, site):
    path = inventory(tmp_path, example_inventory(**site | {"link_enabled": True}))
    # The relay has its link key already; the mail host (home) makes its own.
    relay_answers = {"/etc/os-release": system(heads=KEYS | {link.PUBLIC: VPS_KEY}), "dpkg-query": FRESH_STATE}
    home = render(path, MX, {MX: FRESH, VPS: relay_answers})
    assert "wireguard-go" in home.names[0] and "wireguard-tools" in home.names[0]
    assert in_order(home.names, "Link | Make the link's key", f"Link | Check and install {link.CONF}",
                    f"Link | Enable and start {link.UNIT}")
    conf = home.uploaded(link.CONF)
    # Home dials the relay's public address, keeps the NAT open, and knows the relay by its key alone.
    assert "Address = 10.254.254.1/24" in conf and "ListenPort" not in conf
    assert f"PublicKey = {VPS_KEY}" in conf and "Endpoint = 198.51.100.20:51820" in conf
    assert "AllowedIPs = 10.254.254.2/32" in conf and "PersistentKeepalive = 25" in conf
    # The private key is in no config, no diff: wg reads it from its own file.
    assert "PrivateKey" not in conf and f"PostUp = wg set %i private-key {link.KEY}" in conf
    rules = home.uploaded("/etc/iptables/rules.v4")
    assert "51820" not in rules  # home opens nothing for the link
    # The relay, once home has a key: listens on the link's port, knows home by its key.
    home_answers = {"/etc/os-release": system(heads=KEYS | {link.PUBLIC: HOME_KEY}), "dpkg-query": FRESH_STATE}
    relay = render(path, VPS, {MX: home_answers, VPS: relay_answers})
    conf = relay.uploaded(link.CONF)
    assert "Address = 10.254.254.2/24" in conf and "ListenPort = 51820" in conf
    assert f"PublicKey = {HOME_KEY}" in conf and "AllowedIPs = 10.254.254.1/32" in conf and "Endpoint" not in conf
    assert "Link | Make the link's key" not in relay.names  # it has one
    assert re.search(r"-p udp -m udp --dport 51820 -m conntrack --ctstate NEW -j ACCEPT",
                     relay.uploaded("/etc/iptables/rules.v4"))


def test_a_link_no_longer_wanted_is_taken_down(tmp_path, site):
    path = inventory(tmp_path, example_inventory(**site))  # link_enabled: False
    answers = {"/etc/os-release": system(heads=KEYS | {link.PUBLIC: HOME_KEY}), "dpkg-query": FRESH_STATE}
    home = render(path, MX, {MX: answers, VPS: answers})
    assert "Link | Take the link down" in home.names
    assert "wireguard" not in home.names[0]


def test_milters_rspamd_replaces_are_stopped_once(tmp_path, site):
    """A host deployed before rspamd judged: opendmarc (and a relay's opendkim) stop and
    their configs go, once."""
    path = inventory(tmp_path, example_inventory(**site))
    for name, gone in ((MX, ["opendmarc"]), (VPS, ["opendmarc", "opendkim"])):
        fresh, steady = fresh_and_steady(path, name, [MX, VPS])
        before = steady_state(steady)
        at = before.index("# units")  # still in the paths section
        before[at:at] = [f"/etc/{u}.conf {'0' * 64} 644:root:root" for u in gone]
        r = render(path, name, steady.answers | {name: steady.answers[name] | {"dpkg-query": before}})
        stops = [n for n in r.names if n.startswith("Spam filter | Stop")]
        assert stops == [f"Spam filter | Stop {u}: rspamd judges instead" for u in gone], r.names
