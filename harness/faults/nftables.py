"""Final-ACK loss with nftables at the receiver's netdev ingress (runs where netem does not).

The rule sits at the ingress hook of the receiver's eth0, before IP and TCP
see the packet, so the loss looks like the wire's to both stacks. It picks
pure ACKs (no payload) from the active closer: after the echo exchange those
are the final ACK and each re-send of it. `numgen inc` numbers the copies as
they arrive, and a set of copy numbers (faults.pattern) says which to drop,
so the same seed drops the same copies every run.
"""

from __future__ import annotations

import json
from typing import Any

from harness.faults.pattern import MAX_COPIES, dropped_copies
from harness.spec import Experiment, Params

TABLE = "harness_fault"
FLAGS = "fin | syn | rst | psh | ack | urg"


def _pure_ack_lengths(family: str) -> str:
    """'ip length . doff byte' pairs of every segment that carries no payload."""
    ip_header = 20 if family == "ipv4" else 0  # IPv6's length field counts the payload only
    pairs = ", ".join(f"{ip_header + 4 * doff} . {doff << 4:#04x}" for doff in range(5, 16))
    field = "ip length" if family == "ipv4" else "ip6 length"
    return f"{field} . @th,96,8 {{ {pairs} }}"


def ruleset(exp: Experiment, p: Params, device: str = "eth0") -> str:
    """The nft script that drops p.final_ack_loss's copies on their way into `device`."""
    direction = "sport" if p.close_first == "server" else "dport"  # from the active closer
    proto = "ip" if p.family == "ipv4" else "ip6"
    select = ""
    if p.final_ack_loss.kind != "all":
        copies = ", ".join(str(i) for i in dropped_copies(p.final_ack_loss)) or str(MAX_COPIES)
        select = f" numgen inc mod {MAX_COPIES} {{ {copies} }}"
    return (
        f"table netdev {TABLE} {{\n"
        f"\tcounter final_acks {{ }}\n"
        f"\tcounter dropped {{ }}\n"
        f"\tchain ingress {{\n"
        f'\t\ttype filter hook ingress device "{device}" priority -500; policy accept;\n'
        f"\t\tmeta protocol {proto} tcp {direction} {exp.port} tcp flags & ({FLAGS}) == ack "
        f'{_pure_ack_lengths(p.family)} counter name "final_acks"{select} counter name "dropped" drop\n'
        f"\t}}\n"
        f"}}\n"
    )


def parse_counters(nft_json: str) -> dict[str, int]:
    """`nft -j list counters` -> {"final_acks": packets, "dropped": packets}."""
    out = {}
    for item in json.loads(nft_json).get("nftables", []):
        c = item.get("counter")
        if c and c.get("table") == TABLE:
            out[c["name"]] = c["packets"]
    return out


class Nftables:
    name = "nftables"

    def scripts(self, exp: Experiment, p: Params) -> tuple[str, str]:
        return f"nft -f - <<'RULES'\n{ruleset(exp, p)}RULES\n", "nft -j list counters"

    def where(self, side: str) -> str:
        return f"nftables netdev ingress hook of the {side}'s eth0"

    def counts(self, readout: str, p: Params) -> dict[str, Any]:
        counts = parse_counters(readout)
        matched, dropped = counts.get("final_acks", 0), counts.get("dropped", 0)
        # numgen numbered exactly the matched copies, so these are the ones dropped.
        return {"final_acks_matched": matched, "final_acks_dropped": dropped,
                "dropped_copies": [i for i in dropped_copies(p.final_ack_loss) if i < matched]}
