"""Unattended upgrades: switched on daily, limited to Debian's security and point updates."""


def test_daily_upgrades_are_on(on_server):
    config = on_server.check_output("apt-config dump")
    assert 'APT::Periodic::Unattended-Upgrade "1";' in config
    assert 'APT::Periodic::Update-Package-Lists "1";' in config
    for timer in ("apt-daily.timer", "apt-daily-upgrade.timer"):
        assert on_server.service(timer).is_running and on_server.service(timer).is_enabled


def test_unattended_upgrade_runs_and_takes_security_updates(on_server):
    r = on_server.run("unattended-upgrade --dry-run --debug 2>&1")
    assert r.rc == 0, r.stdout
    assert "Allowed origins are:" in r.stdout and "Debian-Security" in r.stdout.split("Allowed origins are:")[1]
