from harness import plan, spec

TEXT = """name: t
description: d
repeat: 2
matrix:
  close_first: [client, server]
  final_ack_loss: [0, all]
cases:
  - {close_first: server, server_reuseaddr: true}
  - {close_first: server, final_ack_loss: 0}
"""


def exp():
    return spec.parse(TEXT, "t.yaml")


def test_matrix_times_values_plus_explicit_cases_times_repeat():
    cases = plan.cases(exp())
    # 2 x 2 from the matrix, one new explicit case, one that repeats a matrix cell
    assert len(cases) == 5
    trials = plan.trials(exp())
    assert len(trials) == 10
    assert [t.index for t in trials] == list(range(10))
    assert {t.repeat for t in trials} == {0, 1}
    assert trials[0].id == "t000"


def test_a_case_named_and_set_alike_is_kept_once():
    e = spec.parse("name: t\ndescription: d\nmatrix:\n  final_ack_loss: [1]\ncases:\n  - final_ack_loss: 1\n", "t.yaml")
    assert len(plan.cases(e)) == 1


def test_explicit_cases_with_their_own_names_are_kept_apart():
    e = spec.parse("name: t\ndescription: d\ncases:\n  - {name: A, final_ack_loss: 1}\n"
                   "  - {name: B, final_ack_loss: 1}\n", "t.yaml")
    assert [c.name for c in plan.cases(e)] == ["A", "B"]


def test_schedule_runs_longest_first():
    order = plan.schedule(plan.trials(exp()))
    assert order[0].params.final_ack_loss.kind == "all" and order[0].params.close_first == "server"
    assert all(a.expected_s >= b.expected_s for a, b in zip(order, order[1:]))


def test_expected_seconds_follow_linux_defaults():
    p = spec.Params
    assert plan.expected_seconds(p(close_first="client")) < 5
    assert 60 < plan.expected_seconds(p()) < 65
    # All final ACKs lost: 8 orphan retries, the last at 51 s, then TIME_WAIT again.
    assert 110 < plan.expected_seconds(p(final_ack_loss=spec.Loss("all"))) < 120
    # shutdown(): more retries, but TIME_WAIT ends at the first gap over 60 s (after 102 s).
    assert 160 < plan.expected_seconds(p(final_ack_loss=spec.Loss("all"), client_close="shutdown")) < 170
    # client first, all lost: the server's LAST_ACK gives up after 9 timeouts (102 s).
    assert 100 < plan.expected_seconds(p(close_first="client", final_ack_loss=spec.Loss("all"))) < 110


def test_wall_estimate_packs_trials_on_workers():
    trials = plan.trials(exp())
    longest = max(t.expected_s for t in trials)
    assert plan.estimate_wall_seconds(trials, jobs=len(trials)) == longest
    assert plan.estimate_wall_seconds(trials, jobs=1) == sum(t.expected_s for t in trials)


SHARING = """name: s
description: d
repeat: 3
port: 8000
cases:
  - {name: plain, close_first: server}
  - {name: fixed port, close_first: client, client_port: 40000}
  - {name: buckets, close_first: server, server_sysctls: {net.ipv4.tcp_max_tw_buckets: 1}}
  - {name: port range, close_first: client, client_sysctls: {net.ipv4.ip_local_port_range: "40000 40000"}}
  - {name: counted, close_first: server, final_ack_loss: 1}
expect:
  - where: {case: counted}
    tw_entered: 1
"""


def test_a_cases_repeats_share_a_lab_each_on_its_own_port_unless_the_namespace_is_what_they_measure():
    e = spec.parse(SHARING, "s.yaml")
    ts = plan.into_labs(e, plan.trials(e), seed=1, close_phase=None)
    by_case: dict[str, list[plan.Trial]] = {}
    for t in ts:
        by_case.setdefault(t.case, []).append(t)
    plain = by_case.pop("plain")
    assert len({t.lab for t in plain}) == 1 and all(t.shared for t in plain)
    assert [t.port for t in plain] == [8000, 8001, 8002]
    # a fixed client port, a namespace-wide limit, a figure the kernel counts per namespace: a lab each
    for case, trials in by_case.items():
        assert [t.lab for t in trials] == [t.id for t in trials] and not any(t.shared for t in trials), case
        assert {t.port for t in trials} == {8000}, case
    reasons = {c.name: plan.alone_because(e, c, one_qdisc=False) for c in plan.cases(e)}
    assert reasons == {"plain": None, "fixed port": "client_port: one fixed port in the client's namespace",
                       "buckets": "server_sysctls net.ipv4.tcp_max_tw_buckets: a limit of the whole namespace",
                       "port range": "client_sysctls net.ipv4.ip_local_port_range: a limit of the whole namespace",
                       "counted": "its expectations read tw_entered, which the kernel counts per namespace"}


