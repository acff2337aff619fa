"""Shared machinery of the task modules: facts read in one round trip, packages installed
without starting half-configured daemons, config files validated before they go live, and
services restarted only when their inputs changed.

Round trips dominate a no-op run (pyinfra 3 caches no facts), so a run reads the host's
state once (HostState: packages, files, units, users) and emits operations only for what
differs from it.
"""

import hashlib
import re
import shlex
from dataclasses import dataclass
from io import StringIO
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from pyinfra import host, logger
from pyinfra.api import FactBase, FileUploadCommand, operation
from pyinfra.api.operation import OperationMeta
from pyinfra.facts.files import FileContents
from pyinfra.operations import server
from pyinfra.operations.util import any_changed
from pyinfra.operations.util.files import generate_color_diff

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
FILES = TEMPLATES.parent / "files"  # installed as they are
_jinja = Environment(
    loader=FileSystemLoader(TEMPLATES),
    undefined=StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
)


def render(template: str, data: dict, **context) -> str:
    """Render templates/<template> with the host's data; the header names the template."""
    header = f"Managed by inhouse from templates/{template}; local edits are overwritten."
    return _jinja.get_template(template).render(header=header, data=data, **context)


KEYS_NONE = "none"  # the digest of a host with none of its key files (tasks/keys.py)


def digest_command(keeps: list[str]) -> str:
    """Shell that prints 'keys DIGEST' of the files under `keeps` (paths or shell patterns
    of our own constants: never data), or 'keys none' (KEYS_NONE). The same digest as fetch() records.
    Not of the DNSSEC key state files (*.state): they follow a key's progress by themselves
    (the parent's DS seen), which would make the next run fetch the keys again, a change in
    a run with nothing to do. The escrow holds them as of the last change of a key; a signer
    given older states checks the parent again and goes on from there."""
    return (f"k=$(for p in {' '.join(keeps)}; do [ -e \"$p\" ] && find \"$p\" -type f ! -name '*.state'; done | "
            "LC_ALL=C sort); "
            'if [ -n "$k" ]; then echo "keys $(echo "$k" | tr "\\n" "\\0" | xargs -0 sha256sum | sha256sum | '
            'cut -c1-64)"; else echo "keys none"; fi')


class System(FactBase):
    """Debian major version, container type ('none' on a real machine or VM), the first
    lines of some files (`heads`: files whose next content depends on their current one),
    which of `names` the local resolver, if it runs, does not answer as DNSSEC-validated
    (`unvalidated`: no `ad` flag, RFC 4035 section 3.2.3), and a digest of the key files
    under `keeps` (`keys`, tasks/keys.py); with `key_dir`, the state of bind's DNSSEC keys
    there (`dnssec`: file name, when made, goal and DS state)."""

    def command(self, heads: list[str], names: list[str] = (), keeps: list[str] = (), key_dir: str = "") -> str:
        quoted = " ".join(shlex.quote(p) for p in heads)
        return (
            ". /etc/os-release; echo ${VERSION_ID%%.*}; systemd-detect-virt --container || true; "
            + (digest_command(keeps) + "; " if keeps else "") +
            f'for f in {quoted}; do [ -f "$f" ] && echo "$f $(head -n 3 "$f" | tr "\\n" "|")"; done; '
            + (self.validation(names) if names else "")
            + (f"for f in {shlex.quote(key_dir)}/K*.state; do [ -f \"$f\" ] && echo dnssec \"${{f##*/}}\" "
               "$(awk '/^(Generated|GoalState|DSState|DNSKEYState|ZRRSIGState|Removed): / "
               "{ printf \"%s%s \", $1, $2 }' \"$f\"); done; "
               if key_dir else "")
            + "true"
        )

    @staticmethod
    def validation(names: list[str]) -> str:
        """One dig for every name (a hundred domains: one process, not a hundred): the
        names whose answer has `ad`, then each name not among them, unvalidated (no answer
        at all counts as not validated)."""
        quoted = " ".join(shlex.quote(n) for n in names)
        return (
            "if systemctl is-active -q unbound 2>/dev/null && command -v dig >/dev/null; then "
            "v=$(dig +time=2 +tries=1 +dnssec +noall +comments +question @127.0.0.1 "
            + " ".join(f"{shlex.quote(n)} SOA" for n in names) + " 2>/dev/null | "
            "awk '/^;; flags:/ { ad = ($0 ~ /^;; flags:[^;]* ad[ ;]/) } "
            r'$0 ~ /^;[^;]/ && $2 == "IN" && $3 == "SOA" { n = substr($1, 2); sub(/\.$/, "", n); '
            "if (ad) print n }'); "
            f'for n in {quoted}; do case " $(echo $v) " in *" $n "*) ;; *) echo "unvalidated $n";; esac; done; fi; '
        )

    def process(self, output):
        lines = [line.split(" ", 1) for line in output[2:]]
        return {"debian": int(output[0]), "container": output[1],
                "keys": next((digest for kind, digest in lines if kind == "keys"), ""),
                "heads": {path: head.replace("|", "\n") for path, head in lines if path.startswith("/")},
                "unvalidated": [name for kind, name in lines if kind == "unvalidated"],
                "dnssec": [rest for kind, rest in lines if kind == "dnssec"]}


