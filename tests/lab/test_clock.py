"""The clock: chrony runs (in a container too, without setting the clock) and the time
zone is the one in the data."""


def test_chrony_runs_and_answers(on_server):
    chrony = on_server.service("chrony")
    assert chrony.is_running and chrony.is_enabled
    assert on_server.run("chronyc -n tracking").rc == 0


def test_time_zone_is_the_data_one(on_server, site):
    assert on_server.check_output("readlink /etc/localtime") == f"/usr/share/zoneinfo/{site['timezone']}"
    offset = on_server.check_output("TZ=%s date +%%z", site["timezone"])
    assert on_server.check_output("date +%z") == offset
