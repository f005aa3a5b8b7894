"""A small trial made by hand, as the harness records one: the server closes first, the
client's FIN comes three times and each final ACK is dropped (nftables, "all").

Monotonic 100.0 is the close; the pcap's wall clock is monotonic + 1000.
"""

from __future__ import annotations

import io
import json
import socket

import dpkt

from harness import plan, spec

SERVER, CLIENT, PORT, CPORT = "10.9.0.2", "10.9.0.3", 7777, 40000
SYN, F, A, P, RST = dpkt.tcp.TH_SYN, dpkt.tcp.TH_FIN, dpkt.tcp.TH_ACK, dpkt.tcp.TH_PUSH, dpkt.tcp.TH_RST
S_ISN, C_ISN = 5000, 9000
WALL = 1000.0

EXPERIMENT = spec.parse("""name: t
description: d
cases:
  - {name: all lost, close_first: server, final_ack_loss: all}
""", "t.yaml")
(TRIAL,) = plan.trials(EXPERIMENT)

# A bare experiment and the host features a fault backend is chosen from (shared by the fault tests).
EXP = spec.Experiment(name="t", description="d", source="t.yaml", text="", port=7777)
NO_NETEM = {"nftables": True, "ifb": True, "ingress_qdisc": True, "u32_mirred": False, "netem": False}
NETEM = {**NO_NETEM, "u32_mirred": True, "netem": True, "netem_seed": True}


def seg(src, flags, seq, ack=0, data=b""):
    sport, dport = (PORT, CPORT) if src == SERVER else (CPORT, PORT)
    tcp = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags=flags, data=data)
    dst = CLIENT if src == SERVER else SERVER
    ip = dpkt.ip.IP(src=socket.inet_aton(src), dst=socket.inet_aton(dst), p=6, data=tcp)
    return bytes(dpkt.ethernet.Ethernet(data=ip, type=dpkt.ethernet.ETH_TYPE_IP))


def pcap(packets):
    buf = io.BytesIO()
    w = dpkt.pcap.Writer(buf)
    for ts, frame in packets:
        w.writepkt(frame, ts=ts)
    return buf.getvalue()


def at(t):  # seconds after the close -> pcap time
    return WALL + 100.0 + t


PCAP = pcap([
    (at(-1.0), seg(CLIENT, SYN, C_ISN)),
    (at(-1.0), seg(SERVER, SYN | A, S_ISN, C_ISN + 1)),
    (at(-1.0), seg(CLIENT, A, C_ISN + 1, S_ISN + 1)),
    (at(-0.5), seg(CLIENT, A | P, C_ISN + 1, S_ISN + 1, b"hello")),
    (at(-0.5), seg(SERVER, A | P, S_ISN + 1, C_ISN + 6, b"hello")),
    (at(0.001), seg(SERVER, F | A, S_ISN + 6, C_ISN + 6)),
    (at(0.002), seg(CLIENT, F | A, C_ISN + 6, S_ISN + 7)),
    (at(0.003), seg(SERVER, A, S_ISN + 7, C_ISN + 7)),  # final ACK, dropped
    (at(0.205), seg(CLIENT, F | A, C_ISN + 6, S_ISN + 7)),
    (at(0.206), seg(SERVER, A, S_ISN + 7, C_ISN + 7)),  # dropped
    (at(0.620), seg(CLIENT, F | A, C_ISN + 6, S_ISN + 7)),
    (at(0.621), seg(SERVER, A, S_ISN + 7, C_ISN + 7)),  # dropped
])


def agent(ev, t, **kw):
    return {"src": "agent", "ev": ev, "mono": 100.0 + t, **kw}


NFT = {"nftables": [{"counter": {"table": "harness_fault", "name": "final_acks", "packets": 3}},
                    {"counter": {"table": "harness_fault", "name": "dropped", "packets": 3}}]}

EVENTS = [
    agent("clock", -5.0, realtime=WALL + 95.0, nice=-20),
    agent("listening", -4.0, pid=14),
    {"src": "harness", "ev": "fault", "backend": "nftables", "injection_point": "nftables ingress of the client"},
    agent("close", 0.0, side="server", how="SIGINT"),
    agent("sockets", 0.0, states=["ESTABLISHED"]),
    agent("bind_fail", 0.0001, reuseaddr=False, errno="Address already in use"),
    agent("bind_fail", 0.0002, reuseaddr=True, errno="Address already in use"),
    agent("sockets", 0.010, states=["TIME_WAIT"]),
    agent("tw_appear", 0.010, expires_ms=59990, window_ms=10.0),
    agent("restart_fail", 0.011, attempt=1, stderr="bind() error"),
    agent("tw_timer_restart", 0.210, expires_ms=60000),
    agent("restart_fail", 0.111, attempt=2, stderr="bind() error"),
    agent("tw_timer_restart", 0.630, expires_ms=60000),
    agent("tw_timer", 1.010, expires_ms=59620),
    agent("sockets", 60.640, states=[]),
    agent("tw_gone", 60.640, window_ms=10.0),
    agent("bind_ok", 60.641, reuseaddr=False, failures=6063, window_ms=10.0),
    agent("bind_ok", 60.642, reuseaddr=True, failures=6063, window_ms=10.0),
    agent("restart_up", 60.700, attempt=600, failures=599),
    agent("restart_stats", 60.705, attempts=600, bind_errors=2, other=0),
    agent("poll_stats", 60.71, interval_ms=10, polls=6071, late_max_ms=3.5, late_over_5ms=0),
    agent("done", 60.71),
    {"src": "fault", "ev": "ready"},
    {"src": "fault", "ev": "installed"},
    {"src": "fault", "ev": "output", "text": json.dumps(NFT)},
    {"src": "fault", "ev": "counted"},
    {"src": "capture", "ev": "output", "text": "0 packets dropped by kernel"},
    {"src": "harness", "ev": "trial_end", "error": None, "phases": {"lab_s": 0.4}, "wall_s": 62.0,
     "capture": "captures/t000.pcap"},
]
