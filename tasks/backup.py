"""Backup: the mail host's mail, every night, encrypted, off the host, with borgbackup.

The repository is on the relay by default (tasks/backup_store.py: an account that can only
run `borg serve` for this host's repository), or any `ssh://` repository the operator
names. borg encrypts on the mail host (repokey-blake2) with a passphrase made on the
operator's machine (secrets_dir/backup/FQDN.passphrase): the repository's host never sees
it. Each run adds an archive of the Maildirs and of the keys (a second, encrypted copy of
what tasks/keys.py keeps), prunes (backup_keep_*), frees the space (compact) and checks the
new archive. Maildir needs no pause of dovecot: each
message is a file written once and renamed into place, and dovecot-uidlist (UIDs,
UIDVALIDITY) is replaced atomically; a message moved during the run is in the next one.
A failed run leaves a failed unit, mails the postmaster, and the next deploy says so.

On a rebuilt host (tasks/keys.py found its keys in secrets_dir) the Maildirs come back from
the newest archive before the MTA and dovecot start; a repository that cannot be read stops
the deploy there, with borg's reason. The keys come from the archive too when it is newer
than the escrow: the host changes some by itself (a DNSSEC key roll's steps, a renewed
certificate), which the escrow learns only at the next deploy, and a key retired since
must not come back.
Reads: backup_*, fqdn, domain, the relay group.
"""

import re
import secrets
import shlex
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pyinfra import host, logger
from pyinfra.api import deploy
from pyinfra.operations import python, server

from tasks import keys, mail
from tasks.secrets_dir import write_secret
from tasks.util import ConfigFile, activate, install_files, reload_unit_files, render
from tasks.validate import BOOLEAN, CLOCK_TIME, is_integer, rule, scalar

DEFAULTS = {
    # Back up the mail host's Maildirs every night.
    "backup_enabled": True,
    # Where to: empty, the relay (the first host of the relay group); or ssh://USER@HOST[:PORT]/PATH
    # of a borg repository whose account accepts secrets_dir/backup/FQDN.pub.
    "backup_repository": "",
    # When, each day (local time), plus up to 30 minutes of random delay.
    "backup_time": "03:30",
    # How many archives to keep: the last of each day...
    "backup_keep_daily": 7,
    # ...of each week...
    "backup_keep_weekly": 4,
    # ...and of each month.
    "backup_keep_monthly": 6,
}
REPOSITORY = re.compile(r"ssh://[a-z_][a-z0-9_-]{0,31}@([a-z0-9.-]+|\[[0-9a-f:]+\])(:\d{1,5})?/[A-Za-z0-9._/-]+")
CHECKS = {
    "backup_enabled": scalar(BOOLEAN),
    "backup_repository": scalar(rule(lambda v: v == "" or isinstance(v, str) and REPOSITORY.fullmatch(v),
                                     "is not empty (the relay) or ssh://USER@HOST[:PORT]/PATH")),
    "backup_time": scalar(rule(lambda v: isinstance(v, str) and CLOCK_TIME.fullmatch(v),
                               "is not a time of day (HH:MM)")),
    **{f"backup_keep_{k}": scalar(rule(lambda v: is_integer(v, 0, 1000), "is not a count from 0 to 1000"))
       for k in ("daily", "weekly", "monthly")},
}
PACKAGES = ["borgbackup", "openssh-client"]
UNITS = {"inhouse-backup.timer": ""}
DIR = "/etc/inhouse/backup"
SCRIPT = "/usr/local/sbin/inhouse-backup"
UNIT = "/etc/systemd/system/inhouse-backup"
STATUS = "/var/lib/inhouse/backup/status"  # "ok|failed DATE ..." of the last run
FIRST = "/var/lib/inhouse/backup/first"  # when the deploy started the host's first backup
MADE = "/var/lib/inhouse/backup/made"  # in each archive: when it was made (seconds since 1970)
HOST_KEY = "/etc/ssh/ssh_host_ed25519_key.pub"  # the relay's, for known_hosts
STORE_USER = "inhouse-backup"  # the account on the relay (tasks/backup_store.py)
STORE_DIR = "/var/backups/inhouse"


