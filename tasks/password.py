"""Store the password hash of a mail user, asked at a prompt: the password itself is never
written anywhere, and the hash goes to secrets_dir (on this machine, not in git), where the
deploy reads it.

    python -m tasks.password alice@example.org [--secrets DIR]

SHA512-CRYPT: dovecot checks it with no extra library, on Debian 12 and 13.
"""

import argparse
import getpass
import sys
from pathlib import Path

from passlib.hash import sha512_crypt

from tasks.data import read_group_data
from tasks.mail import PASSWORDS


def store(secrets: Path, address: str, password: str) -> None:
    """Set the hash of `address` in secrets/mail-passwords, keeping the others."""
    path = secrets / PASSWORDS
    lines = [line for line in (path.read_text().splitlines() if path.exists() else [])
             if line.split(None, 1)[0] != address]
    lines.append(f"{address} {{SHA512-CRYPT}}{sha512_crypt.using(rounds=100000).hash(password)}")
    secrets.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text("\n".join(sorted(lines)) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("address")
    p.add_argument("--secrets", default=read_group_data("all").get("secrets_dir", "secrets"),
                   help="secrets_dir (default: group_data/all.py's)")
    a = p.parse_args()
    password = getpass.getpass(f"Password for {a.address}: ")
    if len(password) < 12:
        sys.exit("password: use at least 12 characters")
    if getpass.getpass("Again: ") != password:
        sys.exit("password: the two differ; nothing was stored")
    store(Path(a.secrets), a.address.lower(), password)
    print(f"stored the hash of {a.address}'s password in {a.secrets}/{PASSWORDS}; deploy to apply it")


if __name__ == "__main__":
    main()
