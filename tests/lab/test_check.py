"""The check against production (tasks/check.py), run as the README gives it, against the
lab: on a healthy lab it passes; each fault it can report is provoked once on the real
hosts (a name server down, a secondary out of sync, SPF, DMARC and TLS-RPT records gone
wrong, the MTA-STS policy not served, a key on port 25 that no TLSA record names and a
certificate about to expire, the relay's MTA down, mail stuck on the relay), reported
with its place, then put right, and the check passes again.
"""

import io
import json
import subprocess
import sys
import tarfile
import time

import pytest

from tasks import dkim, keys, tls
from tests.helpers import LAB, REPO

pytestmark = [pytest.mark.lab("stops the lab's services and breaks its records, then puts them right"),
              pytest.mark.zone_server, pytest.mark.mta,
              pytest.mark.any_release]  # the check runs here; the hosts only serve what it reads


@pytest.fixture(scope="module")
def run_check(world, tmp_path_factory):
    roots = tmp_path_factory.mktemp("check") / "roots.pem"
    roots.write_text(world.ca_roots)

    def run() -> tuple[int, str]:
        r = subprocess.run([sys.executable, "-m", "tasks.check", str(LAB / "inventory.py"), "--ca", str(roots)],
                           cwd=REPO, capture_output=True, text=True, timeout=300)
        return r.returncode, r.stdout + r.stderr

    return run


def fails(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("FAIL  ")]


def passes(run_check, deadline: float = 60) -> str:
    """The check passes, once what was put right has settled (a zone transfer, a reload)."""
    end = time.time() + deadline
    while True:
        rc, out = run_check()
        if rc == 0 or time.time() > end:
            assert rc == 0, out
            return out
        time.sleep(2)


def check_while(run_check, host, broken: str, fixed: str) -> tuple[int, str]:
    """The check's answer while `broken` holds on the host; `fixed` puts it right, whatever
    the check said."""
    host.check_output(broken)
    try:
        return run_check()
    finally:
        host.check_output(fixed)


@pytest.fixture(scope="module")
def relay(lab_host):
    return lab_host("lab2")


def test_a_healthy_lab_passes(run_check):
    out = passes(run_check)
    assert "validates from the root on 4 name server addresses, all in sync" in out, out
    assert out.count("the key served is the one the TLSA record names") == 4, out  # 2 hosts, IPv4 and IPv6


def test_a_name_server_down_is_reported_on_each_of_its_addresses(run_check, relay, mail_data):
    unit = {"bind": "named", "nsd": "nsd"}[mail_data["zone_server"]]
    rc, out = check_while(run_check, relay, f"systemctl stop {unit}", f"systemctl start {unit}")
    assert rc == 1, out
    for zone in ("inhouse.test", "second.test"):
        for address in ("10.77.0.12", "fd77:1ab::c"):
            assert any(line.startswith(f"FAIL  {zone} at relay.inhouse.test ({address}): ") and "did not answer" in line
                       for line in fails(out)), out
    passes(run_check)


def test_a_secondary_out_of_sync_is_reported(run_check, relay, deploy, server, mail_data):
    """The relay hears neither NOTIFY nor transfers from the master; the master's zone changes."""
    master = mail_data["zone_hosts"]["mail"][0]
    rules = [f"iptables -I INPUT -s {master['ipv4']} -j DROP", f"ip6tables -I INPUT -s {master['ipv6']} -j DROP"]
    relay.check_output("; ".join(rules))
    try:
        probe = {"inhouse.test": [{"name": "check-probe", "type": "TXT", "data": f'"{time.time():.0f}"'}]}
        result, _, failed = deploy("--limit", server.name, "--data", f"zone_records={json.dumps(probe)}")
        assert result.returncode == 0 and failed == 0, result.stderr[-2000:]
        rc, out = run_check()
    finally:
        relay.check_output("; ".join(r.replace(" -I ", " -D ") for r in rules))
    assert rc == 1, out
    assert any(line.startswith("FAIL  inhouse.test: the name servers serve different data") for line in fails(out)), out
    result, _, failed = deploy("--limit", server.name)  # the probe record goes; NOTIFY gets through now
    assert result.returncode == 0 and failed == 0, result.stderr[-2000:]
    passes(run_check)


def check_with_data(run_check, deploy, server, *data: str) -> tuple[int, str]:
    """The check's answer after a deploy of the mail host with `data` (key=value); a deploy
    with the inventory's own data puts it back."""
    result, _, failed = deploy("--limit", server.name, *[a for d in data for a in ("--data", d)])
    try:
        assert result.returncode == 0 and failed == 0, result.stderr[-2000:]
        end = time.time() + 60
        while True:  # the secondary takes the new zone a moment after NOTIFY: judge it then
            rc, out = run_check()
            if "serve different data" not in out or time.time() > end:
                return rc, out
            time.sleep(2)
    finally:
        result, _, failed = deploy("--limit", server.name)
        assert result.returncode == 0 and failed == 0, result.stderr[-2000:]


