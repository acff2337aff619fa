"""The link from the mail host at home to the relay (tasks/link.py), on the lab's real hosts,
whose kernel has no WireGuard: the deploy's own wg-quick unit falls back to wireguard-go.

- two runs with link_enabled: the first makes each end's key, the second gives each end
  the other's public key; traffic then crosses the link both ways;
- the relay learns where home is from home's packets (no address of home in its config),
  and the link comes back by itself after either end restarts;
- a further run changes nothing; a run without link_enabled takes it down on both ends.
"""


import pytest

from tasks import link
from tests.helpers import wait_until

pytestmark = [pytest.mark.lab("turns the link between the lab's mail host and relay on, then off")]


@pytest.fixture(scope="module")
def relay(lab_host):
    return lab_host("lab2")


def reaches(host, address: str, port: int = 22) -> bool:
    """A TCP connection from `host` to address:port opens (the peer's sshd, across the link)."""
    return host.run("timeout 3 bash -c %s", f"</dev/tcp/{address}/{port}").rc == 0


def test_the_link_from_home_reaches_the_relay_and_comes_back_after_restarts(deploy, site, on_server, relay):
    home_end, hub_end = link.ends(site | {"link_enabled": True})[:2]
    try:
        for _ in range(2):  # keys first, then each end gets the other's
            result, _, failed = deploy("--data", "link_enabled=True")
            assert result.returncode == 0 and failed == 0, result.stderr[-3000:]
        conf = relay.check_output("cat %s", link.CONF)
        assert "Endpoint" not in conf and home_end["ipv4"] not in conf
        assert "PrivateKey" not in conf and "PrivateKey" not in on_server.check_output("cat %s", link.CONF)
        wait_until("home reaches the relay across the link", lambda: reaches(on_server, hub_end["link"]))
        assert reaches(relay, home_end["link"]), "the relay does not reach home across the link"
        # The relay knows where home is only from home's signed packets.
        endpoints = relay.check_output("wg show %s endpoints", link.NAME)
        assert f"{home_end['ipv4']}:" in endpoints, endpoints
        # Either end restarts: the link comes back by itself (home sends across every 20 s).
        relay.check_output("systemctl restart %s", link.UNIT)
        wait_until("the relay reaches home again after its restart", lambda: reaches(relay, home_end["link"]), 90)
        on_server.check_output("systemctl restart %s", link.UNIT)
        wait_until("home reaches the relay again after its restart", lambda: reaches(on_server, hub_end["link"]))
        assert reaches(relay, home_end["link"])
        # Settled: a further run changes nothing.
        result, changed, failed = deploy("--data", "link_enabled=True")
        assert (result.returncode, changed, failed) == (0, 0, 0), result.stdout[-3000:]
    finally:
        result, _, failed = deploy()  # the lab's own data: no link
    assert result.returncode == 0 and failed == 0, result.stderr[-3000:]
    for host in (on_server, relay):
        assert host.run("ip link show %s", link.NAME).rc != 0
        assert not host.file(link.CONF).exists
    result, changed, _ = deploy()
    assert changed == 0, result.stdout[-3000:]