def test_netem_a_user_server_without_a_port_and_isolation_trial_keep_a_lab_a_trial():
    lossy = spec.parse("name: s\ndescription: d\nrepeat: 2\ncases:\n  - {final_ack_loss: all}\n", "s.yaml")
    (case,) = plan.cases(lossy)
    assert plan.alone_because(lossy, case, one_qdisc=False) is None
    assert plan.alone_because(lossy, case, one_qdisc=True) == "the fault is a qdisc of the whole namespace (netem)"
    ts = plan.into_labs(lossy, plan.trials(lossy), 1, None, one_qdisc=lambda engine: True)
    assert not any(t.shared for t in ts)
    forced = spec.parse("name: s\ndescription: d\nrepeat: 2\nisolation: trial\ncases:\n  - {}\n", "s.yaml")
    assert plan.alone_because(forced, plan.cases(forced)[0], False) == "isolation: trial"
    server = ("name: s\ndescription: d\nrepeat: 2\nserver:\n  packages: [socat]\n  command: {cmd}\n  port: 9000\n"
              "cases:\n  - {{}}\n")
    fixed = spec.parse(server.format(cmd="[socat, 'TCP-LISTEN:9000,fork', EXEC:cat]"), "s.yaml")
    assert plan.alone_because(fixed, plan.cases(fixed)[0], False) == "the server's command (or its stop command) sets no {port}"
    free = spec.parse(server.format(cmd="[socat, 'TCP-LISTEN:{port},fork', EXEC:cat]"), "s.yaml")
    assert plan.alone_because(free, plan.cases(free)[0], False) is None
    assert [t.port for t in plan.into_labs(free, plan.trials(free), 1, None)] == [9000, 9001]
    stops = server.replace("  port: 9000\n", "  port: 9000\n  stop: {{command: [pkill, socat]}}\n")
    fixed_stop = spec.parse(stops.format(cmd="[socat, 'TCP-LISTEN:{port},fork', EXEC:cat]"), "s.yaml")
    assert plan.alone_because(fixed_stop, plan.cases(fixed_stop)[0], False) == \
        "the server's command (or its stop command) sets no {port}"


def test_a_time_wait_no_poll_saw_and_ports_among_the_clients_keep_a_lab_a_trial():
    # `never` on time_wait_s is judged by time_wait_max_s, a counter of the whole namespace
    unseen = spec.parse("name: s\ndescription: d\nrepeat: 2\ncases:\n  - {}\nexpect:\n  - time_wait_s: null\n",
                        "s.yaml")
    assert plan.alone_because(unseen, plan.cases(unseen)[0], False) == \
        "its expectations read time_wait_max_s, which the kernel counts per namespace"
    high = spec.parse("name: s\ndescription: d\nrepeat: 3\nport: 32766\ncases:\n  - {}\n", "s.yaml")
    assert plan.alone_because(high, plan.cases(high)[0], False).startswith("ports 32766-32768 meet")
    low = spec.parse("name: s\ndescription: d\nrepeat: 3\nport: 32765\ncases:\n  - {}\n", "s.yaml")
    assert plan.alone_because(low, plan.cases(low)[0], False) is None


def test_each_shared_trial_closes_on_its_own_seeded_phase_unless_close_phase_sets_one():
    e = spec.parse(SHARING, "s.yaml")
    ts = [t for t in plan.into_labs(e, plan.trials(e), seed=7, close_phase=None) if t.case == "plain"]
    fractions = [float(t.close_at.split(",")[1]) for t in ts]
    assert all(t.close_at.startswith("wheel,") for t in ts) and len(set(fractions)) == 3
    assert all(0 <= f < 1 for f in fractions)
    # the same seed draws the same phases (the manifest keeps the seed and each trial's phase)
    again = [t for t in plan.into_labs(e, plan.trials(e), seed=7, close_phase=None) if t.case == "plain"]
    assert [t.close_at for t in again] == [t.close_at for t in ts]
    other = [t for t in plan.into_labs(e, plan.trials(e), seed=8, close_phase=None) if t.case == "plain"]
    assert [t.close_at for t in other] != [t.close_at for t in ts]
    # a trial alone closes when it gets there; --close-phase puts every close on its one phase
    assert all(t.close_at == "" for t in plan.into_labs(e, plan.trials(e), 7, None) if not t.shared)
    assert {t.close_at for t in plan.into_labs(e, plan.trials(e), 7, (3.0, 1.25))} == {"3.000000,1.250000"}


def test_a_labs_trials_come_together_longest_lab_first():
    e = spec.parse(SHARING, "s.yaml")
    labs = plan.labs(plan.into_labs(e, plan.trials(e), 1, None))
    assert len(labs) == 1 + 4 * 3
    assert [len(members) for members in labs].count(3) == 1
    assert all(len({t.lab for t in members}) == 1 for members in labs)
