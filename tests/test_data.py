"""Fast tier (no lab): inventory data is checked before anything connects, every problem
names its field, and the templates render what the data says."""

import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tasks.data import DEFAULTS, InventoryError, check_inventory, problems, read_group_data

REPO = Path(__file__).resolve().parent.parent


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
