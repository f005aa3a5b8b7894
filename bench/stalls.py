"""Stalls of a CPU that no program could have avoided, measured while a benchmark runs.

One sampler per CPU, pinned to it at real-time priority (SCHED_FIFO, above every agent and the
engine), wakes every PERIOD_S and notes each wake more than LATE_S late. Nothing at normal priority
can hold it back: a wake that late means the CPU ran nothing of user space for that long, because
the VM's host did not run the vCPU (steal, which /proc/stat counts only when the host reports it)
or the kernel ran something it could not preempt. The study benchmark tells which windows over its
target such a stall explains, so a miss of the machine is told apart from a miss of the design.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from dataclasses import dataclass

PERIOD_S = 0.002
LATE_S = 0.005
PRIORITY = 10  # above SCHED_OTHER; any real-time priority is


@dataclass(frozen=True)
class Stall:
    cpu: int
    start: float  # CLOCK_MONOTONIC, s: when the sampler's late wake was due
    end: float  # when it came

    def overlap(self, start: float, end: float) -> float:
        return max(0.0, min(self.end, end) - max(self.start, start))


def _sample(cpu: int, stop: mp.synchronize.Event, out: mp.connection.Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C is the benchmark's to handle: it stops us
    parent = os.getppid()
    try:
        os.sched_setaffinity(0, {cpu})
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(PRIORITY))
    except OSError as exc:
        out.send(f"CPU {cpu}: {exc.strerror}")
        return
    stalls, prev = [], time.monotonic()
    # A real-time loop must not outlive a benchmark killed outright: it would disturb what runs next.
    while not stop.is_set() and os.getppid() == parent:
        time.sleep(PERIOD_S)
        now = time.monotonic()
        if now - prev > PERIOD_S + LATE_S:
            stalls.append(Stall(cpu, prev + PERIOD_S, now))  # from when the wake was due
        prev = now
    out.send(stalls)


class Sampler:
    """`with Sampler() as s:` samples every CPU while the block runs; then s.stalls, or s.why it
    could not (real-time priority refused: not root, or no real-time runtime in its cgroup)."""

    def __enter__(self) -> Sampler:
        self.stalls: list[Stall] = []
        self.why = ""
        self._stop = mp.Event()
        self._procs = []
        for cpu in sorted(os.sched_getaffinity(0)):
            mine, theirs = mp.Pipe(duplex=False)
            proc = mp.Process(target=_sample, args=(cpu, self._stop, theirs), daemon=True)
            proc.start()
            theirs.close()  # so that a sampler that died ends our read (EOFError), not hangs it
            self._procs.append((proc, mine))
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for proc, conn in self._procs:
            try:
                got = conn.recv()
            except EOFError:
                got = f"the sampler of a CPU ended (exit {proc.exitcode})"
            proc.join()
            if isinstance(got, str):
                self.why = self.why or got
            else:
                self.stalls += got

    def stalled(self, start: float, end: float) -> float:
        """The most of start..end (s) that one CPU spent stalled."""
        per_cpu: dict[int, float] = {}
        for s in self.stalls:
            per_cpu[s.cpu] = per_cpu.get(s.cpu, 0.0) + s.overlap(start, end)
        return max(per_cpu.values(), default=0.0)
