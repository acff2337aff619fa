"""Milters for postfix: opendkim (tasks/dkim.py), opendmarc (tasks/dmarc.py) and rspamd's
proxy (tasks/spam.py) listen on UNIX sockets inside postfix's chroot, where its smtpd and
cleanup (chrooted, master.cf) find them.

Not TCP on loopback: postfix writes the milter's small commands (one per header, and no
reply is awaited for most) without TCP_NODELAY, so Nagle's algorithm and the milter's
delayed ACK hold each message about 40 ms twice, per milter. Measured in the lab: 85 ms a
message for each of opendkim and opendmarc over loopback TCP, less than 1 ms over a UNIX
socket; port 25 went from 61 to several hundred messages a second.

Each milter gets a folder of its own in postfix's spool, made as its service starts
(a systemd drop-in), setgid to postfix's group: the socket the milter makes there belongs
to that group, so postfix reaches it without joining the milter's group; nobody else does.
"""

from dataclasses import dataclass

from tasks.util import ConfigFile, render

SPOOL = "/var/spool/postfix"  # postfix's chroot (queue_directory)
DROPINS = "/etc/systemd/system/"  # the drop-ins' prefix, for reload_unit_files


@dataclass(frozen=True)
class Milter:
    name: str  # the folder and the socket's name
    unit: str  # the systemd service that makes the socket
    user: str  # who owns the folder (the milter's own user)

    @property
    def socket(self) -> str:
        """The socket's path on the host, as the milter is told."""
        return f"{SPOOL}/{self.name}/{self.name}.sock"

    @property
    def address(self) -> str:
        """The socket as postfix's chrooted daemons name it (smtpd_milters)."""
        return f"unix:/{self.name}/{self.name}.sock"

    @property
    def config(self) -> str:
        """The milter's own config file (Debian's path)."""
        return f"/etc/{self.unit}.conf"

    @property
    def dropin_path(self) -> str:
        return f"{DROPINS}{self.unit}.service.d/inhouse-milter.conf"

    def dropin(self, data: dict) -> ConfigFile:
        """The drop-in that makes the folder, and removes a socket left by a crash or a
        power cut (the spool survives a reboot; the milter would not bind again)."""
        return ConfigFile(self.dropin_path, render("milter/dropin.conf.j2", data, milter=self, spool=SPOOL))


DKIM = Milter("opendkim", "opendkim", "opendkim")
DMARC = Milter("opendmarc", "opendmarc", "opendmarc")
SPAM = Milter("rspamd", "rspamd", "_rspamd")
