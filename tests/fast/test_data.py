"""Fast tier (no lab): inventory data is checked before anything connects, every problem
names its field, and the templates render what the data says."""

import base64
import datetime
import json
import runpy
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from tasks import data as data_module
from tasks import mail, registry, tls, zone
from tasks.data import (
    DEFAULTS,
    KNOWN,
    SITE_KEYS,
    InventoryError,
    check_inventory,
    inventory_hosts,
    problems,
    read_group_data,
)
from tasks.password import store
from tasks.util import FILES

REPO = Path(__file__).resolve().parents[2]


def public_key(kind=ed25519, **kw) -> str:
    key = kind.generate_private_key(**kw) if kw else kind.Ed25519PrivateKey.generate()
    return key.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode() + " me@laptop"


@pytest.fixture(scope="module")
def good() -> dict:
    return DEFAULTS | read_group_data("all") | {
        "domain": "example.org", "admin_user": "alice", "admin_ssh_keys": [public_key()],
        "operator_networks": ["192.0.2.0/24", "2001:db8::1"], "timezone": "Europe/Berlin",
        "ipv4": "203.0.113.10", "ipv6": "2001:db8::10", "ssh_hostname": "203.0.113.10",
    }


def test_good_data_has_no_problem(good):
    assert problems("mx.example.org", good) == []


@pytest.mark.parametrize(("field", "value", "says"), [
    ("domain", "exa mple.org", "domain: 'exa mple.org' is not a valid"),
    ("domain", "localhost", "domain: 'localhost' is not a valid"),
    ("domain", "Example.org", "lower-case"),
    ("admin_user", "Alice", "admin_user: 'Alice' is not a valid user name"),
    ("admin_user", "root", "admin_user: 'root' is a system account"),
    ("admin_ssh_keys", [], "admin_ssh_keys: no key given; refusing to turn off SSH password logins"),
    ("admin_ssh_keys", ["ssh-ed25519 AAAAnotakey"], "admin_ssh_keys[0]: is not an OpenSSH public key"),
    ("admin_ssh_keys", [None], "admin_ssh_keys[0]: is not a string"),
    ("timezone", "Mars/Olympus_Mons", "timezone: 'Mars/Olympus_Mons' is not a tz database name"),
    ("operator_networks", ["10.0.0.300"], "operator_networks[0]: '10.0.0.300' is not an IP"),
    ("ipv4", "2001:db8::1", "ipv4: '2001:db8::1' is not an IPv4 address"),
    ("ipv6", "203.0.113.300", "ipv6: '203.0.113.300' is not an IPv6 address"),
    ("ssh_hostname", "203.0.113.999", "ssh_hostname: '203.0.113.999' is neither"),
    ("ssh_port", 70000, "ssh_port: 70000 is not a port number"),
    ("firewall_extra_ports", ["tcp/8080", "sctp/9"], "firewall_extra_ports[1]: 'sctp/9'"),
    ("bans_time", "1 hour", "bans_time: '1 hour' is not a duration"),
    ("bans_find_time", "10m\n", "bans_find_time: '10m\\n' is not a duration"),
    ("ssh_key", 5, "ssh_key: 5 must be one line of text"),
    ("ssh_file_transfer_protocol", "ftp", "ssh_file_transfer_protocol: 'ftp' is not one of sftp, scp"),
    ("ssh_connect_retries", "3", "ssh_connect_retries: '3' is not a whole number"),
    ("dkim_selector", None, "dkim_selector: None is not a selector"),
    ("bans_max_retry", 0, "bans_max_retry: 0 is not a positive number"),
    ("bans_enabled", "yes", "bans_enabled: 'yes' is not True or False"),
    ("ssh_extra_config", ["A yes\nB no"], "ssh_extra_config[0]: 'A yes\\nB no' must be one line"),
])
def test_bad_value_is_reported_with_its_field(good, field, value, says):
    found = problems("mx.example.org", good | {field: value})
    assert len(found) == 1 and says in found[0], found
    assert found[0].startswith("mx.example.org: ")


def test_weak_rsa_key_is_refused(good):
    weak = public_key(rsa, public_exponent=65537, key_size=2048)
    assert "RSA key of 2048 bits" in problems("mx", good | {"admin_ssh_keys": [weak]})[0]


def test_missing_field_is_named(good):
    data = dict(good)
    del data["admin_ssh_keys"]
    assert problems("mx", data) == ["mx: admin_ssh_keys: missing"]


