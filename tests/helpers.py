"""What the tests share besides fixtures: the places they look from (Vantage), how their
clients reach a host as pyinfra does, the internet the server lives in, and connections by
name to an address of our choosing."""

import base64
import email
import email.policy
import hashlib
import imaplib
import os
import smtplib
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pyinfra.connectors.ssh import connector_data_meta

REPO = Path(__file__).resolve().parent.parent
LAB = REPO / ".lab"


@dataclass(frozen=True)
class Inventory:
    """The hosts of the inventory under test, each with its data merged as pyinfra merges
    it, and whether it is the lab's (its spare hosts and network namespaces)."""

    hosts: dict[str, dict]
    is_lab: bool


def pyinfra_ssh(data: dict, key: str) -> str | None:
    """A setting of pyinfra's ssh connector for a host: its data, else pyinfra's default."""
    value = data.get(key)
    return value if value not in (None, "") else connector_data_meta[key].default


def known_hosts_file(data: dict) -> str:
    return os.path.expanduser(pyinfra_ssh(data, "ssh_known_hosts_file") or "~/.ssh/known_hosts")


def ssh_client_options(name: str, data: dict) -> list[str]:
    """OpenSSH options that reach a host as pyinfra's ssh connector does, from the same host
    data: its config file (default ~/.ssh/config), port, known-hosts file (default
    ~/.ssh/known_hosts) and strictness (default accept-new). The host key is looked up under
    the name pyinfra connects to (ssh_hostname, "[name]:port" off port 22, as paramiko
    does), whichever of the host's addresses a test connects to."""
    hostname = data.get("ssh_hostname") or name
    port = int(data.get("ssh_port") or 22)
    config = pyinfra_ssh(data, "ssh_config_file") or os.path.expanduser("~/.ssh/config")
    return ["-F", config if Path(config).exists() else "/dev/null", "-p", str(port),
            "-o", f"HostKeyAlias={hostname if port == 22 else f'[{hostname}]:{port}'}",
            "-o", f"UserKnownHostsFile={known_hosts_file(data)}",
            "-o", f"StrictHostKeyChecking={pyinfra_ssh(data, 'ssh_strict_host_key_checking')}"]


@dataclass
class Vantage:
    """A host to look from or at: a lab host's network namespace, or this machine (netns None)."""

    name: str
    ipv4: str
    ipv6: str | None
    netns: str | None
    key: str | None  # SSH key to log in with; None: the user's own
    ssh_options: tuple[str, ...] = ()  # how clients reach this host's sshd (ssh_client_options)

    def run(self, *cmd: str, timeout: float = 60) -> subprocess.CompletedProcess:
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        return subprocess.run([*prefix, *cmd], capture_output=True, text=True, timeout=timeout)

    def route_to(self, address: str | None, what: str) -> str:
        """`address` once we know this vantage has a route to it; skips (listed by -ra) when
        there is no such address (the server has no IPv6) or no route (this machine has none)."""
        if not address:
            pytest.skip(f"{what}: none in the inventory")
        if self.run("ip", "route", "get", address, timeout=10).returncode != 0:
            pytest.skip(f"{what}: {self.name} has no route to {address}")
        return address

    def reach(self, target: "Vantage", family: str = "ipv4") -> str:
        return self.route_to(getattr(target, family), f"{target.name}'s {family} address")

    def ssh(self, target: "Vantage", user: str, *options: str, family: str = "ipv4", command: str = "true"):
        """An SSH login from here to `target` as a client would try, trusting only the host
        keys pyinfra trusts for it."""
        key = ["-i", os.path.expanduser(self.key), "-o", "IdentitiesOnly=yes"] if self.key else []
        return self.run(
            "timeout", "20", "ssh", *target.ssh_options, *key, "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
            *options, f"{user}@{self.reach(target, family)}", command, timeout=30,
        )

    def tcp_open(self, target: str, port: int) -> bool:
        """Whether a TCP connection from here to target:port is accepted."""
        r = self.run("timeout", "3", "bash", "-c", f"exec 3<>/dev/tcp/{target}/{port}", timeout=10)
        return r.returncode == 0


