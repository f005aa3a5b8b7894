"""The result of one trial: one typed record, composed of what each source yielded, and its JSON.

Each part is a frozen dataclass made by one function from one source's events (analyze.py,
probes/capture.py, faults/): the agents' observations, the sysctls read back, the client's side,
the fault as applied and its counters, the capture, the expectations, the harness's own timing.
The record joins them; every class has slots, so a field that does not exist is an error, never
a value silently lost. `harness run`, `harness report`, the tables, the figures and the JSON output
all read this; readers of trials.jsonl go through from_json.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.figures import UPPER_BOUNDS
from harness.spec import Params

# NOT_APPLICABLE: not run, its engine's kernel lacks a sysctl the case sets (the why names it).
OK, FAILED, INTERRUPTED, NOT_APPLICABLE = "ok", "failed", "interrupted", "not applicable"
COARSE = 2.0  # a reported time's window wider than this many poll intervals: a poll came too late
PASS, FAIL, NO_DATA = "pass", "fail", "no data"


@dataclass(frozen=True, slots=True)
class FaultApplied:
    """The fault backend as applied, from the harness's "fault" event ("none": no loss asked for)."""

    backend: str = "none"
    injection_point: str | None = None


@dataclass(frozen=True, slots=True)
class RestartFailure:
    """A failed start of the server, as its keeper saw it (one per distinct way of failing): its exit
    status, its last line, and what held the port then (TIME_WAIT; LISTEN, a surviving process's,
    named by holder_pid and holder; or "" for nothing). The harness's own agent says the line alone."""

    attempt: int
    stderr: str
    status: int | None = None
    held_by: str | None = None
    holder_pid: int | None = None
    holder: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}

    @property
    def port_held_by(self) -> str | None:
        """What held the port, in words (None: not looked at)."""
        if self.held_by is None:
            return None
        if self.held_by == "LISTEN":
            return f"LISTEN: {self.holder} (pid {self.holder_pid})"
        return self.held_by or "nothing"  # TIME_WAIT, or the old connection's closing state

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> RestartFailure:
        return cls(**{k: doc[k] for k in cls.__slots__ if k in doc})


@dataclass(frozen=True, slots=True)
class ServerSide:
    """What the agent in the server's namespace saw; seconds after the close (t = 0), which was at
    close_mono on the host's CLOCK_MONOTONIC (analyze.server_side)."""

    close_mono: float | None = None
    tw_appear_s: float | None = None
    tw_gone_s: float | None = None
    time_wait_s: float | None = None
    # A TIME_WAIT the kernel counted (tw_entered) that no poll saw: it lasted less than this, the
    # widest gap between two polls (time_wait_s is then None: no poll timed it).
    time_wait_max_s: float | None = None
    tw_timer_restarts: int = 0
    fin_wait2_s: float | None = None  # how long the server's socket was seen in FIN_WAIT2
    fin_wait2_gone_s: float | None = None  # the first poll that saw it out of FIN_WAIT2
    rebind_plain_s: float | None = None
    rebind_reuseaddr_s: float | None = None
    probe_bind_s: float | None = None  # the case's bind_probe first worked
    probe_bind_failures: int | None = None  # its tries that failed before
    probe_bind_errno: str | None = None  # the errno names it failed with, in order ("EADDRINUSE")
    restart_s: float | None = None
    bind_errors: int = 0
    restart_failures_other: int = 0
    restart_interval_ms: float | None = None  # the mean between restarts (restart_every_ms, slower while TIME_WAIT cannot end)
    restart_failures: tuple[RestartFailure, ...] = ()  # each distinct way the restarts failed
    # Whether the old server's and the restarted server's listening sockets set SO_REUSEADDR, as
    # the kernel's answers show it from outside (analyze.inferred_reuseaddr); None: they cannot tell.
    old_reuseaddr_inferred: bool | None = None
    new_reuseaddr_inferred: bool | None = None
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