def test_misspelt_setting_gets_a_suggestion(good):
    assert problems("mx", good | {"admin_usr": "bob"}) == [
        "mx: admin_usr: unknown setting (did you mean admin_user?)"
    ]


def test_bad_host_name_is_named(good):
    assert problems("mx_1!", good) == ["mx_1!: host name 'mx_1!': not a valid host name"]


def test_inventory_check_merges_group_and_host_data_and_lists_every_problem(good):
    scope = {
        "mail": ([("mx.example.org", {"timezone": "Nowhere/City"})], {"admin_ssh_keys": good["admin_ssh_keys"]}),
        "relay": [("vps.example.org", {"domain": "bad domain"})],
        "not_a_group": "ignored",
    }
    with pytest.raises(InventoryError) as e:
        check_inventory(scope)
    text = str(e.value)
    assert "mx.example.org: timezone: 'Nowhere/City'" in text
    assert "vps.example.org: domain: 'bad domain'" in text
    assert "vps.example.org: admin_ssh_keys: no key given" in text  # group_data/all.py has none
    assert "mx.example.org: admin_ssh_keys" not in text


def test_pyinfra_stops_before_connecting_when_data_is_bad(tmp_path):
    # An address of the lab's range where nothing runs: were the check to fail, pyinfra
    # would only time out there.
    inventory = tmp_path / "inventory.py"
    inventory.write_text(
        "from tasks.data import check_inventory\n"
        "mail = [('mx.example.org', {'ssh_hostname': '10.77.0.250', 'timezone': 'Mars/Base'})]\n"
        "check_inventory(globals())\n"
    )
    r = subprocess.run(
        [str(Path(sys.executable).parent / "pyinfra"), "-y", str(inventory), "deploy.py"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert "timezone: 'Mars/Base' is not a tz database name" in out
    assert "admin_ssh_keys: no key given" in out
    assert "Connecting" not in out


# Every class of bad input the checks must name before anything connects. The site below
# is good (test_good_site_passes); each case changes one thing in it.
ALICE = "alice@example.org"


@pytest.fixture
def site(tmp_path):
    # The checks read only the hash's form; store() takes a while to make a real one.
    (tmp_path / mail.PASSWORDS).write_text(f"{ALICE} {{SHA512-CRYPT}}$6$salt$hash\n")
    key = public_key()

    def make(site_data=None, mail_host=None, relay_host=None, **groups) -> dict:
        shared = {"domain": "example.org", "admin_user": "alice", "admin_ssh_keys": [key],
                  "operator_networks": ["192.0.2.0/24"], "secrets_dir": str(tmp_path), "mail_users": [ALICE],
                  "ssh_hostname": "127.0.0.1", "ssh_port": 1} | (site_data or {})
        mx = {"ipv4": "203.0.113.10", "ipv6": "2001:db8::10"} | (mail_host or {})
        vps = {"ipv4": "198.51.100.20"} | (relay_host or {})  # no IPv6, as inventory.py's example
        return {"mail": ([("mx.example.org", mx)], shared), "relay": ([("vps.example.org", vps)], shared)} | groups

    return make


def errors(scope: dict) -> str:
    try:
        check_inventory(scope)
    except InventoryError as e:
        return str(e)
    return ""


def test_good_site_passes(site):
    assert errors(site()) == ""


def test_a_link_needs_a_relay_to_dial(site):
    scope = site({"link_enabled": True})
    del scope["relay"]
    assert "mx.example.org: link_enabled: the link goes from the mail host to a relay" in errors(scope)


LONG_LABEL = "a" * 64
PRIVATE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"


@pytest.mark.parametrize(("site_data", "mail_host", "says"), [
    # Tracebacks before: now named errors.
    ({"domain": "example..org"}, {}, "domain: 'example..org' is not a valid"),
    ({"domain": f"{LONG_LABEL}.org"}, {}, "domain: 'aaaa"),
    ({"domain": "example.org."}, {}, "domain: 'example.org.' is not a valid"),
    ({"extra_domains": ["", "x"]}, {}, "extra_domains[0]: '' is not a valid"),
    ({"admin_ssh_keys": [PRIVATE_KEY]}, {}, "admin_ssh_keys[0]: is a PRIVATE key"),
    ({"admin_ssh_keys": ['from="192.0.2.1" ssh-ed25519 AAAA x']}, {}, "admin_ssh_keys[0]: starts with options"),
    ({"admin_ssh_keys": "ssh-ed25519 AAAA"}, {}, "admin_ssh_keys: no key given"),
    ({"timezone": {}}, {}, "timezone: {} is not a tz database name"),
    ({"extra_domains": None}, {}, "extra_domains: None is not a list"),
    ({"mail_aliases": ["info@example.org"]}, {}, "mail_aliases: must map an address"),
    ({"zone_records": {"example.org": [{"name": "www", "type": "A", "data": None}]}}, {}, "data None must be one"),
    ({"zone_dnssec_key_made_after": "2027-13-01"}, {}, "zone_dnssec_key_made_after: '2027-13-01' is not a moment"),
    ({"zone_parent_ds_ttl": -1}, {}, "zone_parent_ds_ttl: -1 is not a number of seconds"),
    # A DNSSEC key roll with no resolver to look at the parent: the old key would stay for ever.
    ({"resolver_enabled": False, "zone_dnssec_key_made_after": "2027-01-15"}, {},
     "zone_dnssec_key_made_after: a DNSSEC key roll needs resolver_enabled"),
    ({"link_network": "192.0.2.0/24"}, {}, "link_network: '192.0.2.0/24' is not a private IPv4 network (RFC 1918)"),
    ({"link_port": 0}, {}, "link_port: 0 is not a port number"),
    # A hidden home reached only through a link that is off, or that the operator cannot reach.
    ({"link_home_hidden": True}, {}, "link_home_hidden: the hidden home is reached only through the link"),
    ({"link_home_hidden": True, "link_enabled": True, "operator_networks": []}, {},
     "link_home_hidden: the hidden home lets in SSH only from operator_networks"),
    ({"link_home_hidden": True, "link_enabled": True, "mta": "exim4"}, {}, "link_home_hidden: needs mta postfix"),
    # Crashes after connecting before.
    ({"operator_networks": None}, {}, "operator_networks: None is not a list"),
    ({"resolver_networks": "192.0.2.0/24"}, {}, "resolver_networks: '192.0.2.0/24' is not a list"),
    ({"resolver_addresses": ["192.0.2.0/24"]}, {}, "resolver_addresses[0]: '192.0.2.0/24' is not an IP address"),
    ({"firewall_extra_ports": [8080]}, {}, "firewall_extra_ports[0]: 8080 is not tcp/PORT"),
    ({"ssh_port": True}, {}, "ssh_port: True is not a port number"),
    # Dangerous before: open to the internet, or a value that adds a line or a command.
    ({"mail_relay_networks": ["0.0.0.0/0"]}, {}, "mail_relay_networks[0]: 0.0.0.0/0 opens this to the whole"),
    ({"mail_relay_networks": ["::/0"]}, {}, "mail_relay_networks[0]: ::/0 opens"),
    ({"resolver_networks": ["0.0.0.0/1"]}, {}, "resolver_networks[0]: 0.0.0.0/1 opens"),
    ({"operator_networks": ["2000::/3"]}, {}, "operator_networks[0]: 2000::/3 opens"),
    ({"operator_networks": ["::ffff:0:0/96"]}, {}, "is IPv4-mapped"),
    ({"operator_networks": ["2001:db8::%x;reboot/64"]}, {}, "operator_networks[0]: '2001:db8::%x;reboot/64' is not"),
    ({}, {"ipv6": "2001:db8::10%eth0\nrecursion yes;"}, "ipv6: '2001:db8::10%eth0\\nrecursion yes;' is not an IPv6"),
    ({"resolver_addresses": ["fe80::1%eth0"]}, {}, "resolver_addresses[0]: 'fe80::1%eth0' is not an IP address"),
    ({"mail_relay_networks": ["192.0.2.7/24"]}, {}, "has host bits set; write the network, 192.0.2.0/24"),
    ({"zone_records": {"example.org": [{"name": "www", "type": "A", "data": "192.0.2.1\nevil A 192.0.2.2"}]}}, {},
     "zone_records['example.org'][0]: data '192.0.2.1\\nevil A 192.0.2.2' must be one line"),
    ({"zone_records": {"example.org": [{"name": "$INCLUDE /etc/shadow", "type": "A", "data": "192.0.2.1"}]}}, {},
     "is not a name relative to the zone"),
    ({"zone_records": {"example.org": [{"name": "@", "type": "SOA", "data": "x"}]}}, {}, "made by the name server"),
    ({"zone_ttl": "3600\n@ A 192.0.2.66"}, {}, "zone_ttl: '3600\\n@ A 192.0.2.66' is not a number"),
    ({"zone_spf": 'v=spf1 "mx'}, {}, "zone_spf: "),
    ({"dkim_selector": "s1; reboot"}, {}, "dkim_selector: 's1; reboot' is not a selector"),
    ({"tls_acme_email": "me$(reboot)@example.org"}, {}, "tls_acme_email: 'me$(reboot)@example.org' is not"),
    ({"tls_acme_server": "https://ca.example/dir; reboot"}, {}, "tls_acme_server: "),
    ({"admin_ssh_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDk5GBqO9XcVtHc1M7Zm8dCk6h0pY8XzS3jDhHk9P1dx a\n"
                         "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDk5GBqO9XcVtHc1M7Zm8dCk6h0pY8XzS3jDhHk9P1dx b"]}, {},
     "admin_ssh_keys[0]: must be one line"),
    ({"admin_user": "alice\n"}, {}, "admin_user: 'alice\\n' is not a valid user name"),
    ({"upgrades_reboot": "false"}, {}, "upgrades_reboot: 'false' is not True or False"),
    ({"mail_outbound_relay": 1}, {}, "mail_outbound_relay: 1 is not True or False"),
    ({"clock_ntp_servers": ["pool x.example iburst\nmakestep 1 -1"]}, {}, "clock_ntp_servers[0]: "),
    ({"firewall_extra_rules": ["-A INPUT -j ACCEPT\nCOMMIT"]}, {}, "firewall_extra_rules[0]: "),
    ({"resolver_forward_tls": ["9.9.9.9@853#dns.quad9.net\ninterface: 0.0.0.0"]}, {}, "resolver_forward_tls[0]: "),
    ({"resolver_root_hints": ['. NS "x"']}, {}, "resolver_root_hints[0]: "),
    ({"mail_users": ["al'ice@example.org"]}, {}, "mail_users[0]: \"al'ice@example.org\" is not an address"),
    ({"zone_dmarc_reports": "dmarc reports"}, {}, "zone_dmarc_reports: 'dmarc reports' is not a local part"),
    ({"zone_caa_issuers": ['letsencrypt.org" evil']}, {}, "zone_caa_issuers[0]: "),
    ({"secrets_dir": "secrets\n"}, {}, "secrets_dir: 'secrets\\n' is not a folder name"),
    ({"tls_acme_ca_bundle": "-----BEGIN CERTIFICATE-----\nnope\n"}, {}, "tls_acme_ca_bundle: is not PEM"),
    # Silently wrong before.
    ({"mail_aliases": {"info@example.org": ["info@example.org"]}}, {}, "mail_aliases['info@example.org']: delivers to"),
    ({"mail_aliases": {"a@example.org": ["b@example.org"], "b@example.org": ["a@example.org"]}}, {},
     "mail_aliases['a@example.org']: loops: a@example.org -> b@example.org -> a@example.org"),
    ({"mail_aliases": {"a@example.org": ["nobody@example.org"]}}, {}, "nobody@example.org is neither a mailbox"),
    ({}, {"ipv4": "10.0.0.1"}, "mx.example.org: ipv4: 10.0.0.1 is a private address"),
    ({}, {"ipv4": "127.0.0.1"}, "mx.example.org: ipv4: 127.0.0.1 is a loopback address"),
    ({}, {"ipv6": "fe80::1"}, "mx.example.org: ipv6: fe80::1 is a link-local address"),
    ({}, {"ipv6": "fd00::1"}, "mx.example.org: ipv6: fd00::1 is a private address"),
    ({}, {"ipv4": "0.0.0.0"}, "ipv4: 0.0.0.0 is a unspecified address"),
    ({}, {"ipv4": "224.0.0.1"}, "ipv4: 224.0.0.1 is a multicast address"),
    ({}, {"fqdn": "mx.example.com"}, "mx.example.org: fqdn: 'mx.example.com' is not a name under example.org"),
    ({}, {"fqdn": "mx"}, "mx.example.org: fqdn: 'mx' is not a name under example.org"),
    ({}, {"fqdn": "203.0.113.10"}, "mx.example.org: fqdn: '203.0.113.10' is not a host name"),
    # Unknown keys, with a hint.
    ({"mail_relay_network": []}, {}, "mail_relay_network: unknown setting (did you mean mail_relay_networks?)"),
])
def test_each_class_of_bad_input_is_named_before_connecting(site, site_data, mail_host, says):
    text = errors(site(site_data, mail_host))
    assert says in text, text
    assert PRIVATE_KEY.splitlines()[1] not in text  # a secret is never repeated


def test_every_known_key_survives_any_type(site):
    """Whatever type a value has, the checks say what is wrong with it; never a traceback."""
    hosts = inventory_hosts(site())
    for key in sorted(KNOWN - {"zone_hosts", "zone_keys"}):
        for value in (None, 0, True, 1.5, {}, [], [None], [{}], {"x": None}, "x\ny", object()):
            for name, data in hosts.items():
                found = "\n".join(problems(name, data | {key: value}))
                assert "could not be checked" not in found, (key, value, found)


def test_several_problems_are_reported_together(site):
    text = errors(site({"domain": "bad..domain", "admin_user": None, "ssh_port": "22", "operator_networks": 5}))
    for says in ("domain: 'bad..domain'", "admin_user: None", "ssh_port: '22'", "operator_networks: 5"):
        assert text.count(says) == 2, (says, text)  # once for each host


COPIED = {f.read_text() for f in FILES.rglob("*") if f.is_file()}


@pytest.mark.parametrize(("zone_server", "mta"), [("bind", "postfix"), ("nsd", "exim4")])
def test_a_host_without_ipv6_deploys(site, zone_server, mta):
    """inventory.py's relay example has no ipv6: every component renders for both hosts,
    as deploy.py renders them."""
    hosts = inventory_hosts(site({"zone_server": zone_server, "mta": mta}))
    system = {"debian": 13, "container": "none", "heads": {}}
    for name, data in hosts.items():
        components = registry.enabled(data)
        files = {f.path: f.content for c in components for f in c.files(data, system, components)}
        rendered = [c for c in files.values() if c not in COPIED]  # files/ is installed as it is
        assert files and all("None" not in content for content in rendered), name
    relay = {f.path: f.content for f in registry.by_name(f"zone_{zone_server}").module.files(
        hosts["vps.example.org"], system)}
    if zone_server == "bind":
        assert "listen-on-v6 { none; };" in relay["/etc/bind/named.conf.options"]
    else:
        assert "ip-address: 198.51.100.20\n" in relay["/etc/nsd/nsd.conf.d/inhouse.conf"]


@pytest.mark.parametrize(("change", "says"), [
    (lambda s: s | {"mail": ([*s["mail"][0], ("mx2.example.org", {"ipv4": "203.0.113.11"})], s["mail"][1])},
     "inventory: mail group: mx.example.org, mx2.example.org: one mail host only"),
    (lambda s: s | {"relay": ([("vps.example.org", {"ipv4": "203.0.113.10"})], s["relay"][1])},
     "mx.example.org, vps.example.org: ipv4: 203.0.113.10 is given to 2 hosts"),
    (lambda s: s | {"other": [("web.example.org", {"fqdn": "mx.example.org", "ipv6": "2001:db8::10"})]},
     "mx.example.org, web.example.org: fqdn: mx.example.org is given to 2 hosts"),
    (lambda s: s | {"other": [("web.example.org", {"ipv6": "2001:DB8:0::10"})]}, "ipv6: 2001:db8::10 is given to 2"),
    (lambda s: s | {"relay": ([("mx.example.org", {})], s["relay"][1])}, "in both the mail and the relay group"),
    (lambda s: s | {"relay": (s["relay"][0], s["relay"][1] | {"domain": "example.net"})},
     "domain: differs between the mail and relay hosts"),
    (lambda s: {}, "inventory: no hosts"),
    (lambda s: s | {"watched": [("vps.example.org", {"ipv4": "198.51.100.300"})]},  # host data of both groups
     "vps.example.org: ipv4: '198.51.100.300' is not an IPv4 address"),
    (lambda s: s | {"web": ("web.example.org", {})}, "inventory: group web: must be a list of hosts"),
    (lambda s: s | {"web": [("web.example.org", None)]}, "inventory: group web: ('web.example.org', None) is not"),
])
def test_inventory_wide_mistakes_are_named(site, change, says):
    text = errors(change(site()))
    assert says in text, text


def test_misspelt_key_in_any_group_data_file_is_named(site, tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    (repo / "group_data").mkdir(parents=True)
    (repo / "group_data" / "all.py").write_text((REPO / "group_data" / "all.py").read_text())
    (repo / "group_data" / "relay.py").write_text("import os\nmail_outbond_relay = True\n")
    (repo / "group_data" / "web.py").write_text("zone_tll = 60\n")  # a group no host is in
    monkeypatch.setattr(data_module, "REPO", repo)
    text = errors(site())
    assert "group_data/relay.py: mail_outbond_relay: unknown setting (did you mean mail_outbound_relay?)" in text
    assert "group_data/web.py: zone_tll: unknown setting (did you mean zone_ttl?)" in text
    assert "os:" not in text  # imports are not settings, as for pyinfra
    (repo / "group_data" / "web.py").write_text("zone_ttl = \n")
    assert "group_data/web.py: cannot be read: SyntaxError" in errors(site())
    (repo / "group_data" / "web.py").unlink()
    extra = tmp_path / "more" / "mail.py"  # pyinfra --group-data more/mail.py
    extra.parent.mkdir()
    extra.write_text("timezone = 'Mars/Base'\nresolver_network = []\n")
    monkeypatch.setattr(data_module, "cli_params", lambda: {"group_data": [str(extra)]})
    text = errors(site())
    assert f"{extra}: resolver_network: unknown setting" in text
    assert "mx.example.org: timezone: 'Mars/Base'" in text and "vps.example.org: timezone" not in text


def test_every_group_data_all_setting_is_known():
    assert set(read_group_data("all")) <= KNOWN
    assert set(SITE_KEYS) <= set(read_group_data("all")), "group_data/all.py documents every site setting"


def test_corrupted_secrets_files_are_named_without_their_content(site, tmp_path):
    good = (tmp_path / "mail-passwords").read_text()
    (tmp_path / "mail-passwords").write_text(good + "garbage\nbob@example.org {PLAIN}hunter2:uid\n")
    text = errors(site())
    assert "mail-passwords: lines 2, 3 are not 'ADDRESS {SCHEME}HASH'" in text and "hunter2" not in text
    (tmp_path / "mail-passwords").write_text(good)
    (tmp_path / "tsig-transfer.key").write_text("not base64!\n")
    assert "tsig-transfer.key is not a base64 key of 32 bytes or more" in errors(site())
    (tmp_path / "tsig-transfer.key").unlink()
    (tmp_path / "tlsa").mkdir()
    (tmp_path / "tlsa" / "vps.example.org").write_text("3 1 1 ab\n_25._tcp A 192.0.2.1\n")
    assert "tlsa/vps.example.org is not TLSA data" in errors(site())
    assert tls.remembered({"secrets_dir": str(tmp_path)}, "vps.example.org") == []
    # A key escrow that cannot be read: named before anything connects, not at the rebuild.
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "mx.example.org.tgz").write_bytes(b"\x1f\x8b truncated")
    assert "keys/mx.example.org.tgz is not a readable key archive" in errors(site())


def test_secret_files_are_private_from_the_start(tmp_path):
    secrets = tmp_path / "new" / "secrets"
    store(secrets, ALICE, "correct horse battery")
    key = zone.tsig_secret({"secrets_dir": str(secrets)})
    tls.remember({"secrets_dir": str(secrets)}, "vps.example.org", ["3 1 1 " + "ab" * 32])
    assert len(base64.b64decode(key)) == 32
    for path in (secrets, secrets / "tlsa"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    for path in (secrets / mail.PASSWORDS, secrets / zone.TSIG_FILE, secrets / "tlsa" / "vps.example.org"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert sorted(p.name for p in secrets.iterdir()) == sorted([mail.PASSWORDS, zone.TSIG_FILE, "tlsa"])


def test_lab_inventory_passes_with_its_private_addresses(tmp_path):
    """lab/inventory.py.in as lab/lab.py writes it, with the lab's own root and CA."""
    key = ed25519.Ed25519PrivateKey.generate()
    (tmp_path / "id").write_text("private")
    (tmp_path / "id.pub").write_text(public_key())
    (tmp_path / "root").mkdir()
    ca = ca_certificate(key)
    (tmp_path / "root" / "acme.json").write_text(json.dumps({"tls_acme_server": "https://10.77.0.13:14000/dir",
                                                             "tls_acme_ca_bundle": ca}))
    (tmp_path / "root" / "resolver.json").write_text(json.dumps({
        "resolver_root_hints": [". 3600000 NS ns.root.test.", "ns.root.test. 3600000 A 10.77.0.13"],
        "resolver_trust_anchors": [". IN DS 20326 13 2 " + "AB" * 32]}))
    (tmp_path / "hosts.json").write_text(json.dumps({
        "release": "trixie", "zone_server": "nsd", "mta": "exim4", "operator": ["10.77.0.1", "fd77:1ab::1"],
        "key": str(tmp_path / "id"),
        "hosts": {f"lab{n}": {"ipv4": f"10.77.0.{10 + n}", "ipv6": f"fd77:1ab::{10 + n:x}"} for n in (1, 2, 3)},
    }))
    (tmp_path / "inventory.py").write_text((REPO / "lab" / "inventory.py.in").read_text())
    scope = runpy.run_path(str(tmp_path / "inventory.py"))  # raises on any problem
    assert stat.S_IMODE((tmp_path / "mail-users.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "secrets").stat().st_mode) == 0o700
    # The same hosts without the lab's switch: their addresses are private.
    scope["mail"][1]["lab_private_addresses"] = False
    assert "lab1: ipv4: 10.77.0.11 is a private address" in errors(scope)


def ca_certificate(key) -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lab CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, None))
    return cert.public_bytes(Encoding.PEM).decode()


def run(*args, cwd=REPO, timeout=60, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).parent / args[0]), *args[1:]], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, **kw)