# Where the tests' own clients run (dnspython, smtplib, ssl): this machine.
HERE = Vantage("this machine", "", None, None, None)


def vantage(inventory: Inventory, name: str) -> Vantage:
    data = inventory.hosts[name]
    return Vantage(name, data.get("ipv4") or data.get("ssh_hostname") or name, data.get("ipv6"),
                   f"ihlab-{name}" if inventory.is_lab else None, data.get("ssh_key"),
                   tuple(ssh_client_options(name, data)))


def write_ssh_config(path: Path, name: str, data: dict) -> Path:
    """OpenSSH client config for testinfra, from the host data pyinfra connects with: its
    user (the admin, with sudo), key, port and host keys; one shared connection, its socket
    beside this file (so a lab run's connection is never reused for a real server's)."""
    hostname = data.get("ssh_hostname") or name
    lines = [f"Host {name}", f"HostName {hostname}", f"User {data.get('ssh_user') or data['admin_user']}",
             f"Port {int(data.get('ssh_port') or 22)}", "BatchMode yes", "ControlMaster auto",
             f"ControlPath {path.parent}/cm-%C", "ControlPersist 60", "ServerAliveInterval 5",
             f"UserKnownHostsFile {known_hosts_file(data)}",
             f"StrictHostKeyChecking {pyinfra_ssh(data, 'ssh_strict_host_key_checking')}"]
    if data.get("ssh_key"):
        lines += [f"IdentityFile {os.path.expanduser(data['ssh_key'])}", "IdentitiesOnly yes"]
    text = "\n  ".join(lines) + "\n"
    # Then what pyinfra also reads (ProxyJump and the like); the values above come first and win.
    config = pyinfra_ssh(data, "ssh_config_file") or os.path.expanduser("~/.ssh/config")
    if Path(config).exists():
        text += f"Host *\n  Include {Path(config).resolve()}\n"
    path.write_text(text)
    return path


@dataclass
class World:
    """The internet the server lives in, as its inventory tells: the lab's own (a root zone,
    an ACME CA and outside.test of its own, also in a copy of the lab's inventory) or the
    real one. Decides whom the tests trust and what they call a stranger's address."""

    anchors: list[str]  # DS of the inventory's own root zone; empty: the real root (delv knows it)
    ca_roots: str | None  # PEM roots of the inventory's own ACME CA; None: this machine's trust store
    stranger: str  # a mail domain that is not ours, for relay attempts
    stranger_literal: str  # an address literal that is not ours


# The mail ports users meet, with the STARTTLS protocol of each (None: TLS at once).
MAIL_PORTS = {25: "smtp", 143: "imap", 465: None, 587: "smtp", 993: None}
# A hidden home's front door, the relay (tasks/proxy.py): the MX, submissions and IMAPS.
FRONT_DOOR_PORTS = {25: "smtp", 465: None, 993: None}


class Endpoint:
    """Connections to a name at an address of our choosing (lab names are not in this
    machine's DNS); certificates are checked against the name. `ports`: the mail ports it
    serves."""

    def __init__(self, name: str, address: str, context: ssl.SSLContext, ports: dict | None = None):
        self.name, self.address, self.context = name, address, context
        self.ports = MAIL_PORTS if ports is None else ports

    def smtp(self, port: int, tls: bool = True) -> smtplib.SMTP:
        """A session on `port`: TLS at once on 465, STARTTLS first on the others (tls)."""
        address = self.address

        class Connection(smtplib.SMTP_SSL if port == 465 else smtplib.SMTP):
            def _get_socket(self, host, port, timeout):
                sock = socket.create_connection((address, port), timeout)
                return self.context.wrap_socket(sock, server_hostname=host) if port == 465 else sock

        kwargs = {"context": self.context} if port == 465 else {}
        s = Connection(self.name, port, local_hostname="client.outside.test", timeout=20, **kwargs)
        s.ehlo()
        if tls and port != 465:
            s.starttls(context=self.context)
            s.ehlo()
        return s

    def imap(self) -> imaplib.IMAP4_SSL:
        address = self.address

        class Connection(imaplib.IMAP4_SSL):
            def _create_socket(self, timeout):
                sock = socket.create_connection((address, self.port), timeout)
                return self.ssl_context.wrap_socket(sock, server_hostname=self.host)

        return Connection(self.name, 993, ssl_context=self.context, timeout=20)




