"""What to set at the registrar, for every mail domain: name servers, glue addresses and DS
records ("Making a Mailserver (Part 1)": "get the glue records sorted out"; a wrong DS takes the domain down).

    .venv/bin/python -m tasks.registrar inventory.py [--json] [--data key=value ...]

`--data` as given to the deploy (pyinfra's own flag): the records of the site it deploys.

The DS records are computed from the keys the master signs with, asked over DNS from the
master itself (so they match what it serves); the names and glue come from the inventory.
"""

import argparse
import json
import runpy
import sys

import dns.dnssec
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rdatatype
from pyinfra.api.exceptions import PyinfraError

from tasks import check, zone
from tasks.data import data_overrides, inventory_hosts, problems


def site(inventory: str, overrides: dict | None = None) -> dict[str, dict]:
    """Every host of the inventory with its data, `--data` overrides applied and checked."""
    try:  # the inventory checks its own data when it loads
        hosts = inventory_hosts(runpy.run_path(inventory), overrides)
    except PyinfraError as e:
        sys.exit(f"registrar: {inventory}: {e}")
    except OSError as e:
        sys.exit(f"registrar: {inventory}: cannot be read ({e.strerror})")
    except Exception as e:
        sys.exit(f"registrar: {inventory}: cannot be loaded ({type(e).__name__}: {e})")
    if errors := [p for name, data in hosts.items() for p in problems(name, data)]:
        sys.exit("registrar: bad data:\n  " + "\n  ".join(errors))
    return hosts


def master(hosts: dict[str, dict]) -> dict:
    """The data of the DNS master (the mail host)."""
    data = next((d for d in hosts.values() if zone.role(d) == "master"), None)
    if data is None:
        sys.exit("registrar: no host in the mail group: nothing is authoritative")
    return data


def delegations(data: dict) -> dict[str, dict]:
    """{zone: {"ns": [names], "glue": {name: [addresses]}, "ds": [DS rdata]}}, from the
    master's data."""
    primary = data["domain"]
    servers = zone.public_servers(data)
    names = [f"ns{i}.{primary}" for i in range(1, len(servers) + 1)]
    glue = {n: [a for a in (s["ipv4"], s["ipv6"]) if a] for n, s in zip(names, servers, strict=True)}
    out = {}
    for z in zone.zones(data):
        query = dns.message.make_query(z, dns.rdatatype.DNSKEY, want_dnssec=True)
        query.flags &= ~dns.flags.RD
        try:
            answer, _ = dns.query.udp_with_fallback(query, data["ipv4"], timeout=5)
            keys = answer.find_rrset(answer.answer, dns.name.from_text(z), dns.rdataclass.IN, dns.rdatatype.DNSKEY)
        except (dns.exception.DNSException, OSError) as e:
            sys.exit(f"registrar: the master {data['ipv4']} gave no DNSKEY of {z} ({type(e).__name__}); "
                     "has it been deployed and signed the zone?")
        except KeyError:
            sys.exit(f"registrar: the master {data['ipv4']} serves no DNSKEY of {z} yet: the zone is not signed")
        # The DS the zone asks its parent for (CDS, RFC 7344 section 4: bind publishes it, and
        # during a key roll it names the new key alone); else the keys with the SEP flag
        # (KSK or CSK) are the ones the parent points to.
        ds = zone.cds(data["ipv4"], z) or [
            dns.dnssec.make_ds(dns.name.from_text(z), k, "SHA256").to_text() for k in keys if k.flags & 0x0001]
        out[z] = {"ns": names, "glue": glue if z == primary else {}, "ds": sorted(ds)}
    return out


def at_parent(inventory_data: dict, z: str) -> list[str] | None:
    """The DS set the parent serves now, validated from the root; None if it cannot be asked."""
    try:
        anchors, servers = check.root_of(inventory_data)
        return sorted(r.to_text() for r in check.Chain(anchors, servers).ds(z))
    except (check.Bogus, SystemExit, OSError):
        return None


def main():
    p = argparse.ArgumentParser(description="Print what to set at the registrar.")
    p.add_argument("inventory")
    p.add_argument("--json", action="store_true", help="machine-readable, for the lab's root")
    p.add_argument("--data", action="append", default=[], metavar="KEY=VALUE",
                   help="override data, as given to the deploy")
    a = p.parse_args()
    try:
        overrides = data_overrides(a.data)
    except ValueError as e:
        sys.exit(f"registrar: {e}")
    data = master(site(a.inventory, overrides))
    result = delegations(data)
    if a.json:
        print(json.dumps(result, indent=2))
        return
    for z, d in result.items():
        print(f"; {z}: set these at the registrar of {z}")
        print("; Name servers:")
        print("".join(f"{z}. NS {n}.\n" for n in d["ns"]), end="")
        if d["glue"]:
            print(f"; Glue: the name servers are inside {z}, so its parent needs their addresses:")
            print("".join(f"{n}. {'AAAA' if ':' in a else 'A'} {a}\n" for n, addrs in d["glue"].items() for a in addrs),
                  end="")
        now = at_parent(data, z)
        if now and now != d["ds"]:  # a key roll: the parent must follow (RFC 6781 section 4.1.2)
            print("; DS (DNSSEC): A KEY ROLL WAITS FOR YOU. The parent serves now:")
            print("".join(f";   {z}. DS {ds}\n" for ds in now), end="")
            print("; Replace them with these (the old key stays in the zone until the parent has them):")
        elif now:
            print("; DS (DNSSEC): the parent serves these already; nothing to change:")
        else:
            print("; DS (DNSSEC): publish only once the name servers above serve the zone signed:")
        print("".join(f"{z}. DS {ds}\n" for ds in d["ds"]))


if __name__ == "__main__":
    main()
