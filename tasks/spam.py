"""Spam filtering: rspamd scores the mail every MX takes in from the internet. Clear spam
(GTUBE, a score of `spam_reject_score` or more) is refused at SMTP time with a 5xx, so
the sender learns of it and nothing is lost silently; suspect mail (`spam_junk_score` or
more) is marked `X-Spam: Yes` and dovecot files it into the user's Junk folder (Sieve,
tasks/imap.py). Moving a message into Junk, or out of it, teaches the filter (IMAPSieve)
twice: rspamd's Bayes classifier, which generalises but needs many messages, and the
site's own fuzzy storage, which files the same message into Junk the next time it comes,
at once. Both are global: one small site has too little mail for a filter per user, and
what one user calls spam is almost always spam for the others too.

rspamd rather than SpamAssassin: one daemon in C with its rules compiled, a milter of its
own for postfix and a protocol exim speaks natively, Bayes in redis, and what peers who
run mail servers for others chose (Mail-in-a-Box's successors, mailcow, mox's advice).
Greylisting is off (it delays every first mail by minutes; `spam_greylisting` turns it
on); no antivirus; no digest of any message leaves the host (rspamd.com's public fuzzy
storage is replaced by the site's own). DKIM signing stays opendkim's (or exim's): rspamd signs nothing.
With postfix, rspamd is also the judge of SPF, DKIM and DMARC: its Authentication-Results
replace those of opendkim and opendmarc, which are not run for mail from outside (one
daemon, no second round of DNS queries; policyd-spf stays, to refuse an SPF failure at
RCPT time). A filter that is down, or still starting, lets mail through unscored and
without its verdict rather than hold all mail (postfix's per-milter default action; exim's
`spam = nobody:true`, and exim checks SPF, DKIM and DMARC itself).
Reads: spam_*, the other MX hosts (their mail was judged where it came in).
"""

from pyinfra.api import deploy
from pyinfra.operations import server

from tasks import mail, milter
from tasks.util import ConfigFile, activate, install_files, reload_unit_files, render
from tasks.validate import BOOLEAN, is_integer, rule, scalar

DEFAULTS = {
    # rspamd on every MX (the mail host, and the relay where mail comes in).
    "spam_enabled": True,
    # Refused at SMTP time from this score on (rspamd's own default).
    "spam_reject_score": 15,
    # Filed into Junk from this score on (rspamd's "add header" action).
    "spam_junk_score": 6,
    # Greylisting: a first mail from an unknown sender waits minutes. Off.
    "spam_greylisting": False,
    # Learnt messages of each kind before Bayes judges (rspamd's default: 200).
    "spam_bayes_min_learns": 200,
    # rspamd's test patterns besides GTUBE (refused): the same line with Y first is filed
    # into Junk. For trying the filter out; off.
    "spam_test_patterns": False,
}
CHECKS = {
    "spam_enabled": scalar(BOOLEAN),
    "spam_reject_score": scalar(rule(lambda v: is_integer(v, 1, 1000), "is not a score from 1 to 1000")),
    "spam_junk_score": scalar(rule(lambda v: is_integer(v, 1, 1000), "is not a score from 1 to 1000")),
    "spam_greylisting": scalar(BOOLEAN),
    "spam_bayes_min_learns": scalar(rule(lambda v: is_integer(v, 1, 100000), "is not a number of messages")),
    "spam_test_patterns": scalar(BOOLEAN),
}
# The scanner exim asks (11333), the controller that learns (11334): on localhost, as
# Debian's rspamd binds them. postfix asks the proxy's milter on a socket in its chroot
# (tasks/milter.py).
SCANNER, CONTROLLER = "127.0.0.1 11333", "localhost:11334"
# The site's own fuzzy storage (11335, as rspamd's docs bind it): the digests of what users
# moved into Junk, under one flag, learnt with a weight that saturates the rule's score.
FUZZY = {"fuzzy": "127.0.0.1:11335", "symbol": "LOCAL_FUZZY_SPAM", "flag": 11, "weight": 10}
LOCAL, OVERRIDE = "/etc/rspamd/local.d", "/etc/rspamd/override.d"
UNITS = {"rspamd": "reload", "redis-server": ""}
PACKAGES = ["rspamd", "redis-server"]


def on(data: dict) -> bool:
    """Whether this host filters: an MX with spam_enabled."""
    return data.get("mail_enabled") is True and mail.role(data) != "none" and data.get("spam_enabled") is True


