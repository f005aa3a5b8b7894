"""A trial's raw data -> its TrialResult; many results -> statistics. Pure.

Each part of the record comes from one function over one source's events (record.py says which
part holds which figure). trial() joins them; `harness run` calls it once as each trial ends, and
`harness report` calls it again on what the run directory kept (events.jsonl and the pcaps): a fix
here fixes old runs too.
"""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass
from typing import Any

from harness import expect
from harness.events import AGENT, CLIENT, CLIENT_AGENT, FAULT, HARNESS, KEEPER, SERVER, Ev
from harness.faults.choose import named
from harness.plan import Trial
from harness.probes import capture
from harness.record import (
    COARSE,
    FAILED,
    INTERRUPTED,
    NOT_APPLICABLE,
    OK,
    CaptureFigures,
    ClientSide,
    FaultApplied,
    FaultCounts,
    HarnessFigures,
    RestartFailure,
    ServerSide,
    SysctlsRead,
    TrialResult,
)
from harness.spec import Case, Experiment
from harness.store import RunData

Event = dict[str, Any]
LOG_LINES = 30  # per program, in a failed trial's logs


def _first(events: list[Event], ev: str, **match: Any) -> Event | None:
    return next((e for e in events if e.get("ev") == ev
                 and all(e.get(k) == v for k, v in match.items())), None)


def close_time(events: list[Event], close_first: str) -> float | None:
    """t = 0: when the side that closes first closed (SIGINT sent, or close() called)."""
    e = _first(events, Ev.CLOSE, side=close_first)
    return e["mono"] if e else None


def _since(events: list[Event], close_first: str) -> Any:
    """e -> seconds from the close to event e (None for no event, or no close)."""
    t0 = close_time(events, close_first)
    return lambda e: round(e["mono"] - t0, 6) if e and t0 is not None else None


def _tcpext_delta(agent: list[Event], counter: str) -> int | None:
    """How much one of the namespace's TcpExt counters grew from the close to the end."""
    at = {e.get("at"): e.get("counters") for e in agent if e.get("ev") == Ev.TCPEXT}
    close, end = at.get("close"), at.get("end")
    if close is None or end is None:
        return None
    return end.get(counter, 0) - close.get(counter, 0)


def inferred_reuseaddr(tw_seen_s: float | None, rebind_reuseaddr_s: float | None, restart_s: float | None,
                       failed_in_time_wait: bool) -> tuple[bool | None, bool | None]:
    """(old, new): whether the old and the restarted server's listening sockets set SO_REUSEADDR,
    as the kernel's answers show from outside. Linux lets a socket bind a port a TIME_WAIT socket
    holds only when both set it (inet_csk_bind_conflict: the TIME_WAIT socket keeps its listener's
    sk_reuse). So during TIME_WAIT the agent's SO_REUSEADDR bind() working says the old one did, and
    failing that it did not; a restart that came up then says the new one did too; one that failed
    then, while the old one did, says the new one did not. Without a TIME_WAIT nothing is told.
    tw_seen_s: the last poll that saw the TIME_WAIT (it ended within the next poll's window)."""
    if tw_seen_s is None:
        return None, None
    old = rebind_reuseaddr_s is not None and rebind_reuseaddr_s < tw_seen_s
    if restart_s is not None and restart_s < tw_seen_s:
        return old, True
    return old, (False if old and failed_in_time_wait else None)


def _state_span(agent: list[Event], state: str) -> tuple[Event, Event] | tuple[None, None]:
    """The first poll that saw some watched socket in this state and the first after it that saw
    none in it (the agent reports the states on each change); (None, None) unless both were seen."""
    seen = [e for e in agent if e.get("ev") == Ev.SOCKETS]
    start = next((e for e in seen if state in e["states"]), None)
    end = next((e for e in seen if start is not None and e["mono"] > start["mono"] and state not in e["states"]), None)
    return (start, end) if start is not None and end is not None else (None, None)