@pytest.mark.parametrize(("inventory", "options", "says"), [
    ("mail = [('mx.example.org', {'ssh_hostname': '127.0.0.1', 'ssh_port': 1, 'upgrades_reboot': 'false'})]", [],
     "mx.example.org: upgrades_reboot: 'false' is not True or False"),
    ("mail = []", [], "inventory: no hosts"),
    # --data is checked with the inventory, before connecting.
    (f"mail = [('mx.example.org', {{'ssh_hostname': '127.0.0.1', 'ssh_port': 1, 'ipv4': '203.0.113.10', "
     f"'admin_ssh_keys': [{public_key()!r}], 'mail_enabled': False}})]",
     ["--data", "mail_relay_networks=[\"0.0.0.0/0\"]", "--data", "operator_networks=null"],
     "mx.example.org: mail_relay_networks[0]: 0.0.0.0/0 opens"),
])
def test_pyinfra_names_the_problem_and_connects_nowhere(tmp_path, inventory, options, says):
    path = tmp_path / "inventory.py"
    path.write_text(f"from tasks.data import check_inventory\n{inventory}\ncheck_inventory(globals())\n")
    r = run("pyinfra", "-y", "--dry", *options, str(path), "deploy.py")
    out = r.stdout + r.stderr
    assert r.returncode != 0 and says in out, out
    assert "Traceback" not in out and "Connecting" not in out


