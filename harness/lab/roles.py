"""Who runs what in a trial: one row per program (see images/src), read by the trial's choreography
(execute.py) and the lab (topology.py).

A lab has one container a side, for one trial or for a case's repeats (each on its own server
port). Each side's first program owns its namespaces, so they outlive the programs that come and go
in them: a holder on the server's side (server-keeper -H), the lab's capture (tcpdump) on the
client's. A trial's programs start in a side's container through the side's launcher (one `docker
exec` a side for the lab) and take the harness's commands on stdin, and its signals. A container
holds the union of its programs' capabilities; each program drops the rest as it starts
(`setpriv`), so only the fault agent holds NET_ADMIN, and the client none. A user's server (the
experiment's `server:` section) is a guest: it runs in a container of its own image, joined to the
server side's network namespace (a pod's container beside its pause container), under
server-keeper, with only the capabilities the file names.
Adding a program is a new row here and the protocol step that uses it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.events import AGENT, CLIENT, CLIENT_AGENT, FAULT, KEEPER, Ev
from harness.lab.images import KEEPER_PATH
from harness.servers import with_port
from harness.spec import Experiment, Params
from harness.timerwheel import GRIDS_S

if TYPE_CHECKING:
    from harness.faults import FaultBackend

SERVER_SIDE, CLIENT_SIDE, PASSIVE = "server", "client", "passive"  # passive: the side the final ACK goes to
HOLDER = "holder"  # the server side's container's first process (holder())
SETPCAP = "SETPCAP"  # setpriv needs it to drop a capability from a program's bounding set
ROOT, NOBODY = "root", "65534:65534"
PROBE_UIDS = {"same": 0, "other": 65534}  # the old server runs as root; the other user is nobody
CAPTURE_CAPS = ("NET_RAW", "SETUID", "SETGID")  # tcpdump opens the interface as root, then runs as its own user

# Read back on each side in every trial, with those the case sets: the sysctls that govern
# a close (retries, FIN_WAIT_2, TIME_WAIT buckets and reuse, RFC 1337).
TEARDOWN_SYSCTLS = ("net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_max_tw_buckets", "net.ipv4.tcp_orphan_retries",
                    "net.ipv4.tcp_retries2", "net.ipv4.tcp_rfc1337", "net.ipv4.tcp_tw_reuse")


@dataclass(frozen=True)
class Setup:
    """What the command builders read: the experiment, the case, and what the lab has made so far."""

    exp: Experiment
    p: Params
    port: int  # the trial's server port
    close_at: str = ""  # the agent's -a (plan.Trial.close_at)
    wheel_ticks: dict[str, Any] | None = None  # Engine.wheel_ticks: the agent's -W
    fault: FaultBackend | None = None
    server_address: str = ""  # known once the server's side runs

    @property
    def passive(self) -> str:
        return CLIENT_SIDE if self.p.close_first == "server" else SERVER_SIDE

    @property
    def align_max_s(self) -> float:
        """The longest the close may wait for its phase: one period (a wheel grid: at most the coarsest)."""
        if not self.close_at:
            return 0.0
        period = self.close_at.split(",")[0]
        return max(GRIDS_S) if period == "wheel" else float(period)


@dataclass(frozen=True)
class Program:
    role: str  # the src of its events, and its container's role label
    side: str  # SERVER_SIDE, CLIENT_SIDE or PASSIVE
    caps: tuple[str, ...]  # the only ones it keeps
    user: str
    ready: Callable[[dict[str, Any]], bool]  # the event that says it is up
    not_ready: str  # what a trial's failure says when that event does not come
    argv: Callable[[Setup], list[str]]
    runs: Callable[[Setup], bool] = lambda s: True  # does this trial have it?
    env: Callable[[Setup], dict[str, str]] | None = None
    guest: bool = False  # in a container of the user's server's image, joined to its side's namespace
    more_caps: Callable[[Setup], tuple[str, ...]] = lambda s: ()  # those only some trials need

    def caps_of(self, s: Setup) -> tuple[str, ...]:
        return self.caps + self.more_caps(s)

    def side_of(self, s: Setup) -> str:
        return s.passive if self.side == PASSIVE else self.side

    def command(self, s: Setup) -> list[str]:
        """argv, started with this program's capabilities and no others (a guest's container holds
        only those the file names: its image need not have setpriv)."""
        if self.guest:
            return self.argv(s)
        keep = ",".join(f"+{c.lower()}" for c in self.caps_of(s))
        return ["setpriv", f"--bounding-set=-all{',' + keep if keep else ''}", "--", *self.argv(s)]


def _sysctl_flags(p: Params, side: str) -> list[str]:
    names = dict.fromkeys(TEARDOWN_SYSCTLS + tuple(p.sysctls(side)))
    return [arg for name in names for arg in ("-S", name)]


def served(p: Params) -> int:
    """Connections the server serves before it exits: the client's, and, when the client closes
    first and is watched, its reconnect from a fresh socket and the one from its fixed port."""
    if p.close_first != "client" or not p.watches_client:
        return p.connections
    return p.connections + 1 + (p.client_port is not None)


def _probe_flags(p: Params) -> list[str]:
    b = p.bind_probe
    if b is None:
        return []
    return ["-b", f"{int(b.reuseaddr)},{int(b.reuseport)},{PROBE_UIDS[b.user]},{b.address}"]


def _agent(s: Setup) -> list[str]:
    # The agent starts the server itself (echo-server [-r] [-p] [-n N] PORT), in its own namespaces,
    # and reports how it ended: no container of the server's own to start and remove. A user's
    # server is the keeper's (-x): the agent only watches.
    exp, p = s.exp, s.p
    if exp.server is not None:
        return ["tw-agent", "-x", "-p", str(s.port), "-i", str(exp.poll_ms), "-w", f"{exp.max_wait_s:g}", *_ticks(s),
                *(["-6"] if p.family == "ipv6" else []), *_probe_flags(p), *_sysctl_flags(p, "server")]
    return ["tw-agent", "-p", str(s.port), *(["-r"] if p.server_reuseaddr else []),
            *(["-P"] if p.server_reuseport else []), *_probe_flags(p), "-n", str(served(p)),
            "-c", p.close_first, "-k", p.server_stop, "-i", str(exp.poll_ms), "-e", str(exp.restart_every_ms),
            "-w", f"{exp.max_wait_s:g}", *(["-R"] if p.restart_with_reuseaddr else []),
            *(["-L"] if p.keep_restarted else []),
            *(["-6"] if p.family == "ipv6" else []),
            *(["-a", s.close_at] if s.close_at else []), *_ticks(s), *_sysctl_flags(p, "server")]


def _ticks(s: Setup) -> list[str]:
    return ["-W", "{period_ns},{phase_ns},{boot_id}".format(**s.wheel_ticks)] if s.wheel_ticks else []


def capture(ports: list[int]) -> list[str]:
    """The lab's capture, of its trials' ports: the client side's owner. The pcap goes to stdout,
    which the harness reads as it comes: no file to copy out at the end. -U and --immediate-mode
    write each packet at once; SIGTERM makes tcpdump write what it has and exit, which ends the
    stream. Each trial's slice is its port's packets (probes/capture.by_port)."""
    keep = ",".join(f"+{c.lower()}" for c in CAPTURE_CAPS)
    which = f"tcp port {ports[0]}" if len(ports) == 1 else f"tcp portrange {min(ports)}-{max(ports)}"
    return ["setpriv", f"--bounding-set=-all,{keep}", "--",
            "tcpdump", "-i", "eth0", "-p", "-n", "-U", "--immediate-mode", "-s", str(CAPTURE_SNAPLEN),
            "-B", str(capture_buffer_kib(len(ports))), "-w", "-", which]


# Each packet's first bytes, up to a whole Ethernet frame. On a device with offloads (a veth)
# libpcap otherwise gives each packet a 64 KiB frame, alone in a 128 KiB block of its ring, and a
# hundred trials' ring of them held a CPU in the kernel for 18-20 ms as tcpdump started (a
# real-time task on that CPU woke that late). A longer packet (a GSO aggregate of a big reply) is
# cut; the analysis takes segment lengths from the IP header (probes/capture.payload_len).
CAPTURE_SNAPLEN = 1514


def capture_buffer_kib(trials: int) -> int:
    """tcpdump's ring (-B), in KiB, of 1,584-byte frames (CAPTURE_SNAPLEN and libpcap's header),
    two a page: about 41 a trial, 1,324 at least (libpcap's default 2 MiB) and 5,296 at most. A
    hundred trials' handshakes at once overran 32 frames, and 40 lost 2 of an 8-trial lab's
    packets under CI's load."""
    return min(max(2048, 64 * trials), 8192)


def holder() -> list[str]:
    """The server side's owner: it only reaps orphans and holds the namespaces."""
    return ["setpriv", "--bounding-set=-all", "--", "server-keeper", "-H"]


def _client(s: Setup) -> list[str]:
    # -w: start early, connect when the harness says so on stdin. "--": a message may start with "-".
    p = s.p
    return ["echo-client", "-w", "-c", p.close_first, "-m", p.client_close, "-n", str(p.connections), "-r", s.exp.reply,
            *(["-b", str(p.client_port)] if p.client_port is not None else []),
            *(["-R"] if p.client_reuseaddr else []), *_sysctl_flags(p, "client"),
            "--", s.server_address, str(s.port), s.exp.message]


def waits_for_server_end(s: Setup) -> bool:
    """The client's SYNs from its fixed port, when the server closes first, wait for the old server
    to end (the harness says "go"): its listener, still open while a slow kernel ends the process,
    would take the first SYN from the TIME_WAIT; with keep_restarted, for the kept restart's
    listener, so that the SYNs always find one. A surviving listener never ends: nothing to wait for."""
    p = s.p
    return (p.close_first == "server" and p.client_port is not None and s.exp.server is None
            and p.server_stop != "close_listening")


def _client_agent(s: Setup) -> list[str]:
    # -r: the book's question, a client started again at once; only a client that closed first
    # has a TIME_WAIT to try it against (the server keeps listening for it, see served()).
    p = s.p
    return [CLIENT_AGENT, "-H", s.server_address, "-p", str(s.port), "-i", str(s.exp.poll_ms),
            "-w", f"{s.exp.max_wait_s:g}", *(["-6"] if p.family == "ipv6" else []),
            *(["-r"] if p.close_first == "client" else []),
            *(["-b", str(p.client_port)] if p.client_port is not None else []),
            *(["-R"] if p.client_reuseaddr else []), *(["-g"] if waits_for_server_end(s) else [])]


def _keeper(s: Setup, mode: str) -> list[str]:
    server = s.exp.server
    assert server is not None
    stop = server.stop
    how = ([arg for word in with_port(stop.command, s.port) for arg in ("-K", word)] if stop.command else
           ["-k", str(stop.signal), *(["-t", f"{stop.kill_after_s:g}"] if stop.kill_after_s else [])])
    return [KEEPER_PATH, *([mode] if mode else []), "-p", str(s.port), "-e", str(s.exp.restart_every_ms),
            "-w", f"{s.exp.max_wait_s:g}", *how,
            *(["-a", s.close_at] if s.close_at else []), "--", *with_port(server.command, s.port)]


def keeper(s: Setup) -> list[str]:
    """The keeper as the trial starts it: it restarts the server in its namespace, or (restart:
    container) only stops it, the side being made anew for the restart (restarted_keeper)."""
    return _keeper(s, "-N" if s.p.restart == "container" else "")


def restarted_keeper(s: Setup) -> list[str]:
    """The keeper in the server's side made anew: it starts the server as a restart."""
    return _keeper(s, "-R")


def _fault_env(s: Setup) -> dict[str, str]:
    assert s.fault is not None
    install, readout = s.fault.scripts(s.p, s.port)
    return {"FAULT_INSTALL": install, "FAULT_READOUT": readout}


def is_(ev: Ev) -> Callable[[dict[str, Any]], bool]:
    """Picks the events of one name."""
    return lambda e: e.get("ev") == ev


PROGRAMS = (
    # The agent raises its own CPU priority so its polls start on time under load, and makes a
    # bind() probe's socket as another user (bind_probe.user: other) by taking that fsuid.
    Program(AGENT, SERVER_SIDE, ("SYS_NICE",), ROOT, is_(Ev.LISTENING), "server did not listen", _agent,
            more_caps=lambda s: ("SETUID",) if s.p.bind_probe and s.p.bind_probe.user == "other" else ()),
    # A user's server, kept by server-keeper (its container's user: "" keeps the image's or the file's).
    Program(KEEPER, SERVER_SIDE, (), "", is_(Ev.LISTENING), "server did not listen", keeper,
            runs=lambda s: s.exp.server is not None, guest=True),
    Program(CLIENT, CLIENT_SIDE, (), NOBODY, is_(Ev.READY), "client start", _client),
    Program(CLIENT_AGENT, CLIENT_SIDE, ("SYS_NICE",), ROOT, is_(Ev.READY), "client agent start", _client_agent,
            runs=lambda s: s.p.watches_client),
    # The only program with NET_ADMIN: it installs a fault backend's drop and reads its counters
    # (images/src/fault_agent.sh, harness/faults).
    Program(FAULT, PASSIVE, ("NET_ADMIN",), ROOT, is_(Ev.READY), "fault agent start", lambda s: ["fault-agent"],
            runs=lambda s: s.fault is not None, env=_fault_env),
)
BY_ROLE = {p.role: p for p in PROGRAMS}


def of_trial(s: Setup) -> list[Program]:
    """The programs this trial runs."""
    return [p for p in PROGRAMS if p.runs(s)]


def side_caps(s: Setup, side: str) -> list[str]:
    """A side's container's capabilities: what its programs need (the same in every trial of a lab: they
    are one case's), and what setpriv needs to drop the rest."""
    own = CAPTURE_CAPS if side == CLIENT_SIDE else ()
    return sorted({SETPCAP, *own, *(c for p in of_trial(s) if p.side_of(s) == side and not p.guest
                                    for c in p.caps_of(s))})
