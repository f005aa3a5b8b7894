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
