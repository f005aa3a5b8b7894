"""A trial's raw data -> its TrialResult; many results -> statistics. Pure.

`harness run` calls trial() as each trial ends, `harness report` calls it again
on what the run directory kept (events.jsonl and the pcaps): a fix here fixes
old runs too.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from harness import expect, plan, spec
from harness.faults.choose import named
from harness.plan import Trial
from harness.probes import capture
from harness.probes.commands import CLIENT_AGENT
from harness.record import COARSE, FAILED, INTERRUPTED, OK, TrialResult
from harness.spec import Case, Experiment
from harness.store import SPEC, RunData

Event = dict[str, Any]
HARNESS = "harness"  # the src of the events the harness itself writes about a trial
AGENT = "agent"  # the observer on the server's side (CLIENT_AGENT on the client's)
LOG_LINES = 30  # per program, in a failed trial's logs


def _first(events: list[Event], ev: str, **match: Any) -> Event | None:
    return next((e for e in events if e.get("ev") == ev
                 and all(e.get(k) == v for k, v in match.items())), None)


def close_time(events: list[Event], close_first: str) -> float | None:
    """t = 0: when the side that closes first closed (SIGINT sent, or close() called)."""
    e = _first(events, "close", side=close_first)
    return e["mono"] if e else None


def _since(events: list[Event], close_first: str) -> Any:
    """e -> seconds from the close to event e (None for no event, or no close)."""
    t0 = close_time(events, close_first)
    return lambda e: round(e["mono"] - t0, 6) if e and t0 is not None else None


def _tcpext_delta(agent: list[Event], counter: str) -> int | None:
    """How much one of the namespace's TcpExt counters grew from the close to the end."""
    at = {e.get("at"): e.get("counters") for e in agent if e.get("ev") == "tcpext"}
    close, end = at.get("close"), at.get("end")
    if close is None or end is None:
        return None
    return end.get(counter, 0) - close.get(counter, 0)


def agent_figures(events: list[Event], close_first: str) -> dict[str, Any]:
    """Seconds after the close at which each thing happened, from the agent's and client's events."""
    since = _since(events, close_first)
    agent = [e for e in events if e.get("src") == AGENT]
    appear, gone, done = _first(agent, "tw_appear"), _first(agent, "tw_gone"), _first(agent, "done")
    restarts = [e for e in agent if e.get("ev") == "restart_fail"]
    # The agent counts its failed restarts (restart_stats), listing only those that failed
    # otherwise than the one before; runs made before it did list every one.
    counted = _first(agent, "restart_stats")
    polls = _first(agent, "poll_stats") or {}
    exited = _first(events, "exit", src="server")
    return {
        "tw_appear_s": since(appear),
        "tw_gone_s": since(gone),
        "time_wait_s": round(gone["mono"] - appear["mono"], 6) if appear and gone else None,
        "tw_timer_restarts": sum(1 for e in agent if e.get("ev") == "tw_timer_restart"),
        "rebind_plain_s": since(_first(agent, "bind_ok", reuseaddr=False)),
        "rebind_reuseaddr_s": since(_first(agent, "bind_ok", reuseaddr=True)),
        "restart_s": since(_first(agent, "restart_up")),
        "bind_errors": counted["bind_errors"] if counted else
        sum(1 for e in restarts if "bind() error" in e.get("stderr", "")),
        "restart_failures_other": counted["other"] if counted else
        sum(1 for e in restarts if "bind() error" not in e.get("stderr", "")),
        "observed_s": since(done),
        "poll_late_max_ms": polls.get("late_max_ms"),
        "window_max_ms": max((e["window_ms"] for e in events if "window_ms" in e), default=None),
        "server_exit_status": exited.get("status") if exited else None,
        "tw_peak": max((e["states"].count("TIME_WAIT") for e in agent if e.get("ev") == "sockets"), default=0),
        "tw_entered": _tcpext_delta(agent, "TW"),
        "tw_overflow": _tcpext_delta(agent, "TCPTimeWaitOverflow"),
    }


def client_figures(events: list[Event], close_first: str) -> dict[str, Any]:
    """The client's side, from its agent's events (none when the case does not watch it)."""
    since = _since(events, close_first)
    watcher = [e for e in events if e.get("src") == CLIENT_AGENT]
    if not watcher:
        return {}
    appear, gone = _first(watcher, "tw_appear"), _first(watcher, "tw_gone")
    again, fixed, failed = _first(watcher, "reconnect"), _first(watcher, "fixed_port_ok"), \
        _first(watcher, "fixed_port_fail")
    worked = again if again and again.get("ok") else None
    return {
        "client_tw_appear_s": since(appear),
        "client_tw_gone_s": since(gone),
        "client_tw_s": round(gone["mono"] - appear["mono"], 6) if appear and gone else None,
        "client_tw_port": appear.get("lport") if appear else None,
        "reconnect_s": since(worked),
        "reconnect_port": worked.get("lport") if worked else None,
        "reconnect_same_port": int(worked.get("lport") == appear.get("lport")) if worked and appear else None,
        "reconnect_error": f"{again.get('step')}: {again.get('errno')}" if again and not worked else None,
        "fixed_port_s": since(fixed),
        "fixed_port_failures": fixed.get("failures") if fixed else None,
        "fixed_port_error": f"{failed.get('step')}: {failed.get('errno')}" if failed else None,
    }


