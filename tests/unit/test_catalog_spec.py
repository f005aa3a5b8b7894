"""The catalog's case variables: how they parse, how they are refused, what they plan."""

import pytest

from harness import plan, spec
from harness.errors import SpecError
from harness.lab import roles
from tests.unit import specs
from tests.unit.specs import BASE


def parse(text: str) -> spec.Experiment:
    return spec.parse(BASE + text, "exp.yaml")


def error(text: str) -> str:
    return specs.error(BASE + text)


def test_new_variables_and_their_defaults():
    (case,) = parse("cases:\n  - {server_stop: sigkill, connections: 3, watch_client: true}\n").cases
    p = case.params
    assert (p.server_stop, p.connections, p.watch_client, p.client_port, p.final_ack_reset) == \
        ("sigkill", 3, True, None, False)
    (default,) = parse("cases: [{}]\n").cases
    assert default.params.to_json()["server_stop"] == "sigint"
    assert default.params.to_json()["server_sysctls"] == {} and default.params.watches_client is False


def test_sysctls_are_kept_as_written_in_name_order():
    (case,) = parse("cases:\n  - client_sysctls: {net.ipv4.tcp_retries2: 3, net.ipv4.ip_local_port_range: "
                    "'40000 40100'}\n").cases
    assert case.params.client_sysctls == (("net.ipv4.ip_local_port_range", "40000 40100"),
                                          ("net.ipv4.tcp_retries2", 3))
    assert case.params.to_json()["client_sysctls"] == {"net.ipv4.ip_local_port_range": "40000 40100",
                                                       "net.ipv4.tcp_retries2": 3}
    assert "client net.ipv4.tcp_retries2=3" in case.params.label()


def test_sysctls_as_matrix_values_and_in_where():
    exp = parse("matrix:\n  client_sysctls: [{net.ipv4.tcp_orphan_retries: 2}, {net.ipv4.tcp_orphan_retries: 4}]\n"
                "expect:\n  - where: {client_sysctls: {net.ipv4.tcp_orphan_retries: 4}}\n    fin_retransmits: 5\n")
    cases = plan.cases(exp)
    assert [c.params.sysctls("client") for c in cases] == [{"net.ipv4.tcp_orphan_retries": 2},
                                                          {"net.ipv4.tcp_orphan_retries": 4}]
    assert [exp.expect[0].applies(c) for c in cases] == [False, True]


def test_a_fixed_client_port_means_the_client_is_watched():
    (case,) = parse("cases:\n  - {close_first: client, client_port: 40000}\n").cases
    assert case.params.watches_client and case.params.to_json()["watch_client"] is True


def test_sysctl_fields_name_where_each_value_is_first_written():
    exp = parse("matrix:\n  server_sysctls: [{net.ipv4.tcp_rfc1337: 0}, {net.ipv4.tcp_rfc1337: 1}]\n"
                "cases:\n  - {close_first: client, client_sysctls: {net.ipv4.tcp_rfc1337: 1}}\n")
    assert spec.sysctl_fields(exp) == {
        ("server", "net.ipv4.tcp_rfc1337", "0"): "matrix.server_sysctls[0].net.ipv4.tcp_rfc1337",
        ("server", "net.ipv4.tcp_rfc1337", "1"): "matrix.server_sysctls[1].net.ipv4.tcp_rfc1337",
        ("client", "net.ipv4.tcp_rfc1337", "1"): "cases[0].client_sysctls.net.ipv4.tcp_rfc1337",
    }


