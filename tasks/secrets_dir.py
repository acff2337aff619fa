"""Files in secrets_dir, on the operator's machine: the mail users' password hashes, the
zone transfer key, what the relay's TLSA record was. Private from their first byte: the
folder is made 0700 and each file is written 0600 under a temporary name, then renamed in
place, so no other user can ever read it, even for a moment, and a crash leaves the old
file whole.
"""

import os
import tempfile
from pathlib import Path


def write_secret(path: Path, text: str | bytes) -> None:
    """Write `text` (or bytes) to `path` (0600), making its folder (0700) if needed."""
    old = os.umask(0o077)  # also for parent folders makedirs makes
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if path.parent.stat().st_mode & 0o077:  # an older folder, made before this rule
            path.parent.chmod(0o700)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
        try:
            with os.fdopen(fd, "wb" if isinstance(text, bytes) else "w") as f:
                f.write(text)
            os.replace(temporary, path)
        except BaseException:
            os.unlink(temporary)
            raise
    finally:
        os.umask(old)
