"""Which copies of the final ACK a loss pattern drops. Pure, so runs can be compared."""

from __future__ import annotations

import random

from harness.spec import Loss

# Copies of the final ACK a connection can cause: one per FIN the peer sends.
# Linux retries a FIN at most tcp_retries2 (15) times, so 64 is ample.
MAX_COPIES = 64


def dropped_copies(loss: Loss, copies: int = MAX_COPIES) -> tuple[int, ...]:
    """Indices (0 = the first final ACK) of the copies this pattern drops.

    A random pattern is drawn from its own seeded generator, so the same seed
    drops the same copies in every run, on every backend that applies it as a
    list (nftables); netem draws from its own seeded generator instead.
    """
    if loss.kind == "none":
        return ()
    if loss.kind == "first":
        return tuple(range(min(loss.k, copies)))
    if loss.kind == "all":
        return tuple(range(copies))
    rng = random.Random(loss.seed)
    return tuple(i for i in range(copies) if rng.random() < loss.p)


def leading_drops(loss: Loss) -> int:
    """How many copies in a row, from the first, are dropped: what delays the close."""
    dropped = set(dropped_copies(loss))
    n = 0
    while n in dropped:
        n += 1
    return n
