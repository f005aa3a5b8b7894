"""A trial's packet capture -> the close's timeline and the figures it shows.

tcpdump runs in the passive closer's namespace (the receiver of the final
ACK), so it records each final ACK as it arrives, before the fault drops it,
and each FIN the passive closer sends. pcap times are wall-clock; the agent's
"clock" event maps them onto the monotonic axis of every other event.

The timeline is the trial's first connection: the client port of the first
SYN, up to a new SYN from that port (a client that binds its fixed port again).
Other connections (a trial's further ones, the client's reconnect probes) are
left out, so each count below is one connection's; what that new SYN from the
old port met in the server's TIME_WAIT is told apart (same_port).
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from typing import Any

import dpkt

from harness.events import CAPTURE, Ev
from harness.faults.pattern import leading_drops
from harness.record import CaptureFigures, Segment
from harness.spec import Params

FIN, SYN, RST, ACK = dpkt.tcp.TH_FIN, dpkt.tcp.TH_SYN, dpkt.tcp.TH_RST, dpkt.tcp.TH_ACK
FLAG_NAMES = ((SYN, "SYN"), (FIN, "FIN"), (RST, "RST"), (dpkt.tcp.TH_PUSH, "PSH"), (ACK, "ACK"),
              (dpkt.tcp.TH_URG, "URG"))
FLAG_MASK = sum(bit for bit, _ in FLAG_NAMES)


class Unreadable(ValueError):
    """The bytes are not a pcap this reader understands."""


_DROPS = re.compile(r"(\d+) packets? dropped by kernel")  # tcpdump's last words, on its stderr


def said_drops(e: dict[str, Any]) -> int | None:
    """The count, when e is tcpdump's "N packets dropped by kernel" (said as it exits)."""
    m = _DROPS.fullmatch(e.get("text", "").strip()) if e.get("src") == CAPTURE and e.get("ev") == Ev.OUTPUT else None
    return int(m.group(1)) if m else None


def kernel_drops(events: list[dict[str, Any]]) -> int | None:
    """Packets the capture's ring had no room for: any, and the capture lacks packets of some trial
    of its lab; None if tcpdump never said."""
    said = [n for e in events if (n := said_drops(e)) is not None]
    return sum(said) if said else None


def payload_len(ip: Any, tcp: Any) -> int:
    """A segment's payload length as its IP header gives it: the capture keeps each packet's first
    bytes only (roles.CAPTURE_SNAPLEN). A lab's TCP carries no IPv6 extension header; a length of 0
    (an aggregate past 64 KiB) leaves what was captured."""
    if isinstance(ip, dpkt.ip.IP):
        return ip.len - ip.hl * 4 - tcp.off * 4 if ip.len else len(tcp.data)
    return ip.plen - tcp.off * 4 if ip.plen else len(tcp.data)


def _segments(pcap: bytes) -> list[tuple[float, Any]]:
    """(wall time, TCP segment) of each captured packet, each with its payload_len. A last packet
    cut off (tcpdump stopped mid-write) is left out, like a cut-off last line of events.jsonl."""
    out = []
    try:
        for ts, frame in dpkt.pcap.Reader(io.BytesIO(pcap)):
            ip = dpkt.ethernet.Ethernet(frame).data
            if isinstance(ip, (dpkt.ip.IP, dpkt.ip6.IP6)) and isinstance(ip.data, dpkt.tcp.TCP):
                ip.data.payload_len = payload_len(ip, ip.data)
                out.append((ts, ip.data))
    except dpkt.NeedData:
        pass
    except (ValueError, dpkt.UnpackError) as exc:
        raise Unreadable(f"not a pcap ({exc})") from None
    return out


def by_port(pcap: bytes, ports: list[int]) -> dict[int, bytes]:
    """A shared lab's capture -> each trial's slice: the packets to or from its server port, as a pcap
    of their own (same link type and times). A last packet cut off is left out."""
    outs = {port: io.BytesIO() for port in ports}
    try:
        reader = dpkt.pcap.Reader(io.BytesIO(pcap))
        writers = {port: dpkt.pcap.Writer(out, snaplen=reader.snaplen, linktype=reader.datalink())
                   for port, out in outs.items()}
        for ts, frame in reader:
            tcp = dpkt.ethernet.Ethernet(frame).data.data
            if isinstance(tcp, dpkt.tcp.TCP):
                for port in {tcp.sport, tcp.dport} & writers.keys():
                    writers[port].writepkt(frame, ts)
    except dpkt.NeedData:
        pass
    except (ValueError, dpkt.UnpackError) as exc:
        raise Unreadable(f"not a pcap ({exc})") from None
    return {port: out.getvalue() for port, out in outs.items()}