def judges(data: dict) -> bool:
    """Whether rspamd also writes the verdict on SPF, DKIM and DMARC (Authentication-Results):
    with postfix, in place of opendkim's check and opendmarc (it checks them anyway, to
    score). exim checks them itself, in its own process."""
    return on(data) and data["mta"] == "postfix"


def replaced(data: dict) -> list[milter.Milter]:
    """The milters rspamd takes the place of here: opendmarc; and opendkim on a relay,
    where it only checked (the mail host's signs)."""
    if not judges(data):
        return []
    return [milter.DMARC, *([milter.DKIM] if mail.role(data) == "relay" else [])]


def gone(data: dict) -> list[str]:
    """The configs of the milters replaced: there, they still run (a host deployed before)."""
    return [m.config for m in replaced(data)]


def problems(data: dict) -> list[str]:
    """What is wrong across the settings."""
    junk, reject = data.get("spam_junk_score"), data.get("spam_reject_score")
    if isinstance(junk, int) and isinstance(reject, int) and junk >= reject:
        return [f"spam_junk_score: {junk} is not below spam_reject_score ({reject}): nothing would go to Junk"]
    return []


def files(data: dict, system: dict) -> list[ConfigFile]:
    # Not judged: loopback, the networks that relay through this host and the other MX
    # hosts (their mail was judged where it came in, or is the mail host's own).
    other = mail.peer_addresses(data, "mail" if mail.role(data) == "relay" else "relay")
    local = ["127.0.0.0/8", "::1", *data["mail_relay_networks"], *other]
    check = "rspamadm configtest"
    # The fuzzy check's public rule replaced first (each file is checked with the whole
    # config, and that rule resolves rspamd.com's servers as the config loads), then the
    # modules turned off: greylisting (unless asked for) and signing (opendkim's).
    fuzzy = ConfigFile(f"{OVERRIDE}/fuzzy_check.conf", render("spam/fuzzy_check.conf.j2", data, **FUZZY),
                       check=check)
    off = ["dkim_signing", "arc", *(["greylist"] if not data["spam_greylisting"] else [])]
    confs = {
        **{f"{m}.conf": render("spam/off.conf.j2", data, module=m) for m in off},
        "worker-fuzzy.inc": render("spam/worker-fuzzy.inc.j2", data, **FUZZY),
        "fuzzy_group.conf": render("spam/fuzzy_group.conf.j2", data, **FUZZY),
        "force_actions.conf": render("spam/force_actions.conf.j2", data, **FUZZY),
        "actions.conf": render("spam/actions.conf.j2", data),
        "redis.conf": render("spam/redis.conf.j2", data),
        "classifier-bayes.conf": render("spam/classifier-bayes.conf.j2", data),
        "milter_headers.conf": render("spam/milter_headers.conf.j2", data, judges=judges(data)),
    }
    if data["mta"] == "postfix":
        confs["worker-proxy.inc"] = render("spam/worker-proxy.inc.j2", data, socket=milter.SPAM.socket)
    # override.d: local.d would add these addresses to rspamd's default list (every private
    # network), not replace it; the lab's internet and a hidden home's link are private.
    options = ConfigFile(f"{OVERRIDE}/options.inc", render("spam/options.inc.j2", data, local=local), check=check)
    return [fuzzy, options, *(ConfigFile(f"{LOCAL}/{name}", text, check=check) for name, text in confs.items()),
            *([milter.SPAM.dropin(data)] if data["mta"] == "postfix" else [])]


@deploy("Spam filter")
def apply(data: dict, configs: list[ConfigFile], state: dict):
    for m in replaced(data):  # stopped, their configs gone (packages kept): postfix no longer asks them
        if state["paths"].get(m.config) not in (None, "no-parent"):
            server.shell(name=f"Stop {m.unit}: rspamd judges instead", commands=[
                f"systemctl disable --now {m.unit} 2>/dev/null; rm -f {m.config} {m.dropin_path}; "
                "systemctl daemon-reload"])
    changed = install_files(configs, state)
    reload_unit_files(changed, milter.DROPINS)
    # A new socket (or its folder) needs a restart; the rest a reload.
    socket = {f"{LOCAL}/worker-proxy.inc", milter.SPAM.dropin_path}
    activate({"rspamd": "restart" if socket & set(changed) else "reload", "redis-server": ""}, changed, state)
