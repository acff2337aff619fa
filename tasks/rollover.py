"""Key rollovers no one notices: a key that others look up in DNS (TLSA for DANE, DKIM)
is used only once every authoritative server has served its record for long enough that
no resolver can still hold the record set from before it (RFC 7671 section 8.1 for TLSA:
twice the TTL; RFC 6376 section 3.6.1 and M3AAWG's DKIM key rotation practice for DKIM).

The deploy asks the name servers itself, over DNS, as a resolver would, and remembers on
the operator's machine (secrets_dir/rollover/) since when each new record has been served
everywhere; it asks only while a key waits to be used, never on a run with nothing to roll.
"""

import datetime
import time
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rdatatype

from tasks import zone
from tasks.secrets_dir import write_secret


def name_servers(data: dict) -> list[str]:
    """Every address of every authoritative server of the site's zones."""
    return [a for g in ("mail", "relay") for h in zone.servers(data, g) for a in (h["ipv4"], h["ipv6"]) if a]


def served(address: str, name: str, rtype: str) -> tuple[list[str], int] | None:
    """The records (presentation form) and TTL one server gives for name/rtype, as its
    authoritative answer; None if it does not answer."""
    query = dns.message.make_query(name, rtype)
    query.flags &= ~dns.flags.RD
    try:
        reply = dns.query.udp_with_fallback(query, address, timeout=3)[0]
    except (dns.exception.DNSException, OSError):
        return None
    sets = [r for r in reply.answer if r.rdtype == dns.rdatatype.from_text(rtype)]
    return ([r.to_text() for s in sets for r in s], max((s.ttl for s in sets), default=0))


def since(data: dict, label: str, want: str, names: list[tuple[str, str]], has,
          now: float | None = None) -> tuple[float, int, str]:
    """Since when every name server serves, for each (name, type) of `names`, a record for
    which has(record text) is true: (that moment, the largest TTL seen, why not yet).
    The moment is remembered under `label` with `want`, what is awaited (another `want`
    starts again); 0 when some server does not serve it now, and the memory starts again."""
    now = time.time() if now is None else now
    path = Path(data["secrets_dir"]) / "rollover" / label
    ttl, missing = 0, []
    for address in name_servers(data):
        for name, rtype in names:
            answer = served(address, name, rtype)
            if answer is None or not any(has(r) for r in answer[0]):
                missing.append(f"{address} ({name} {rtype})")
            else:
                ttl = max(ttl, answer[1])
    if missing:
        if path.exists():
            path.unlink()
        return 0, ttl, "not served yet by " + ", ".join(missing)
    try:
        first, awaited = path.read_text().split()
        first = float(first)
    except (OSError, ValueError):
        first, awaited = 0, ""
    if not first or first > now or awaited != want:
        first = float(int(now))  # whole seconds, never later than now
        write_secret(path, f"{first:.0f} {want}\n")
    return first, ttl, ""


def when(moment: float) -> str:
    return datetime.datetime.fromtimestamp(moment, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
