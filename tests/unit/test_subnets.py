import concurrent.futures
import ipaddress

import pytest

from harness.lab import subnets

N = ipaddress.IPv4Network


def test_never_a_subnet_that_overlaps_one_in_use():
    used = [N("10.199.0.0/24"), N("10.199.2.8/29")]
    s = subnets.Subnets("10.199.0.0/22", lambda: used)
    got = [s.acquire() for _ in range(3 * 32 - 1)]  # every /29 of the /22 but the 33 in use
    assert len(set(got)) == len(got)
    assert not any(n.overlaps(u) for n in got for u in used)
    assert all(n.prefixlen == 29 and n.subnet_of(s.pool) for n in got)
    with pytest.raises(subnets.Exhausted):
        s.acquire()


def test_released_on_teardown_and_refused_ones_skipped():
    s = subnets.Subnets("10.199.0.0/28", list)  # two /29s
    a, b = s.acquire(), s.acquire()
    with pytest.raises(subnets.Exhausted):
        s.acquire()
    s.release(a)
    assert s.acquire() == a
    s.refused(b)  # the engine said another run has it
    with pytest.raises(subnets.Exhausted):
        s.acquire()


def test_threads_never_get_the_same_subnet():
    s = subnets.Subnets("10.199.0.0/16", lambda: [N("10.199.128.0/17")])
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        got = list(pool.map(lambda _: s.acquire(), range(500)))
    assert len(set(got)) == 500 and not any(n.subnet_of(N("10.199.128.0/17")) for n in got)


def test_host_routes_from_the_kernels_table(tmp_path):
    table = tmp_path / "route"
    table.write_text("Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n"
                     "eth0\t00000000\t0100A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
                     "eth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
                     "docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n")
    assert subnets.host_routes(table) == [N("192.168.0.0/24"), N("172.17.0.0/16")]


def test_a_pool_too_small_for_a_trial_is_refused():
    with pytest.raises(ValueError):
        subnets.Subnets("10.199.0.0/30", list)