@pytest.mark.parametrize("text, field, allowed", [
    ("cases:\n  - server_stop: kill\n", "cases[0].server_stop", "sigint, sigkill, close, linger0"),
    ("cases:\n  - connections: 0\n", "cases[0].connections", "from 1 to 32"),
    ("cases:\n  - connections: 33\n", "cases[0].connections", "from 1 to 32"),
    ("cases:\n  - client_port: 80\n", "cases[0].client_port", "from 1024 to 65535"),
    ("cases:\n  - watch_client: 1\n", "cases[0].watch_client", "true, false"),
    ("cases:\n  - final_ack_reset: yes\n", "cases[0].final_ack_reset", "true, false"),
    ("cases:\n  - server_sysctls: [net.ipv4.tcp_rfc1337]\n", "cases[0].server_sysctls", "a mapping of net.*"),
    ("cases:\n  - server_sysctls: {kernel.shmmax: 1}\n", "cases[0].server_sysctls", "under net."),
    ("cases:\n  - server_sysctls: {net/ipv4/tcp_rfc1337: 1}\n", "cases[0].server_sysctls", "under net."),
    ("cases:\n  - client_sysctls: {net.ipv4..x: 1}\n", "cases[0].client_sysctls", "under net."),
    ("cases:\n  - client_sysctls: {net.ipv4.tcp_rfc1337: true}\n", "cases[0].client_sysctls.net.ipv4.tcp_rfc1337",
     "a whole number or a string"),
    ("cases:\n  - client_sysctls: {net.ipv4.tcp_rfc1337: 0.5}\n", "cases[0].client_sysctls.net.ipv4.tcp_rfc1337",
     "a whole number or a string"),
    ("cases:\n  - client_sysctls: {net.ipv4.tcp_rfc1337: \"1\\e[2J\"}\n",
     "cases[0].client_sysctls.net.ipv4.tcp_rfc1337", "printable text"),
    ("matrix:\n  server_sysctls: [1]\n", "matrix.server_sysctls[0]", "a mapping of net.*"),
    # variables that cannot go together, in one line naming the case
    ("cases:\n  - {close_first: client, server_stop: sigkill}\n", "cases[0]", "needs close_first: server"),
    ("cases:\n  - {server_stop: linger0, final_ack_loss: 1}\n", "cases[0]", "no final ACK"),
    ("cases:\n  - {connections: 2, final_ack_loss: all}\n", "cases[0]", "need connections: 1"),
    ("cases:\n  - {final_ack_reset: true, final_ack_loss: all}\n", "cases[0]", "final_ack_loss 0 or k"),
    ("cases:\n  - {client_port: 40000, connections: 2}\n", "cases[0]", "client_port needs connections: 1"),
    ("cases:\n  - {close_first: client, keep_restarted: true}\n", "cases[0]", "keep_restarted needs close_first"),
    ("cases:\n  - {keep_restarted: 1}\n", "cases[0].keep_restarted", "true, false"),
    ("cases:\n  - {client_reuseaddr: true}\n", "cases[0]", "client_reuseaddr needs client_port"),
    ("cases:\n  - {close_first: client, client_close: never}\n", "cases[0]", "never needs close_first: server"),
    ("cases:\n  - {client_close: abort, final_ack_loss: 1}\n", "cases[0]", "leaves no final ACK"),
    ("cases:\n  - {client_close: never, watch_client: true}\n", "cases[0]", "cannot be watched"),
    ("cases:\n  - {client_close: never, server_stop: linger0}\n", "cases[0]", "sends a RST instead"),
    ("cases:\n  - {client_close: linger}\n", "cases[0].client_close", "close, shutdown, abort, never"),
    ("cases:\n  - {server_reuseport: on}\n", "cases[0].server_reuseport", "true, false"),
    ("cases:\n  - {bind_probe: true}\n", "cases[0].bind_probe", "a mapping of reuseaddr, reuseport, user, address"),
    ("cases:\n  - {bind_probe: {reuseport: 1}}\n", "cases[0].bind_probe.reuseport", "true, false"),
    ("cases:\n  - {bind_probe: {user: nobody}}\n", "cases[0].bind_probe.user", "same, other"),
    ("cases:\n  - {bind_probe: {address: 10.0.0.1}}\n", "cases[0].bind_probe.address", "any, server, loopback"),
    ("cases:\n  - {bind_probe: {port: 1}}\n", "cases[0].bind_probe.port", "unknown field"),
    ("cases:\n  - {server_stop: close_listening, keep_restarted: true}\n", "cases[0]", "keeps the old server listening"),
    ("cases:\n  - {close_first: client, server_stop: close_listening}\n", "cases[0]", "needs close_first: server"),
    ("cases: [{}]\nexpect:\n  - probe_bind_errno: 98\n", "expect[0].probe_bind_errno", "a non-empty string"),
    ("cases: [{}]\nexpect:\n  - probe_bind_errno: EADDRINUSED\n", "expect[0].probe_bind_errno",
     "'EADDRINUSED' is no errno name; allowed: errno names"),
    ("cases: [{}]\nexpect:\n  - probe_bind_errno: EADDRINUSE EACCES\n", "expect[0].probe_bind_errno",
     "joined by ', '"),
    ("cases:\n  - {keep_restarted: true, bind_probe: {reuseaddr: true}}\n", "cases[0]", "a kept restart's listener"),
    ("cases:\n  - {keep_restarted: true, client_port: 40000}\n", "cases[0]", "needs server_reuseaddr"),
])
def test_errors_name_file_field_and_what_is_allowed(text, field, allowed):
    specs.assert_refused(BASE + text, field, allowed)


