"""Final-ACK loss with tc netem at the receiver's ingress, for kernels that have sch_netem.

netem is an egress qdisc, so the receiver's ingress is moved to an IFB
device: an ingress qdisc on eth0 with a u32 filter that picks pure ACKs from
the active closer (port, and the TCP flags byte == ACK) and mirreds them to
the IFB, whose root qdisc is netem. netem drops with its own generator, seeded
where iproute2 and the kernel have `seed`; it cannot drop "the first k"
copies, so plan-time choice sends those to nftables.

The host kernel has no sch_netem; these commands run for real in the kernel lab
(docs/kernel-lab.md) on Debian's 6.1 kernel.
"""

from __future__ import annotations

import shlex
from typing import Any

from harness.spec import Loss, Params

IFB = "hfault0"


def supports(loss: Loss, seed: bool) -> bool:
    """Can netem drop this pattern as the experiment means it? "all", and a random pattern only
    where iproute2 and the kernel take `seed` (unseeded, another run would drop other copies)."""
    return loss.kind == "all" or (loss.kind == "random" and seed)


def _loss_args(loss: Loss) -> list[str]:
    if loss.kind == "all":
        return ["loss", "100%"]
    return ["loss", "random", f"{loss.p * 100:g}%", "seed", str(loss.seed)]


def commands(p: Params, port: int, device: str = "eth0") -> list[list[str]]:
    """The ip/tc commands, in order, that install the drop on `device`'s ingress, on the connection
    to the server's `port`."""
    if not supports(p.final_ack_loss, seed=True):
        raise ValueError(f"netem cannot drop {p.final_ack_loss.label()}")
    port_key = "sport" if p.close_first == "server" else "dport"
    if p.family == "ipv4":
        # IPv4 without options: the TCP flags byte is at offset 20 + 13.
        match = ["protocol", "ip", "prio", "1", "u32", "match", "ip", "protocol", "6", "0xff",
                 "match", "ip", port_key, str(port), "0xffff", "match", "u8", "0x10", "0xff", "at", "33"]
    else:
        # IPv6 without extension headers: the flags byte is at offset 40 + 13.
        match = ["protocol", "ipv6", "prio", "1", "u32", "match", "ip6", "protocol", "6", "0xff",
                 "match", "ip6", port_key, str(port), "0xffff", "match", "u8", "0x10", "0xff", "at", "53"]
    return [
        ["ip", "link", "add", IFB, "type", "ifb"],
        ["ip", "link", "set", IFB, "up"],
        ["tc", "qdisc", "add", "dev", IFB, "root", "netem", *_loss_args(p.final_ack_loss)],
        ["tc", "qdisc", "add", "dev", device, "handle", "ffff:", "ingress"],
        ["tc", "filter", "add", "dev", device, "parent", "ffff:", *match,
         "action", "mirred", "egress", "redirect", "dev", IFB],
    ]


def parse_drops(tc_stats: str) -> int:
    """`tc -s qdisc show dev IFB` -> packets netem dropped."""
    for line in tc_stats.splitlines():
        if "dropped" in line:
            # " Sent 0 bytes 0 pkt (dropped 3, overlimits 0 requeues 0)"
            return int(line.split("dropped", 1)[1].split(",", 1)[0].strip())
    raise ValueError(f"no netem statistics in {tc_stats!r}")


class Netem:
    name = "netem"

    def scripts(self, p: Params, port: int) -> tuple[str, str]:
        install = " && ".join(shlex.join(argv) for argv in commands(p, port))
        return install, shlex.join(["tc", "-s", "qdisc", "show", "dev", IFB])

    def where(self, side: str) -> str:
        return f"tc netem on an IFB fed by the {side}'s eth0 ingress"

    def counts(self, readout: str, p: Params, port: int) -> dict[str, Any]:
        dropped = parse_drops(readout)
        # netem counts drops, not which copies; with 100% loss they are all of them, so
        # the capture's timeline can mark each final ACK dropped, as with nftables.
        which = {"dropped_copies": list(range(dropped))} if p.final_ack_loss.kind == "all" else {}
        return {"final_acks_dropped": dropped, **which}
