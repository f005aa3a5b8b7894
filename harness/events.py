"""The event protocol, declared once: every event a trial's programs and the harness write.

A trial's raw data is a stream of JSON objects, one per line: {"src": ..., "ev": ..., fields}
(and "trial", which the harness adds as it stores them). The C programs in images/src print them
(events.h), the fault agent (a shell script) too, the harness writes its own (src "harness"), and
a program's line that is not JSON becomes an "output" event carrying the text. This catalogue is
the reference for all of them: the store refuses an event it does not know or whose field has
another type, the analysis, the progress board and the report match events by these names, and a
unit test holds the C and shell sources against it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

# Who writes an event: its "src".
AGENT = "agent"  # tw-agent, in the server's namespace
SERVER = "server"  # the server's own lines and its end, as the agent relays them
CLIENT = "client"  # echo-client
CLIENT_AGENT = "client-agent"  # the observer on the client's side
FAULT = "fault"  # fault-agent
CAPTURE = "capture"  # tcpdump (its stderr lines)
KEEPER = "keeper"  # server-keeper: starts, stops and restarts a user's server
HARNESS = "harness"  # the harness itself
SOURCES = (AGENT, SERVER, CLIENT, CLIENT_AGENT, FAULT, CAPTURE, KEEPER, HARNESS)


class Ev(enum.StrEnum):
    """Event names (equal to the strings in the files)."""

    OUTPUT = "output"
    ERROR = "error"
    READY = "ready"
    CLOCK = "clock"
    SYSCTLS = "sysctls"
    LISTENING = "listening"
    ALIGNED = "aligned"
    TCPEXT = "tcpext"
    CLOSE = "close"
    ARMED = "armed"
    LATE_POLL = "late_poll"
    SOCKETS = "sockets"
    TW_APPEAR = "tw_appear"
    TW_TIMER = "tw_timer"
    TW_TIMER_RESTART = "tw_timer_restart"
    TW_GONE = "tw_gone"
    SERVER_EXIT = "server_exit"
    EXIT = "exit"
    BIND_OK = "bind_ok"
    BIND_FAIL = "bind_fail"
    PROBE_BIND_OK = "probe_bind_ok"
    PROBE_BIND_FAIL = "probe_bind_fail"
    RESTART_UP = "restart_up"
    RESTART_FAIL = "restart_fail"
    RESTART_STATS = "restart_stats"
    POLL_STATS = "poll_stats"
    DONE = "done"
    TIMEOUT = "timeout"
    CONNECTED = "connected"
    ECHOED = "echoed"
    SOCKET_CLOSED = "socket_closed"
    EOF = "eof"
    WATCHING = "watching"
    RECONNECT = "reconnect"
    FIXED_PORT_OK = "fixed_port_ok"
    FIXED_PORT_FAIL = "fixed_port_fail"
    INSTALLED = "installed"
    COUNTED = "counted"
    NETWORK = "network"
    FAULT = "fault"
    TRIAL_END = "trial_end"
    CUT = "cut"
    RESTARTED = "restarted"


NUM = (int, float)
INT = (int,)
STR = (str,)
BOOL = (bool,)
NULL = type(None)


@dataclass(frozen=True)
class Kind:
    """One event: who writes it, its fields and their types (type(): a bool is not a number here)."""

    src: str
    ev: Ev
    fields: dict[str, tuple[type, ...]]
    doc: str
    optional: frozenset[str] = frozenset()

    def problem(self, e: dict[str, Any]) -> str | None:
        """What is wrong with an event of this kind, or None."""
        for key, value in e.items():
            if key in ("trial", "src", "ev"):
                continue
            if key not in self.fields:
                return f"{self.src} {self.ev} has no field {key!r}"
            if type(value) not in self.fields[key]:
                allowed = " or ".join("null" if t is NULL else t.__name__ for t in self.fields[key])
                return f"{self.src} {self.ev}: {key} is {type(value).__name__}; allowed: {allowed}"
        missing = [k for k in self.fields if k not in e and k not in self.optional]
        return f"{self.src} {self.ev} without {', '.join(missing)}" if missing else None


def _k(src: str, ev: Ev, doc: str, *, optional: Any = (), **fields: Any) -> Kind:
    return Kind(src, ev, fields, doc, frozenset(optional))


T = {"mono": NUM}  # stamped on CLOCK_MONOTONIC (events.h)
_POLL_STATS = {**T, "interval_ms": INT, "polls": INT, "late_max_ms": NUM, "late_over_5ms": INT, "window_max_ms": NUM}
_POLL_STATS_NEW = ("window_max_ms",)  # agents before 0.3 did not say it
_SOCKETS = {**T, "states": (list,)}

KINDS: tuple[Kind, ...] = (
    # tw-agent (images/src/tw_agent.c)
    _k(AGENT, Ev.CLOCK, "CLOCK_REALTIME at a CLOCK_MONOTONIC instant: puts pcap times on the event axis; "
       "whether the agent knows the wheel's ticks (-W) and so polls around the one a TIME_WAIT can end on",
       optional=("wheel_ticks",), **T, realtime=NUM, nice=INT, wheel_ticks=BOOL),  # wheel_ticks: since 2026-12-07
    _k(AGENT, Ev.SYSCTLS, "the sysctls in force in the namespace, read back (null: unreadable)", **T, values=(dict,)),
    _k(AGENT, Ev.ERROR, "the agent gave up: what failed", **T, what=STR),
    _k(AGENT, Ev.LISTENING, "the server's LISTEN socket is there", **T, pid=INT),
    _k(AGENT, Ev.ALIGNED, "the close waited for its phase of the monotonic clock (--close-phase): the wait "
       "asked for, and how late the wake came", optional=("late_s",),  # late_s: not in runs before 2026-12-06
       **T, period_s=NUM, phase_s=NUM, waited_s=NUM, late_s=NUM),
    _k(AGENT, Ev.TCPEXT, "the namespace's non-zero TcpExt counters at the close and at the end",
       **T, at=STR, counters=(dict, NULL)),
    _k(AGENT, Ev.CLOSE, "the server was stopped (t = 0 when it closes first)", **T, side=STR, how=STR),
    _k(AGENT, Ev.ARMED, "observing from here (t = 0 when the client closes first)", **T),
    _k(AGENT, Ev.LATE_POLL, "a poll started more than 20 ms late", **T, late_ms=NUM),
    _k(AGENT, Ev.SOCKETS, "the states of the server's sockets on the port changed", **_SOCKETS),
    _k(AGENT, Ev.TW_APPEAR, "a socket entered TIME_WAIT (its timer, the poll's window)",
       **T, expires_ms=INT, window_ms=NUM),
    _k(AGENT, Ev.TW_TIMER, "the TIME_WAIT timer, sampled every 5 s (every second before 2026-12-07)", **T, expires_ms=INT),
    _k(AGENT, Ev.TW_TIMER_RESTART, "the TIME_WAIT timer went up: a FIN arrived in TIME_WAIT", **T, expires_ms=INT),
    _k(AGENT, Ev.TW_GONE, "no socket in TIME_WAIT any more", **T, window_ms=NUM),
    _k(AGENT, Ev.SERVER_EXIT, "the old server process has ended", **T),
    _k(AGENT, Ev.BIND_OK, "a fresh socket's bind() worked", **T, reuseaddr=BOOL, failures=INT, window_ms=NUM),
    _k(AGENT, Ev.BIND_FAIL, "the first failed bind() of a kind", **T, reuseaddr=BOOL, errno=STR),
    _k(AGENT, Ev.PROBE_BIND_OK, "the case's bind_probe worked", **T, failures=INT, window_ms=NUM),
    _k(AGENT, Ev.PROBE_BIND_FAIL, "the case's bind_probe failed with an errno other than its last (its name)",
       **T, errno=STR, failures=INT),
    _k(AGENT, Ev.RESTART_UP, "the restarted server came up", **T, attempt=INT, failures=INT),
    _k(AGENT, Ev.RESTART_FAIL, "a restart failed otherwise than the one before: its stderr",
       **T, attempt=INT, stderr=STR),
    _k(AGENT, Ev.RESTART_STATS, "the restarts: how many, failed how, and the mean interval between them",
       optional=("interval_ms",), **T, attempts=INT, bind_errors=INT, other=INT, interval_ms=NUM),
    _k(AGENT, Ev.POLL_STATS, "how many polls, how late the latest, the widest gap between two",
       optional=_POLL_STATS_NEW, **_POLL_STATS),
    _k(AGENT, Ev.DONE, "everything seen through: the port is free and the server restarted", **T),
    _k(AGENT, Ev.TIMEOUT, "max_wait_s ran out first", **T, after_s=NUM),
    _k(AGENT, Ev.CUT, "observing ended: the namespace is being destroyed (restart: container); the sockets then",
       **T, states=(list,)),
    # No time on the server's own lines and end in runs before 0.2.0 where the server had a container of its own.
    _k(SERVER, Ev.OUTPUT, "a line the server printed", optional=("mono",), **T, text=STR),
    _k(SERVER, Ev.EXIT, "the old server's end, as a shell reports it (128 + a signal's number)", optional=("mono",),
       **T, status=INT),
    # echo-client (images/src/echo_client.c)
    _k(CLIENT, Ev.READY, "started, waiting for the harness's connect", **T),
    _k(CLIENT, Ev.SYSCTLS, "the sysctls in force in the client's namespace", **T, values=(dict,)),
    _k(CLIENT, Ev.CONNECTED, "one connection is up, from this local port", **T, conn=INT, lport=INT),
    _k(CLIENT, Ev.ECHOED, "the message came back on every connection", **T, bytes=INT, connections=INT),
    _k(CLIENT, Ev.CLOSE, "the client closed (t = 0 when it closes first)", **T, side=STR, how=STR, connections=INT),
    _k(CLIENT, Ev.EOF, "the server's FIN (or a RST) reached the client (errno: older clients did not say)",
       optional=("errno",), **T, conn=INT, read=INT, errno=STR),
    _k(CLIENT, Ev.SOCKET_CLOSED, "the client closed a connection after the server's", **T, conn=INT, so_error=INT),
    _k(CLIENT, Ev.ERROR, "the client gave up: what failed", **T, what=STR, errno=STR),
    # client-agent (images/src/client_agent.c)
    _k(CLIENT_AGENT, Ev.READY, "started, waiting for the harness's watch", **T, nice=INT),
    _k(CLIENT_AGENT, Ev.WATCHING, "the client's connections found, by local port", **T, lports=(list,)),
    _k(CLIENT_AGENT, Ev.SOCKETS, "the states of the client's sockets changed", **_SOCKETS),
    _k(CLIENT_AGENT, Ev.TW_APPEAR, "a client socket entered TIME_WAIT, on this local port",
       **T, lport=INT, expires_ms=INT, window_ms=NUM),
    _k(CLIENT_AGENT, Ev.TW_GONE, "no client socket in TIME_WAIT any more", **T, window_ms=NUM),
    _k(CLIENT_AGENT, Ev.RECONNECT, "a fresh socket's connect() from that TIME_WAIT on: the first that failed, "
       "and the one that got through (older agents tried once)", optional=("failures", "connected", "window_ms"),
       **T, ok=BOOL, lport=INT, step=STR, errno=STR, failures=INT, connected=BOOL, window_ms=NUM),
    _k(CLIENT_AGENT, Ev.FIXED_PORT_OK, "bind() + connect() from the client's fixed port got through",
       **T, lport=INT, connected=BOOL, failures=INT, window_ms=NUM),
    _k(CLIENT_AGENT, Ev.FIXED_PORT_FAIL, "the first failed try from the fixed port", **T, step=STR, errno=STR),
    _k(CLIENT_AGENT, Ev.POLL_STATS, "how many polls, how late the latest, the widest gap between two",
       optional=_POLL_STATS_NEW, **_POLL_STATS),
    _k(CLIENT_AGENT, Ev.DONE, "the client's connections are gone (and the fixed port worked)", **T),
    _k(CLIENT_AGENT, Ev.TIMEOUT, "max_wait_s ran out first", **T, after_s=NUM),
    _k(CLIENT_AGENT, Ev.ERROR, "the client's agent gave up: what failed", **T, what=STR),
    # fault-agent (images/src/fault_agent.sh): no clock of its own
    _k(FAULT, Ev.READY, "started, waiting for install"),
    _k(FAULT, Ev.INSTALLED, "the drop is in place"),
    _k(FAULT, Ev.COUNTED, "the kernel's counters are printed (its output lines before this)"),
    _k(FAULT, Ev.ERROR, "install or readout failed: what and why", what=STR),
    _k(FAULT, Ev.OUTPUT, "a line of the readout (the backend parses them)", text=STR),
    # server-keeper (images/src/server_keeper.c), with a user's server
    _k(KEEPER, Ev.READY, "started; starting the server", **T),
    _k(KEEPER, Ev.LISTENING, "the server holds a LISTEN socket on the port", **T, pid=INT),
    _k(KEEPER, Ev.ALIGNED, "the stop waited for its phase of the monotonic clock (--close-phase)",
       optional=("late_s",), **T, period_s=NUM, phase_s=NUM, waited_s=NUM, late_s=NUM),
    _k(KEEPER, Ev.CLOSE, "the server was stopped as server.stop says (t = 0)", **T, side=STR, how=STR),
    _k(KEEPER, Ev.RESTART_UP, "a fresh process of the server holds a LISTEN socket on the port",
       **T, attempt=INT, failures=INT, pid=INT),
    _k(KEEPER, Ev.RESTART_FAIL, "a start that failed otherwise than the one before: its exit status, its last "
       "line, and what held the port then (TIME_WAIT, LISTEN of a surviving process, or nothing)",
       **T, attempt=INT, status=INT, stderr=STR, held_by=STR, holder_pid=INT, holder=STR),
    _k(KEEPER, Ev.RESTART_STATS, "the starts: how many, how many failed while the port was held and how many "
       "otherwise, and the interval between them achieved",
       optional=("interval_ms",), **T, attempts=INT, bind_errors=INT, other=INT, interval_ms=NUM),
    _k(KEEPER, Ev.DONE, "the server came back up (and was stopped again)", **T),
    _k(KEEPER, Ev.TIMEOUT, "max_wait_s ran out before the server came back", **T, after_s=NUM),
    _k(KEEPER, Ev.ERROR, "the keeper gave up: what failed (a server that exited at once, or never listened)",
       **T, what=STR),
    # tcpdump
    _k(CAPTURE, Ev.OUTPUT, "a line tcpdump printed on stderr", text=STR),
    # the harness (execute.py, lab/topology.py)
    _k(HARNESS, Ev.NETWORK, "the trial's network exists, on this subnet (older runs: without its time)",
       optional=("mono",), **T, subnet=STR),
    _k(HARNESS, Ev.FAULT, "the fault backend applied, and where", backend=STR, injection_point=(str, NULL)),
    _k(HARNESS, Ev.RESTARTED, "the server's side made anew, as `docker restart` does (restart: container): "
       "its new container's address", **T, address=STR),
    _k(HARNESS, Ev.TRIAL_END, "how the trial ended for the harness: its error, where its time went, its pcap",
       optional=("logs", "capture", "phases", "wall_s", "not_applicable"), error=(str, NULL), phases=(dict,), wall_s=NUM,
       capture=(str, NULL), logs=STR, not_applicable=STR),
)
CATALOGUE: dict[tuple[str, str], Kind] = {(k.src, k.ev): k for k in KINDS}
# A program's line that is not an event becomes one of these (lab/streams.py).
for _src in (CLIENT, CLIENT_AGENT, AGENT, KEEPER):
    CATALOGUE.setdefault((_src, Ev.OUTPUT), Kind(_src, Ev.OUTPUT, {"text": STR}, "a line that is not an event"))


def problem(e: dict[str, Any]) -> str | None:
    """Why an event is not one the catalogue knows, or None."""
    kind = CATALOGUE.get((str(e.get("src")), str(e.get("ev"))))
    if kind is None:
        return f"unknown event {e.get('src')!r} {e.get('ev')!r}"
    return kind.problem(e)


def harness(ev: Ev, **fields: Any) -> dict[str, Any]:
    """An event of the harness's own, checked against the catalogue as it is made."""
    e = {"src": HARNESS, "ev": ev, **fields}
    why = problem(e)
    assert why is None, why
    return e
