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

from tasks.data import InventoryError, read_group_data
from tasks.mail import PASSWORDS, read_passwords
from tasks.secrets_dir import write_secret
from tasks.validate import is_mail_address, is_one_line


def store(secrets: Path, address: str, password: str) -> None:
    """Set the hash of `address` in secrets/mail-passwords, keeping the others. A file
    with broken lines is left alone (ValueError): they may be someone's only hash."""
    hashes, broken = read_passwords({"secrets_dir": str(secrets)})
    if broken:
        raise ValueError(broken[0])
    hashes[address] = f"{{SHA512-CRYPT}}{sha512_crypt.using(rounds=100000).hash(password)}"
    write_secret(secrets / PASSWORDS, "".join(f"{a} {h}\n" for a, h in sorted(hashes.items())))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("address", help="the mail user, like alice@example.org")
    p.add_argument("--secrets", help="secrets_dir (default: group_data/all.py's)")
    a = p.parse_args()
    if not is_mail_address(a.address):
        p.error(f"address: {a.address[:80]!r} is not an address like alice@example.org")
    try:
        secrets = a.secrets or read_group_data("all").get("secrets_dir", "secrets")
    except InventoryError as e:
        p.error(f"{e}; give --secrets DIR")
    if not is_one_line(secrets) or not secrets.strip():
        p.error("--secrets: not a folder name")
    try:
        password = getpass.getpass(f"Password for {a.address}: ")
        if len(password) < 12:
            sys.exit("password: use at least 12 characters; nothing was stored")
        if getpass.getpass("Again: ") != password:
            sys.exit("password: the two differ; nothing was stored")
    except (KeyboardInterrupt, EOFError):
        sys.exit("\npassword: nothing was stored")
    try:
        store(Path(secrets), a.address.lower(), password)
    except (OSError, ValueError) as e:
        sys.exit(f"password: nothing was stored: {e}")
    print(f"stored the hash of {a.address}'s password in {secrets}/{PASSWORDS}; deploy to apply it")


if __name__ == "__main__":
    main()