class HostState(FactBase):
    """Everything a run compares against, in one round trip: installed packages; for each
    path 'sha256 mode:user:group' (file), 'link TARGET' (symlink) or 'no-parent' (its folder
    is missing); for each systemd unit
    (is-enabled, is-active); whether each user exists."""

    default = dict

    def command(self, paths: list[str], units: list[str], users: list[str]) -> str:
        q = lambda items: " ".join(shlex.quote(i) for i in items)  # noqa: E731
        return (
            "echo '# packages'; dpkg-query -W -f '${db:Status-Abbrev} ${Package}\\n' | sed -n 's/^ii  *//p'; "
            f"echo '# paths'; for f in {q(paths)}; do "
            'if [ -L "$f" ]; then echo "$f link $(readlink "$f")"; '
            'elif [ -f "$f" ]; then echo "$f $(sha256sum < "$f" | cut -d" " -f1) $(stat -c %a:%U:%G "$f")"; '
            'elif [ ! -d "${f%/*}" ]; then echo "$f no-parent"; fi; '
            f"done; echo '# units'; for u in {q(units)}; do "
            'echo $u "$(systemctl is-enabled $u 2>/dev/null)" "$(systemctl is-active $u 2>/dev/null)"; done; '
            f"echo '# users'; for u in {q(users)}; do getent passwd $u | cut -d: -f1; done"
        )

    def process(self, output):
        state: dict = {"packages": set(), "paths": {}, "units": {}, "users": set()}
        section = None
        for line in output:
            if line.startswith("# "):
                section = line[2:]
            elif section in ("packages", "users"):
                state[section].add(line.strip())
            elif section == "paths":
                path, value = line.split(" ", 1)
                state["paths"][path] = value
            elif section == "units":
                unit, *values = line.split()
                state["units"][unit] = tuple((values + ["", ""])[:2])
        return state


def install_packages(names: list[str], installed: set[str]) -> None:
    """Install what is missing, in one apt run; nothing (not even `apt-get update`) otherwise.

    A policy-rc.d keeps daemons from starting with their stock config (fail2ban on Debian 12
    would fail on the missing auth.log); each task starts its own service once configured.
    """
    missing = sorted(set(names) - installed)
    if not missing:
        return
    script = (
        "set -e; p=/usr/sbin/policy-rc.d; "
        "if [ ! -e $p ]; then printf '#!/bin/sh\\nexit 101\\n' > $p; chmod 755 $p; "
        "trap 'rm -f $p' EXIT; fi; "
        "export DEBIAN_FRONTEND=noninteractive; "
        # A mirror or proxy that stalls must not hang the deploy: bounded, three tries.
        "for try in 1 2 3; do timeout 120 apt-get update -q && break; [ $try = 3 ] && exit 1; done; "
        "apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confold "
        + " ".join(missing)
    )
    server.shell(name=f"Install {', '.join(missing)}", commands=[f"sh -c {shlex.quote(script)}"])


@dataclass
class ConfigFile:
    """A file rendered locally; `check` (with {path}) must accept it before it goes live."""

    path: str
    content: str
    check: str | None = None
    mode: str = "644"
    user: str = "root"
    group: str = "root"
    dir_mode: str = "755"  # of the parent folder, if the file is the first in it
    checker: str = ""  # the checker's name in messages (default: the check's first word)

    @property
    def state(self) -> str:
        digest = hashlib.sha256(self.content.encode()).hexdigest()
        return f"{digest} {self.mode}:{self.user}:{self.group}"

    @property
    def private(self) -> bool:
        """Not readable by everyone: it never is, not even while it is uploaded."""
        return not int(self.mode[-1]) & 4


# What a diff must not show: crypt(3) hashes ($6$salt$hash, with or without dovecot's
# {SCHEME} prefix), TSIG secrets of bind (secret "...";) and NSD (secret: "..."), PEM
# private keys and other lines of base64 or base64url alone (the backup's passphrase).
SECRETS = [
    (re.compile(r"(\{[A-Z0-9.-]+\})?\$[0-9a-z]+\$[^\s:]+"), r"\1********"),
    (re.compile(r"(secret:?\s*\"?)[A-Za-z0-9+/=]{8,}"), r"\1********"),
    (re.compile(r"^[A-Za-z0-9+/=_-]{40,}$"), "********"),  # a line of a PEM body, a passphrase
]