def relay(data: dict) -> dict | None:
    relays = data.get("zone_hosts", {}).get("relay", [])
    return relays[0] if relays else None


def on(data: dict) -> bool:
    """Whether this mail host backs up: enabled, and somewhere to go."""
    return data["backup_enabled"] and bool(data["backup_repository"] or relay(data))


def repository(data: dict) -> str:
    if data["backup_repository"]:
        return data["backup_repository"]
    r = relay(data)
    address = r["ipv4"] or f"[{r['ipv6']}]"
    return f"ssh://{STORE_USER}@{address}{STORE_DIR}/{data['fqdn']}"


# ETRN (RFC 1985) spoken with bash alone: each reply read to its last line, whose code is
# printed. Arguments: the relay's address, this host's name, then the domains.
ETRN = (r'exec 3<>"/dev/tcp/$1/25" || exit 1; reply() { while read -t 30 -r line <&3; do '
        r'case $line in [0-9][0-9][0-9]-*) ;; *) echo "${line%%[^0-9]*}"; return;; esac; done; echo 0; }; '
        r'[ "$(reply)" = 220 ] || exit 1; printf "EHLO %s\r\n" "$2" >&3; [ "$(reply)" = 250 ] || exit 1; '
        r'relay=$1; shift 2; for d; do printf "ETRN %s\r\n" "$d" >&3; '
        r'case $(reply) in 25[0-3]) ;; *) echo "$relay refused ETRN $d"; exit 1;; esac; done; '
        r'printf "QUIT\r\n" >&3')


@deploy("Backup")
def ask_relays(data: dict) -> None:
    python.call(name="Ask the relays for the mail they kept meanwhile (ETRN)", function=etrn, data=data)


def etrn(data: dict) -> None:
    """At the end of a rebuild's run: each relay (backup MX) delivers what it queued for the
    domains now, rather than at its next retry (up to an hour away). Asked over SMTP from
    this host, which the relays let in (mynetworks): no login to them needed."""
    for relay in data["zone_hosts"].get("relay", []):
        address = relay["ipv4"] or relay["ipv6"]
        command = shlex.join(["bash", "-c", ETRN, "etrn", address, data["fqdn"], *mail.domains(data)])
        ok, output = host.run_shell_command(command, print_output=False)
        if not ok:
            logger.warning(f"{host.name}: the relay {relay['fqdn']} did not take ETRN "
                           f"({' '.join(output.stdout_lines[-1:]) or 'no answer'}); it delivers at its next retry")


def remember_host_key(data: dict, fqdn: str, key: str) -> None:
    """Keep the relay's SSH host key (secrets_dir/hostkeys/FQDN) for runs that cannot ask it."""
    path = Path(data["secrets_dir"]) / "hostkeys" / fqdn
    key = " ".join(key.split()[:2])
    if key.startswith("ssh-ed25519 ") and (not path.exists() or path.read_text().strip() != key):
        write_secret(path, key + "\n")


def remembered_host_key(data: dict, fqdn: str) -> str:
    path = Path(data["secrets_dir"]) / "hostkeys" / fqdn
    return path.read_text().strip() if path.exists() else ""


def heads(data: dict) -> list[str]:
    return [STATUS, FIRST]


def archived_paths(keeps: list[str]) -> list[str]:
    """The archive's paths (relative, as borg extract takes them) that hold the files of the
    shell patterns `keeps`: each pattern up to the folder of its first wildcard (only the
    files the pattern matched are in that folder of an archive)."""
    out = []
    for keep in keeps:
        parts = keep.strip("/").split("/")
        plain = next((i for i, p in enumerate(parts) if any(c in p for c in "*?[")), len(parts))
        path = "/".join(parts[:plain])
        if path and path not in out:
            out.append(path)
    return out


def secret_paths(secrets_dir: str, fqdn: str) -> tuple[Path, Path]:
    folder = Path(secrets_dir) / "backup"  # FQDN + suffix: with_suffix would eat the name's last label
    return folder / f"{fqdn}.passphrase", folder / f"{fqdn}.key"


