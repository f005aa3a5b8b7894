"""The report's headline: what the run showed, in words, from its medians. Pure.

Each sentence compares cases the run actually has (a lost-ACK case and the
same case without loss; SO_REUSEADDR on both sockets, on one, on neither;
the client closing first) and quotes their measured medians; a run that has
none of these pairs gets a plain summary.
"""

from __future__ import annotations

import json
import statistics
from typing import Any, cast

from harness.record import NOT_APPLICABLE, TrialResult, by_case, labeller


def _median(results: list[TrialResult], key: str) -> float | None:
    xs = [getattr(r, key) for r in results if r.ok and getattr(r, key) is not None]
    return statistics.median(xs) if xs else None


def seconds(x: float) -> str:
    return f"{x:.1f} s" if x >= 10 else f"{x:.2f} s"


def _loss_words(loss: Any) -> str:
    if loss == "all":
        return "every final ACK lost"
    if isinstance(loss, int):
        return "the first final ACK lost" if loss == 1 else f"the first {loss} final ACKs lost"
    return f"each final ACK lost with probability {loss['p']:g}"


def _setting(p: dict[str, Any]) -> str:
    """What else sets a case apart from the book's (server first, close(), IPv4), in words."""
    words = [w for cond, w in ((p.get("close_first") == "client", "the client closing first"),
                               (p.get("client_close") == "shutdown", "a client that used shutdown()"),
                               (p.get("family") == "ipv6", "over IPv6")) if cond]
    return f" ({', '.join(words)})" if words else ""


def _key(params: dict[str, Any], **changes: Any) -> str:
    """Case parameters as a dictionary key, with some changed: to find a case's twin."""
    return json.dumps({**params, **changes}, sort_keys=True)


def _client_time_wait(watched: list[list[TrialResult]]) -> list[str]:
    """The client's own TIME_WAIT, where its side was watched: how long, and what a fresh socket
    and one bound to its fixed port could do meanwhile."""
    plain = [r for rs in watched if rs[0].params.to_json().get("client_port") is None for r in rs]
    fixed = [r for rs in watched if rs[0].params.to_json().get("client_port") is not None for r in rs]
    tw = _median(plain + fixed, "client_tw_s")
    if tw is None:
        return []
    text = f"When the client closed first, its own socket stayed in TIME_WAIT for {seconds(tw)}"
    again = _median(plain + fixed, "reconnect_s")
    if again is not None:
        other = all(r.reconnect_same_port == 0 for r in plain + fixed if r.reconnect_same_port is not None)
        text += f"; a fresh socket connected again after {again:.3f} s" + (", from another port" if other else "")
    free = _median(fixed, "fixed_port_s")
    if free is not None:
        text += f", one bound to the client's fixed port only after {seconds(free)}"
    return [text + "."]


def sentences(results: list[TrialResult]) -> list[str]:
    cases = by_case(results)
    by_params = {_key(rs[0].params.to_json(), engine=rs[0].engine): rs for rs in cases.values()}
    out: list[str] = []

    # The longest wait that loss caused, against the same case without loss.
    worst = None
    for rs in cases.values():
        p = rs[0].params.to_json()
        twin = by_params.get(_key(p, final_ack_loss=0, engine=rs[0].engine))
        lossy, plain = _median(rs, "rebind_plain_s"), _median(twin, "rebind_plain_s") if twin is not None else None
        if p["final_ack_loss"] != 0 and lossy is not None and plain is not None \
                and (worst is None or lossy - plain > worst[0] - worst[1]):
            worst = (lossy, plain, p)
    if worst:
        out.append(f"With {_loss_words(worst[2]['final_ack_loss'])}{_setting(worst[2])}, the port stayed "
                   f"unusable for {seconds(worst[0])} instead of {seconds(worst[1])}.")

    server_first = [rs for rs in cases.values() if rs[0].params.to_json()["close_first"] == "server"]
    # SO_REUSEADDR's effect, compared like with like: without loss where the run has such cases.
    server_first = [rs for rs in server_first if rs[0].params.to_json()["final_ack_loss"] == 0] or server_first
    both = [r for rs in server_first if rs[0].params.to_json()["server_reuseaddr"] and rs[0].params.to_json()["restart_reuseaddr"]
            for r in rs]
    neither = [r for rs in server_first
               if not rs[0].params.to_json()["server_reuseaddr"] and not rs[0].params.to_json()["restart_reuseaddr"] for r in rs]
    restart_both, tw_both = _median(both, "restart_s"), _median(both, "time_wait_s")
    restart_neither = _median(neither, "restart_s")
    if restart_both is not None and tw_both is not None:
        verb = "let the server restart in" if restart_both < tw_both else "did not help: the restart took"
        out.append(f"SO_REUSEADDR on both sockets {verb} {seconds(restart_both)}, while the old socket "
                   f"stayed in TIME_WAIT for {seconds(tw_both)}"
                   + (f"; without it, the restart took {seconds(restart_neither)}." if restart_neither else "."))
    for rs in server_first:
        p = rs[0].params.to_json()
        restart, tw = _median(rs, "restart_s"), _median(rs, "time_wait_s")
        if p["server_reuseaddr"] != p["restart_reuseaddr"] and restart is not None and tw is not None:
            which = "the old socket" if p["server_reuseaddr"] else "the restarted server"
            verb = "was enough: the restart took" if restart < tw else "did not help: the restart took"
            out.append(f"SO_REUSEADDR on {which} only {verb} {seconds(restart)}.")

    # A watched client's reconnects keep the server listening, so its restart says nothing here.
    client_first = [r for rs in cases.values() if rs[0].params.to_json()["close_first"] == "client"
                    and rs[0].params.to_json()["final_ack_loss"] == 0 and not rs[0].params.to_json().get("watch_client") for r in rs]
    restart_cf = _median(client_first, "restart_s")
    if restart_cf is not None and _median(client_first, "time_wait_s") is None:
        out.append(f"When the client closed first, the server's socket never entered TIME_WAIT and the "
                   f"server restarted in {seconds(restart_cf)}.")

    out += _client_time_wait([rs for rs in cases.values() if rs[0].params.to_json()["close_first"] == "client"
                              and rs[0].params.to_json().get("watch_client")])

    if not out:
        longest = max((r for r in results if r.ok and r.time_wait_s is not None),
                      key=lambda r: cast(float, r.time_wait_s), default=None)
        if longest is not None and longest.time_wait_s is not None:
            out.append(f"The longest TIME_WAIT lasted {seconds(longest.time_wait_s)} ({labeller(results)(longest)}).")
    failing = {(o.expect, o.check) for r in results for o in r.failed_expectations}
    if failing:
        out.insert(0, f"{len(failing)} expectation check{'s' if len(failing) > 1 else ''} of the experiment "
                      "file failed (see Expectations).")
    failed = [r for r in results if r.failed]
    skipped = sum(1 for r in results if r.status == NOT_APPLICABLE)
    if failed:
        out.append(f"{len(failed)} of {len(results)} trials did not measure (listed below).")
    elif not out and not skipped:
        out.append(f"All {len(results)} trials measured.")
    if skipped:
        out.append(f"{skipped} of {len(results)} trials were not applicable on their kernel (listed below).")
    return out