OUTSIDE_USER = "carol@outside.test"


def inbox(mx: Endpoint, user: str, password: str, token: str, count: int = 1,
          timeout: float = 30) -> list[email.message.Message]:
    """The messages in `user`'s INBOX whose subject has `token`, read over IMAPS, once
    there are `count` of them (or time is up)."""
    deadline = time.time() + timeout
    while True:
        with mx.imap() as imap:
            imap.login(user, password)
            imap.select("INBOX", readonly=True)
            _, ids = imap.search(None, "SUBJECT", token)
            found = [email.message_from_bytes(imap.fetch(i, "(RFC822)")[1][0][1], policy=email.policy.default)
                     for i in ids[0].split()]
        if len(found) >= count or time.time() > deadline:
            return found
        time.sleep(0.5)


def outside_maildir(outside, token: str, timeout: float = 30) -> bytes:
    """The message with `token` in carol@outside.test's Maildir, as delivered."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = outside.run("grep -l -r -- %s /home/carol/Maildir/new", token)
        if r.rc == 0:
            return outside.check_output("cat %s", r.stdout.split()[0]).encode() + b"\n"
        time.sleep(0.5)
    pytest.fail(f"no message {token} reached {OUTSIDE_USER}")


def send_from_outside(outside, recipient: str, subject: str, headers: str = "") -> None:
    """Mail sent by outside.test's own MTA: MX lookup, DANE, SPF from its address, as on
    the internet; `headers`: more header lines ("Name: value\n" each)."""
    message = f"From: {OUTSIDE_USER}\nTo: {recipient}\nSubject: {subject}\n{headers}\nhello\n"
    outside.check_output("echo %s | base64 -d | sendmail -f %s %s",
                         base64.b64encode(message.encode()).decode(), OUTSIDE_USER, recipient)


def served_certificate(mx: Endpoint, port: int) -> x509.Certificate:
    """The leaf a client gets on `port`, verified against the CA for the host's name
    (STARTTLS on 25, 587 and 143)."""
    if port in (25, 587):
        with mx.smtp(port) as s:
            der = s.sock.getpeercert(binary_form=True)
    elif port == 143:
        with socket.create_connection((mx.address, port), timeout=10) as sock:
            sock.recv(1024)  # the greeting
            sock.sendall(b"a STARTTLS\r\n")
            assert sock.recv(1024).startswith(b"a OK"), "no STARTTLS on 143"
            with mx.context.wrap_socket(sock, server_hostname=mx.name) as tls:
                der = tls.getpeercert(binary_form=True)
    else:
        with socket.create_connection((mx.address, port), timeout=10) as sock, \
                mx.context.wrap_socket(sock, server_hostname=mx.name) as tls:
            der = tls.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der)


def spki_sha256(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).hexdigest()


def wait_until(what: str, test, timeout: float = 45) -> None:
    """Poll `test` each second until it is true; fail naming `what` when time is up."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if test():
            return
        time.sleep(1)
    raise AssertionError(f"{what}: not within {timeout:.0f} s")


def play_registrar(*data: str) -> None:
    """The lab root delegates the site's zones as the registrar command prints them for
    this data (`--data key=value` as given to the deploy): lab/root.py publish."""
    r = subprocess.run([str(REPO / ".venv/bin/python"), str(REPO / "lab/root.py"), "publish", *data],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
