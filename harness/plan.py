"""Experiment -> the trials to run. Pure: `harness run --dry-run` prints it for free."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from harness.errors import SpecError
from harness.faults.pattern import leading_drops
from harness.figures import UPPER_BOUNDS
from harness.spec import MAX_TRIALS, Case, Experiment, Params

# Linux's rules behind the wall-time estimate. They order trials and size the
# dry-run's estimate; no reported figure comes from them.
TIME_WAIT_S = 60.0  # TCP_TIMEWAIT_LEN
RTO_MIN_S = 0.2  # TCP_RTO_MIN: a FIN retransmission's first timeout on a LAN
RTO_MAX_S = 120.0  # TCP_RTO_MAX
ORPHAN_RETRIES = 8  # tcp_orphan_retries=0 means 8 for an orphaned socket (tcp_timer.c, tcp_orphan_retries)
RETRIES2 = 15  # tcp_retries2: a socket whose owner still holds it
MAX_TW_BUCKETS = 2**31  # tcp_max_tw_buckets, in effect unlimited unless a case lowers it
SETUP_S = 2.0  # containers up and down, per trial (see bench/)


ENGINE_MODES = ("each", "shard")


@dataclass(frozen=True)
class Trial:
    index: int
    case: str
    repeat: int
    params: Params
    expected_s: float
    engine: str = ""  # the name of the engine it runs on (runs with one engine: that one's)
    port: int = 0  # its server's port (into_labs): the experiment's, or the next ones in a shared lab
    lab: str = ""  # the lab it runs in (into_labs): its own, named by its id, or one its case's repeats share
    # Where its close falls on CLOCK_MONOTONIC, the agent's -a: "PERIOD,PHASE" (--close-phase), "wheel,FRACTION"
    # (a random phase of the kernel's wheel grid, in a shared lab), or "" (when the trial gets there).
    close_at: str = ""

    @property
    def id(self) -> str:
        return f"t{self.index:03d}"

    @property
    def shared(self) -> bool:
        """Whether other trials run in its lab, on other ports."""
        return self.lab not in ("", self.id)

    def to_json(self) -> dict[str, Any]:
        """As the manifest lists it: the trials as planned are read back from there, not planned again."""
        return {"trial": self.id, "index": self.index, "case": self.case, "repeat": self.repeat,
                "engine": self.engine, "expected_s": self.expected_s, "params": self.params.to_json(),
                "port": self.port, "lab": self.lab, "close_at": self.close_at}

    @classmethod
    def from_json(cls, doc: dict[str, Any], port: int) -> Trial:
        """port: the experiment's, for runs from before labs were shared (each trial had its own)."""
        return cls(doc["index"], doc["case"], doc["repeat"], Params.from_json(doc["params"]), doc["expected_s"],
                   doc["engine"], doc.get("port", port), doc.get("lab", ""), doc.get("close_at", ""))


def cases(exp: Experiment) -> list[Case]:
    """The matrix's product, then the explicit cases; a case named and set alike is kept once,
    two set differently under one name are an error (the tables would merge them)."""
    count = (math.prod(len(values) for _, values in exp.matrix) if exp.matrix else 0) + len(exp.cases)
    if count * exp.repeat > MAX_TRIALS:
        raise SpecError(exp.source, "matrix" if exp.matrix else "cases",
                        f"{count} cases x repeat {exp.repeat} = {count * exp.repeat} trials; "
                        f"allowed: up to {MAX_TRIALS} in one run")
    out: list[Case] = []
    if exp.matrix:
        keys = [k for k, _ in exp.matrix]
        for combo in itertools.product(*(values for _, values in exp.matrix)):
            params = replace(Params(), **dict(zip(keys, combo)))
            conflict = params.conflict()
            if conflict:
                raise SpecError(exp.source, "matrix", f"the case {params.label()!r}: {conflict}")
            out.append(Case(params.label(), params))
    out.extend(exp.cases)
    unique = list(dict.fromkeys(out))
    names: dict[str, Case] = {}
    for c in unique:
        if c.name in names:
            raise SpecError(exp.source, "cases", f"two cases are named {c.name!r} with different settings; "
                                                 "give each its own name")
        names[c.name] = c
    return unique


