"""Experiment -> the trials to run. Pure: `harness run --dry-run` prints it for free."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace
from typing import Any

from harness.errors import SpecError
from harness.faults.pattern import leading_drops
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

    @property
    def id(self) -> str:
        return f"t{self.index:03d}"

    def to_json(self) -> dict[str, Any]:
        """As the manifest lists it: the trials as planned are read back from there, not planned again."""
        return {"trial": self.id, "index": self.index, "case": self.case, "repeat": self.repeat,
                "engine": self.engine, "expected_s": self.expected_s, "params": self.params.to_json()}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Trial:
        return cls(doc["index"], doc["case"], doc["repeat"], Params.from_json(doc["params"]), doc["expected_s"],
                   doc["engine"])


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
            out.append(Trial(len(out), case.name, repeat, case.params, expected_seconds(case.params)))
    return out


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
    """Wall time of `schedule(ts)` on `jobs` workers (list scheduling)."""
    workers = [0.0] * max(1, jobs)
    for t in schedule(ts):
        i = workers.index(min(workers))
        workers[i] += t.expected_s
    return max(workers) if ts else 0.0
