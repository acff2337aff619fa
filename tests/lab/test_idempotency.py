"""A second deploy changes nothing and restarts nothing."""

import pytest

pytestmark = [pytest.mark.zone_server, pytest.mark.mta]


def started(on_server, services) -> dict:
    return {s: on_server.check_output("systemctl show -P ActiveEnterTimestampMonotonic %s", s) for s in services}


@pytest.mark.lab("deploys")
def test_second_deploy_changes_and_restarts_nothing(deploy, on_server, services):
    before = started(on_server, services)
    rules = on_server.check_output("iptables-save -c | grep -v '^#'")
    result, changed, failed = deploy()
    assert result.returncode == 0, result.stdout[-3000:]
    assert (changed, failed) == (0, 0), result.stdout[-3000:]
    assert started(on_server, services) == before
    # Rule counters survive: the rules were not reloaded either.
    assert on_server.check_output("iptables-save -c | grep -v '^#'").count("[") >= rules.count("[")