def _fin_copies(copies_lost: int, retries: int) -> list[float]:
    """When the peer sends each FIN copy (seconds after the first) while final ACKs are lost: a
    tail loss probe one TCP_RTO_MIN after the FIN, then `retries` timeouts, the first one
    TCP_RTO_MIN after the probe and each later one twice as long, capped at TCP_RTO_MAX (as the
    captures show: 0.2, 0.4, 0.8, 1.6 ... s)."""
    times, t, gap = [0.0], 0.0, RTO_MIN_S
    for i in range(min(copies_lost, retries + 1)):
        t += gap
        times.append(t)
        gap = min(gap if i == 0 else 2 * gap, RTO_MAX_S)
    return times


def _sysctl(p: Params, side: str, name: str, default: int) -> int:
    value = p.sysctls(side).get(f"net.ipv4.{name}", default)
    return int(value) if isinstance(value, int) or str(value).lstrip("-").isdigit() else default


def fin_retries(p: Params) -> int:
    """How many times the passive closer re-sends its FIN while no ACK comes back: tcp_retries2
    while its program holds the socket (the client after shutdown()), else tcp_orphan_retries,
    whose 0 means 8 (net/ipv4/tcp_timer.c, tcp_orphan_retries and tcp_write_timeout)."""
    passive = "client" if p.close_first == "server" else "server"
    if passive == "client" and p.client_close == "shutdown":
        return _sysctl(p, passive, "tcp_retries2", RETRIES2)
    return _sysctl(p, passive, "tcp_orphan_retries", 0) or ORPHAN_RETRIES


def time_wait_kept(p: Params) -> bool:
    """Whether the active closer's socket enters TIME_WAIT and keeps it for TCP_TIMEWAIT_LEN: not
    after an abortive close of either side (SO_LINGER 0 sends a RST), not when no bucket is free
    (tcp_max_tw_buckets), not when a RST reaches it and tcp_rfc1337 is 0
    (net/ipv4/tcp_minisocks.c, tcp_time_wait and tcp_timewait_state_process)."""
    active = p.close_first
    if p.server_stop == "linger0" or _sysctl(p, active, "tcp_max_tw_buckets", MAX_TW_BUCKETS) == 0:
        return False
    if p.client_close == "abort":  # a RST from the client, no FIN: it ends the server's FIN_WAIT2 too
        return False
    return not (p.final_ack_reset and _sysctl(p, active, "tcp_rfc1337", 0) == 0)


def time_wait_taken_s(p: Params) -> float | None:
    """When a new connection with the old 4-tuple ends the active closer's TIME_WAIT, or None.
    The server's, by the client's SYNs from its old port: the client's RST to the TIME_WAIT's old
    ACK kills it with tcp_rfc1337 0; a kept listener takes a SYN, by its retransmission at the
    latest (tcp_timewait_state_process, tcp_v4_rcv). The client's, by its own connect(): from a
    bound port as soon as the TIME_WAIT saw timestamps; from a one-port range with tcp_tw_reuse 1,
    after tcp_tw_reuse_delay (tcp_twsk_unique)."""
    if p.close_first == "server" and p.client_port is not None:
        if _sysctl(p, "server", "tcp_rfc1337", 0) == 0:
            return 0.0
        return 1.0 if p.keep_restarted and p.restart_with_reuseaddr else None
    if p.close_first != "client" or not p.watches_client or not _sysctl(p, "client", "tcp_timestamps", 1):
        return None
    if p.client_port is not None and p.client_reuseaddr:
        return 0.0
    ports = str(p.sysctls("client").get("net.ipv4.ip_local_port_range", "")).split()
    if len(ports) == 2 and ports[0] == ports[1] and _sysctl(p, "client", "tcp_tw_reuse", 2) == 1:
        return _sysctl(p, "client", "tcp_tw_reuse_delay", 1000) / 1000
    return None


