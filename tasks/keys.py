"""Keys: what the host makes once and others pin (DNSSEC keys with their state, the DKIM
key, the TLS key and certificate behind the TLSA record, the ACME account) survive a
rebuild of the host.

Each component names the paths of its keys (`keeps`). The System fact reads a digest of
them in the run's first round trip. When they changed (the first run made them, a renewal
or a rollover), the end of the run copies them to the operator's machine, into
secrets_dir/keys/FQDN.tgz (0600, never in git), streamed over SSH without a temporary copy
on the host. On a fresh host that the site has known before (none of the key files, an
escrow for its name), this component puts them back right after the packages install and
before any component configures or starts a service (packages install with their daemons
held: tasks/util.py install_packages): no moment in which the host serves new keys. The
other components see the restored files as if the host had kept them.

Making new keys on a rebuilt host is a choice (`restore_on_rebuild: False`); the zones
then publish the new keys and `python -m tasks.registrar` shows the DS the registrar needs.
"""

import base64
import hashlib
import io
import re
import shlex
import tarfile
from pathlib import Path

from pyinfra import host, logger
from pyinfra.api import deploy
from pyinfra.api.command import StringCommand
from pyinfra.api.exceptions import PyinfraError
from pyinfra.operations import python, server

from tasks.secrets_dir import write_secret
from tasks.util import KEYS_NONE as NONE
from tasks.util import ConfigFile, digest_command, install_files
from tasks.validate import BOOLEAN, scalar

DEFAULTS = {
    # On a fresh host the site has known before: put its keys (and, with backups, its mail)
    # back. False: start it with new keys; the DS, TLSA and DKIM records change.
    "restore_on_rebuild": True,
}
CHECKS = {"restore_on_rebuild": scalar(BOOLEAN)}
UPLOAD = "/root/.inhouse-keys.b64"  # only during a restore; root's home is private
# From the keys' return until the end of the first run that completes: a rebuild that
# stopped half way (the backup out of reach) goes on restoring in the next run, rather
# than starting the services on a host that has its keys but not its mail.
PENDING = "/var/lib/inhouse/rebuild-pending"


def heads(data: dict) -> list[str]:
    return [PENDING]


def escrow_path(data: dict) -> Path:
    return Path(data["secrets_dir"]) / "keys" / f"{data['fqdn']}.tgz"


def recorded(data: dict) -> str:
    """The digest of the keys in the escrow, as the host reported it when they were fetched."""
    path = escrow_path(data).with_suffix(".sha256")
    return path.read_text().strip() if path.exists() else ""


def problems(data: dict) -> list[str]:
    """An escrow that cannot be read: found before anything connects."""
    path = escrow_path(data)
    if not path.exists():
        return []
    try:
        with tarfile.open(path, "r:gz") as tar:
            tar.getmembers()
    except (OSError, tarfile.TarError, EOFError) as e:
        return [f"{path} is not a readable key archive ({type(e).__name__}); restore it from your copy of "
                "secrets_dir, or remove it to make new keys (the DS, TLSA and DKIM records then change)"]
    return []


def restoring(data: dict, system: dict) -> bool:
    """Whether this run rebuilds the host: one with none of its key files that the site has
    known before (its keys come back), or one whose rebuild has not completed yet."""
    fresh = system.get("keys") == NONE and escrow_path(data).exists() and data["restore_on_rebuild"]
    return fresh or PENDING in system.get("heads", {})


def escrow_changed(data: dict) -> int:
    """When the newest of the escrow's files last changed on the host (seconds since 1970,
    the host's clock, as tar kept it); 0 without an escrow. A backup archive made at or
    after this moment holds every key as the escrow has it, or newer."""
    path = escrow_path(data)
    if not path.exists():
        return 0
    with tarfile.open(path, "r:gz") as tar:
        return int(max((m.mtime for m in tar.getmembers()), default=0))


