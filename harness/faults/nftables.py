"""Final-ACK loss with nftables at the receiver's netdev ingress (runs where netem does not).

The rule sits at the ingress hook of the receiver's eth0, before IP and TCP
see the packet, so the loss looks like the wire's to both stacks. It picks
pure ACKs (no payload) from the active closer on the trial's connection (its
client port, found in the namespace when the rule goes in): after the echo
exchange those are the final ACK and each re-send of it, and not the
handshake ACK of a later connection (the client's reconnects). `numgen inc` numbers the copies as
they arrive, and a set of copy numbers (faults.pattern) says which to drop,
so the same seed drops the same copies every run.

With final_ack_reset, the first copy the loss lets through is answered instead:
`reject with tcp reset` sends its sender a RST built from it, whose sequence
number is the copy's acknowledgment number (net/ipv4/netfilter/nf_reject_ipv4.c,
nf_reject_ip_tcphdr_put), exactly the next sequence number the sender's
TIME_WAIT socket expects: RFC 1337's "TIME-WAIT assassination", crafted inside
the trial's own namespace and sent only to the trial's other side.
"""

from __future__ import annotations

import json
from typing import Any

from harness.faults.pattern import MAX_COPIES, dropped_copies, leading_drops
from harness.spec import Params

TABLE = "harness_fault"  # and the trial's server port: the trials of a shared lab each have their own
FLAGS = "fin | syn | rst | psh | ack | urg"
CLIENT_PORT = "@CLIENT_PORT@"  # in the rule until the install script knows it


def _pure_ack_lengths(family: str) -> str:
    """'ip length . doff byte' pairs of every segment that carries no payload."""
    ip_header = 20 if family == "ipv4" else 0  # IPv6's length field counts the payload only
    pairs = ", ".join(f"{ip_header + 4 * doff} . {doff << 4:#04x}" for doff in range(5, 16))
    field = "ip length" if family == "ipv4" else "ip6 length"
    return f"{field} . @th,96,8 {{ {pairs} }}"


def table(port: int) -> str:
    return f"{TABLE}_{port}"


def ruleset(p: Params, port: int, device: str = "eth0", client_port: str = CLIENT_PORT) -> str:
    """The nft script that drops p.final_ack_loss's copies on their way into `device`, on the
    connection to the server's `port`."""
    # from the active closer to the passive one
    ports = f"sport {port} tcp dport {client_port}" if p.close_first == "server" else \
        f"dport {port} tcp sport {client_port}"
    proto = "ip" if p.family == "ipv4" else "ip6"
    match = (f"meta protocol {proto} tcp {ports} tcp flags & ({FLAGS}) == ack "
             f'{_pure_ack_lengths(p.family)} counter name "final_acks"')
    chains = ""
    if p.final_ack_reset:
        # One numgen draw decides each copy's fate: a verdict map from copy number to chain.
        verdicts = [f"{i} : jump drop_copy" for i in dropped_copies(p.final_ack_loss)]
        verdicts.append(f"{leading_drops(p.final_ack_loss)} : jump reset_copy")
        rule = f"{match} numgen inc mod {MAX_COPIES} vmap {{ {', '.join(verdicts)} }}"
        chains = ('\tchain drop_copy {\n\t\tcounter name "dropped" drop\n\t}\n'
                  '\tchain reset_copy {\n\t\tcounter name "answered" reject with tcp reset\n\t}\n')
    else:
        select = ""
        if p.final_ack_loss.kind != "all":
            copies = ", ".join(str(i) for i in dropped_copies(p.final_ack_loss)) or str(MAX_COPIES)
            select = f" numgen inc mod {MAX_COPIES} {{ {copies} }}"
        rule = f'{match}{select} counter name "dropped" drop'
    return (
        f"table netdev {table(port)} {{\n"
        f"\tcounter final_acks {{ }}\n"
        f"\tcounter dropped {{ }}\n"
        f"\tcounter answered {{ }}\n"
        f"{chains}"
        f"\tchain ingress {{\n"
        f'\t\ttype filter hook ingress device "{device}" priority -500; policy accept;\n'
        f"\t\t{rule}\n"
        f"\t}}\n"
        f"}}\n"
    )


def parse_counters(nft_json: str, port: int) -> dict[str, int]:
    """`nft -j list counters` -> {"final_acks": packets, "dropped": packets} of the trial's table."""
    out = {}
    for item in json.loads(nft_json).get("nftables", []):
        c = item.get("counter")
        if c and c.get("table") in (table(port), TABLE):  # TABLE alone: runs from before shared labs
            out[c["name"]] = c["packets"]
    return out


# One nft at a time in a namespace: each reads the namespace's ruleset first, and a shared lab's
# hundred trials installing at once took up to 9 s each (0.3 s of CPU an nft); one after another,
# 12 ms each.
LOCK = "/run/harness-nft.lock"


class Nftables:
    name = "nftables"

    def scripts(self, p: Params, port: int) -> tuple[str, str]:
        # The trial's one connection (the spec allows loss with one only); its client port is
        # the one that is not the server's, unless both are.
        find = (f"conn=$(ss -Htn state established '( sport = :{port} or dport = :{port} )')\n"
                f'[ -n "$conn" ] || {{ echo "no connection on port {port} to put the fault on" >&2; exit 1; }}\n'
                f"""port=$(printf '%s\\n' "$conn" | awk '{{print $3; print $4}}' | sed 's/.*://' """
                f"| grep -vx {port} | head -n 1)\n")
        install = (f"{find}sed \"s/{CLIENT_PORT}/${{port:-{port}}}/\" <<'RULES' | flock {LOCK} nft -f -\n"
                   f"{ruleset(p, port)}RULES\n")
        # The table stays until the lab's namespace goes: a delete waits out an RCU grace period
        # (42 ms here), and its rule matches its own trial's ports alone.
        return install, f"flock {LOCK} nft -j list table netdev {table(port)}"

    def where(self, side: str) -> str:
        return f"nftables netdev ingress hook of the {side}'s eth0"

    def counts(self, readout: str, p: Params, port: int) -> dict[str, Any]:
        counts = parse_counters(readout, port)
        matched, dropped = counts.get("final_acks", 0), counts.get("dropped", 0)
        # numgen numbered exactly the matched copies, so these are the ones dropped.
        out: dict[str, Any] = {"final_acks_matched": matched, "final_acks_dropped": dropped,
                               "dropped_copies": [i for i in dropped_copies(p.final_ack_loss) if i < matched]}
        if p.final_ack_reset:
            out["final_acks_reset"] = counts.get("answered", 0)
        return out