def expected_seconds(p: Params) -> float:
    """What the kernel's rules predict for one trial, from the case's sysctls and close, for
    ordering and estimates."""
    lost = leading_drops(p.final_ack_loss)
    retries = fin_retries(p)
    taken = time_wait_taken_s(p)
    if taken is not None:
        return SETUP_S + taken + 1.0
    if p.client_close == "never":  # the orphan's FIN_WAIT2 lasts tcp_fin_timeout (tcp_fin_time)
        return SETUP_S + _sysctl(p, "server", "tcp_fin_timeout", 60) + 1.0
    if not time_wait_kept(p):
        # The port frees at once, or when the passive closer's next FIN copy meets a socket
        # that is gone and is answered with a RST.
        return SETUP_S + _fin_copies(lost + 1, retries)[-1] + 1.0
    # Each FIN copy restarts TIME_WAIT; it ends at the first gap longer than itself.
    copies = _fin_copies(lost, retries)
    last = next((a for a, b in zip(copies, copies[1:]) if b - a > TIME_WAIT_S), copies[-1])
    if p.close_first == "client" and not p.watches_client:
        # Only the server's side is watched: its LAST_ACK ends at the first ACK that arrives,
        # or one timeout after its last retry.
        return SETUP_S + _fin_copies(lost + 1, retries + 1)[min(lost, retries + 2)]
    return SETUP_S + last + TIME_WAIT_S + 1.0


def trials(exp: Experiment) -> list[Trial]:
    """Every case, `repeat` times, numbered in file order."""
    all_cases = cases(exp)
    for e in exp.expect:
        if e.where and not any(e.applies(c) for c in all_cases):
            raise SpecError(exp.source, f"expect[{e.index}].where", f"matches none of the {len(all_cases)} cases "
                            f"({e.where_text()}); name a case or parameters some case has")
    out: list[Trial] = []
    for repeat in range(exp.repeat):
        for case in all_cases:
            out.append(Trial(len(out), case.name, repeat, case.params, expected_seconds(case.params), port=exp.port))
    return out


# Figures the kernel counts per network namespace (TcpExt): in a shared lab they would count every
# trial's sockets, so a case whose expectations read them keeps a lab per trial.
NAMESPACE_FIGURES = ("tw_entered", "tw_overflow", "time_wait_max_s")
# Sysctls that make a resource the namespace's trials would share: the TIME_WAIT buckets, the
# local port range a client's connect() picks from.
NAMESPACE_LIMITS = ("net.ipv4.tcp_max_tw_buckets", "net.ipv4.ip_local_port_range")
EPHEMERAL = (32768, 60999)  # ip_local_port_range's default: the clients' ports


def alone_because(exp: Experiment, case: Case, one_qdisc: bool) -> str | None:
    """Why this case's repeats cannot share one lab (network, a container a side), each on its own
    server port, or None when they can: what the kernel keeps per port and per connection is then
    each trial's own, and what it keeps per namespace no figure of theirs reads.

    one_qdisc: the engine's fault backend drops with one qdisc per namespace (netem), whose
    random draws and counters the trials would share."""
    p = case.params
    if exp.isolation == "trial":
        return "isolation: trial"
    if p.client_port is not None:
        return "client_port: one fixed port in the client's namespace"
    for side in ("server", "client"):
        for name in NAMESPACE_LIMITS:
            if name in p.sysctls(side):
                return f"{side}_sysctls {name}: a limit of the whole namespace"
    # A figure no poll saw is judged by its upper bound, which a namespace counter gives (UPPER_BOUNDS)
    read = [f for e in exp.expect if e.applies(case) for b in e.bounds
            for f in (b.figure, b.of, UPPER_BOUNDS.get(b.figure) if b.never else None) if f in NAMESPACE_FIGURES]
    if read:
        return f"its expectations read {read[0]}, which the kernel counts per namespace"
    if exp.port <= EPHEMERAL[1] and exp.port + exp.repeat - 1 >= EPHEMERAL[0]:
        return (f"ports {exp.port}-{exp.port + exp.repeat - 1} meet the client's ephemeral ports "
                f"({EPHEMERAL[0]}-{EPHEMERAL[1]}): a client's port could be another trial's server's")
    if exp.server is not None:
        if p.restart == "container":
            return "restart: container makes the server's namespace anew"
        if not exp.server.port_per_trial:
            return "the server's command (or its stop command) sets no {port}"
        if exp.server.stop.kill_after_s is not None:
            return "server.stop.kill_after_s kills every process of the server's container"
    if one_qdisc and (p.final_ack_loss.kind != "none" or p.final_ack_reset):
        return "the fault is a qdisc of the whole namespace (netem)"
    return None