def test_dmarc_and_tls_rpt_records_gone_wrong_are_reported(run_check, deploy, server):
    """A second DMARC and TLS-RPT record beside ours: receivers then see neither (RFC 7489
    section 6.6.3, RFC 8460 section 3)."""
    extra = {"inhouse.test": [{"name": "_dmarc", "type": "TXT", "data": '"v=DMARC1; p=none"'},
                              {"name": "_smtp._tls", "type": "TXT", "data": '"v=TLSRPTv1; rua=mailto:x@inhouse.test"'}]}
    rc, out = check_with_data(run_check, deploy, server, f"zone_records={json.dumps(extra)}")
    assert rc == 1, out
    assert [line.split(":")[0] + ":" + line.split(":")[1] for line in fails(out)] == [
        "FAIL  inhouse.test: DMARC record missing or malformed",
        "FAIL  inhouse.test: TLS-RPT record missing or malformed",
    ], out
    passes(run_check)


def test_an_spf_record_that_leaves_out_an_mx_is_reported(run_check, deploy, server):
    rc, out = check_with_data(run_check, deploy, server, "zone_spf=v=spf1 ip4:192.0.2.1 -all")
    assert rc == 1, out
    for zone in ("inhouse.test", "second.test"):
        assert any(line.startswith(f"FAIL  {zone}: SPF does not authorise the MX addresses 10.77.0.11")
                   for line in fails(out)), out
    passes(run_check)


def test_an_mta_sts_policy_not_served_is_reported(run_check, on_server):
    rc, out = check_while(run_check, on_server, "systemctl stop nginx", "systemctl start nginx")
    assert rc == 1, out
    for zone in ("inhouse.test", "second.test"):
        assert any(line.startswith(f"FAIL  {zone}: the MTA-STS policy at https://mta-sts.{zone}/ cannot be fetched")
                   for line in fails(out)), out
    passes(run_check)


def test_a_key_no_tlsa_names_and_a_certificate_near_expiry_are_reported(run_check, relay, mail_data):
    """The relay serves a key of its own making, with a certificate for two days: what a
    hand-made renewal does to DANE."""
    unit = {"postfix": "postfix", "exim4": "exim4"}[mail_data["mta"]]
    relay.check_output(f"cp -a {tls.DIR} /root/tls-before-check")
    relay.check_output(f"cd {tls.DIR} && openssl req -x509 -newkey rsa:2048 -nodes -keyout /root/k.pem "
                       "-out /root/c.pem -subj /CN=relay.inhouse.test -days 2 2>/dev/null "
                       f"&& cat /root/k.pem > privkey.pem && cat /root/c.pem > fullchain.pem "
                       f"&& rm /root/k.pem /root/c.pem && systemctl reload {unit}")
    try:
        time.sleep(2)
        rc, out = run_check()
    finally:
        relay.check_output(f"rm -rf {tls.DIR} && mv /root/tls-before-check {tls.DIR} && systemctl reload {unit}")
    assert rc == 1, out
    for address in ("10.77.0.12", "fd77:1ab::c"):
        where = f"FAIL  relay.inhouse.test ({address}) port 25: "
        assert f"{where}the key served is not the one the TLSA record names" in out, out
        assert f"{where}the certificate expires in 1 days" in out, out
    passes(run_check)


def test_a_relay_that_does_not_answer_and_old_mail_on_it_are_reported(run_check, relay, mail_data):
    unit = {"postfix": "postfix", "exim4": "exim4"}[mail_data["mta"]]
    stuck = {"postfix": "/var/spool/postfix/deferred/F/FCHECKPROBE",
             "exim4": "/var/spool/exim4/input/1checkprobe-000000-00-H"}[mail_data["mta"]]
    owner = {"postfix": "postfix", "exim4": "Debian-exim"}[mail_data["mta"]]  # as the MTA makes its folders:
    # `postfix check` refuses a config while a queue folder is not the MTA's own
    rc, out = check_while(run_check, relay, f"systemctl stop {unit}; install -d -o {owner} -m 700 "
                          f"{stuck.rsplit('/', 1)[0]} && touch -d '2 days ago' {stuck}",
                          f"rm -f {stuck}; systemctl start {unit}")
    assert rc == 1, out
    assert "FAIL  relay.inhouse.test (10.77.0.12) port 25: no TLS session" in out, out
    assert "FAIL  relay.inhouse.test queue: 1 messages waiting more than 24 hours" in out, out
    passes(run_check)


def test_a_dkim_record_that_is_not_the_signing_key_is_reported(run_check, mail_data):
    """The key escrow says which key the mail host signs with; here it names another one,
    as after a key made by hand with no record published."""
    path = keys.escrow_path(mail_data)
    kept = path.read_bytes()
    member = dkim.CURRENT.lstrip("/")
    out_tar = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(kept), mode="r:gz") as old, tarfile.open(fileobj=out_tar, mode="w:gz") as new:
        for info in old.getmembers():
            data = old.extractfile(info).read() if info.isfile() else None
            if info.name == member:
                selector = data.decode().split()[0]
                data = f"{selector}\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAnotthekey\n".encode()
                info.size = len(data)
            new.addfile(info, io.BytesIO(data) if data is not None else None)
    path.write_bytes(out_tar.getvalue())
    try:
        rc, out = run_check()
    finally:
        path.write_bytes(kept)
    assert rc == 1, out
    for zone in ("inhouse.test", "second.test"):
        assert f"FAIL  {zone}: DKIM record of selector {selector} is not the key the mail host signs with" in out, out
    passes(run_check)
