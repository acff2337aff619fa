"""The backup's restore on a rebuilt host, without a host (fast tier): the rendered script
run against a stand-in for borg that serves one archive from a folder; whose keys come
back, the escrow's or the archive's."""

import io
import os
import subprocess
import tarfile

from tasks import backup, keys
from tasks.util import render

DATA = {"fqdn": "mx.example.org", "backup_keep_daily": 7, "backup_keep_weekly": 4, "backup_keep_monthly": 6}
# borg as the script calls it: list --short --last 1, extract [--stdout] ::ARCHIVE PATH...
BORG = """#!/bin/sh
echo "$*" >> "$ARCHIVE/calls"
case "$1" in
list) echo archive-1 ;;
extract) shift; out=; [ "$1" = --stdout ] && { out=1; shift; }; shift
  for p; do [ -e "$ARCHIVE/tree/$p" ] || continue
    if [ -n "$out" ]; then cat "$ARCHIVE/tree/$p"; else mkdir -p "/${p%/*}"; cp -a "$ARCHIVE/tree/$p" "/$p"; fi
  done ;;
esac
"""


def restore(tmp_path, made: int | None, since: int) -> tuple[str, list[str]]:
    """Run `inhouse-backup restore SINCE` with the escrow's keys in place and an archive
    made at `made` (None: an archive of before, without the date): (its output, the
    names in the key folder after)."""
    root = tmp_path / "host"
    folder, archive = root / "keys", tmp_path / "archive"
    folder.mkdir(parents=True)
    for name in ("Kold.key", "Knew.key"):  # the escrow's: the old key not yet retired
        (folder / name).write_text("escrow\n")
    tree = archive / "tree" / str(folder).lstrip("/")
    tree.mkdir(parents=True)
    (tree / "Knew.key").write_text("archive\n")  # the archive's: the old one retired since
    (tree.parent / "mail").mkdir()
    if made is not None:
        marker = archive / "tree" / str(root / "made").lstrip("/")
        marker.write_text(f"{made}\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "borg").write_text(BORG)
    (bin_dir / "borg").chmod(0o755)
    script = tmp_path / "inhouse-backup"
    script.write_text(render("backup/inhouse-backup.j2", DATA, repository="ssh://b@relay/x", dir=str(root),
                             status=str(root / "status"), sources=[str(root / "mail")],
                             keeps=[str(folder)], key_paths=backup.archived_paths([str(folder)]),
                             made=str(root / "made"), strict="yes", postmaster="postmaster@example.org"))
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "ARCHIVE": str(archive)}
    run = subprocess.run(["sh", str(script), "restore", str(since)], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return run.stdout, sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_a_newer_archive_brings_its_keys_and_a_key_retired_since_stays_retired(tmp_path):
    out, names = restore(tmp_path, made=2000, since=1000)
    assert names == ["Knew.key"], out
    assert (tmp_path / "host/keys/Knew.key").read_text() == "archive\n"


def test_an_older_archive_leaves_the_escrows_keys(tmp_path):
    out, names = restore(tmp_path, made=1000, since=2000)
    assert names == ["Knew.key", "Kold.key"] and "the escrow's" in out


def test_an_archive_without_its_date_leaves_the_escrows_keys(tmp_path):
    _, names = restore(tmp_path, made=None, since=1000)
    assert names == ["Knew.key", "Kold.key"]


def test_the_archived_paths_of_shell_patterns():
    assert backup.archived_paths(["/var/cache/bind/K*", "/var/lib/nsd/keys", "/etc/wireguard/inhouse.key",
                                  "/var/cache/bind/K*"]) == \
        ["var/cache/bind", "var/lib/nsd/keys", "etc/wireguard/inhouse.key"]


def test_the_escrow_changed_when_its_newest_file_did(tmp_path):
    data = {"secrets_dir": str(tmp_path), "fqdn": "mx.example.org"}
    assert keys.escrow_changed(data) == 0
    blob = io.BytesIO()
    with tarfile.open(fileobj=blob, mode="w:gz") as tar:
        for name, mtime in (("a", 1500), ("b", 1700), ("c/", 1600)):
            info = tarfile.TarInfo(name.rstrip("/"))
            info.mtime, info.type = mtime, tarfile.DIRTYPE if name.endswith("/") else tarfile.REGTYPE
            tar.addfile(info, io.BytesIO(b"") if info.isfile() else None)
    keys.escrow_path(data).parent.mkdir(parents=True)
    keys.escrow_path(data).write_bytes(blob.getvalue())
    assert keys.escrow_changed(data) == 1700