def outcome(events: list[Event], src: str = AGENT) -> tuple[str, str]:
    """(OK, "") when that observer saw everything through, else (FAILED, why)."""
    for e in events:
        if e.get("src") != src:
            continue
        if e.get("ev") == "done":
            return OK, ""
        if e.get("ev") == "timeout":
            return FAILED, ("" if src == AGENT else f"{src}: ") + f"not over after {e.get('after_s')} s (max_wait_s)"
        if e.get("ev") == "error":
            return FAILED, f"{src}: {e.get('what')}"
    return FAILED, f"the {src} ended without a result"


def sysctls_read(events: list[Event], t: Trial) -> tuple[dict[str, dict[str, str | None]], list[str]]:
    """Each side's sysctls as its program read them back in the namespace, and how any differ
    from what the case asks for (whitespace aside: the kernel prints ranges with a tab)."""
    read, problems = {}, []
    for side, src in (("server", AGENT), ("client", "client")):
        e = _first(events, "sysctls", src=src)
        read[side] = e.get("values", {}) if e else {}
        for name, asked in t.params.sysctls(side).items():
            got = read[side].get(name)
            if e is not None and (got is None or got.split() != str(asked).split()):
                problems.append(f"{side} {name} is {got!r} in the namespace; the case asks for {asked!r}")
    return read, problems


def fault_counts(events: list[Event], backend: str, t: Trial) -> dict[str, Any]:
    """The fault agent's readout (its output lines) -> final_acks_dropped, ...; ValueError if unreadable."""
    if _first(events, "counted", src="fault") is None:
        raise ValueError("the fault agent never printed its counters")
    text = "\n".join(e["text"] for e in events if e.get("src") == "fault" and e.get("ev") == "output")
    return named(backend).counts(text, t.params)


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
    r = TrialResult(trial=t.id, index=t.index, case=t.case, repeat=t.repeat, params=t.params.to_json(),
                    engine=t.engine, kernel=kernel)
    if not events:
        r.status, r.why = INTERRUPTED, "not started: the run was stopped first"
        r.expectations = [o.to_json() for o in expect.outcomes(exp, Case(t.case, t.params), None)]
        return r
    r.close_mono = close_time(events, t.params.close_first)
    for key, value in {**agent_figures(events, t.params.close_first),
                       **client_figures(events, t.params.close_first)}.items():
        setattr(r, key, value)
    r.coarse = r.window_max_ms is not None and r.window_max_ms > COARSE * exp.poll_ms
    read, problems = sysctls_read(events, t)
    r.server_sysctls, r.client_sysctls = read["server"], read["client"]

    if t.params.final_ack_loss.kind == "none":
        r.final_acks_dropped = 0
    fault = _first(events, "fault", src=HARNESS)
    if fault is not None:
        r.backend, r.injection_point = fault["backend"], fault["injection_point"]
        try:
            for key, value in fault_counts(events, r.backend, t).items():
                setattr(r, key, value)
        except ValueError as exc:
            problems.append(f"fault readout: {exc}")

    end = _first(events, "trial_end", src=HARNESS)
    if end is not None:
        r.wall_s, r.phases, r.capture = end.get("wall_s"), end.get("phases", {}), end.get("capture")
    if pcap is not None:
        try:
            for key, value in capture.figures(pcap, events, exp.port, t.params, r.dropped_copies).items():
                setattr(r, key, value)
        except capture.Unreadable as exc:
            problems.append(f"capture {r.capture or 'pcap'}: {exc}")

    status, why = outcome(events)
    if status == OK and t.params.watches_client:
        status, why = outcome(events, CLIENT_AGENT)
    if end is None:
        status, why = FAILED, "no end record: the harness stopped before this trial ended"
    elif end.get("error") == "interrupted":
        status, why = INTERRUPTED, "interrupted"
    elif end.get("error"):
        status, why = FAILED, end["error"]
    elif status == OK and problems:
        status, why = FAILED, problems[0]
    r.status, r.why = status, why
    if status != OK:
        r.logs = end["logs"] if end and end.get("logs") else logs(events)
    r.expectations = [o.to_json() for o in expect.outcomes(exp, Case(t.case, t.params),
                                                           r.to_json() if r.ok else None)]
    return r


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


def engines(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The run's engines and their facts, by name (runs from before there were several: one)."""
    named = manifest.get("engines")
    if isinstance(named, dict) and named and all(isinstance(v, dict) for v in named.values()):
        return named
    return {"": {"kernel": manifest.get("kernel") or ""}}


def run(data: RunData) -> tuple[Experiment, list[TrialResult]]:
    """Every trial of a run directory analysed again from its raw data, in plan order."""
    exp = spec.parse(data.spec_text, str(data.path / SPEC))
    events = data.trial_events()
    facts = engines(data.manifest)
    trials = plan.on_engines(plan.trials(exp), list(facts), str(data.manifest.get("engine_mode", "each")))
    return exp, [trial(exp, t, events.get(t.id, []), data.pcap(t.id), str(facts[t.engine].get("kernel", "")))
                 for t in trials]
