"""DKIM: a 2048-bit RSA key made on the host, readable only by the signer, whose public key
the zones publish under the selector (tasks/zone.py). With postfix, opendkim signs the mail
the mail host sends and checks the signatures of the mail it receives (as "Hosting your own Email with DANE" does);
exim does both itself ("Making a Mailserver (Part 4)") with the same key. A postfix relay
checks the mail it takes in (no key there); the mail host leaves the mail the relay
forwards to the relay's verdict (RFC 8601 section 5: each MX judges what it receives).

Two keys at all times: the current one signs, the next one waits with its record already
published. A roll (every `dkim_key_days`, on demand, or to a selector named in data) makes
the next key the signing one once every name server has served its record for a TTL
(tasks/rollover.py), keeps the old record published `dkim_retire_days` for mail still in
flight (its signature is checked on arrival, maybe days later, RFC 6376 section 3.6.1),
then drops it and its key. Selectors are the date the key was made (YYYYMMDD, a letter
after it when the day has one already) unless data names one.
Reads: dkim_*, domain, extra_domains, fqdn, mail_relay_networks, the other MX hosts.
"""

import re
import shlex
import time

from pyinfra import logger
from pyinfra.api import deploy
from pyinfra.operations import server

from tasks import mail, milter, rollover, spam, zone
from tasks.util import ConfigFile, activate, install_files, reload_unit_files, render
from tasks.validate import SELECTOR, is_integer, moment, optional, rule, scalar

DEFAULTS = {
    # The DKIM selector to sign with; empty: the host names its keys (YYYYMMDD). A new
    # selector here rolls to a new key under that name, safely (the record first).
    "dkim_selector": "",
    # Roll the key when it is this many days old (M3AAWG: every six months); 0: only on demand.
    "dkim_key_days": 183,
    # On demand: roll a key made before this moment (ISO 8601, UTC: "2027-01-15" or
    # "2027-01-15T10:00:00").
    "dkim_key_made_after": "",
    # Days the old key's record stays published after a roll, for mail still on its way.
    "dkim_retire_days": 7,
}
# The type and format of each setting, checked before anything connects (tasks/data.py).
CHECKS = {
    "dkim_selector": scalar(optional(rule(lambda v: isinstance(v, str) and SELECTOR.fullmatch(v),
                                          "is not a selector (lower case, digits, -)"))),
    "dkim_key_days": scalar(rule(lambda v: is_integer(v, 0, 36500), "is not a number of days")),
    "dkim_key_made_after": scalar(optional(rule(lambda v: moment(v) is not None,
                                                "is not a moment (2027-01-15 or 2027-01-15T10:00:00, UTC)"))),
    "dkim_retire_days": scalar(rule(lambda v: is_integer(v, 0, 3650), "is not a number of days")),
}
PACKAGES = ["opendkim", "opendkim-tools"]
UNITS = {"opendkim": "restart"}


def signs(data: dict) -> bool:
    """Whether this host has keys and signs: the mail host; a relay only checks."""
    return mail.role(data) == "mail"


def checks(data: dict) -> bool:
    """Whether opendkim checks inbound signatures (rspamd does, where it judges)."""
    return not spam.judges(data)


def packages(data: dict) -> list[str]:
    return PACKAGES if data["mta"] == "postfix" else ["openssl"]


def units(data: dict) -> dict[str, str]:
    return UNITS if data["mta"] == "postfix" else {}


def signer(data: dict) -> str:
    """The user that reads the private key."""
    return "opendkim" if data["mta"] == "postfix" else mail.mta(data).user
DIR = "/etc/inhouse/dkim"
CURRENT = f"{DIR}/current"  # "SELECTOR\nBASE64 PUBLIC KEY\nMADE (seconds since 1970)"
NEXT = f"{DIR}/next"  # "SELECTOR\nBASE64 PUBLIC KEY": the next key, published, not signing
RETIRING = f"{DIR}/retiring"  # "SELECTOR\nBASE64 PUBLIC KEY\nROLLED": the last key, published a while
CONF_DIR = "/etc/opendkim/inhouse"


def keeps(data: dict) -> list[str]:
    return [DIR] if signs(data) else []  # the keys of every selector, and the files above


def heads(data: dict) -> list[str]:
    return [CURRENT, NEXT, RETIRING] if signs(data) else []


def _read(system: dict, path: str) -> tuple[str, str, float]:
    lines = system["heads"].get(path, "").splitlines()
    try:
        when = float(lines[2]) if len(lines) > 2 else 0.0
    except ValueError:
        when = 0.0
    return (lines[0], lines[1], when) if len(lines) > 1 else ("", "", 0.0)


