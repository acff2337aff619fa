"""TLS of the mail services, as clients and scanners see it: on every mail port (25, 143,
465, 587, 993) TLS 1.2 and 1.3 only, no HIGH or CRITICAL finding of testssl, the full chain
from the ACME CA for the host's name; Mozilla "intermediate" ciphers (ECDHE, AEAD) where
clients log in (465, 587, 993, 143); a TLSA record that names the served key on each MX;
renewals that every service serves without a manual step."""

import json
import ssl
import subprocess
import time

import dns.message
import dns.query
import pytest

from tasks import zone
from tests.helpers import Endpoint, served_certificate, spki_sha256

pytestmark = [pytest.mark.mta]

# Port: how TLS starts there (None: at once).


def run_testssl(tmp_path, mx: Endpoint, root: str | None, port: int, starttls: str | None) -> subprocess.Popen:
    # Protocols, cipher classes, forward secrecy, preference, certificate, vulnerabilities;
    # not the browser simulations and HTTP headers: half the time, and nothing a mail port has.
    args = ["testssl", "--quiet", "--nodns", "min", "--warnings", "off", "--color", "0", "-p", "-s", "-f", "-P",
            "-S", "-U", "--ip", mx.address, "-oJ", str(tmp_path / f"{port}.json")]
    if root:  # the inventory's own CA (the lab's pebble); else the trust store testssl ships
        (tmp_path / "ca.pem").write_text(root)
        args += ["--add-ca", str(tmp_path / "ca.pem")]
    args += ["-t", starttls] if starttls else []
    return subprocess.Popen([*args, f"{mx.name}:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def findings(report) -> list[dict]:
    if isinstance(report, dict):
        return ([report] if "severity" in report else []) + [f for v in report.values() for f in findings(v)]
    return [f for v in report for f in findings(v)] if isinstance(report, list) else []


def test_testssl_finds_only_tls12_and_13_and_nothing_high(mx, world, tmp_path):
    scans = {port: run_testssl(tmp_path, mx, world.ca_roots, port, starttls) for port, starttls in mx.ports.items()}
    for port, scan in scans.items():
        scan.wait(timeout=600)
        found = findings(json.loads((tmp_path / f"{port}.json").read_text()))
        by_id = {f["id"]: f for f in found}
        for old in ("SSLv2", "SSLv3", "TLS1", "TLS1_1"):
            assert by_id[old]["finding"] == "not offered", (port, by_id[old])
        assert "offered" in by_id["TLS1_2"]["finding"] and "offered" in by_id["TLS1_3"]["finding"], port
        assert by_id["cert_chain_of_trust"]["severity"] == "OK", (port, by_id["cert_chain_of_trust"])
        assert by_id["cert_trust"]["severity"] == "OK", (port, by_id["cert_trust"])  # the name matches
        # Mozilla "intermediate": AEAD ciphers only, with forward secrecy (no RSA key exchange:
        # test_no_cipher_without_ecdhe). testssl 3.0 (Debian 12's) calls them STRONG, CBC ones
        # AVERAGE, forward secrecy PFS; 3.2 (Debian 13's, Ubuntu 24.04's) STRONG_FS (AEAD with
        # forward secrecy; STRONG_NOFS without), OBSOLETED and FS.
        offered = [f["id"] for f in found if f["id"].startswith("cipherlist_") and f["finding"] != "not offered"]
        assert offered in (["cipherlist_STRONG"], ["cipherlist_STRONG_FS"]), (port, offered)
        assert (by_id.get("FS") or by_id["PFS"])["finding"] == "offered", port
        bad = [(f["id"], f["severity"], f["finding"]) for f in found if f["severity"] in ("HIGH", "CRITICAL")]
        assert not bad, (port, bad)


def test_no_cipher_without_ecdhe(mx):
    """A client that offers only RSA key exchange (no forward secrecy) gets no session."""
    rsa_only = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    rsa_only.check_hostname, rsa_only.verify_mode = False, ssl.CERT_NONE
    rsa_only.maximum_version = ssl.TLSVersion.TLSv1_2  # TLS 1.3 has no RSA key exchange at all
    rsa_only.set_ciphers("kRSA")
    for port in mx.ports:
        with pytest.raises(ssl.SSLError):
            served_certificate(Endpoint(mx.name, mx.address, rsa_only), port)


def tlsa(server, name: str) -> set[str]:
    answer = dns.query.udp(dns.message.make_query(f"_25._tcp.{name}", "TLSA"), server.ipv4, timeout=5)
    return {r.to_text().split()[-1].lower() for rrset in answer.answer for r in rrset if r.rdtype == 52}


def test_every_mail_port_serves_the_ca_signed_certificate_for_the_name(mx):
    certificates = {port: served_certificate(mx, port) for port in mx.ports}
    assert len({c.serial_number for c in certificates.values()}) == 1, "not the same certificate everywhere"


@pytest.mark.parametrize("host", ["mail", "relay"])
def test_the_tlsa_record_names_the_served_key(host, mx, server, mail_data):
    """On each MX: "3 1 1", the SHA-256 of the key served on 25 (RFC 7672), as DNSSEC signs
    it, and beside it the next key's, published ahead of a roll (RFC 7671 section 8.1)."""
    target = mail_data["zone_hosts"][host][0]
    if host == "mail" and zone.hidden(mail_data):  # not an MX: no record names its key
        assert tlsa(server, target["fqdn"]) == set()
        return
    cert = served_certificate(Endpoint(target["fqdn"], target["ipv4"], mx.context), 25)
    published = tlsa(server, target["fqdn"])
    assert spki_sha256(cert) in published and len(published) == 2, published


@pytest.mark.lab("renews the certificate: counts against the CA's limits")
def test_a_forced_renewal_is_served_everywhere_without_a_manual_step(mx, on_server, server):
    ports = (25, 465, 587, 993)
    before = {p: served_certificate(mx, p) for p in ports}
    assert len({c.serial_number for c in before.values()}) == 1
    on_server.check_output("/usr/local/sbin/inhouse-cert --force")
    deadline = time.time() + 30
    while True:
        try:
            after = {p: served_certificate(mx, p) for p in ports}
        except ConnectionRefusedError:  # a reload restarting its listener
            time.sleep(0.2)
            continue
        if all(after[p].serial_number != before[p].serial_number for p in ports) or time.time() > deadline:
            break
        time.sleep(1)
    assert all(after[p].serial_number != before[p].serial_number for p in ports), "an old certificate is served"
    # The key stays, so DANE senders keep trusting the server through the renewal.
    assert len({spki_sha256(c) for c in after.values()}) == 1
    assert spki_sha256(after[25]) in tlsa(server, mx.name)
