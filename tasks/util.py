"""Shared machinery of the task modules: facts read in one round trip, packages installed
without starting half-configured daemons, config files validated before they go live, and
services restarted only when their inputs changed.

Round trips dominate a no-op run (pyinfra 3 caches no facts), so each helper reads the state
it needs with a single remote command and emits operations only for what differs.
"""

import hashlib
import shlex
from dataclasses import dataclass
from io import StringIO
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from pyinfra import host
from pyinfra.api import FactBase
from pyinfra.api.operation import OperationMeta
from pyinfra.facts.deb import DebPackages
from pyinfra.operations import files, server
from pyinfra.operations.util import any_changed

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
_jinja = Environment(
    loader=FileSystemLoader(TEMPLATES),
    undefined=StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
)


def render(template: str, **context) -> str:
    """Render templates/<template> with the host's data; the header names the template."""
    header = f"Managed by inhouse from templates/{template}; local edits are overwritten."
    return _jinja.get_template(template).render(header=header, data=host.data, **context)


class System(FactBase):
    """Debian major version and container type ('none' on a real machine or VM)."""

    def command(self) -> str:
        return ". /etc/os-release; echo ${VERSION_ID%%.*}; systemd-detect-virt --container || true"

    def process(self, output):
        return {"debian": int(output[0]), "container": output[1] if len(output) > 1 else "none"}


class FileStates(FactBase):
    """For each path: 'sha256 mode:user:group' of a file, 'link TARGET' of a symlink."""

    default = dict

    def command(self, paths: list[str]) -> str:
        quoted = " ".join(shlex.quote(p) for p in paths)
        return (
            f"for f in {quoted}; do "
            'if [ -L "$f" ]; then echo "$f link $(readlink "$f")"; '
            'elif [ -f "$f" ]; then '
            'echo "$f $(sha256sum < "$f" | cut -d" " -f1) $(stat -c %a:%U:%G "$f")"; fi; '
            "done"
        )

    def process(self, output):
        return {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in output}


class UnitStates(FactBase):
    """For each systemd unit: (is-enabled, is-active); empty strings for a missing unit."""

    default = dict

    def command(self, units: list[str]) -> str:
        quoted = " ".join(shlex.quote(u) for u in units)
        return (
            f"for u in {quoted}; do echo $u "
            '"$(systemctl is-enabled $u 2>/dev/null)" "$(systemctl is-active $u 2>/dev/null)"; done'
        )

    def process(self, output):
        return {f[0]: (f[1:] + ["", ""])[:2] for f in (line.split() for line in output)}


def system() -> dict:
    return host.get_fact(System)


def install_packages(names: list[str]) -> None:
    """Install what is missing, in one apt run; nothing (not even `apt-get update`) otherwise.

    A policy-rc.d keeps daemons from starting with their stock config (fail2ban on Debian 12
    would fail on the missing auth.log); each task starts its own service once configured.
    """
    installed = host.get_fact(DebPackages)
    missing = sorted(set(names) - set(installed))
    if not missing:
        return
    script = (
        "set -e; p=/usr/sbin/policy-rc.d; "
        "if [ ! -e $p ]; then printf '#!/bin/sh\\nexit 101\\n' > $p; chmod 755 $p; "
        "trap 'rm -f $p' EXIT; fi; "
        "export DEBIAN_FRONTEND=noninteractive; apt-get update -q; "
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

    @property
    def state(self) -> str:
        digest = hashlib.sha256(self.content.encode()).hexdigest()
        return f"{digest} {self.mode}:{self.user}:{self.group}"


def install_files(configs: list[ConfigFile]) -> dict[str, OperationMeta]:
    """Install the files that differ from the host's; returns their operations by path.

    A checked file goes up as PATH.new, then replaces PATH (the old one kept as PATH.bak)
    and the checker runs; if it fails, the old file comes back, PATH.new is removed (so the
    next run checks again) and the deploy stops on this host with the checker's message.
    """
    current = host.get_fact(FileStates, paths=[c.path for c in configs])
    ops = {}
    for c in configs:
        if current.get(c.path) == c.state:
            continue
        owner = {"mode": c.mode, "user": c.user, "group": c.group}
        if c.check is None:
            ops[c.path] = files.put(
                name=f"Install {c.path}", src=StringIO(c.content), dest=c.path, **owner
            )
            continue
        new, bak = f"{c.path}.new", f"{c.path}.bak"
        files.put(name=f"Upload {new}", src=StringIO(c.content), dest=new, **owner)
        p, n, b = (shlex.quote(x) for x in (c.path, new, bak))
        check = c.check.format(path=p)
        script = (
            f"if [ -e {p} ]; then cp -p {p} {b}; else rm -f {b}; fi; mv -f {n} {p}; "
            f"if ! out=$({check} 2>&1); then "
            f"if [ -e {b} ]; then mv -f {b} {p}; else rm -f {p}; fi; "
            f'echo "inhouse: {c.check.split()[0]} rejected the new {c.path}; '
            f'the old one stays live: $out" >&2; exit 1; fi; rm -f {b}'
        )
        ops[c.path] = server.shell(
            name=f"Check and install {c.path}", commands=[f"sh -c {shlex.quote(script)}"]
        )
    return ops


def activate(units: list[str], inputs: dict[str, OperationMeta], action: str = "reload-or-restart"):
    """Keep units enabled and running; `action` them only if one of `inputs` changed.

    A unit that is not running yet is started after its config is in place, so it needs no
    restart on top.
    """
    states = host.get_fact(UnitStates, units=units)
    for unit in units:
        enabled, active = states.get(unit, ("", ""))
        if enabled != "enabled" or active != "active":
            server.shell(name=f"Enable and start {unit}", commands=[f"systemctl enable --now {unit}"])
        elif inputs:
            server.shell(
                name=f"{action.capitalize()} {unit}: its config changed",
                commands=[f"systemctl {action} {unit}"],
                _if=any_changed(*inputs.values()),
            )
