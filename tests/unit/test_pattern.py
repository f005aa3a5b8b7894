from harness.faults.pattern import MAX_COPIES, dropped_copies, leading_drops
from harness.spec import Loss


def test_first_k_all_none():
    assert dropped_copies(Loss("none")) == ()
    assert dropped_copies(Loss("first", k=3)) == (0, 1, 2)
    assert dropped_copies(Loss("all")) == tuple(range(MAX_COPIES))


def test_seeded_pattern_is_reproducible_and_depends_on_the_seed():
    a = dropped_copies(Loss("random", p=0.5, seed=7))
    assert a == dropped_copies(Loss("random", p=0.5, seed=7))
    assert a != dropped_copies(Loss("random", p=0.5, seed=8))
    assert 0 < len(a) < MAX_COPIES


def test_leading_drops():
    assert leading_drops(Loss("first", k=3)) == 3
    assert leading_drops(Loss("none")) == 0
    seeded = Loss("random", p=0.5, seed=7)
    copies = dropped_copies(seeded)
    n = 0
    while n in copies:
        n += 1
    assert leading_drops(seeded) == n
