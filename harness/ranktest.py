"""The two-sided Mann-Whitney U (Wilcoxon rank-sum) test, exact where it matters. Pure.

Our samples are small (5 to 20 trials a case) and full of ties: the kernel's timer wheel rounds
every TIME_WAIT to a 2.048 s grid, and counts repeat. For such samples the normal approximation
is poor, and the textbook exact test assumes no ties. So for up to EXACT_MAX values in all, the
p-value is exact under ties: the permutation distribution of the rank sum given the tied ranks,
counted with a generating function held in one big integer (each (count, rank-sum) coefficient in
its own bit field). Above that, the normal approximation with tie and continuity corrections,
which is accurate there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

EXACT_MAX = 60  # values in all; the generating function then stays under ~2 MB


def _midranks(values: Sequence[float]) -> list[float]:
    """Ranks from 1, ties sharing the mean of the ranks they span."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def _exact(doubled: list[int], n1: int, observed: int) -> float:
    """P(|S - E[S]| >= |observed - E[S]|) where S is the sum of n1 of the doubled ranks drawn
    without replacement, all subsets alike. Coefficient of y^k x^s of prod(1 + y x^r) sits at
    bit offset width * (k * (total + 1) + s), width a whole number of bytes."""
    n, total = len(doubled), sum(doubled)
    nbytes = n // 8 + 1  # a coefficient counts subsets: below 2^n
    width, row = 8 * nbytes, total + 1
    keep = (1 << (width * row * (n1 + 1))) - 1  # no term beyond y^n1 is needed
    poly = 1
    for r in doubled:
        poly = (poly + (poly << (width * (row + r)))) & keep
    raw = (poly >> (width * row * n1)).to_bytes(nbytes * row, "little")
    counts = [int.from_bytes(raw[s * nbytes:(s + 1) * nbytes], "little") for s in range(row)]
    mean2 = n1 * total  # n times E[S], kept whole
    far = abs(n * observed - mean2)
    hits = sum(c for s, c in enumerate(counts) if c and abs(n * s - mean2) >= far)
    return min(1.0, hits / math.comb(n, n1))


def _normal(ranks: list[float], n1: int, n2: int, rank_sum: float) -> float:
    n = n1 + n2
    u = rank_sum - n1 * (n1 + 1) / 2
    mean = n1 * n2 / 2
    ties: dict[float, int] = {}
    for r in ranks:
        ties[r] = ties.get(r, 0) + 1
    tie_term = sum(t ** 3 - t for t in ties.values())
    var = n1 * n2 / 12 * ((n + 1) - tie_term / (n * (n - 1)))
    if var <= 0:
        return 1.0
    z = max(0.0, abs(u - mean) - 0.5) / math.sqrt(var)
    return min(1.0, math.erfc(z / math.sqrt(2)))


def p_value(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value that a and b come from one distribution (values may be +-inf: they rank
    below or above every finite one)."""
    n1, n2 = len(a), len(b)
    if n1 == 0 or n2 == 0:
        raise ValueError("each sample needs a value")
    ranks = _midranks([*a, *b])
    rank_sum = sum(ranks[:n1])
    if n1 + n2 <= EXACT_MAX:
        doubled = [round(2 * r) for r in ranks]  # midranks are whole or halves
        return _exact(doubled, n1, round(2 * rank_sum))
    return _normal(ranks, n1, n2, rank_sum)
