"""The argv of each program a trial runs in its containers (see images/src)."""

from __future__ import annotations

from harness.spec import Experiment, Params


def server(exp: Experiment, p: Params) -> list[str]:
    return ["echo-server", *(["-r"] if p.server_reuseaddr else []),
            *(["-6"] if p.family == "ipv6" else []), str(exp.port)]


# The agent raises its own CPU priority so its polls start on time under load.
AGENT_CAPS = ("SYS_NICE",)


def agent(exp: Experiment, p: Params) -> list[str]:
    return ["tw-agent", "-p", str(exp.port), "-c", p.close_first,
            "-i", str(exp.poll_ms), "-e", str(exp.restart_every_ms), "-w", f"{exp.max_wait_s:g}",
            *(["-R"] if p.restart_with_reuseaddr else []), *(["-6"] if p.family == "ipv6" else [])]


def client(exp: Experiment, p: Params, server_address: str) -> list[str]:
    # -w: start early, connect on the harness's first SIGUSR1.
    return ["echo-client", "-w", "-c", p.close_first, "-m", p.client_close,
            server_address, str(exp.port), exp.message]


CAPTURE_PATH = "/tmp/trial.pcap"


# tcpdump opens the interface as root, then runs as its own user: it needs
# NET_RAW, SETUID and SETGID, nothing else.
CAPTURE_CAPS = ("NET_RAW", "SETUID", "SETGID")


def capture(exp: Experiment) -> list[str]:
    # Written to stdout by a shell that tcpdump replaces, so the file needs no
    # chown; --immediate-mode and -U write each packet as it comes, so the file
    # is complete whenever it is read, with none left in the ring buffer.
    return ["sh", "-c", f'exec tcpdump -i eth0 -p -n -U --immediate-mode -w - "tcp port {exp.port}" > {CAPTURE_PATH}']
