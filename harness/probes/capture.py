"""A trial's packet capture -> the close's timeline and the figures it shows.

tcpdump runs in the passive closer's namespace (the receiver of the final
ACK), so it records each final ACK as it arrives, before the fault drops it,
and each FIN the passive closer sends. pcap times are wall-clock; the agent's
"clock" event maps them onto the monotonic axis of every other event.
"""

from __future__ import annotations

import io
from typing import Any

import dpkt

from harness.spec import Params

FIN, SYN, RST, ACK = dpkt.tcp.TH_FIN, dpkt.tcp.TH_SYN, dpkt.tcp.TH_RST, dpkt.tcp.TH_ACK
FLAG_NAMES = ((SYN, "SYN"), (FIN, "FIN"), (RST, "RST"), (dpkt.tcp.TH_PUSH, "PSH"), (ACK, "ACK"),
              (dpkt.tcp.TH_URG, "URG"))
FLAG_MASK = sum(bit for bit, _ in FLAG_NAMES)


class Unreadable(ValueError):
    """The bytes are not a pcap this reader understands."""


def _segments(pcap: bytes) -> list[tuple[float, Any]]:
    """(wall time, TCP segment) of each captured packet. A last packet cut off (tcpdump stopped
    mid-write) is left out, like a cut-off last line of events.jsonl."""
    out = []
    try:
        for ts, frame in dpkt.pcap.Reader(io.BytesIO(pcap)):
            ip = dpkt.ethernet.Ethernet(frame).data
            if isinstance(ip, (dpkt.ip.IP, dpkt.ip6.IP6)) and isinstance(ip.data, dpkt.tcp.TCP):
                out.append((ts, ip.data))
    except dpkt.NeedData:
        pass
    except (ValueError, dpkt.UnpackError) as exc:
        raise Unreadable(f"not a pcap ({exc})") from None
    return out


def _mono_offset(events: list[dict[str, Any]]) -> float | None:
    clock = next((e for e in events if e.get("ev") == "clock"), None)
    return clock["realtime"] - clock["mono"] if clock else None


def timeline(pcap: bytes, events: list[dict[str, Any]], port: int, p: Params,
             dropped_copies: list[int] | None) -> list[dict[str, Any]]:
    """Each segment of the close, named, with t in seconds after the close (t = 0)."""
    offset = _mono_offset(events)
    t0 = next((e["mono"] for e in events if e.get("ev") == "close" and e.get("side") == p.close_first), None)
    active = p.close_first
    dropped = set(dropped_copies or ())
    out: list[dict[str, Any]] = []
    fins: dict[str, int] = {"server": 0, "client": 0}
    isn: dict[str, int] = {}  # each side's initial sequence number, from its SYN
    final_acks = 0
    for ts, tcp in _segments(pcap):
        sender = "server" if tcp.sport == port else "client"
        flags = tcp.flags & FLAG_MASK
        if flags & SYN:
            isn.setdefault(sender, tcp.seq)
        what = None
        extra: dict[str, Any] = {}
        if flags & RST:
            what = f"{sender} RST"
        elif flags & FIN:
            fins[sender] += 1
            what = f"{sender} FIN" if fins[sender] == 1 else f"{sender} FIN retransmission"
        elif flags == ACK and not tcp.data and fins[active] and sender == active and fins[_other(active)]:
            # A pure ACK from the active closer after the passive closer's FIN: the final ACK.
            what = "final ACK" if final_acks == 0 else "final ACK (again)"
            extra["copy"] = final_acks
            if dropped_copies is not None:
                extra["dropped"] = final_acks in dropped
            final_acks += 1
        elif flags == ACK and not tcp.data and fins[_other(sender)] and not fins[sender]:
            what = f"{sender} ACK of the {_other(sender)} FIN"
        if what is None:
            continue
        t = ts - offset - t0 if offset is not None and t0 is not None else None
        out.append({"t": None if t is None else round(t, 6), "from": sender, "what": what,
                    "flags": ", ".join(name for bit, name in FLAG_NAMES if flags & bit),
                    "seq": tcp.seq, "ack": tcp.ack if flags & ACK else None,
                    # As Wireshark shows them: from each side's SYN (None without the handshake).
                    "rel_seq": _relative(tcp.seq, isn.get(sender)),
                    "rel_ack": _relative(tcp.ack, isn.get(_other(sender))) if flags & ACK else None,
                    **extra})
    return out


def _relative(n: int, base: int | None) -> int | None:
    return None if base is None else (n - base) % 2**32


def _other(side: str) -> str:
    return "client" if side == "server" else "server"


def figures(pcap: bytes, events: list[dict[str, Any]], port: int, p: Params,
            dropped_copies: list[int] | None) -> dict[str, Any]:
    tl = timeline(pcap, events, port, p, dropped_copies)
    passive = _other(p.close_first)
    fin_copies = sum(1 for e in tl if e["what"] in (f"{passive} FIN", f"{passive} FIN retransmission"))
    return {
        "timeline": tl,
        "fin_retransmits": max(0, fin_copies - 1),
        "final_acks_seen": sum(1 for e in tl if e["what"].startswith("final ACK")),
    }
