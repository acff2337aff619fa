"""The dry run shows what would change: a unified diff of each config file, secrets masked,
and nothing changes on the host."""

import pytest

from tasks import imap

pytestmark = [pytest.mark.zone_server, pytest.mark.mta, pytest.mark.any_release]  # pyinfra's diff, here

HASH = "{SHA512-CRYPT}$6$drysalt$" + "x" * 86


@pytest.mark.lab
def test_dry_run_shows_masked_diffs_and_changes_nothing(deploy, on_server, server):
    jail = "/etc/fail2ban/jail.d/inhouse.local"
    before = on_server.check_output("sha256sum %s %s", jail, imap.PASSWD)
    # A stranger's line in the users' password file: the diff must show it go, hash masked.
    on_server.check_output("printf '%%s\\n' %s >> %s", f"mallory@inhouse.test:{HASH}", imap.PASSWD)
    try:
        result, changed, failed = deploy("--limit", server.name, "--dry", "--diff", "--data", "bans_max_retry=7")
        out = result.stdout + result.stderr
        assert result.returncode == 0 and failed == 0, out[-3000:]
        assert f"Will change {jail}" in out and "- maxretry = " in out and "+ maxretry = 7" in out, out[-3000:]
        assert f"Will change {imap.PASSWD}" in out and "- mallory@inhouse.test:{SHA512-CRYPT}********" in out
        assert "$6$" not in out  # no hash of any user, old or new
        assert on_server.check_output("sha256sum %s", jail) == before.splitlines()[0]
    finally:
        on_server.check_output("sed -i '/^mallory@/d' %s", imap.PASSWD)
    assert on_server.check_output("sha256sum %s %s", jail, imap.PASSWD) == before