def credentials(secrets_dir: str, fqdn: str) -> tuple[str, str, str]:
    """(passphrase, SSH private key, its public key) of `fqdn`'s backups, made on this
    machine once (secrets_dir/backup/) so that a rebuilt host gets the same."""
    passphrase, key = secret_paths(secrets_dir, fqdn)
    if not passphrase.exists():
        write_secret(passphrase, secrets.token_urlsafe(32) + "\n")
    if not key.exists():
        private = Ed25519PrivateKey.generate()
        write_secret(key, private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                                serialization.NoEncryption()).decode())
        public = private.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        write_secret(key.with_suffix(".pub"), f"{public.decode()} {STORE_USER}@{fqdn}\n")
    return passphrase.read_text().strip(), key.read_text(), key.with_suffix(".pub").read_text().strip()


def files(data: dict, system: dict, keeps: list[str] = ()) -> list[ConfigFile]:
    """`keeps`: the key files of the host's other components, in each archive too (an
    encrypted copy off the host, besides the escrow in secrets_dir)."""
    passphrase, key, _ = credentials(data["secrets_dir"], data["fqdn"])
    target = relay(data) if not data["backup_repository"] else None
    host_key = system.get("relays", {}).get(target["fqdn"], {}).get(HOST_KEY, "").strip() if target else ""
    known = [f"{a if ':' not in a else f'[{a}]'} {' '.join(host_key.split()[:2])}"
             for a in (target["ipv4"], target["ipv6"]) if a] if host_key else []
    ctx = {"repository": repository(data), "dir": DIR, "status": STATUS, "sources": [mail.MAIL_HOME],
           "keeps": list(keeps), "key_paths": archived_paths(list(keeps)), "made": MADE,
           "strict": "yes" if known else "accept-new", "postmaster": f"postmaster@{data['domain']}"}
    return [
        ConfigFile(f"{DIR}/passphrase", passphrase + "\n", mode="600", dir_mode="700"),
        ConfigFile(f"{DIR}/id_ed25519", key, mode="600", dir_mode="700"),
        ConfigFile(f"{DIR}/known_hosts", "".join(f"{line}\n" for line in known), dir_mode="700"),
        ConfigFile(SCRIPT, render("backup/inhouse-backup.j2", data, **ctx), check="sh -n {path}", mode="755"),
        ConfigFile(f"{UNIT}.service", render("backup/inhouse-backup.service.j2", data, **ctx)),
        ConfigFile(f"{UNIT}.timer", render("backup/inhouse-backup.timer.j2", data, **ctx)),
    ]


@deploy("Backup")
def apply(data: dict, configs: list[ConfigFile], state: dict):
    status = state["heads"].get(STATUS, "").strip()
    if status.startswith("failed"):
        logger.warning(f"{host.name}: the last backup failed ({status}); see journalctl -u inhouse-backup")
    changed = install_files(configs, state)
    reload_unit_files(changed, UNIT)
    if state.get("restoring"):  # a rebuild: the mail back before the MTA and dovecot start
        server.shell(name=f"Add the {mail.VMAIL} user, owner of the Maildirs", commands=[mail.ADD_VMAIL])
        server.shell(name=f"Put back the mail from the newest backup in {repository(data)}",
                     commands=[f"{SCRIPT} restore {keys.escrow_changed(data)}"])
    activate(UNITS, changed, state)


@deploy("Backup")
def first(state: dict) -> None:
    """At the end of the run, once every host has done its part (the relay has the account
    the backups go to, the MTA runs to report a failure): on a host that never made a
    backup, the first one now rather than tonight."""
    # Once: a run right after this one may find the first backup still running, no status yet.
    if not state["heads"].get(STATUS, "").strip() and not state["heads"].get(FIRST, "").strip():
        server.shell(name="Start the first backup", commands=[
            f"install -d -m 700 {FIRST.rsplit('/', 1)[0]} && date +%s > {FIRST} "
            "&& systemctl start --no-block inhouse-backup.service"])