def test_too_many_sysctls():
    many = ", ".join(f"net.ipv4.x{i}: 1" for i in range(spec.MAX_SYSCTLS + 1))
    assert "allowed: up to 24" in error(f"cases:\n  - server_sysctls: {{{many}}}\n")


def test_a_matrix_combination_that_conflicts_names_the_case():
    exp = parse("matrix:\n  close_first: [server, client]\n  server_stop: [sigint, linger0]\n")
    with pytest.raises(SpecError) as exc:
        plan.cases(exp)
    assert str(exc.value).startswith("exp.yaml: matrix: the case 'client closes first")
    assert "needs close_first: server" in str(exc.value)


P = spec.Params
ALL = spec.Loss("all")


@pytest.mark.parametrize("params, low, high", [
    # every final ACK lost: the last FIN copy, then 60 s
    (P(final_ack_loss=ALL, client_sysctls=(("net.ipv4.tcp_orphan_retries", 2),)), 62, 65),
    (P(final_ack_loss=ALL, client_sysctls=(("net.ipv4.tcp_orphan_retries", 4),)), 65, 68),
    (P(final_ack_loss=ALL, client_sysctls=(("net.ipv4.tcp_orphan_retries", 0),)), 110, 120),
    # tcp_retries2 governs only a socket whose program holds it
    (P(final_ack_loss=ALL, client_close="shutdown", client_sysctls=(("net.ipv4.tcp_retries2", 3),)), 63, 66),
    (P(final_ack_loss=ALL, client_sysctls=(("net.ipv4.tcp_retries2", 3),)), 110, 120),
    # no TIME_WAIT: an abortive close, no buckets, a RST with tcp_rfc1337 0
    (P(server_stop="linger0"), 2, 5),
    (P(connections=8, server_sysctls=(("net.ipv4.tcp_max_tw_buckets", 0),)), 2, 5),
    (P(final_ack_loss=spec.Loss("first", k=1), final_ack_reset=True), 2, 5),
    (P(final_ack_loss=spec.Loss("first", k=1), final_ack_reset=True,
       server_sysctls=(("net.ipv4.tcp_rfc1337", 1),)), 60, 65),
    # the client's TIME_WAIT, watched from its side, lasts as long as the server's would
    (P(close_first="client", watch_client=True), 60, 65),
    (P(close_first="client"), 1, 5),
    # a new connection with the old 4-tuple ends the TIME_WAIT: the client's SYNs from its old port
    # (its RST kills it, or a kept listener takes one), the client's own connect()
    (P(client_port=40000), 2, 5),
    (P(client_port=40000, server_sysctls=(("net.ipv4.tcp_rfc1337", 1),)), 60, 65),
    (P(client_port=40000, server_reuseaddr=True, keep_restarted=True, server_sysctls=(("net.ipv4.tcp_rfc1337", 1),)),
     2, 5),
    (P(close_first="client", client_port=40000, client_reuseaddr=True), 2, 5),
    (P(close_first="client", client_port=40000, client_reuseaddr=True,
       client_sysctls=(("net.ipv4.tcp_timestamps", 0),)), 60, 65),
    (P(close_first="client", watch_client=True, client_sysctls=(("net.ipv4.ip_local_port_range", "40000 40000"),
                                                                ("net.ipv4.tcp_tw_reuse", 1))), 3, 5),
    (P(close_first="client", watch_client=True, client_sysctls=(("net.ipv4.ip_local_port_range", "40000 40000"),
                                                                ("net.ipv4.tcp_tw_reuse", 2))), 60, 65),
    # the other ends: FIN_WAIT2 for tcp_fin_timeout when the client never closes; a RST ends it
    (P(client_close="never", server_sysctls=(("net.ipv4.tcp_fin_timeout", 5),)), 7, 9),
    (P(client_close="never"), 60, 65),
    (P(client_close="abort"), 2, 5),
    (P(close_first="client", client_close="abort", watch_client=True), 2, 5),
])
def test_expected_seconds_follow_the_kernels_rules(params, low, high):
    assert low < plan.expected_seconds(params) < high


