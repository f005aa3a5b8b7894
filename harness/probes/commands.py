"""What each program of a trial runs as: its argv and its capabilities (see images/src).

A trial has one container a side. The agent is the server side's (it starts the server
itself); tcpdump is the client side's, and the harness starts the client, the client's side's
agent and the fault agent in it (or, for a fault on the server's side, in the agent's) with
`docker exec`. A container holds the union of its programs' capabilities; each program drops
the rest as it starts (`setpriv`), so only the fault agent holds NET_ADMIN, and the client none.
"""

from __future__ import annotations

from harness.spec import Experiment, Params

# setpriv needs SETPCAP to drop a capability from a program's bounding set.
SETPCAP = "SETPCAP"
NOBODY = "65534"  # the client runs as nobody: no capabilities at all


def only(caps: tuple[str, ...], argv: list[str]) -> list[str]:
    """argv, started with these capabilities and no others."""
    keep = ",".join(f"+{c.lower()}" for c in caps)
    return ["setpriv", f"--bounding-set=-all{',' + keep if keep else ''}", "--", *argv]


def side_caps(*programs: tuple[str, ...]) -> list[str]:
    """A container's capabilities: what its programs need, and what setpriv needs to drop the rest."""
    return sorted({SETPCAP, *(c for caps in programs for c in caps)})

# Read back on each side in every trial, with those the case sets: the sysctls that govern
# a close (retries, FIN_WAIT_2, TIME_WAIT buckets and reuse, RFC 1337).
TEARDOWN_SYSCTLS = ("net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_max_tw_buckets", "net.ipv4.tcp_orphan_retries",
                    "net.ipv4.tcp_retries2", "net.ipv4.tcp_rfc1337", "net.ipv4.tcp_tw_reuse")


def sysctl_flags(p: Params, side: str) -> list[str]:
    names = dict.fromkeys(TEARDOWN_SYSCTLS + tuple(p.sysctls(side)))
    return [arg for name in names for arg in ("-S", name)]


def served(p: Params) -> int:
    """Connections the server serves before it exits: the client's, and, when the client closes
    first and is watched, its reconnect from a fresh socket and the one from its fixed port."""
    if p.close_first != "client" or not p.watches_client:
        return p.connections
    return p.connections + 1 + (p.client_port is not None)


# The agent raises its own CPU priority so its polls start on time under load.
AGENT_CAPS = ("SYS_NICE",)


def agent(exp: Experiment, p: Params, close_phase: tuple[float, float] | None = None) -> list[str]:
    # The agent starts the server itself (echo-server [-r] [-n N] PORT), in its own namespaces,
    # and reports how it ended: no container of the server's own to start and remove.
    return only(AGENT_CAPS, ["tw-agent", "-p", str(exp.port), *(["-r"] if p.server_reuseaddr else []), "-n", str(served(p)),
            "-c", p.close_first, "-k", p.server_stop,
            "-i", str(exp.poll_ms), "-e", str(exp.restart_every_ms), "-w", f"{exp.max_wait_s:g}",
            *(["-R"] if p.restart_with_reuseaddr else []), *(["-6"] if p.family == "ipv6" else []),
            *(["-a", "{:.6f},{:.6f}".format(*close_phase)] if close_phase else []), *sysctl_flags(p, "server")])


def client(exp: Experiment, p: Params, server_address: str) -> list[str]:
    # -w: start early, connect when the harness says so on stdin. "--": a message may start with "-".
    return ["echo-client", "-w", "-c", p.close_first, "-m", p.client_close, "-n", str(p.connections),
            *(["-b", str(p.client_port)] if p.client_port is not None else []), *sysctl_flags(p, "client"),
            "--", server_address, str(exp.port), exp.message]


# The client's side's agent: its container's role and the src of its events.
CLIENT_AGENT = "client-agent"


def client_agent(exp: Experiment, p: Params, server_address: str) -> list[str]:
    # -r: the book's question, a client started again at once; only a client that closed first
    # has a TIME_WAIT to try it against (the server keeps listening for it, see served()).
    return only(AGENT_CAPS, [
        CLIENT_AGENT, "-H", server_address, "-p", str(exp.port), "-i", str(exp.poll_ms),
        "-w", f"{exp.max_wait_s:g}", *(["-6"] if p.family == "ipv6" else []),
        *(["-r"] if p.close_first == "client" else []),
        *(["-b", str(p.client_port)] if p.client_port is not None else [])])


# tcpdump opens the interface as root, then runs as its own user: it needs
# NET_RAW, SETUID and SETGID, nothing else.
CAPTURE_CAPS = ("NET_RAW", "SETUID", "SETGID")


def capture(exp: Experiment) -> list[str]:
    # The pcap goes to stdout, which the harness reads as it comes: no file to
    # copy out at the end. -U and --immediate-mode write each packet at once;
    # SIGTERM makes tcpdump write what it has and exit, which ends the stream.
    return only(CAPTURE_CAPS, ["tcpdump", "-i", "eth0", "-p", "-n", "-U", "--immediate-mode", "-w", "-",
                               f"tcp port {exp.port}"])


# The only program with NET_ADMIN: it installs a fault backend's drop and
# reads its counters (images/src/fault_agent.sh, harness/faults).
FAULT_CAPS = ("NET_ADMIN",)


def fault_agent(install: str, readout: str) -> tuple[list[str], dict[str, str]]:
    """argv and environment."""
    return only(FAULT_CAPS, ["fault-agent"]), {"FAULT_INSTALL": install, "FAULT_READOUT": readout}
