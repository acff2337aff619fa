"""The lab's own internet, on the last lab host: a DNSSEC-signed root zone delegating the
lab's domains to the project's name servers with the DS records the registrar output gives
(the lab plays the registrar), so lab resolvers validate the whole chain; an ACME CA
(pebble, as Let's Encrypt); and outside.test, a domain with a stock postfix, DNSSEC and
DANE, that plays every other mail server.

    .venv/bin/python lab/root.py init      keys; writes .lab/root/resolver.json (root hints
                                           and trust anchor) and acme.json for the inventory
    .venv/bin/python lab/root.py publish [--data key=value ...]
                                           registrar output -> signed zones -> served
                                           (--data: as given to the deploy)

Also serves broken.test: signed, then one record changed after signing, so a validating
resolver must answer SERVFAIL for it.
"""

import datetime
import hashlib
import ipaddress
import json
import subprocess
import sys
from pathlib import Path

import dns.dnssec
import dns.name
import dns.rdatatype
import dns.zone
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from dns.dnssectypes import Algorithm

REPO = Path(__file__).resolve().parent.parent
LAB = REPO / ".lab"
ROOT = LAB / "root"
NS = "ns.root.test."
DS_TTL = 20  # the site's DS records; the inventory's zone_parent_ds_ttl says the same
BROKEN = "broken.test."
OUTSIDE = "outside.test."
OUTSIDE_MX = f"mail.{OUTSIDE}"
ACME_PORT = 14000  # pebble's ACME directory; 15000: its management API (the current roots)


def lab_hosts() -> dict:
    return json.loads((LAB / "hosts.json").read_text())["hosts"]


def root_server() -> tuple[str, dict]:
    """The last lab host, which is neither mail host nor relay."""
    name = list(lab_hosts())[-1]
    return name, lab_hosts()[name]


def key(name: str) -> tuple[ec.EllipticCurvePrivateKey, dns.rdata.Rdata]:
    """The signing key of a lab zone (ECDSA P-256), made once and kept in .lab/root."""
    path = ROOT / f"{name.strip('.') or 'root'}.pem"
    if not path.exists():
        ROOT.mkdir(parents=True, exist_ok=True)
        pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        path.write_bytes(pem)
        path.chmod(0o600)
    private = serialization.load_pem_private_key(path.read_bytes(), None)
    return private, dns.dnssec.make_dnskey(private.public_key(), Algorithm.ECDSAP256SHA256, flags=257)


def private_key(name: str) -> ec.EllipticCurvePrivateKey:
    """A lab TLS key (ECDSA P-256), made once and kept in .lab/root."""
    path = ROOT / f"{name}.key"
    if not path.exists():
        ROOT.mkdir(parents=True, exist_ok=True)
        path.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        path.chmod(0o600)
    return serialization.load_pem_private_key(path.read_bytes(), None)


def certificate(name: str, sans: list[x509.GeneralName], ca: bool = False) -> None:
    """.lab/root/NAME.pem, signed by the lab CA (lab-ca.pem), which signs itself."""
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"inhouse lab {name}")])
    issuer = subject if ca else x509.load_pem_x509_certificate((ROOT / "lab-ca.pem").read_bytes()).subject
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
               .public_key(private_key(name).public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=365))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    signer = private_key(name if ca else "lab-ca")
    (ROOT / f"{name}.pem").write_bytes(builder.sign(signer, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))


def tlsa(name: str) -> str:
    """3 1 1 of a lab key: the SHA-256 of its public key."""
    der = private_key(name).public_key().public_bytes(serialization.Encoding.DER,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo)
    return f"3 1 1 {hashlib.sha256(der).hexdigest()}"


def init() -> None:
    _, host = root_server()
    _, dnskey = key(".")
    # TLS of the lab internet: pebble's HTTPS (what certbot checks), and outside.test's MTA.
    if not (ROOT / "lab-ca.pem").exists():
        certificate("lab-ca", [], ca=True)
    certificate("pebble", [x509.IPAddress(ipaddress.ip_address(host["ipv4"])),
                           x509.IPAddress(ipaddress.ip_address(host["ipv6"]))])
    certificate("outside", [x509.DNSName(OUTSIDE_MX.rstrip("."))])
    (ROOT / "acme.json").write_text(json.dumps({
        "tls_acme_server": f"https://{host['ipv4']}:{ACME_PORT}/dir",
        "tls_acme_ca_bundle": (ROOT / "lab-ca.pem").read_text(),
    }, indent=2))
    (ROOT / "resolver.json").write_text(json.dumps({
        "resolver_root_hints": [f". 3600000 NS {NS}", f"{NS} 3600000 A {host['ipv4']}",
                                f"{NS} 3600000 AAAA {host['ipv6']}"],
        "resolver_trust_anchors": [f". IN DS {dns.dnssec.make_ds('.', dnskey, 'SHA256')}"],
    }, indent=2))


