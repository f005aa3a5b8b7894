"""The rank test: exact p-values against a count over every split, and the large-sample path
against values scipy.stats.mannwhitneyu gave for the same samples (recorded here, so the tests
need no scipy)."""

import itertools
import math

import pytest

from harness import ranktest


def by_enumeration(a, b):
    """The permutation p-value, counted over every way to split the pooled values."""
    pooled = [*a, *b]
    ranks = ranktest._midranks(pooled)
    n, n1 = len(pooled), len(a)
    mean = n1 * sum(ranks) / n
    far = abs(sum(ranks[:n1]) - mean) - 1e-9
    splits = list(itertools.combinations(range(n), n1))
    return sum(abs(sum(ranks[i] for i in s) - mean) >= far for s in splits) / len(splits)


@pytest.mark.parametrize(("a", "b"), [
    ([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]),
    ([61.02] * 4 + [63.07], [61.02] * 2 + [63.07] * 3),  # the timer wheel's ties
    ([0, 0, 1, 1, 2], [1, 2, 2, 3, 3, 3]),
    ([-math.inf, -math.inf, 60.3, 61.0], [60.3, 61.0, 62.0, 62.0]),  # never happened ranks lowest
    ([5.0] * 5, [5.0] * 6),  # all tied: no evidence at all
])
def test_exact_p_value_counts_every_split_with_ties(a, b):
    assert ranktest.p_value(a, b) == pytest.approx(by_enumeration(a, b), abs=1e-12)


def test_exact_p_values_without_ties_are_the_textbook_ones():
    # scipy.stats.mannwhitneyu(..., method="exact"), two-sided
    assert ranktest.p_value([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]) == pytest.approx(0.007936507936507936)
    assert ranktest.p_value([1.5, 2, 3.1, 8, 5, 7], [6, 4, 9, 10, 11, 12, 13]) == pytest.approx(0.022144522144522144)


A = [0.095, 1.25, -0.931, 0.992, -0.259, -0.262, 1.9, 0.158, -0.043, 0.729, 1.127, -0.031, 0.588, -0.974,
     -0.367, -0.438, -1.332, -1.509, -1.627, -0.239, -0.172, -0.32, 0.069, -1.336, -0.079, 0.238, 0.751,
     -0.846, -0.4, -2.015, -0.504, -2.197, -1.419, 1.102, -2.202]
B = [1.599, 1.128, 0.488, 1.259, 1.327, 1.845, 0.57, 0.208, 0.195, -0.186, 0.755, 0.014, 1.869, -1.069,
     -0.294, -0.153, -1.293, 2.702, -1.608, 0.517, 0.275, 2.456, -1.185, 1.872, 0.069, 0.645, 0.129, 1.44,
     -0.338, 0.721, 1.153, 2.64, -1.605, 2.325, 1.748, 0.316]


def test_large_samples_use_the_normal_approximation():
    assert len(A) + len(B) > ranktest.EXACT_MAX
    # scipy.stats.mannwhitneyu(A, B, method="asymptotic"): tie and continuity corrections
    assert ranktest.p_value(A, B) == pytest.approx(0.0007213071046850008, rel=1e-9)
    assert ranktest.p_value(A, A) == pytest.approx(1.0)


def test_the_test_is_symmetric_and_wants_values():
    a, b = [1, 3, 3, 7, 9], [2, 3, 8, 8, 10, 12]
    assert ranktest.p_value(a, b) == pytest.approx(ranktest.p_value(b, a))
    with pytest.raises(ValueError):
        ranktest.p_value([], [1.0])