def server_side(events: list[Event], close_first: str, poll_ms: int, peer_fin: bool = False,
                shared: bool = False) -> ServerSide:
    """Seconds after the close at which each thing happened in the server's namespace, from the
    agent's events (and the polls' windows of both agents), and the restarts, from whoever made
    them: the agent (the harness's server) or the keeper (a user's). peer_fin: the capture saw the
    passive closer's FIN, without which no TIME_WAIT can begin (tcp_fin -> tcp_time_wait): the
    kernel's count of timewait sockets (TcpExt TW, taken as one is scheduled for over 4 s) also
    counts an orphan kept in FIN_WAIT2 (tcp_time_wait(sk, TCP_FIN_WAIT2, ...)), so alone it does not
    say a TIME_WAIT no poll saw. shared: other trials ran in the namespace, whose sockets its TcpExt
    counters count too; those figures are then not this trial's (None)."""
    since = _since(events, close_first)
    agent = [e for e in events if e.get("src") == AGENT]
    keeper = [e for e in events if e.get("src") == KEEPER]
    restarter = keeper or agent
    appear, gone, done = _first(agent, Ev.TW_APPEAR), _first(agent, Ev.TW_GONE), _first(agent, Ev.DONE)
    restarts = _first(restarter, Ev.RESTART_STATS) or {}
    failures = tuple(RestartFailure(e["attempt"], e["stderr"], e.get("status"), e.get("held_by"), e.get("holder_pid"),
                                    e.get("holder")) for e in restarter if e.get("ev") == Ev.RESTART_FAIL)
    tw_gone_s, rebind_reuseaddr_s = since(gone), since(_first(agent, Ev.BIND_OK, reuseaddr=True))
    tw_seen_s = None if tw_gone_s is None or gone is None else tw_gone_s - gone["window_ms"] / 1000
    restart_s = since(_first(restarter, Ev.RESTART_UP))
    # A restart refused by the TIME_WAIT: the keeper saw it hold the port; the harness's own server
    # says bind() error, within the TIME_WAIT.
    failed_in_tw = any(e.get("held_by") == "TIME_WAIT" or ("held_by" not in e and "bind() error" in e["stderr"]
                                                           and tw_seen_s is not None and since(e) < tw_seen_s)
                       for e in restarter if e.get("ev") == Ev.RESTART_FAIL)
    old, new = inferred_reuseaddr(tw_seen_s, rebind_reuseaddr_s, restart_s, failed_in_tw)
    polls = _first(agent, Ev.POLL_STATS) or {}
    exited = _first(events, Ev.EXIT, src=SERVER)
    window = max((e["window_ms"] for e in events if "window_ms" in e), default=None)
    tw_entered = None if shared else _tcpext_delta(agent, "TW")
    fw2_start, fw2_end = _state_span(agent, "FIN_WAIT2")
    probe_ok = _first(agent, Ev.PROBE_BIND_OK)
    probe_errnos = dict.fromkeys(e["errno"] for e in agent if e.get("ev") == Ev.PROBE_BIND_FAIL)
    unseen = peer_fin and appear is None and tw_entered and polls.get("window_max_ms") is not None
    return ServerSide(
        close_mono=close_time(events, close_first),
        tw_appear_s=since(appear),
        tw_gone_s=tw_gone_s,
        time_wait_s=round(gone["mono"] - appear["mono"], 6) if appear and gone else None,
        time_wait_max_s=round(polls["window_max_ms"] / 1000, 6) if unseen else None,
        tw_timer_restarts=sum(1 for e in agent if e.get("ev") == Ev.TW_TIMER_RESTART),
        fin_wait2_s=round(fw2_end["mono"] - fw2_start["mono"], 6) if fw2_start and fw2_end else None,
        fin_wait2_gone_s=since(fw2_end),
        rebind_plain_s=since(_first(agent, Ev.BIND_OK, reuseaddr=False)),
        rebind_reuseaddr_s=rebind_reuseaddr_s,
        probe_bind_s=since(probe_ok),
        probe_bind_failures=probe_ok["failures"] if probe_ok else None,
        probe_bind_errno=", ".join(probe_errnos) or None,
        restart_s=restart_s,
        bind_errors=restarts.get("bind_errors", 0),
        restart_failures_other=restarts.get("other", 0),
        restart_interval_ms=restarts.get("interval_ms"),
        restart_failures=failures,
        old_reuseaddr_inferred=old,
        new_reuseaddr_inferred=new,
        observed_s=since(done),
        poll_late_max_ms=polls.get("late_max_ms"),
        window_max_ms=window,
        coarse=window is not None and window > COARSE * poll_ms,
        server_exit_status=exited.get("status") if exited else None,
        tw_peak=max((e["states"].count("TIME_WAIT") for e in agent if e.get("ev") == Ev.SOCKETS), default=0),
        tw_entered=tw_entered,
        tw_overflow=None if shared else _tcpext_delta(agent, "TCPTimeWaitOverflow"),
    )