def signed(origin: str, text: str, tamper: str | None = None) -> str:
    zone = dns.zone.from_text(text, origin=origin, relativize=False)
    private, dnskey = key(origin)
    with zone.writer() as txn:
        dns.dnssec.sign_zone(zone, txn, keys=[(private, dnskey)], lifetime=30 * 86400, dnskey_ttl=3600)
    out = zone.to_text(relativize=False)
    return out.replace(*tamper.split("|")) if tamper else out


def publish(*data: str) -> None:
    _, host = root_server()
    registrar = subprocess.run(
        [sys.executable, "-m", "tasks.registrar", str(LAB / "inventory.py"), "--json", *data],
        cwd=REPO, check=True, capture_output=True, text=True,
    )
    delegations = json.loads(registrar.stdout)
    soa = f"3600 IN SOA {NS} hostmaster.root.test. 1 1800 900 604800 86400"
    here = [f"{NS} 3600 IN A {host['ipv4']}", f"{NS} 3600 IN AAAA {host['ipv6']}"]
    root = [f". {soa}", f". 3600 IN NS {NS}", *here]
    own = {"ns": [NS.rstrip(".")], "glue": {}, "ds": []}
    for zone, d in {**delegations, BROKEN.rstrip("."): own, OUTSIDE.rstrip("."): own}.items():
        root += [f"{zone}. 3600 IN NS {n}." for n in d["ns"]]
        root += [f"{n}. 3600 IN {'AAAA' if ':' in a else 'A'} {a}" for n, addrs in d["glue"].items() for a in addrs]
        # The site's DS with the lab's short TTL: a DNSSEC key roll waits for it (zone_parent_ds_ttl).
        root += [f"{zone}. {DS_TTL} IN DS {ds}" for ds in d["ds"]]
    root += [f"{z} 3600 IN DS {dns.dnssec.make_ds(z, key(z)[1], 'SHA256')}" for z in (BROKEN, OUTSIDE)]
    broken = [f"{BROKEN} {soa}", f"{BROKEN} 3600 IN NS {NS}", f"www.{BROKEN} 3600 IN A 192.0.2.1"]
    ROOT.mkdir(exist_ok=True)
    (ROOT / "root.zone").write_text(signed(".", "\n".join(root)))
    # The signature covers 192.0.2.1; the zone serves 192.0.2.66.
    (ROOT / "broken.test.zone").write_text(
        signed(BROKEN, "\n".join(broken), tamper="IN A 192.0.2.1|IN A 192.0.2.66"))
    # The rest of the internet's mail: strict SPF, DANE for its MX.
    outside = [f"{OUTSIDE} {soa}", f"{OUTSIDE} 3600 IN NS {NS}", f"{OUTSIDE} 3600 IN MX 10 {OUTSIDE_MX}",
               f"{OUTSIDE_MX} 3600 IN A {host['ipv4']}", f"{OUTSIDE_MX} 3600 IN AAAA {host['ipv6']}",
               f'{OUTSIDE} 3600 IN TXT "v=spf1 ip4:{host["ipv4"]} ip6:{host["ipv6"]} -all"',
               f"_25._tcp.{OUTSIDE_MX} 3600 IN TLSA {tlsa('outside')}"]
    (ROOT / "outside.test.zone").write_text(signed(OUTSIDE, "\n".join(outside)))
    r = subprocess.run(
        [str(REPO / ".venv/bin/pyinfra"), "-y", str(LAB / "inventory.py"), "lab/root_deploy.py",
         "--limit", root_server()[0]], cwd=REPO, capture_output=True, text=True,
    )
    if r.returncode:
        sys.exit(f"lab root: deploy failed\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
    print(f"lab root: ., {BROKEN} and {OUTSIDE} served by {root_server()[0]}, delegating {', '.join(delegations)}")


if __name__ == "__main__":
    {"init": init, "publish": publish}[sys.argv[1]](*sys.argv[2:])
