"""Fast tier (no lab): each component renders what the data says, for Debian 12 and 13,
on a machine and in a container."""

import re
from pathlib import Path

import pytest

from tasks import admin, bans, clock, firewall, mta_sts, resolver, ssh, tls, upgrades, zone
from tasks.data import DEFAULTS, read_group_data, with_roles
from tasks.registry import COMPONENTS, SHARED

REPO = Path(__file__).resolve().parents[2]
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDk5GBqO9XcVtHc1M7Zm8dCk6h0pY8XzS3jDhHk9P1dx me@laptop"
DATA = DEFAULTS | read_group_data("all") | {
    "admin_user": "alice", "admin_ssh_keys": [KEY, KEY.replace("me@", "backup@")],
    "operator_networks": ["192.0.2.0/24", "2001:db8::/64"], "timezone": "Europe/Berlin",
}
BOOKWORM, TRIXIE = {"debian": 12, "container": "none"}, {"debian": 13, "container": "none"}


def rendered(component, data=DATA, system=TRIXIE, **kw) -> dict[str, str]:
    return {f.path: f.content for f in component.files(data, system, **kw)}


def test_every_file_names_its_template():
    for component in (admin, ssh, bans, clock, upgrades, resolver):
        for path, content in rendered(component, system={"debian": 13, "container": "systemd-nspawn"}).items():
            assert re.search(r"Managed by inhouse from (templates/\S+\.j2|files/\S+);", content), path


def test_sshd_kex_follows_the_openssh_of_each_release():
    old = rendered(ssh, system=BOOKWORM)["/etc/ssh/sshd_config.d/00-inhouse.conf"]
    new = rendered(ssh, system=TRIXIE)["/etc/ssh/sshd_config.d/00-inhouse.conf"]
    assert "mlkem768x25519-sha256" not in old and "mlkem768x25519-sha256" in new
    # paramiko (pyinfra) needs one of these, whatever the release
    for conf in (old, new):
        assert "curve25519-sha256@libssh.org" in conf and "AllowUsers alice" in conf
        assert re.search(r"^Ciphers .*aes256-gcm@openssh.com", conf, re.M)
    assert "PerSourcePenaltyExemptList 192.0.2.0/24,2001:db8::/64" in new
    assert "PerSourcePenalty" not in old  # OpenSSH 9.2 would refuse the keyword


def test_sshd_extra_lines_are_appended():
    conf = rendered(ssh, DATA | {"ssh_extra_config": ["ClientAliveInterval 300"]})
    assert conf["/etc/ssh/sshd_config.d/00-inhouse.conf"].rstrip().endswith("ClientAliveInterval 300")


def test_admin_gets_every_key_and_passwordless_sudo():
    files = {f.path: f for f in admin.files(DATA, TRIXIE)}
    keys = files["/home/alice/.ssh/authorized_keys"]
    assert [ln for ln in keys.content.splitlines() if ln.startswith("ssh-")] == DATA["admin_ssh_keys"]
    assert (keys.mode, keys.user) == ("600", "alice")
    assert "alice ALL=(ALL:ALL) NOPASSWD: ALL" in files["/etc/sudoers.d/inhouse"].content


def test_firewall_opens_only_the_given_ports_and_keeps_icmpv6():
    rules = rendered(firewall, DATA | {"firewall_extra_ports": ["udp/53"]}, ports=["tcp/22"], sources=[])
    v4, v6 = rules["/etc/iptables/rules.v4"], rules["/etc/iptables/rules.v6"]
    for text in (v4, v6):
        assert re.findall(r"--dport (\d+)", text) == ["22", "53"]
        assert ":INPUT DROP" in text and text.rstrip().endswith("COMMIT")
    assert "-p ipv6-icmp -j ACCEPT" in v6 and "-p icmp -j ACCEPT" in v4


def test_lan_networks_get_only_their_port_each_in_its_family():
    rules = rendered(firewall, ports=["tcp/22"], sources=[("192.168.1.0/24", "udp/53"), ("fd00::/64", "tcp/53")])
    assert "-A INPUT -s 192.168.1.0/24 -p udp -m udp --dport 53" in rules["/etc/iptables/rules.v4"]
    assert "fd00::/64" not in rules["/etc/iptables/rules.v4"]
    assert "-A INPUT -s fd00::/64 -p tcp -m tcp --dport 53" in rules["/etc/iptables/rules.v6"]


def test_fail2ban_never_bans_loopback_or_the_operator():
    jail = rendered(bans)["/etc/fail2ban/jail.d/inhouse.local"]
    assert "ignoreip = 127.0.0.0/8 ::1 192.0.2.0/24 2001:db8::/64" in jail
    assert "backend = systemd" in jail and "port = 22" in jail