def client_side(events: list[Event], close_first: str) -> ClientSide:
    """The client's side, from its agent's events (all None when the case does not watch it)."""
    since = _since(events, close_first)
    watcher = [e for e in events if e.get("src") == CLIENT_AGENT]
    if not watcher:
        return ClientSide()
    appear, gone = _first(watcher, Ev.TW_APPEAR), _first(watcher, Ev.TW_GONE)
    worked, refused = _first(watcher, Ev.RECONNECT, ok=True), _first(watcher, Ev.RECONNECT, ok=False)
    fixed, failed = _first(watcher, Ev.FIXED_PORT_OK), _first(watcher, Ev.FIXED_PORT_FAIL)
    return ClientSide(
        client_tw_appear_s=since(appear),
        client_tw_gone_s=since(gone),
        client_tw_s=round(gone["mono"] - appear["mono"], 6) if appear and gone else None,
        client_tw_port=appear.get("lport") if appear else None,
        reconnect_s=since(worked),
        reconnect_port=worked.get("lport") if worked else None,
        reconnect_same_port=int(worked.get("lport") == appear.get("lport")) if worked and appear else None,
        reconnect_failures=worked.get("failures", 0) if worked else None,
        reconnect_connected=worked.get("connected", True) if worked else None,  # older agents: ok meant connected
        reconnect_error=f"{refused.get('step')}: {refused.get('errno')}" if refused else None,
        fixed_port_s=since(fixed),
        fixed_port_failures=fixed.get("failures") if fixed else None,
        fixed_port_connected=fixed.get("connected") if fixed else None,
        fixed_port_error=f"{failed.get('step')}: {failed.get('errno')}" if failed else None,
    )


def outcome(events: list[Event], src: str = AGENT) -> tuple[str, str]:
    """(OK, "") when that observer saw everything through, else (FAILED, why)."""
    for e in events:
        if e.get("src") != src:
            continue
        if e.get("ev") in (Ev.DONE, Ev.CUT):  # cut: its namespace went, as the case asks
            return OK, ""
        if e.get("ev") == Ev.TIMEOUT:
            return FAILED, ("" if src == AGENT else f"{src}: ") + f"not over after {e.get('after_s')} s (max_wait_s)"
        if e.get("ev") == Ev.ERROR:
            return FAILED, f"{src}: {e.get('what')}"
    return FAILED, f"the {src} ended without a result"


def sysctls_read(events: list[Event], t: Trial) -> tuple[SysctlsRead, list[str]]:
    """Each side's sysctls as its program read them back in the namespace, and how any differ
    from what the case asks for (whitespace aside: the kernel prints ranges with a tab)."""
    read, problems = {}, []
    for side, src in (("server", AGENT), ("client", CLIENT)):
        e = _first(events, Ev.SYSCTLS, src=src)
        read[side] = e.get("values", {}) if e else {}
        for name, asked in t.params.sysctls(side).items():
            got = read[side].get(name)
            if e is not None and (got is None or got.split() != str(asked).split()):
                problems.append(f"{side} {name} is {got!r} in the namespace; the case asks for {asked!r}")
    return SysctlsRead(read["server"], read["client"]), problems


def fault_counts(events: list[Event], backend: str, t: Trial) -> FaultCounts:
    """The fault agent's readout (its output lines) -> final_acks_dropped, ...; ValueError if unreadable."""
    if _first(events, Ev.COUNTED, src=FAULT) is None:
        raise ValueError("the fault agent never printed its counters")
    text = "\n".join(e["text"] for e in events if e.get("src") == FAULT and e.get("ev") == Ev.OUTPUT)
    return FaultCounts(**named(backend).counts(text, t.params, t.port))


def logs(events: list[Event]) -> str:
    """The last lines of each program, as a failed trial shows them."""
    by_src: dict[str, list[Event]] = {}
    for e in events:
        if e.get("src") != HARNESS:
            by_src.setdefault(e.get("src", "?"), []).append(e)
    return "\n".join(f"{src}: {e.get('text', e)}" for src, es in by_src.items() for e in es[-LOG_LINES:])