def escrowed_heads(data: dict, paths: list[str]) -> dict[str, str]:
    """The first lines of `paths` as they are in the escrow: what the run would have read on
    the host had it kept them (the DKIM selector, the TLSA data, the issuer)."""
    out = {}
    with tarfile.open(escrow_path(data), "r:gz") as tar:
        for path in paths:
            try:
                member = tar.extractfile(path.lstrip("/"))
            except KeyError:
                continue
            if member:
                out[path] = "\n".join(member.read().decode(errors="replace").splitlines()[:3])
    return out


@deploy("Keys")
def apply(data: dict, configs: list, state: dict):
    if not state.get("restoring") or state.get("keys") != NONE:  # not a rebuild, or the keys are back
        return
    archive = base64.b64encode(escrow_path(data).read_bytes()).decode()
    upload = ConfigFile(UPLOAD, archive + "\n", mode="600")
    install_files([upload], {"paths": {}})  # private from its first byte (tasks/util.py put_checked)
    # Owners by name: the packages that own them (bind, opendkim, exim) are installed by now.
    script = (f"base64 -d {UPLOAD} | tar -xzpf - -C / && rm -f {UPLOAD} && "
              f"mkdir -p {Path(PENDING).parent} && echo pending > {PENDING}")
    server.shell(name=f"Put back the keys of {data['fqdn']} from secrets_dir",
                 commands=[f"sh -c {shlex.quote(script)}"])


@deploy("Keys")
def rebuilt() -> None:
    """The last step of a rebuild's run: from now on a run is an ordinary one."""
    server.shell(name="The rebuild is complete", commands=[f"rm -f {PENDING}"])


@deploy("Keys")
def escrow(data: dict, keeps: list[str], system: dict) -> None:
    """At the end of the run: copy the keys to secrets_dir when they may have changed: the
    digest read at the start differs from the escrow's, or the run does anything at all (a
    new certificate, a new DKIM key: one more command, which writes only what changed). A
    run with nothing to do sends nothing."""
    if keeps and (system.get("keys") != recorded(data) or host.op_hash_order):
        python.call(name="Keep the keys in secrets_dir", function=fetch, data=data, keeps=keeps)


def fetch(data: dict, keeps: list[str]) -> None:
    """Stream the key files as a base64 tar over SSH (no copy on the host's disk) with the
    digest the System fact would report, and write both to secrets_dir; only the digest
    when it is the escrow's already (a run that changed no key: a hundred zones' keys are
    not sent again)."""
    kept = recorded(data) if escrow_path(data).exists() else ""
    kept = kept if re.fullmatch(r"[0-9a-f]{64}", kept) else ""
    script = (f"line=$({digest_command(keeps)}); echo \"$line\"; [ \"$line\" = 'keys {kept}' ] || "
              f"for p in {' '.join(keeps)}; do [ -e \"$p\" ] && printf '%s\\0' \"${{p#/}}\"; done | "
              "tar -czf - -C / --null -T - | base64 -w0; echo")
    ok, output = host.run_shell_command(StringCommand(f"sh -c {shlex.quote(script)}"),
                                        _sudo=bool(host.data.get("_sudo")), print_output=False)
    lines = output.stdout_lines
    if not ok or len(lines) < 1 or not lines[0].startswith("keys "):
        raise PyinfraError(f"{host.name}: could not read its keys to keep them: {output.stderr[-300:]}")
    digest = lines[0].split(" ", 1)[1]
    if digest == kept or len(lines) < 2 or not lines[1]:
        return  # no key changed since the escrow was made
    blob = base64.b64decode(lines[1])
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        count = len([m for m in tar.getmembers() if m.isfile()])
    if digest == NONE or not count or digest == recorded(data) and escrow_path(data).exists():
        return
    path = escrow_path(data)
    write_secret(path, blob)
    write_secret(path.with_suffix(".sha256"), digest + "\n")
    logger.info(f"{host.name}: {count} key files kept in {path} "
                f"(sha256 {hashlib.sha256(blob).hexdigest()[:12]}); keep secrets_dir safe")