@dataclass(frozen=True, slots=True)
class SysctlsRead:
    """The sysctls in force in each side's network namespace, read back there: name -> value (None:
    unreadable). Those the case sets, and a few that govern the close (analyze.sysctls_read)."""

    server_sysctls: dict[str, str | None] = field(default_factory=dict)
    client_sysctls: dict[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ClientSide:
    """From the agent on the client's side (watch_client, client_port); seconds after the close
    (analyze.client_side)."""

    client_tw_appear_s: float | None = None
    client_tw_gone_s: float | None = None
    client_tw_s: float | None = None
    client_tw_port: int | None = None  # the local port of the client's socket in TIME_WAIT
    # A fresh socket's connect() from that TIME_WAIT on, every poll until the kernel let one through:
    reconnect_s: float | None = None  # when one first did
    reconnect_port: int | None = None  # the local port the kernel gave it
    reconnect_same_port: int | None = None  # 1 if that is the TIME_WAIT's port, else 0
    reconnect_failures: int | None = None  # tries that failed before it
    reconnect_connected: bool | None = None  # it connected (else the server refused it: the SYN left)
    reconnect_error: str | None = None  # the first failure: the call and its error
    fixed_port_s: float | None = None  # the first bind() + connect() from client_port the kernel let through
    fixed_port_failures: int | None = None  # attempts (one per poll) that failed before
    fixed_port_connected: bool | None = None  # that attempt connected (else the server refused it)
    fixed_port_error: str | None = None  # the first failure: the call and its error


@dataclass(frozen=True, slots=True)
class FaultCounts:
    """The fault's kernel counters, read by the fault agent (faults/*.py counts())."""

    final_acks_dropped: int | None = None
    final_acks_matched: int | None = None
    dropped_copies: list[int] | None = None
    final_acks_reset: int | None = None  # copies answered with a RST (final_ack_reset)


@dataclass(frozen=True, slots=True)
class Segment:
    """One segment of the close as captured, named; t in seconds after the close."""

    t: float | None
    sender: str  # "server" or "client" ("from" in JSON)
    what: str
    flags: str
    seq: int
    ack: int | None
    rel_seq: int | None  # as Wireshark shows them: from each side's SYN (None without the handshake)
    rel_ack: int | None
    copy: int | None = None  # a final ACK's number, from 0
    dropped: bool | None = None  # that copy was dropped by the fault
    reset: bool | None = None  # that copy was answered with a RST

    def to_json(self) -> dict[str, Any]:
        doc = {"t": self.t, "from": self.sender, "what": self.what, "flags": self.flags, "seq": self.seq,
               "ack": self.ack, "rel_seq": self.rel_seq, "rel_ack": self.rel_ack}
        doc.update({k: v for k in ("copy", "dropped", "reset") if (v := getattr(self, k)) is not None})
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Segment:
        return cls(doc["t"], doc["from"], doc["what"], doc["flags"], doc["seq"], doc["ack"], doc["rel_seq"],
                   doc["rel_ack"], doc.get("copy"), doc.get("dropped"), doc.get("reset"))


@dataclass(frozen=True, slots=True)
class CaptureFigures:
    """From the packet capture (probes/capture.figures); `capture` is the pcap's path in the run
    directory."""

    capture: str | None = None
    fin_retransmits: int | None = None
    final_acks_seen: int | None = None
    last_fin_s: float | None = None  # the passive closer's last FIN copy
    server_rsts: int | None = None  # RST segments each side sent on the trial's first connection
    client_rsts: int | None = None
    timeline: tuple[Segment, ...] = ()
    # A new connection from the old connection's client port (a client with a fixed port), as the
    # capture shows it: its first SYN, the SYNs sent until the server answered one with a SYN-ACK,
    # the bare ACKs the server sent instead (a TIME_WAIT socket acknowledging the old connection),
    # the SYN-ACK, and its ISN minus the old connection's next server sequence number (65537 when
    # a TIME_WAIT socket handed the SYN to the listener: tcp_timewait_state_process, tw_snd_nxt +
    # 65535 + 2). None without such a SYN.
    same_port_syn_s: float | None = None
    same_port_syns: int | None = None
    same_port_tw_acks: int | None = None
    same_port_accepted_s: float | None = None
    same_port_isn_offset: int | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """One bound of one expectation, on one trial (expect.outcomes)."""

    expect: int  # its index in the file
    name: str
    check: str  # the bound in words
    verdict: str
    value: float | None = None
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Outcome:
        return cls(**{k: doc[k] for k in cls.__slots__ if k in doc})


@dataclass(frozen=True, slots=True)
class HarnessFigures:
    """From the harness: where the trial ran, where its own time went, and a failed trial's last lines."""

    wall_s: float | None = None
    phases: dict[str, float] = field(default_factory=dict)
    lab: str = ""  # the lab it ran in: its own (its trial id) or one its case's repeats shared ("" in older runs)
    server_port: int | None = None  # its server's port: its own in a shared lab
    close_phase_s: float | None = None  # the phase of the wheel grid (or --close-phase period) its close waited for
    restart_address: str | None = None  # restart: container: the server's address in its new namespace
    logs: str = ""  # for a failed trial: the last lines of each program


# Fields that hold a list of typed items, and the item's class (JSON: a list of objects).
NESTED: dict[str, Any] = {"timeline": Segment, "restart_failures": RestartFailure}
# The record's parts, in the order of its JSON form.
PARTS: dict[str, type] = {"fault": FaultApplied, "server": ServerSide, "sysctls": SysctlsRead,
                          "client": ClientSide, "counts": FaultCounts, "capture": CaptureFigures,
                          "harness": HarnessFigures}
OWNER = {f.name: part for part, cls in PARTS.items() for f in dataclasses.fields(cls)}  # figure -> its part


@dataclass(frozen=True, slots=True, init=False)
class TrialResult:
    trial: str
    index: int
    case: str
    repeat: int
    params: Params
    status: str  # OK, FAILED, INTERRUPTED or NOT_APPLICABLE
    why: str
    # Where it ran: the engine's name (a Docker context, an address, or "default") and its kernel.
    engine: str
    kernel: str
    server_program: str  # "" for the harness's echo server, else the user's server's program
    fault: FaultApplied
    server: ServerSide
    sysctls: SysctlsRead
    client: ClientSide
    counts: FaultCounts
    capture_part: CaptureFigures
    expectations: tuple[Outcome, ...]
    harness: HarnessFigures

    def __init__(self, trial: str, index: int, case: str, repeat: int, params: Params | Mapping[str, Any],
                 status: str = FAILED, why: str = "", engine: str = "", kernel: str = "", server_program: str = "",
                 expectations: tuple[Outcome, ...] | list[Any] = (), **figures: Any):
        """The parts by name (fault=FaultApplied(...), ...), or any of their fields by name, which
        replace the part's: a name that is neither is a TypeError. params and expectations may
        come in their JSON form."""
        parts = {name: figures.pop(name if name != "capture" else "capture_part", None) or cls()
                 for name, cls in PARTS.items()}
        changes: dict[str, dict[str, Any]] = {}
        for key, value in figures.items():
            if key not in OWNER:
                raise TypeError(f"a trial record has no field {key!r}")
            changes.setdefault(OWNER[key], {})[key] = value
        for name, fields in changes.items():
            for key, item in NESTED.items():  # typed items, in their JSON form too
                if key in fields:
                    fields[key] = tuple(x if isinstance(x, item) else item.from_json(x) for x in fields[key])
            parts[name] = dataclasses.replace(parts[name], **fields)
        setter = object.__setattr__
        for name, value in (("trial", trial), ("index", index), ("case", case), ("repeat", repeat),
                            ("params", params if isinstance(params, Params) else Params.from_json(params)),
                            ("status", status), ("why", why), ("engine", engine), ("kernel", kernel),
                            ("server_program", server_program),
                            ("expectations", tuple(o if isinstance(o, Outcome) else Outcome.from_json(o)
                                                   for o in expectations)),
                            *((k if k != "capture" else "capture_part", v) for k, v in parts.items())):
            setter(self, name, value)

    def __getattr__(self, name: str) -> Any:
        """A figure, read from the part that holds it (r.time_wait_s)."""
        part = OWNER.get(name)
        if part is None:
            raise AttributeError(f"a trial record has no field {name!r}")
        return getattr(object.__getattribute__(self, "capture_part" if part == "capture" else part), name)

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def failed(self) -> bool:
        """It should have measured and did not (a case not applicable on its kernel did not fail)."""
        return self.status not in (OK, NOT_APPLICABLE)

    @property
    def restart_blocked_by(self) -> str | None:
        """What held the port as restarts failed, from the kernel, in the order seen: "TIME_WAIT",
        "LISTEN: NAME (pid N)" (a surviving process's), "nothing" (they failed otherwise)."""
        return ", ".join(dict.fromkeys(h for f in self.restart_failures if (h := f.port_held_by))) or None

    def shorter_than(self, figure: str) -> float | None:
        """The upper bound of a figure that happened too briefly for any poll to time it (the figure
        is then None; figures.UPPER_BOUNDS names its bound), or None."""
        bound = UPPER_BOUNDS.get(figure)
        return getattr(self, bound) if bound is not None and getattr(self, figure) is None else None

    @property
    def failed_expectations(self) -> list[Outcome]:
        return [o for o in self.expectations if o.verdict == FAIL]

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"trial": self.trial, "index": self.index, "case": self.case, "repeat": self.repeat,
                               "params": self.params.to_json(), "status": self.status, "why": self.why,
                               "engine": self.engine, "kernel": self.kernel, "server_program": self.server_program}
        for name in PARTS:
            part = getattr(self, name if name != "capture" else "capture_part")
            if name == "harness":
                doc["expectations"] = [o.to_json() for o in self.expectations]
            for f in dataclasses.fields(part):
                value = getattr(part, f.name)
                doc[f.name] = [x.to_json() for x in value] if f.name in NESTED else value
        if not doc["logs"]:
            del doc["logs"]
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> TrialResult:
        """A record as trials.jsonl holds it; fields it does not know (from another version) are left out."""
        known = {k: v for k, v in doc.items() if k in OWNER or k in ("trial", "index", "case", "repeat", "params",
                                                                     "status", "why", "engine", "kernel",
                                                                     "server_program", "expectations")}
        return cls(**known)


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


def none_ran(trials: list[TrialResult]) -> bool:
    """A case (or run) whose every trial was not applicable on its kernel: nothing of it was measured."""
    return all(t.status == NOT_APPLICABLE for t in trials)


def by_case(results: list[TrialResult]) -> dict[str, list[TrialResult]]:
    """Results grouped by their label (labeller), groups in the order they first appear."""
    label = labeller(results)
    groups: dict[str, list[TrialResult]] = {}
    for r in sorted(results, key=lambda r: r.index):
        groups.setdefault(label(r), []).append(r)
    return groups