def trial(exp: Experiment, t: Trial, events: list[Event], pcap: bytes | None, kernel: str = "") -> TrialResult:
    """Every figure of one trial, from its events (the programs' and the harness's) and its pcap;
    `kernel` is the release of the engine it ran on."""
    case = Case(t.case, t.params)
    ids: dict[str, Any] = {"trial": t.id, "index": t.index, "case": t.case, "repeat": t.repeat,
                           "params": t.params, "engine": t.engine, "kernel": kernel,
                           "server_program": exp.server.label if exp.server else ""}
    if not events:
        return TrialResult(**ids, status=INTERRUPTED, why="not started: the run was stopped first",
                           expectations=tuple(expect.outcomes(exp, case, None)))
    skipped = _first(events, Ev.TRIAL_END, src=HARNESS) or {}
    if skipped.get("not_applicable"):  # never run: nothing to judge
        return TrialResult(**ids, status=NOT_APPLICABLE, why=skipped["not_applicable"])
    sysctls, problems = sysctls_read(events, t)
    fault = FaultApplied()
    counts = FaultCounts(final_acks_dropped=0 if t.params.final_ack_loss.kind == "none" else None)
    applied = _first(events, Ev.FAULT, src=HARNESS)
    if applied is not None:
        fault = FaultApplied(applied["backend"], applied["injection_point"])
        try:
            counts = fault_counts(events, fault.backend, t)
        except ValueError as exc:
            problems.append(f"fault readout: {exc}")

    end = _first(events, Ev.TRIAL_END, src=HARNESS)
    remade = _first(events, Ev.RESTARTED, src=HARNESS)
    aligned = _first(events, Ev.ALIGNED)
    harness = HarnessFigures(end.get("wall_s") if end else None, end.get("phases", {}) if end else {},
                             t.lab or t.id, t.port, aligned["phase_s"] if aligned else None,
                             remade["address"] if remade else None)
    path = end.get("capture") if end else None
    captured = CaptureFigures(capture=path)
    if pcap is not None:
        try:
            captured = dataclasses.replace(capture.figures(pcap, events, t.port, t.params, counts.dropped_copies),
                                           capture=path)
        except capture.Unreadable as exc:
            problems.append(f"capture {path or 'pcap'}: {exc}")
        lost = capture.kernel_drops(events)
        if lost is None:
            problems.append("tcpdump never said how many packets its ring dropped: whether the capture is "
                            "whole is unknown")
        elif lost:
            problems.append(f"the capture lost {lost} packet(s) of its lab (tcpdump: dropped by kernel, its "
                            "ring full): the counts from the packets could be short")

    status, why = outcome(events)
    for watcher, runs in ((CLIENT_AGENT, t.params.watches_client), (KEEPER, exp.server is not None)):
        if status == OK and runs:
            status, why = outcome(events, watcher)
    if end is None:
        status, why = FAILED, "no end record: the harness stopped before this trial ended"
    elif end.get("error") == "interrupted":
        status, why = INTERRUPTED, "interrupted"
    elif end.get("error"):
        status, why = FAILED, end["error"]
    elif status == OK and problems:
        status, why = FAILED, problems[0]
    peer_fin = bool(capture.peer_fins(captured.timeline, t.params.close_first))
    observed = server_side(events, t.params.close_first, exp.poll_ms, peer_fin, t.shared)
    held = [f for f in observed.restart_failures if f.port_held_by]  # a keeper's: it looked at the port
    if status == FAILED and held and "not over" in why:  # what kept the server from coming back
        why += f"; the restart failed: {held[-1].stderr} (port held by {held[-1].port_held_by})"
    if status != OK:
        harness = dataclasses.replace(harness, logs=end["logs"] if end and end.get("logs") else logs(events))
    r = TrialResult(**ids, status=status, why=why, fault=fault,
                    server=observed, sysctls=sysctls,
                    client=client_side(events, t.params.close_first), counts=counts, capture_part=captured,
                    harness=harness)
    return dataclasses.replace(r, expectations=tuple(expect.outcomes(exp, case, r if r.ok else None)))


@dataclass(frozen=True)
class Summary:
    n: int
    median: float
    min: float
    max: float
    stdev: float


def summarize(values: list[float | int | None]) -> Summary | None:
    """Statistics of the values that were measured; None when none were."""
    xs = [float(v) for v in values if v is not None]
    if not xs:
        return None
    return Summary(len(xs), statistics.median(xs), min(xs), max(xs),
                   statistics.stdev(xs) if len(xs) > 1 else 0.0)


def run(data: RunData) -> list[TrialResult]:
    """Every trial of a run directory analysed again from its raw data, as the manifest planned them."""
    events = data.trial_events()
    return [trial(data.exp, t, events.get(t.id, []), data.pcap(t.id), data.kernel(t.engine)) for t in data.trials]