def _mono_offset(events: list[dict[str, Any]]) -> float | None:
    clock = next((e for e in events if e.get("ev") == Ev.CLOCK), None)
    return clock["realtime"] - clock["mono"] if clock else None


Packets = list[tuple[float, Any]]


def _split(segments: Packets, port: int) -> tuple[Packets, Packets]:
    """The segments of the first connection: its client port, until that port sends a new SYN;
    and, from that SYN on, those between the same two ports (a new connection from the old port)."""
    client_port = isn = None
    first: Packets = []
    later: Packets = []
    for ts, tcp in segments:
        if client_port is None and tcp.dport == port and tcp.flags & SYN and not tcp.flags & ACK:
            client_port, isn = tcp.sport, tcp.seq
        if client_port is None:
            first.append((ts, tcp))  # a capture that missed the handshake: keep everything
            continue
        if client_port not in (tcp.sport, tcp.dport):
            continue
        if not later and tcp.sport == client_port and tcp.flags & SYN and tcp.seq != isn:
            later.append((ts, tcp))
        elif later:
            if port in (tcp.sport, tcp.dport):
                later.append((ts, tcp))
        else:
            first.append((ts, tcp))
    return first, later


def _since_close(events: list[dict[str, Any]], p: Params) -> Callable[[float], float | None]:
    """pcap (wall) time -> seconds after the close, or None without the events to place it."""
    offset = _mono_offset(events)
    t0 = next((e["mono"] for e in events if e.get("ev") == Ev.CLOSE and e.get("side") == p.close_first), None)
    return lambda ts: None if offset is None or t0 is None else round(ts - offset - t0, 6)


# A new connection from the old connection's client port, segment by segment: how each is named.
SAME_PORT_NAMES = {"syn": "SYN from the old port", "old_ack": "server ACK of the old connection",
                   "rst": "client RST from the old port", "accepted": "server SYN-ACK: a new connection",
                   "refused": "server RST: refused"}
SAME_PORT_SHOWN = 9  # of them in the timeline (a TIME_WAIT can answer SYNs for a minute), and the last


def _met(first: Packets, later: Packets, port: int) -> tuple[int | None, list[tuple[float, Any, str]]]:
    """What a new SYN from the first connection's client port met: each segment after it with its
    kind (SAME_PORT_NAMES), up to the server's SYN-ACK; and the old connection's next server
    sequence number (after the server's last FIN), None without that FIN."""
    fin = next((tcp for _, tcp in reversed(first) if tcp.sport == port and tcp.flags & FIN), None)
    old_next = None if fin is None else (fin.seq + fin.payload_len + 1) % 2**32
    out: list[tuple[float, Any, str]] = []
    for ts, tcp in later:
        flags = tcp.flags & FLAG_MASK
        kind = ("syn" if flags & SYN else "rst" if flags & RST else None) if tcp.dport == port else \
            ("accepted" if flags & SYN else "refused" if flags & RST else "old_ack" if flags == ACK else None)
        if kind is not None:
            out.append((ts, tcp, kind))
        if kind == "accepted":
            break
    return old_next, out


def same_port(old_next: int | None, met: list[tuple[float, Any, str]],
              since: Callable[[float], float | None]) -> dict[str, Any]:
    """What a new SYN from the first connection's client port met (record.CaptureFigures.same_port_*);
    {} when no such SYN was sent."""
    if not met:
        return {}
    kinds = [k for _, _, k in met]
    figures = {"same_port_syn_s": since(met[0][0]), "same_port_syns": kinds.count("syn"),
               "same_port_tw_acks": kinds.count("old_ack")}
    if kinds[-1] == "accepted":
        ts, tcp, _ = met[-1]
        figures.update(same_port_accepted_s=since(ts),
                       same_port_isn_offset=None if old_next is None else (tcp.seq - old_next) % 2**32)
    return figures