def test_sysctls_are_checked_in_rounds_and_a_refusal_names_its_field(monkeypatch):
    from harness.lab import facts

    exp = parse("matrix:\n  client_sysctls: [{net.ipv4.tcp_orphan_retries: 2}, {net.ipv4.tcp_orphan_retries: 4}]\n"
                "cases:\n  - {name: x, server_sysctls: {net.ipv4.tcp_tw_reuse: 7}}\n")
    rounds = []

    def refused(client, images, run_id, sysctls):
        rounds.append(sysctls)
        return ("net.ipv4.tcp_tw_reuse", "invalid argument") if "net.ipv4.tcp_tw_reuse" in sysctls else None

    monkeypatch.setattr(facts, "_refused", refused)
    with pytest.raises(SpecError) as exc:
        facts.check_sysctls(None, None, "r", spec.sysctl_fields(exp), exp.source)
    # one value of every name per round: the first round sets both names
    assert rounds == [{"net.ipv4.tcp_orphan_retries": "2", "net.ipv4.tcp_tw_reuse": "7"}]
    assert str(exc.value) == ("exp.yaml: cases[0].server_sysctls.net.ipv4.tcp_tw_reuse: the kernel refused '7' "
                              "(invalid argument); allowed: a value this sysctl takes")
    rounds.clear()
    monkeypatch.setattr(facts, "_refused", lambda *a: rounds.append(a[3]))
    facts.check_sysctls(None, None, "r", spec.sysctl_fields(exp), exp.source)
    assert rounds[1] == {"net.ipv4.tcp_orphan_retries": "4"}


def test_the_clients_so_reuseaddr_reaches_the_client_and_its_agent():
    exp = parse("cases:\n  - {client_port: 40000, client_reuseaddr: true}\n")
    (t,) = plan.trials(exp)
    s = roles.Setup(exp, t.params, t.port)
    for role in ("client", "client-agent"):
        command = roles.BY_ROLE[role].command(s)
        assert "-R" in command and command[command.index("-b") + 1] == "40000"


def test_a_kept_restart_reaches_the_agent():
    exp = parse("matrix:\n  keep_restarted: [false, true]\n")
    commands = [roles.BY_ROLE["agent"].command(roles.Setup(exp, t.params, t.port)) for t in plan.trials(exp)]
    assert ["-L" in c for c in commands] == [False, True]
    assert [t.params.label() for t in plan.trials(exp)][1].endswith("restarted server kept listening")


def test_the_wheels_ticks_reach_the_agent_when_the_host_read_them():
    exp = parse("cases:\n  - {}\n")
    (t,) = plan.trials(exp)
    ticks = {"period_ns": 2048000000, "phase_ns": 1240000000, "boot_id": "b00t"}
    told = roles.BY_ROLE["agent"].command(roles.Setup(exp, t.params, t.port, wheel_ticks=ticks))
    assert told[told.index("-W") + 1] == "2048000000,1240000000,b00t"
    assert "-W" not in roles.BY_ROLE["agent"].command(roles.Setup(exp, t.params, t.port))