def masked(line: str) -> str:
    for pattern, replacement in SECRETS:
        line = pattern.sub(replacement, line)
    return line


def show_diff(config: ConfigFile, exists: bool) -> None:
    """--diff: the unified diff of a file that will change, secrets masked. One remote
    command per changed file, only when asked for."""
    current = (host.get_fact(FileContents, path=config.path) or []) if exists else []
    host.log(f"Will {'change' if exists else 'create'} {config.path}", logger.info)
    for line in generate_color_diff([masked(x) + "\n" for x in current],
                                    [masked(x) + "\n" for x in config.content.splitlines()]):
        logger.info("  %s", line)


@operation()
def put_checked(config: ConfigFile, parent_missing: bool):
    """Upload `config` as PATH.new, give it its owner and mode, and put it in place: two
    remote commands. With a checker, the old file is kept as PATH.bak while it runs; if it
    fails, the old file comes back, PATH.new goes (so the next run checks again) and the
    operation fails with the checker's message."""
    c = config
    p, n, b = (shlex.quote(x) for x in (c.path, f"{c.path}.new", f"{c.path}.bak"))
    parent = shlex.quote(c.path.rsplit("/", 1)[0])
    prepare = []
    if parent_missing:  # as seen before packages were installed: a package may have made it
        prepare.append(f"[ -d {parent} ] || install -d -m {c.dir_mode} -o {c.user} -g {c.group} {parent}")
    temp = host.get_temp_filename(c.path)
    if c.private:
        # Uploads land in files that exist already with their final mode: an upload keeps
        # the mode of the file it overwrites. With sudo, pyinfra uploads to a temporary
        # file as the SSH user, then copies it to PATH.new: both private from the start.
        prepare += [f'install -m 600 -o "${{SUDO_USER:-root}}" /dev/null {shlex.quote(temp)}',
                    f"install -m {c.mode} -o {c.user} -g {c.group} /dev/null {n}"]
    if prepare:
        yield f"sh -c {shlex.quote(' && '.join(prepare))}"
    yield FileUploadCommand(StringIO(c.content), f"{c.path}.new", remote_temp_filename=temp)
    script = f"chown {c.user}:{c.group} {n} && chmod {c.mode} {n} && "
    if c.private:
        script = f"rm -f {shlex.quote(temp)}; " + script
    if c.check is None:
        yield f"sh -c {shlex.quote(script + f'mv -f {n} {p}')}"
        return
    check = c.check.format(path=p)
    script += (
        f"if [ -e {p} ]; then cp -p {p} {b}; else rm -f {b}; fi; mv -f {n} {p}; "
        f"if ! out=$({check} 2>&1); then "
        f"if [ -e {b} ]; then mv -f {b} {p}; else rm -f {p}; fi; "
        f'echo "inhouse: {c.checker or c.check.split()[0]} rejected the new {c.path}; '
        f'the old one stays live: $out" >&2; exit 1; fi; rm -f {b}'
    )
    yield f"sh -c {shlex.quote(script)}"


def install_files(configs: list[ConfigFile], state: dict) -> dict[str, OperationMeta]:
    """Install the files that differ from the host's (put_checked); their operations by path."""
    ops = {}
    for c in host.loop(configs):  # a stable place per file, whichever files change
        current = state["paths"].get(c.path)
        if current != c.state:
            if host.state.config.DIFF:
                show_diff(c, exists=current not in (None, "no-parent"))
            verb = "Check and install" if c.check else "Install"
            ops[c.path] = put_checked(c, current == "no-parent", name=f"{verb} {c.path}")
    return ops


def reload_unit_files(changed: dict[str, OperationMeta], prefix: str) -> None:
    """`systemctl daemon-reload` once, if a unit file or drop-in under `prefix` changed."""
    units = [op for path, op in changed.items() if path.startswith(prefix)]
    if units:
        server.shell(name="Reload systemd units", commands=["systemctl daemon-reload"], _if=any_changed(*units))


def activate(units: dict[str, str], inputs: dict[str, OperationMeta], state: dict) -> None:
    """Keep units enabled and running; run their action (restart, reload...) only if one of
    `inputs` changed. A unit not running yet starts after its config is in place, so it
    needs no restart on top.
    """
    for unit, action in host.loop(units.items()):
        enabled, active = state["units"].get(unit, ("", ""))
        if enabled != "enabled" or active != "active":
            server.shell(name=f"Enable and start {unit}", commands=[f"systemctl enable --now {unit}"])
        elif inputs and action:
            server.shell(
                name=f"{action.capitalize()} {unit}: its config changed",
                commands=[f"systemctl {action} {unit}"],
                _if=any_changed(*inputs.values()),
            )
