"""The result of one trial: one typed record, and its JSON form.

`harness run`, `harness report`, the tables, the figures and the JSON output all
read this; only analyze.trial() makes one (from a trial's raw data).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

OK, FAILED, INTERRUPTED = "ok", "failed", "interrupted"
COARSE = 2.0  # a reported time's window wider than this many poll intervals: a poll came too late

# The figures of a trial shown in the tables, in order: (field, heading).
FIGURES = (
    ("time_wait_s", "TIME_WAIT (s)"),
    ("rebind_plain_s", "bind() plain (s)"),
    ("rebind_reuseaddr_s", "bind() SO_REUSEADDR (s)"),
    ("restart_s", "restart up (s)"),
    ("bind_errors", "bind() errors"),
    ("final_acks_dropped", "ACKs dropped"),
    ("fin_retransmits", "FIN retransmits"),
    ("last_fin_s", "last FIN (s)"),
    ("final_acks_reset", "ACKs answered with RST"),
    ("server_rsts", "server RSTs"),
    ("client_rsts", "client RSTs"),
    ("server_exit_status", "server exit status"),
    ("tw_entered", "TIME_WAIT sockets (kernel count)"),
    ("tw_peak", "TIME_WAIT sockets (peak seen)"),
    ("tw_overflow", "TIME_WAIT overflows"),
    ("client_tw_s", "client TIME_WAIT (s)"),
    ("client_tw_port", "client TIME_WAIT port"),
    ("reconnect_s", "reconnect (s)"),
    ("reconnect_port", "reconnect port"),
    ("fixed_port_s", "fixed port free (s)"),
    ("fixed_port_failures", "fixed port failures"),
)
# Figures a table shows when some case sets one of these case variables away from its default,
# and only then: those every trial measures but only some experiments ask about (so the book's
# tables keep their columns), and the client's TIME_WAIT, whose "-" (never) is the finding when
# no trial has one. Other figures show when some trial has a value.
SHOWN_FOR = {
    "client_tw_s": ("watch_client",),
    "last_fin_s": ("client_sysctls", "server_sysctls"),
    "final_acks_reset": ("final_ack_reset",),
    "server_rsts": ("server_stop", "final_ack_reset"),
    "client_rsts": ("server_stop", "final_ack_reset"),
    "server_exit_status": ("server_stop",),
    "tw_entered": ("connections", "final_ack_reset"),
    "tw_peak": ("connections",),
    "tw_overflow": ("connections",),
}
# Figures that are whole numbers: counts, and the server's exit status.
COUNTS = frozenset({"bind_errors", "final_acks_dropped", "final_acks_matched", "fin_retransmits",
                    "final_acks_seen", "tw_timer_restarts", "restart_failures_other", "final_acks_reset",
                    "server_rsts", "client_rsts", "server_exit_status", "tw_entered", "tw_peak", "tw_overflow",
                    "fixed_port_failures", "reconnect_same_port"})
PORTS = frozenset({"client_tw_port", "reconnect_port"})
# Figures that name something (a port, how a process ended) rather than measure it: the tables
# show them; compare does not judge them.
LABELS = PORTS | {"server_exit_status", "reconnect_same_port"}
# Every number of a trial an expectation can bound: seconds after the close, milliseconds, counts.
MEASURES = ("time_wait_s", "tw_appear_s", "tw_gone_s", "rebind_plain_s", "rebind_reuseaddr_s", "restart_s",
            "observed_s", "poll_late_max_ms", "window_max_ms", "last_fin_s", "client_tw_s",
            "client_tw_appear_s", "client_tw_gone_s", "reconnect_s", "fixed_port_s", *sorted(COUNTS))


@dataclass
class TrialResult:
    # Which trial.
    trial: str
    index: int
    case: str
    repeat: int
    params: dict[str, Any]
    status: str = FAILED  # OK, FAILED or INTERRUPTED
    why: str = ""
    # Where it ran: the engine's name (a Docker context, an address, or "default") and its kernel.
    engine: str = ""
    kernel: str = ""

    # The fault, as applied: backend "none" when the case asks for no loss.
    backend: str = "none"
    injection_point: str | None = None

    # From the agent in the server's namespace; seconds after the close (t = 0), which was at
    # close_mono on the host's CLOCK_MONOTONIC.
    close_mono: float | None = None
    tw_appear_s: float | None = None
    tw_gone_s: float | None = None
    time_wait_s: float | None = None
    tw_timer_restarts: int = 0
    rebind_plain_s: float | None = None
    rebind_reuseaddr_s: float | None = None
    restart_s: float | None = None
    bind_errors: int = 0
    restart_failures_other: int = 0
    observed_s: float | None = None  # the close until the port was free: the kernel's part
    poll_late_max_ms: float | None = None  # how late the agent's latest poll started
    window_max_ms: float | None = None  # widest window between two polls around a reported change
    coarse: bool = False  # that window was wider than the resolution asked for (COARSE x poll_ms)
    server_exit_status: int | None = None  # as the shell reports it: 128 + the signal's number after one
    # The server's sockets that entered TIME_WAIT, as the kernel counts them (TcpExt TW,
    # __inet_twsk_schedule): seen however short their TIME_WAIT and however late a poll.
    tw_entered: int | None = None
    tw_peak: int | None = None  # most of the server's sockets the agent saw in TIME_WAIT at once
    tw_overflow: int | None = None  # sockets that could not enter TIME_WAIT (TcpExt TCPTimeWaitOverflow)

    # The sysctls in force in each side's network namespace, read back there: name -> value (None:
    # unreadable). Those the case sets, and a few that govern the close.
    server_sysctls: dict[str, str | None] = field(default_factory=dict)
    client_sysctls: dict[str, str | None] = field(default_factory=dict)

    # From the agent on the client's side (watch_client, client_port); seconds after the close.
    client_tw_appear_s: float | None = None
    client_tw_gone_s: float | None = None
    client_tw_s: float | None = None
    client_tw_port: int | None = None  # the local port of the client's socket in TIME_WAIT
    reconnect_s: float | None = None  # a fresh socket's connect() during that TIME_WAIT, when it worked
    reconnect_port: int | None = None  # the local port the kernel gave it
    reconnect_same_port: int | None = None  # 1 if that is the TIME_WAIT's port, else 0
    reconnect_error: str | None = None  # why the reconnect failed
    fixed_port_s: float | None = None  # the first bind() + connect() from client_port the kernel let through
    fixed_port_failures: int | None = None  # attempts (one per poll) that failed before
    fixed_port_error: str | None = None  # the first failure: the call and its error

    # From the fault's kernel counters.
    final_acks_dropped: int | None = None
    final_acks_matched: int | None = None
    dropped_copies: list[int] | None = None
    final_acks_reset: int | None = None  # copies answered with a RST (final_ack_reset)

    # From the packet capture.
    capture: str | None = None  # the pcap, relative to the run directory
    fin_retransmits: int | None = None
    final_acks_seen: int | None = None
    last_fin_s: float | None = None  # the passive closer's last FIN copy
    server_rsts: int | None = None  # RST segments each side sent on the trial's first connection
    client_rsts: int | None = None
    timeline: list[dict[str, Any]] = field(default_factory=list)

    # Each bound of each expectation that applies to the trial's case, judged (expect.Outcome's JSON).
    expectations: list[dict[str, Any]] = field(default_factory=list)

    # From the harness: where its own time went.
    wall_s: float | None = None
    phases: dict[str, float] = field(default_factory=dict)
    logs: str = ""  # for a failed trial: the last lines of each program

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def failed_expectations(self) -> list[dict[str, Any]]:
        return [o for o in self.expectations if o["verdict"] == "fail"]

    def to_json(self) -> dict[str, Any]:
        doc = dataclasses.asdict(self)
        if not doc["logs"]:
            del doc["logs"]
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> TrialResult:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in names})


def labeller(results: list[TrialResult]) -> Callable[[TrialResult], str]:
    """How results are told apart in tables and figures: by case, and by kernel as well when the
    run used several engines (the kernel is then a dimension of the results; by the engine's name
    where two engines share a kernel)."""
    kernels = {r.engine: r.kernel for r in results}
    if len(kernels) <= 1:
        return lambda r: r.case
    if len(set(kernels.values())) == len(kernels) and all(kernels.values()):
        return lambda r: f"{r.case} [{r.kernel}]"
    return lambda r: f"{r.case} [{r.engine}]"


def by_case(results: list[TrialResult]) -> dict[str, list[TrialResult]]:
    """Results grouped by their label (labeller), groups in the order they first appear."""
    label = labeller(results)
    groups: dict[str, list[TrialResult]] = {}
    for r in sorted(results, key=lambda r: r.index):
        groups.setdefault(label(r), []).append(r)
    return groups