def timeline(pcap: bytes, events: list[dict[str, Any]], port: int, p: Params,
             dropped_copies: list[int] | None) -> list[Segment]:
    """Each segment of the close, named, with t in seconds after the close (t = 0)."""
    return list(figures(pcap, events, port, p, dropped_copies).timeline)


def _timeline(first: Packets, met: list[tuple[float, Any, str]], since: Callable[[float], float | None],
              port: int, p: Params, dropped_copies: list[int] | None) -> list[Segment]:
    active = p.close_first
    dropped = set(dropped_copies or ())
    reset_copy = leading_drops(p.final_ack_loss) if p.final_ack_reset else None
    out: list[Segment] = []
    fins: dict[str, int] = {"server": 0, "client": 0}
    isn: dict[str, int] = {}  # each side's initial sequence number, from its SYN
    final_acks = 0
    for ts, tcp in first:
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
        elif flags == ACK and not tcp.payload_len and fins[active] and sender == active and fins[_other(active)]:
            # A pure ACK from the active closer after the passive closer's FIN: the final ACK.
            what = "final ACK" if final_acks == 0 else "final ACK (again)"
            extra["copy"] = final_acks
            if dropped_copies is not None:
                extra["dropped"] = final_acks in dropped
                if reset_copy is not None:
                    # answered at the receiver's ingress with a RST to its sender (faults/nftables.py)
                    extra["reset"] = final_acks == reset_copy
            final_acks += 1
        elif flags == ACK and not tcp.payload_len and fins[_other(sender)] and not fins[sender]:
            what = f"{sender} ACK of the {_other(sender)} FIN"
        if what is None:
            continue
        out.append(Segment(since(ts), sender, what,
                           ", ".join(name for bit, name in FLAG_NAMES if flags & bit),
                           tcp.seq, tcp.ack if flags & ACK else None,
                           # As Wireshark shows them: from each side's SYN (None without the handshake).
                           _relative(tcp.seq, isn.get(sender)),
                           _relative(tcp.ack, isn.get(_other(sender))) if flags & ACK else None,
                           **extra))
    for ts, tcp, kind in met[:SAME_PORT_SHOWN] + met[SAME_PORT_SHOWN:][-1:]:
        sender = "client" if kind in ("syn", "rst") else "server"
        flags = tcp.flags & FLAG_MASK
        out.append(Segment(since(ts), sender, SAME_PORT_NAMES[kind],
                           ", ".join(name for bit, name in FLAG_NAMES if flags & bit), tcp.seq,
                           tcp.ack if flags & ACK else None, _relative(tcp.seq, isn.get(sender)),
                           _relative(tcp.ack, isn.get(_other(sender))) if flags & ACK else None))
    return out


def _relative(n: int, base: int | None) -> int | None:
    return None if base is None else (n - base) % 2**32


def _other(side: str) -> str:
    return "client" if side == "server" else "server"


def figures(pcap: bytes, events: list[dict[str, Any]], port: int, p: Params,
            dropped_copies: list[int] | None) -> CaptureFigures:
    """The capture's part of the record (its path aside: the harness names the file)."""
    since = _since_close(events, p)
    first, later = _split(_segments(pcap), port)
    # Only the server's TIME_WAIT meets a SYN from the old port (it closed first); the client's own is
    # its kernel's matter.
    old_next, met = _met(first, later, port) if p.close_first == "server" else (None, [])
    tl = _timeline(first, met, since, port, p, dropped_copies)
    fins = peer_fins(tl, p.close_first)
    return CaptureFigures(
        timeline=tuple(tl),
        fin_retransmits=max(0, len(fins) - 1),
        final_acks_seen=sum(1 for s in tl if s.what.startswith("final ACK")),
        last_fin_s=fins[-1].t if fins else None,
        server_rsts=sum(1 for s in tl if s.what == "server RST"),
        client_rsts=sum(1 for s in tl if s.what == "client RST"),
        **same_port(old_next, met, since),
    )


def peer_fins(tl: list[Segment] | tuple[Segment, ...], close_first: str) -> list[Segment]:
    """The passive closer's FIN and its copies, in a timeline: without one, no TIME_WAIT began."""
    passive = _other(close_first)
    return [s for s in tl if s.what in (f"{passive} FIN", f"{passive} FIN retransmission")]
