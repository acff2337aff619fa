"""IMAP: dovecot keeps each user's Maildir and serves it on 993 (TLS at once) and 143 (only
after STARTTLS); it delivers what the MTA hands over (LMTP) and checks the MTA's SMTP
logins (SASL). Templates for Dovecot 2.3 (Debian 12) and 2.4 (Debian 13), which do not
share a syntax.
Reads: the users and password hashes of tasks/mail.py, fqdn.
"""

from pyinfra.api import deploy
from pyinfra.operations import server

from tasks import mail, proxy, spam, tls, zone
from tasks.util import ConfigFile, activate, install_files, render

DEFAULTS: dict = {}
PACKAGES = ["dovecot-imapd", "dovecot-lmtpd"]
SIEVE = "/etc/dovecot/sieve"  # the scripts of the spam filter (tasks/spam.py), and what they run
SIEVE_FILES = {"to_junk": f"{SIEVE}/spam-to-junk.sieve", "report_spam": f"{SIEVE}/report-spam.sieve",
               "report_ham": f"{SIEVE}/report-ham.sieve", "dir": SIEVE}


def packages(data: dict) -> list[str]:
    return PACKAGES + (["dovecot-sieve"] if spam.on(data) else [])


def ports(data: dict) -> list[str]:
    return ["tcp/143", "tcp/993", *[f"tcp/{p}" for p in proxy.home_ports(data, "dovecot").values()]]


UNITS = {"dovecot": "reload"}
PASSWD = "/etc/dovecot/inhouse/passwd"  # logins: address and hash
USERS = "/etc/dovecot/inhouse/users"  # mailboxes


def files(data: dict, system: dict) -> list[ConfigFile]:
    hashes = mail.password_hashes(data)
    ctx = {"v24": system["debian"] >= 13, "system": system, "passwd": PASSWD, "users": USERS,
           "mail_home": mail.MAIL_HOME, "vmail": mail.VMAIL, "cert": tls.CHAIN, "key": tls.KEY,
           "ciphers": tls.INTERMEDIATE_CIPHERS, "sockets": mail.mta(data).dovecot_sockets,
           "front_door": proxy.home_ports(data, "dovecot"),
           "proxies": [zone.link_address(data, h["fqdn"]) for h in data["zone_hosts"].get("relay", [])],
           "spam": spam.on(data), "sieve": SIEVE_FILES}
    return [
        # Read again by dovecot whenever they change: no reload.
        ConfigFile(PASSWD, render("imap/passwd.j2", data, passwords={u: hashes[u] for u in data["mail_users"]}),
                   mode="640", group="dovecot", dir_mode="750"),
        ConfigFile(USERS, render("imap/users.j2", data, mailboxes=mail.mailboxes(data)), mode="640", group="dovecot"),
        ConfigFile("/etc/dovecot/dovecot.conf", render("imap/dovecot.conf.j2", data, **ctx),
                   check="doveconf -n -c {path}"),
    ] + (sieve(data) if spam.on(data) else [])


def sieve(data: dict) -> list[ConfigFile]:
    """The spam filter's Sieve scripts, compiled as they are checked (sievec writes the
    binary beside each: the mail user could not, and would compile it for every message),
    and the programs they pipe to."""
    scripts = [ConfigFile(SIEVE_FILES[k], render(f"imap/{k.replace('_', '-')}.sieve.j2", data), dir_mode="755",
                          check="sievec {path}", checker="sievec")
               for k in ("to_junk", "report_spam", "report_ham")]
    learn = [ConfigFile(f"{SIEVE}/rspamd-learn-{kind}", render("imap/rspamd-learn.j2", data, kind=kind,
                                                              controller=spam.CONTROLLER, **spam.FUZZY),
                        mode="755")
             for kind in ("spam", "ham")]
    return learn + scripts


@deploy("IMAP")
def apply(data: dict, configs: list[ConfigFile], state: dict):
    if mail.VMAIL not in state["users"]:
        server.shell(name=f"Add the {mail.VMAIL} user, owner of the Maildirs", commands=[mail.ADD_VMAIL])
    changed = install_files(configs, state)
    activate(UNITS, {p: op for p, op in changed.items() if p not in (PASSWD, USERS)}, state)