def test_commands_answer_bad_arguments_with_a_line(tmp_path):
    r = run("python", "-m", "tasks.password", "not an address", "--secrets", str(tmp_path))
    assert r.returncode == 2 and "address: 'not an address' is not an address" in r.stderr
    r = run("python", "-m", "tasks.password", ALICE, "--secrets", str(tmp_path), input="")
    assert r.returncode == 1 and "nothing was stored" in r.stderr and "Traceback" not in r.stderr
    r = run("python", "-m", "tasks.registrar", str(tmp_path / "missing.py"))
    assert r.returncode == 1 and "missing.py: cannot be read" in r.stderr and "Traceback" not in r.stderr
    bad = tmp_path / "bad.py"
    bad.write_text("from tasks.data import check_inventory\nmail = [('mx.example.org', {'ssh_port': 0})]\n"
                   "check_inventory(globals())\n")
    r = run("python", "-m", "tasks.registrar", str(bad))
    assert r.returncode == 1 and "mx.example.org: ssh_port: 0 is not a port number" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_host_named_by_its_address_needs_no_fqdn_without_a_role(good):
    assert problems("192.0.2.50", good | {"fqdn": "192.0.2.50"}) == []


def test_a_bad_secret_is_named_but_never_shown(good):
    found = problems("mx.example.org", good | {"ssh_password": "hunter2\nmore"})
    assert found == ["mx.example.org: ssh_password: must be one line of text (not shown: a secret)"]


def test_mail_problems_are_named_even_when_a_zone_setting_is_bad(site):
    text = errors(site({"zone_ttl": "1h", "mail_users": [ALICE, "carol@example.org"]}))
    assert "zone_ttl: '1h'" in text and "carol@example.org has no password hash" in text
