"""The argv of each program a trial runs in its containers (see images/src)."""

from __future__ import annotations

from harness.spec import Experiment, Params

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


def server(exp: Experiment, p: Params) -> list[str]:
    # The server exits on SIGINT, as the book's does; the shell around it then
    # says how it ended ($?: 128 + the signal's number after one) and stays, so
    # the container's end (work for the engine, which would delay the close's
    # FINs and the agents' polls) comes when the harness removes it, once
    # TIME_WAIT has begun.
    return ["sh", "-c", '"$@"; printf \'{"src":"server","ev":"exit","status":%d}\\n\' $?; exec sleep infinity',
            "sh", "echo-server", *(["-r"] if p.server_reuseaddr else []), *(["-6"] if p.family == "ipv6" else []),
            *(["-n", str(served(p))] if served(p) > 1 else []), str(exp.port)]


# The agent raises its own CPU priority so its polls start on time under load.
AGENT_CAPS = ("SYS_NICE",)


def agent(exp: Experiment, p: Params, close_phase: tuple[float, float] | None = None) -> list[str]:
    return ["tw-agent", "-p", str(exp.port), "-c", p.close_first, "-k", p.server_stop,
            "-i", str(exp.poll_ms), "-e", str(exp.restart_every_ms), "-w", f"{exp.max_wait_s:g}",
            *(["-R"] if p.restart_with_reuseaddr else []), *(["-6"] if p.family == "ipv6" else []),
            *(["-a", "{:.6f},{:.6f}".format(*close_phase)] if close_phase else []), *sysctl_flags(p, "server")]


def client(exp: Experiment, p: Params, server_address: str) -> list[str]:
    # -w: start early, connect on the harness's first SIGUSR1. "--": a message may start with "-".
    return ["echo-client", "-w", "-c", p.close_first, "-m", p.client_close, "-n", str(p.connections),
            *(["-b", str(p.client_port)] if p.client_port is not None else []), *sysctl_flags(p, "client"),
            "--", server_address, str(exp.port), exp.message]


# The client's side's agent: its container's role and the src of its events.
CLIENT_AGENT = "client-agent"


def client_agent(exp: Experiment, p: Params, server_address: str) -> list[str]:
    # -r: the book's question, a client started again at once; only a client that closed first
    # has a TIME_WAIT to try it against (the server keeps listening for it, see served()).
    return [CLIENT_AGENT, "-H", server_address, "-p", str(exp.port), "-i", str(exp.poll_ms),
            "-w", f"{exp.max_wait_s:g}", *(["-6"] if p.family == "ipv6" else []),
            *(["-r"] if p.close_first == "client" else []),
            *(["-b", str(p.client_port)] if p.client_port is not None else [])]


# tcpdump opens the interface as root, then runs as its own user: it needs
# NET_RAW, SETUID and SETGID, nothing else.
CAPTURE_CAPS = ("NET_RAW", "SETUID", "SETGID")


def capture(exp: Experiment) -> list[str]:
    # The pcap goes to stdout, which the harness reads as it comes: no file to
    # copy out at the end. -U and --immediate-mode write each packet at once;
    # SIGTERM makes tcpdump write what it has and exit, which ends the stream.
    return ["tcpdump", "-i", "eth0", "-p", "-n", "-U", "--immediate-mode", "-w", "-", f"tcp port {exp.port}"]


# The only container with NET_ADMIN: it installs a fault backend's drop and
# reads its counters (images/src/fault_agent.sh, harness/faults).
FAULT_CAPS = ("NET_ADMIN",)


def fault_agent(install: str, readout: str) -> tuple[list[str], dict[str, str]]:
    """argv and environment."""
    return ["fault-agent"], {"FAULT_INSTALL": install, "FAULT_READOUT": readout}