def into_labs(exp: Experiment, ts: list[Trial], seed: int, close_phase: tuple[float, float] | None,
              one_qdisc: Callable[[str], bool] = lambda engine: False) -> list[Trial]:
    """Each trial's lab, server port and close phase. The repeats of a case on one engine share a
    lab when alone_because says nothing against it, each on its own port from the experiment's up;
    each then closes at its own phase of the kernel's wheel grid, drawn from `seed`, so that the
    repeats sample the wheel's rounding as trials started at unrelated moments do (unless
    --close-phase puts every close on one phase). Pure: the manifest records all three."""
    by_case = {c.name: c for c in cases(exp)}
    draw = random.Random(seed)
    groups: dict[tuple[str, str], list[Trial]] = {}
    out: dict[int, Trial] = {}
    fixed = "{:.6f},{:.6f}".format(*close_phase) if close_phase else ""
    for t in ts:
        if alone_because(exp, by_case[t.case], one_qdisc(t.engine)) is None:
            groups.setdefault((t.engine, t.case), []).append(t)
        else:
            out[t.index] = replace(t, port=exp.port, lab=t.id, close_at=fixed)
    for members in groups.values():
        lab = members[0].id if len(members) == 1 else f"lab-{members[0].id}"
        for k, t in enumerate(members):
            # rounded down: a fraction that rounds up to 1 is not a phase
            phase = fixed or ("" if len(members) == 1 else f"wheel,{math.floor(draw.random() * 1e6) / 1e6:.6f}")
            out[t.index] = replace(t, port=exp.port + k, lab=lab, close_at=phase)
    return [out[t.index] for t in ts]


def labs(ts: list[Trial]) -> list[list[Trial]]:
    """The trials grouped by lab, each lab's in order, the labs longest first (schedule)."""
    by_lab: dict[str, list[Trial]] = {}
    for t in schedule(ts):
        by_lab.setdefault(t.lab or t.id, []).append(t)
    return [sorted(members, key=lambda t: t.index) for members in by_lab.values()]


def on_engines(ts: list[Trial], engines: list[str], mode: str) -> list[Trial]:
    """The trials on the run's engines: every trial on every engine ("each": the kernel becomes a
    dimension of the results), or each trial on one of them ("shard": the same study, sooner),
    longest first onto the least loaded engine. Pure, so a run directory's manifest gives it back."""
    if mode == "each":
        return [replace(t, index=i * len(ts) + t.index, engine=e) for i, e in enumerate(engines) for t in ts]
    load = dict.fromkeys(engines, 0.0)
    assigned = {}
    for t in schedule(ts):
        e = min(engines, key=lambda name: load[name])  # ties: the first named
        load[e] += t.expected_s
        assigned[t.index] = e
    return [replace(t, engine=assigned[t.index]) for t in ts]


def schedule(ts: list[Trial]) -> list[Trial]:
    """Longest first: with a bounded pool this keeps the wall time near the longest trial."""
    return sorted(ts, key=lambda t: -t.expected_s)


def estimate_wall_seconds(ts: list[Trial], jobs: int) -> float:
    """Wall time of the labs, longest first, on `jobs` workers (list scheduling); a lab lasts as its
    longest trial."""
    workers = [0.0] * max(1, jobs)
    for members in labs(ts):
        i = workers.index(min(workers))
        workers[i] += max(t.expected_s for t in members)
    return max(workers) if ts else 0.0
