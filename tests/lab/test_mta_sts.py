"""MTA-STS as a sending MTA finds it (RFC 8461): from lab3, the rest of the internet, the
`_mta-sts` record of each domain through lab3's validating resolver, then the policy over
HTTPS at mta-sts.DOMAIN on every address the name has, the certificate checked against the
ACME CA's root and no redirect followed. The policy names every MX host, and the record's
id is the hash of the policy served."""

import re
import ssl
import tempfile
from pathlib import Path

import pytest

from tasks import zone
from tests.helpers import Vantage, vantage

PATH = "/.well-known/mta-sts.txt"


@pytest.fixture(scope="session")
def sender(inventory, lab) -> Vantage:
    return vantage(inventory, "lab3")


@pytest.fixture(scope="session")
def ca_file(tls_context, tmp_path_factory) -> str:
    """The ACME CA's root (pebble's), the one root a sender trusts here."""
    path = tmp_path_factory.mktemp("mta-sts") / "root.pem"
    path.write_text("".join(ssl.DER_cert_to_PEM_cert(c) for c in tls_context.get_ca_certs(binary_form=True)))
    return str(path)


def resolve(sender: Vantage, name: str, rtype: str) -> list[str]:
    """The answer of lab3's own resolver, which validates DNSSEC: the data of each record."""
    r = sender.run("dig", "+noall", "+comments", "+answer", "@127.0.0.1", name, rtype, timeout=30)
    assert r.returncode == 0 and re.search(r"flags: [a-z ]*\bad\b", r.stdout), (name, rtype, r.stdout)
    return [line.split(None, 4)[4] for line in r.stdout.splitlines()
            if line and not line.startswith(";") and line.split()[3] == rtype]


def fetch(sender: Vantage, ca_file: str, name: str, address: str, path: str = PATH) -> tuple[int, str, str, str]:
    """(status, content type, headers, body) of https://NAME/PATH fetched from `sender` at
    `address`, the certificate checked for NAME against the CA; a redirect is not followed."""
    host = f"[{address}]" if ":" in address else address
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        r = sender.run("curl", "-sS", "--max-redirs", "0", "--proto", "=https", "--cacert", ca_file, "--resolve",
                       f"{name}:443:{host}", "-D", str(out / "headers"), "-o", str(out / "body"),
                       "-w", "%{http_code} %{content_type}", f"https://{name}{path}", timeout=30)
        assert r.returncode == 0, (name, address, r.stderr)
        status, _, content_type = r.stdout.partition(" ")
        # Bytes as sent: the policy's lines end in CRLF.
        return int(status), content_type, (out / "headers").read_text(), (out / "body").read_bytes().decode()


def policy_of(sender: Vantage, ca_file: str, domain: str, server) -> str:
    """The policy text of `domain` from every address of its policy host (all the same)."""
    name = f"mta-sts.{domain}"
    addresses = resolve(sender, name, "A") + resolve(sender, name, "AAAA")
    assert server.ipv4 in addresses, (name, addresses)  # the mail host serves it
    texts = set()
    for address in addresses:
        status, content_type, headers, body = fetch(sender, ca_file, name, address)
        assert status == 200, (name, address, headers)
        assert content_type.split(";")[0].strip() == "text/plain", (name, address, content_type)
        texts.add(body)
    assert len(texts) == 1, texts
    return texts.pop()


@pytest.mark.lab
def test_every_domain_serves_its_policy_as_announced(sender, ca_file, site, server):
    mx = {h["fqdn"] for g in ("mail", "relay") for h in zone.servers(site, g)}
    for domain in zone.zones(site):  # inhouse.test and second.test
        text = policy_of(sender, ca_file, domain, server)
        fields = [line.split(":", 1) for line in text.replace("\r\n", "\n").splitlines()]
        assert all(len(f) == 2 for f in fields), text
        fields = [(k.strip(), v.strip()) for k, v in fields]
        assert fields[0] == ("version", "STSv1"), text
        assert dict(fields)["mode"] == site["zone_mta_sts_mode"]
        assert {v for k, v in fields if k == "mx"} == mx
        assert int(dict(fields)["max_age"]) == site["mta_sts_max_age"]
        assert text.endswith("\r\n") and "\r\n" in text  # CRLF lines, RFC 8461 section 3.2
        (txt,) = resolve(sender, f"_mta-sts.{domain}", "TXT")
        announced = re.fullmatch(r'"v=STSv1; id=([A-Za-z0-9]{1,32})"', txt)
        assert announced and announced.group(1) == zone.mta_sts_policy_id(text), (txt, text)


@pytest.mark.lab
def test_the_policy_host_serves_nothing_else(sender, ca_file, site, server):
    name = f"mta-sts.{site['domain']}"
    status, _, headers, _ = fetch(sender, ca_file, name, server.ipv4, "/")
    assert status == 404
    assert re.search(r"^server: nginx\r?$", headers, re.I | re.M), headers  # no version
    # Any other name (the host's own, which its certificate also carries): no TLS at all.
    r = sender.run("curl", "-sS", "--cacert", ca_file, "--resolve", f"{site['fqdn']}:443:{server.ipv4}",
                   f"https://{site['fqdn']}{PATH}", timeout=30)
    assert r.returncode == 35, (r.returncode, r.stderr)  # curl: the TLS handshake failed