def current(system: dict) -> tuple[str, str]:
    """(selector, public key) of the signing key, or ("", "") before there is one."""
    return _read(system, CURRENT)[:2]


def published(data: dict, system: dict, now: float | None = None) -> list[tuple[str, str]]:
    """(selector, public key) of every key whose record the zones carry: the signing one,
    the next one, and the last one until it retires."""
    now = time.time() if now is None else now
    old = _read(system, RETIRING)
    keep_old = old[0] and now - old[2] < data["dkim_retire_days"] * 86400
    return [k[:2] for k in (_read(system, CURRENT), _read(system, NEXT), old if keep_old else ("", "", 0)) if k[0]]


def new_selector(taken: set[str], now: float | None = None) -> str:
    """YYYYMMDD of today, with a letter after it if a key of today has that one."""
    day = time.strftime("%Y%m%d", time.gmtime(time.time() if now is None else now))
    return next(s for s in [day, *(day + c for c in "bcdefghijklmnopqrstuvwxyz")] if s not in taken)


def plan(data: dict, system: dict, now: float | None = None) -> dict:
    """What this run does with the keys, decided once (the name servers may be asked):
    "selector" to sign with, "make" (selector of a current and/or next key to make),
    "roll" (why the next key signs from now), "retire" (the last key's selector, dropped)."""
    memo = (*(system["heads"].get(p, "") for p in heads(data)),
            *(data[k] for k in ("dkim_selector", "dkim_key_days", "dkim_key_made_after", "dkim_retire_days")), now)
    if system.get("dkim", (None,))[0] == memo:  # decided already (files and the MTA both ask)
        return system["dkim"][1]
    now = time.time() if now is None else now
    cur, nxt, old = _read(system, CURRENT), _read(system, NEXT), _read(system, RETIRING)
    out = {"selector": cur[0], "make": {}, "roll": "", "retire": ""}
    if old[0] and now - old[2] >= data["dkim_retire_days"] * 86400:
        out["retire"] = old[0]
    taken = {cur[0], nxt[0], old[0] if not out["retire"] else ""}
    if not cur[0]:  # a new host: its first key signs at once, nothing was published before
        out["selector"] = data["dkim_selector"] or new_selector(taken, now)
        out["make"]["current"] = out["selector"]
        taken.add(out["selector"])
    elif why := roll_due(data, cur, now):
        wanted = data["dkim_selector"]
        if wanted and wanted != nxt[0]:  # the data's new selector replaces the waiting key
            out["make"]["next"] = wanted
            logger.warning(f"{data['fqdn']}: DKIM rolls to selector {wanted}: its record is published now, "
                           "the key signs in a run after every name server has served it for a TTL")
        elif old[0] and not out["retire"]:
            logger.warning(f"{data['fqdn']}: the DKIM key is due for a roll ({why}); it waits until the last "
                           f"key ({old[0]}) retires, {rollover.when(old[2] + data['dkim_retire_days'] * 86400)}")
        elif ready(data, nxt, why, now):
            out["roll"], out["selector"] = why, nxt[0]
            taken.add(cur[0])
    if "next" not in out["make"] and (not nxt[0] or out["roll"]):
        out["make"]["next"] = new_selector(taken, now)
    system["dkim"] = (memo, out)
    return out


def roll_due(data: dict, cur: tuple[str, str, float], now: float) -> str:
    """Why the signing key must make way: a selector asked for in data, its age, or the
    data's demand; "" when it need not."""
    if data["dkim_selector"] and data["dkim_selector"] != cur[0]:
        return f"dkim_selector is {data['dkim_selector']}"
    if data["dkim_key_made_after"] and cur[2] < moment(data["dkim_key_made_after"]):  # 0: made before
        return f"made before dkim_key_made_after {data['dkim_key_made_after']}"   # keys carried their date
    if cur[2] and data["dkim_key_days"] and now - cur[2] >= data["dkim_key_days"] * 86400:
        return f"{(now - cur[2]) // 86400:.0f} days old, dkim_key_days is {data['dkim_key_days']}"
    return ""


