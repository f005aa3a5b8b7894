"""Each trial network's IPv4 subnet, chosen by the harness from a pool of its own.

Docker's default address pools hold about 30 networks; a study runs hundreds of trials at
once. So the harness gives each trial network a /29 (a gateway and the two namespace owners)
from its own pool (HARNESS_SUBNET_POOL, default 10.199.0.0/16: 8192 trials at once), never one
that overlaps a network the engine has or, when the engine is on this host, a route of this
host. Several harness processes may share an engine: each starts at a random place in the pool,
and a subnet the engine refuses as taken is skipped.
"""

from __future__ import annotations

import ipaddress
import random
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

DEFAULT_POOL = "10.199.0.0/16"
PREFIX = 29
Net = ipaddress.IPv4Network


def host_routes(route_file: Path = Path("/proc/net/route")) -> list[Net]:
    """The IPv4 destinations this host routes (not its default route), from the kernel's table."""
    out: list[Net] = []
    try:
        lines = route_file.read_text().splitlines()[1:]
    except OSError:
        return out
    for line in lines:
        fields = line.split()
        if len(fields) < 8:
            continue
        dest, mask = (ipaddress.IPv4Address(int(x, 16).to_bytes(4, "little")) for x in (fields[1], fields[7]))
        if int(mask):
            out.append(ipaddress.IPv4Network(f"{dest}/{mask}", strict=False))
    return out


class Exhausted(Exception):
    """Every subnet of the pool is in use or overlaps one that is."""


class Subnets:
    """Hands out /29s of the pool that overlap nothing in use; thread-safe."""

    def __init__(self, pool: str, in_use: Callable[[], Iterable[Net]]):
        self.pool = ipaddress.IPv4Network(pool)
        if self.pool.prefixlen > PREFIX:
            raise ValueError(f"{pool}: too small for a /{PREFIX} per trial")
        self._in_use = in_use  # what the engine (and host) already use; asked again when stale
        self._taken: set[Net] = set()  # handed out by this process, not yet released
        self._busy: list[Net] = []
        self._refused: set[Net] = set()  # taken by another process: not offered again in this run
        self._stale = True
        self._lock = threading.Lock()
        self._count = 2 ** (PREFIX - self.pool.prefixlen)
        self._next = random.randrange(self._count)

    def _candidate(self, i: int) -> Net:
        base = int(self.pool.network_address) + ((self._next + i) % self._count) * 2 ** (32 - PREFIX)
        return ipaddress.IPv4Network((base, PREFIX))

    def acquire(self) -> Net:
        """A free subnet, marked taken until release()."""
        with self._lock:
            if self._stale:
                self._busy = [n for n in self._in_use() if n.overlaps(self.pool)] + list(self._refused)
                self._stale = False
            for i in range(self._count):
                net = self._candidate(i)
                if net not in self._taken and not any(net.overlaps(b) for b in self._busy):
                    self._taken.add(net)
                    self._next = (self._next + i + 1) % self._count
                    return net
        raise Exhausted(f"no free /{PREFIX} left in {self.pool}")

    def refused(self, net: Net) -> None:
        """The engine would not create it (another process took it meanwhile): look afresh at what
        is in use before the next one."""
        with self._lock:
            self._taken.discard(net)
            self._refused.add(net)
            self._stale = True

    def release(self, net: Net) -> None:
        with self._lock:
            self._taken.discard(net)
