"""pyinfra deploy of the lab's internet host (lab/root.py publish runs it): bind serving the
pre-signed root, broken.test and outside.test zones from .lab/root; pebble, the ACME CA;
a stock postfix for outside.test (DANE out, mail for carol@outside.test in her Maildir)."""

import json
from io import StringIO
from pathlib import Path

from pyinfra import host
from pyinfra.operations import apt, files, server, systemd

ROOT = Path(__file__).resolve().parent.parent / ".lab" / "root"
ZONES = {".": "root.zone", "broken.test": "broken.test.zone", "outside.test": "outside.test.zone"}

apt.packages(name="Install bind9, pebble, postfix", packages=["bind9", "pebble", "postfix"], no_recommends=True)

# DNS: the root and the lab's own zones.
conf = files.put(
    name="Install named.conf.local",
    src=StringIO("".join(f'zone "{z}" {{ type primary; file "/var/lib/bind/lab-{z}.zone"; }};\n' for z in ZONES)),
    dest="/etc/bind/named.conf.local",
)
options = files.put(
    name="Install named.conf.options",
    src=StringIO(
        'options { directory "/var/cache/bind"; recursion no; dnssec-validation no;\n'
        f'  listen-on {{ {host.data.ipv4}; }}; listen-on-v6 {{ {host.data.ipv6}; }}; }};\n'
    ),
    dest="/etc/bind/named.conf.options",
)
zones = [files.put(name=f"Install the {z} zone", src=str(ROOT / f), dest=f"/var/lib/bind/lab-{z}.zone")
         for z, f in ZONES.items()]
systemd.service(name="Enable named", service="named", running=True, enabled=True)
server.shell(name="Restart named", commands=["systemctl restart named"],
             _if=lambda: any(op.did_change() for op in [conf, options, *zones]))

# ACME: pebble answers on 14000 with a lab-CA certificate; it checks names through the
# local validating resolver and HTTP-01 on port 80, like Let's Encrypt.
pebble = [files.put(name=f"Install pebble's {f}", src=str(ROOT / f), dest=f"/etc/pebble/{f}", mode="640")
          for f in ("pebble.pem", "pebble.key")]
pebble.append(files.put(name="Install pebble's config", dest="/etc/pebble/config.json", src=StringIO(json.dumps({
    "pebble": {"listenAddress": "[::]:14000", "managementListenAddress": "[::]:15000",
               "certificate": "/etc/pebble/pebble.pem", "privateKey": "/etc/pebble/pebble.key",
               "httpPort": 80, "tlsPort": 443,
               # Like a public CA, certificates name where to ask for revocation.
               "ocspResponderURL": f"http://{host.data.ipv4}:4002", "externalAccountBindingRequired": False}}))))
pebble.append(files.put(name="Install lab-pebble.service", dest="/etc/systemd/system/lab-pebble.service", src=StringIO(
    "[Unit]\nDescription=pebble, the lab's ACME CA\nAfter=network-online.target unbound.service\n"
    "[Service]\n"
    # No random sleeps before validation, no nonces refused at random: tests need speed.
    "Environment=PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0\n"
    "ExecStart=/usr/bin/pebble -config /etc/pebble/config.json -dnsserver 127.0.0.1:53\n"
    "[Install]\nWantedBy=multi-user.target\n")))
systemd.service(name="Run pebble", service="lab-pebble", running=True, enabled=True, daemon_reload=True)
server.shell(name="Restart pebble", commands=["systemctl restart lab-pebble"],
             _if=lambda: any(op.did_change() for op in pebble))

# outside.test: a stock postfix with TLS and DANE, mail for local users in ~/Maildir.
server.user(name="Add carol", user="carol", home="/home/carol", create_home=True)
mta = [files.put(name=f"Install postfix's {f}", src=str(ROOT / f"outside.{f}"), dest=f"/etc/postfix/outside.{f}",
                 mode="600" if f == "key" else "644") for f in ("pem", "key")]
mta.append(files.put(name="Install postfix's main.cf", dest="/etc/postfix/main.cf", src=StringIO(
    "compatibility_level = 3.6\nmyhostname = mail.outside.test\nmydomain = outside.test\nmyorigin = $mydomain\n"
    "mydestination = $myhostname, $mydomain, localhost\ninet_interfaces = all\ninet_protocols = all\n"
    "mynetworks = 127.0.0.0/8 [::1]/128\nalias_maps =\nalias_database =\nhome_mailbox = Maildir/\n"
    "smtpd_tls_chain_files = /etc/postfix/outside.key, /etc/postfix/outside.pem\n"
    "smtpd_tls_security_level = may\nsmtpd_tls_loglevel = 1\nsmtpd_tls_received_header = yes\n"
    "smtp_dns_support_level = dnssec\nsmtp_tls_security_level = dane\nsmtp_tls_loglevel = 1\n")))
systemd.service(name="Run postfix", service="postfix", running=True, enabled=True)
server.shell(name="Restart postfix", commands=["systemctl restart postfix"],
             _if=lambda: any(op.did_change() for op in mta))
