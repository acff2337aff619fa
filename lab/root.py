"""The lab's own internet root: a DNSSEC-signed root zone on the last lab host, delegating
the lab's domains to the project's name servers with the DS records the registrar output
gives (the lab plays the registrar), so lab resolvers validate the whole chain.

    .venv/bin/python lab/root.py init      root key; writes .lab/root/resolver.json
                                           (root hints and trust anchor for the inventory)
    .venv/bin/python lab/root.py publish   registrar output -> signed root zone -> served

Also serves broken.test: signed, then one record changed after signing, so a validating
resolver must answer SERVFAIL for it.
"""

import json
import subprocess
import sys
from pathlib import Path

import dns.dnssec
import dns.name
import dns.rdatatype
import dns.zone
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from dns.dnssectypes import Algorithm

REPO = Path(__file__).resolve().parent.parent
LAB = REPO / ".lab"
ROOT = LAB / "root"
NS = "ns.root.test."
BROKEN = "broken.test."


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


def init() -> None:
    _, host = root_server()
    _, dnskey = key(".")
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


def publish() -> None:
    _, host = root_server()
    registrar = subprocess.run(
        [sys.executable, "-m", "tasks.registrar", str(LAB / "inventory.py"), "--json"],
        cwd=REPO, check=True, capture_output=True, text=True,
    )
    delegations = json.loads(registrar.stdout)
    soa = f"3600 IN SOA {NS} hostmaster.root.test. 1 1800 900 604800 86400"
    here = [f"{NS} 3600 IN A {host['ipv4']}", f"{NS} 3600 IN AAAA {host['ipv6']}"]
    root = [f". {soa}", f". 3600 IN NS {NS}", *here]
    for zone, d in {**delegations, BROKEN.rstrip("."): {"ns": [NS.rstrip(".")], "glue": {}, "ds": []}}.items():
        root += [f"{zone}. 3600 IN NS {n}." for n in d["ns"]]
        root += [f"{n}. 3600 IN {'AAAA' if ':' in a else 'A'} {a}" for n, addrs in d["glue"].items() for a in addrs]
        root += [f"{zone}. 3600 IN DS {ds}" for ds in d["ds"]]
    root.append(f"{BROKEN} 3600 IN DS {dns.dnssec.make_ds(BROKEN, key(BROKEN)[1], 'SHA256')}")
    broken = [f"{BROKEN} {soa}", f"{BROKEN} 3600 IN NS {NS}", f"www.{BROKEN} 3600 IN A 192.0.2.1"]
    ROOT.mkdir(exist_ok=True)
    (ROOT / "root.zone").write_text(signed(".", "\n".join(root)))
    # The signature covers 192.0.2.1; the zone serves 192.0.2.66.
    (ROOT / "broken.test.zone").write_text(
        signed(BROKEN, "\n".join(broken), tamper="IN A 192.0.2.1|IN A 192.0.2.66"))
    r = subprocess.run(
        [str(REPO / ".venv/bin/pyinfra"), "-y", str(LAB / "inventory.py"), "lab/root_deploy.py",
         "--limit", root_server()[0]], cwd=REPO, capture_output=True, text=True,
    )
    if r.returncode:
        sys.exit(f"lab root: deploy failed\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
    print(f"lab root: . and {BROKEN} served by {root_server()[0]}, delegating {', '.join(delegations)}")


if __name__ == "__main__":
    {"init": init, "publish": publish}[sys.argv[1]]()