def ready(data: dict, nxt: tuple[str, str, float], why: str, now: float) -> bool:
    """Whether every name server has served the next key's record, in every zone, for its
    TTL: a verifier that looked the selector up before then may hold "no such record"."""
    if not nxt[0]:
        return False
    names = [(f"{nxt[0]}._domainkey.{z}", "TXT") for z in zone.zones(data)]
    first, ttl, missing = rollover.since(data, f"dkim-{data['domain']}", nxt[0], names,
                                         lambda r: nxt[1] in "".join(re.findall(r'"([^"]*)"', r)), now)
    if missing:
        logger.warning(f"{data['fqdn']}: the DKIM key is due for a roll ({why}), but the record of the next "
                       f"key ({nxt[0]}) is {missing}: run the deploy again once the zones carry it")
        return False
    if now - first < ttl:
        logger.warning(f"{data['fqdn']}: the DKIM key is due for a roll ({why}); it rolls in a run after "
                       f"{rollover.when(first + ttl)} (the next key's record served for its TTL)")
        return False
    return True


def selector(data: dict, system: dict) -> str:
    """The selector this run signs with."""
    return plan(data, system)["selector"]


def key_path(sel: str) -> str:
    return f"{DIR}/{sel}.private"


def files(data: dict, system: dict) -> list[ConfigFile]:
    if data["mta"] != "postfix":
        return []
    # The other MX hosts' mail: judged where it came in (home's for a relay: outbound).
    other = mail.peer_addresses(data, "mail" if mail.role(data) == "relay" else "relay")
    ctx = {"dir": CONF_DIR, "signs": signs(data), "checks": checks(data), "domains": mail.domains(data),
           "peers": other,
           "socket": milter.DKIM.socket}
    if signs(data):
        ctx |= {"selector": selector(data, system), "key": key_path(selector(data, system))}
    check = "opendkim -n -x /etc/opendkim.conf"
    tables = ("keytable", "signingtable", "internal") if signs(data) else ()
    return [
        ConfigFile(f"{CONF_DIR}/{name}", render(f"dkim/{name}.j2", data, **ctx), check=check, checker="opendkim")
        for name in (*tables, "peers")
    ] + [milter.DKIM.dropin(data),
         ConfigFile("/etc/opendkim.conf", render("dkim/opendkim.conf.j2", data, **ctx), check=check)]


def script(data: dict, todo: dict, now: float) -> str:
    """The shell commands that make keys, roll and retire, as plan() decided: the keys
    first (opendkim's config check loads the signing one)."""
    q = shlex.quote
    key = ("[ -s {k} ] || openssl genpkey -quiet -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out {k}; "
           "chown {u}:{u} {k}")
    public = "$(openssl pkey -in {k} -pubout -outform DER | base64 -w0)"
    lines = [f"set -e; umask 077; mkdir -p {DIR}; chmod 755 {DIR}; cd {DIR}"]
    if todo["retire"]:
        lines.append(f"rm -f {RETIRING} {q(key_path(todo['retire']))}")
    if todo["roll"]:  # the signing key retires, the next one signs
        for source, target in ((CURRENT, RETIRING), (NEXT, CURRENT)):  # each with the moment of the roll
            lines.append(f"{{ sed -n 1,2p {source}; echo {now:.0f}; }} > {target}.new; mv {target}.new {target}")
        lines.append(f"rm {NEXT}")
    for kind, path, made in (("current", CURRENT, f"\n{now:.0f}"), ("next", NEXT, "")):
        if sel := todo["make"].get(kind):
            k = q(key_path(sel))
            lines.append(key.format(k=k, u=signer(data)))
            lines.append(f'printf "%s\n%s{made}\n" {q(sel)} "{public.format(k=k)}" > {path}.new; mv {path}.new {path}')
    lines.append(f"chmod 644 {CURRENT} {NEXT}" + (f" {RETIRING}" if todo["roll"] else ""))
    return "; ".join(lines)


@deploy("DKIM")
def apply(data: dict, configs: list[ConfigFile], state: dict):
    todo = plan(data, state) if signs(data) else {"make": {}, "roll": "", "retire": ""}
    if todo["make"] or todo["roll"] or todo["retire"]:
        what = [*(f"make the {k} key ({s})" for k, s in todo["make"].items()),
                *([f"roll to {todo['selector']} ({todo['roll']})"] if todo["roll"] else []),
                *([f"retire {todo['retire']}"] if todo["retire"] else [])]
        server.shell(name=f"DKIM: {', '.join(what)}",
                     commands=[f"sh -c {shlex.quote(script(data, todo, time.time()))}"])
    changed = install_files(configs, state)
    reload_unit_files(changed, milter.DROPINS)
    # New keys and tables (a roll) need only a reload: opendkim re-reads them on SIGUSR1
    # (opendkim(8)); a restart leaves postfix a moment with no milter to talk to.
    action = "restart" if {milter.DKIM.config, milter.DKIM.dropin_path} & set(changed) else "reload"
    activate({unit: action for unit in units(data)}, changed, state)
