"""How a run is stopped: SIGINT (Ctrl+C), SIGTERM (timeout, CI cancellation, systemd, docker
stop) and SIGHUP (a closed terminal) all stop it the same way, whatever it is doing.

The first signal raises Stop in the main thread, which then cleans up. A second one, during the
cleanup, only says that cleanup is under way; a third exits at once (`harness clean` removes what
is left, as after a SIGKILL). A signal a parent set to be ignored (nohup, or a background job's
SIGINT) stays ignored, as its parent asked.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import weakref
from collections.abc import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Stop(BaseException):
    """A signal asked the run to stop (a BaseException, like KeyboardInterrupt: nothing but the
    CLI's own handler is meant to catch it)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class Flag(threading.Event):
    """The run's stop flag (a signal's, or a fatal error's): setting it also wakes every wait that
    watches it, so that a thousand trials' waits need not look at it a few times a second."""

    def __init__(self) -> None:
        super().__init__()
        self._watchers: weakref.WeakSet[threading.Condition] = weakref.WeakSet()
        self._lock = threading.RLock()  # set() may run in a signal handler, in a thread inside watch()

    def watch(self, cond: threading.Condition) -> None:
        """Notify cond's waiters when the flag is set (they check it in their predicate)."""
        with self._lock:
            self._watchers.add(cond)

    def set(self) -> None:
        if self.is_set():  # a second signal while the first set() notifies: that one tells every waiter
            return
        super().set()
        with self._lock:
            watchers = list(self._watchers)
        for cond in watchers:
            with cond:
                cond.notify_all()


class _State:
    def __init__(self) -> None:
        self.signals = 0
        self.deferring = 0  # inside deferred() blocks
        self.pending: int | None = None  # a first signal that came while deferring


_state = _State()  # the current handled() block's: each run starts with no signal seen


def _handler(signum: int, _frame: object) -> None:
    _state.signals += 1
    if _state.signals == 1:
        if _state.deferring:
            _state.pending = signum
            return
        raise Stop(signum)
    if _state.signals == 2:
        print("harness: still removing this run's containers and networks; one more signal "
              "exits at once (then run `harness clean`)", file=sys.stderr, flush=True)
    else:
        os._exit(128 + signum)


@contextlib.contextmanager
def handled() -> Iterator[Flag]:
    """Within the block, the first stop signal raises Stop; the event is set as it arrives, so
    threads can see it too."""
    global _state
    outer, _state = _state, _State()
    stopping = Flag()

    def handler(signum: int, frame: object) -> None:
        stopping.set()
        _handler(signum, frame)

    previous = {s: signal.getsignal(s) for s in SIGNALS}
    for s, old in previous.items():
        if old is not signal.SIG_IGN:
            signal.signal(s, handler)
    try:
        yield stopping
    finally:
        for s, old in previous.items():
            signal.signal(s, old)
        _state = outer


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """A stop signal that arrives within the block raises Stop as the block ends: for steps that
    must not be cut in half (handing trials to threads: a thread started, its future lost)."""
    _state.deferring += 1
    try:
        yield
    finally:
        _state.deferring -= 1
    if not _state.deferring and _state.pending is not None:
        signum, _state.pending = _state.pending, None
        raise Stop(signum)