def test_a_bind_probe_and_the_old_servers_so_reuseport_reach_the_agent():
    exp = parse("cases:\n  - {server_reuseport: true, server_stop: close_listening,\n"
                "     bind_probe: {reuseport: true, user: other, address: server}}\n  - {}\n")
    probed, plain = (roles.BY_ROLE["agent"].command(roles.Setup(exp, t.params, t.port)) for t in plan.trials(exp))
    assert probed[probed.index("-b") + 1] == "0,1,65534,server"
    assert "-P" in probed and probed[probed.index("-k") + 1] == "close_listening"
    assert "-b" not in plain and "-P" not in plain
    (t, _) = plan.trials(exp)
    assert t.params.label() == ("server closes first, old SO_REUSEADDR off, old SO_REUSEPORT on, "
                                "server stopped by close(), still listening, "
                                "bind() probe SO_REUSEPORT as another user on the server address")
    # the JSON form reads back equal, as a run directory keeps it
    assert spec.Params.from_json(t.params.to_json()) == t.params


def test_an_errno_is_expected_by_its_name():
    from harness import expect, record

    exp = parse("cases: [{bind_probe: {reuseport: true}}]\nexpect:\n  - probe_bind_errno: EADDRINUSE\n")
    (bound,) = exp.expect[0].bounds
    assert bound.text() == "probe_bind_errno is EADDRINUSE"
    both = parse("cases: [{}]\nexpect:\n  - probe_bind_errno: EADDRINUSE, EACCES\n").expect[0].bounds[0]
    assert both.equals == "EADDRINUSE, EACCES"  # several, in the order the record writes them
    for name in ("EOPNOTSUPP", "errno 531"):  # an alias errno.errorcode does not list; a number glibc cannot name
        assert parse(f"cases: [{{}}]\nexpect:\n  - probe_bind_errno: {name}\n").expect[0].bounds[0].equals == name
    r = record.TrialResult("t000", 0, "c", 0, spec.Params(), probe_bind_errno="EADDRINUSE")
    assert expect.judge(bound, r) == (record.PASS, None, "")
    r = record.TrialResult("t000", 0, "c", 0, spec.Params(), probe_bind_errno="EADDRNOTAVAIL")
    assert expect.judge(bound, r) == (record.FAIL, None, "probe_bind_errno is EADDRNOTAVAIL")
    never = parse("cases: [{}]\nexpect:\n  - probe_bind_errno: null\n").expect[0].bounds[0]
    assert expect.judge(never, r) == (record.FAIL, None, "probe_bind_errno is EADDRNOTAVAIL")


def test_a_sysctl_the_kernel_lacks_is_left_out_of_the_check_and_said(monkeypatch):
    from harness.lab import facts

    exp = parse("cases:\n  - {name: a, client_sysctls: {net.ipv4.tcp_tw_reuse_delay: 100, net.ipv4.tcp_tw_reuse: 1}}\n"
                "  - {name: b, client_sysctls: {net.ipv4.tcp_tw_reuse_delay: 200}}\n")
    fields = spec.sysctl_fields(exp)
    rounds = []

    def old_kernel(client, images, run_id, sysctls):
        rounds.append(dict(sysctls))
        return ("net.ipv4.tcp_tw_reuse_delay", facts.MISSING) if "net.ipv4.tcp_tw_reuse_delay" in sysctls else None

    monkeypatch.setattr(facts, "_refused", old_kernel)
    lacks = facts.check_sysctls(None, None, "r", fields, exp.source)
    # the name it lacks is left out and the rest of the round still checked; not asked again
    assert lacks == {"net.ipv4.tcp_tw_reuse_delay"}
    assert rounds == [{"net.ipv4.tcp_tw_reuse_delay": "100", "net.ipv4.tcp_tw_reuse": "1"},
                      {"net.ipv4.tcp_tw_reuse": "1"}]
    assert exp.cases[0].params.sysctl_names() == {"net.ipv4.tcp_tw_reuse_delay", "net.ipv4.tcp_tw_reuse"}


def test_the_fixed_ports_syns_into_the_servers_time_wait_wait_for_the_old_servers_end():
    exp = parse("cases:\n  - {client_port: 40000}\n  - {close_first: client, client_port: 40000}\n"
                "  - {client_port: 40000, server_stop: close_listening}\n")
    commands = [roles.BY_ROLE["client-agent"].command(roles.Setup(exp, t.params, t.port)) for t in plan.trials(exp)]
    # only where the server closes first and its process ends: its listener outlives its FIN
    assert ["-g" in c for c in commands] == [True, False, False]