@pytest.mark.parametrize(("system", "dropin", "timezone_file"), [
    ({"debian": 13, "container": "systemd-nspawn"}, True, False),
    ({"debian": 12, "container": "none"}, False, True),
])
def test_clock_adapts_to_containers_and_releases(system, dropin, timezone_file):
    files = rendered(clock, system=system)
    assert (clock.CONTAINER_DROPIN in files) == dropin
    assert ("/etc/timezone" in files) == timezone_file
    if dropin:
        assert "-x" in files[clock.CONTAINER_DROPIN]


def test_upgrades_reboot_follows_data():
    conf = rendered(upgrades, DATA | {"upgrades_reboot": True})["/etc/apt/apt.conf.d/52inhouse-upgrades"]
    assert 'Automatic-Reboot "true"' in conf and 'Unattended-Upgrade "1"' in conf


def test_every_setting_is_documented_and_used():
    sources = "".join(p.read_text() for p in [*(REPO / "templates").rglob("*.j2"), *(REPO / "tasks").glob("*.py"),
                                              REPO / "deploy.py"])
    documented = "".join(Path(m.__file__).read_text() for m in [*SHARED, *(c.module for c in COMPONENTS)])
    all_py = (REPO / "group_data/all.py").read_text()
    for key in DEFAULTS:
        assert re.search(rf"#[^\n]*\n\s*\"{key}\"", documented), f"{key}: no comment above its default"
    for key in [*DEFAULTS, *read_group_data("all")]:
        uses = len(re.findall(rf"\b{key}\b", sources))
        assert uses >= 2 if key in DEFAULTS else uses >= 1, f"{key}: defined but never used"
    for key in read_group_data("all"):
        assert re.search(rf"#[^\n]*\n{key} =|^{key} = .*#", all_py, re.M), f"group_data/all.py: {key} has no comment"


def test_resolver_forwards_over_tls_and_trusts_its_own_root_when_told():
    plain = rendered(resolver)
    assert "forward-zone" not in plain["/etc/unbound/unbound.conf.d/inhouse.conf"]
    assert 'auto-trust-anchor-file: "/var/lib/unbound/root.key"' in plain[resolver.DEBIAN_ANCHOR]
    lab = rendered(resolver, DATA | {
        "resolver_forward_tls": ["9.9.9.9@853#dns.quad9.net"], "domain": "inhouse.test",
        "resolver_root_hints": [". 3600000 NS ns.root.test."], "resolver_trust_anchors": [". IN DS 1 13 2 AB"],
    })
    conf = lab["/etc/unbound/unbound.conf.d/inhouse.conf"]
    assert "forward-tls-upstream: yes" in conf and "forward-addr: 9.9.9.9@853#dns.quad9.net" in conf
    assert 'local-zone: "test." nodefault' in conf and 'root-hints: "/etc/unbound/inhouse-root.hints"' in conf
    assert 'trust-anchor-file: "/etc/unbound/inhouse-root.anchor"' in lab[resolver.DEBIAN_ANCHOR]
    assert lab["/etc/unbound/inhouse-root.anchor"] == ". IN DS 1 13 2 AB\n"


def test_each_component_checks_its_own_settings():
    """Every setting a module defaults has its type and format check beside it (CHECKS)."""
    for module in [*SHARED, *(c.module for c in COMPONENTS)]:
        defaults, checks = getattr(module, "DEFAULTS", {}), getattr(module, "CHECKS", {})
        assert set(defaults) == set(checks), module.__name__
def test_mta_sts_is_served_for_every_domain_with_a_certificate_naming_them():
    groups = {"mail": [("mx.example.org", {"ipv4": "203.0.113.10"})], "relay": [("vps.example.org", {})]}
    mx = with_roles("mx.example.org", DATA | {"extra_domains": ["example.net"]}, groups)
    conf = rendered(mta_sts, mx)[mta_sts.CONF]
    assert "server_name mta-sts.example.org mta-sts.example.net;" in conf
    assert "server_tokens off;" in conf and "ssl_reject_handshake on;" in conf and "include" not in conf
    assert re.findall(r"listen (\S+)", conf) == ["443", "[::]:443"] * 2  # nothing on 80: certbot's
    assert rendered(mta_sts, mx)[mta_sts.POLICY].startswith("version: STSv1\r\nmode: enforce\r\n")
    script = rendered(tls, mx)[tls.SCRIPT]
    assert "subjectAltName=DNS:mx.example.org,DNS:mta-sts.example.org,DNS:mta-sts.example.net" in script
    assert "nginx" in re.search(r"for unit in (.*); do", script).group(1)  # reloads after a renewal
    relay = with_roles("vps.example.org", DATA, groups)
    assert not zone.mta_sts_served(relay) and tls.names(relay) == ["vps.example.org"]
