"""What the engine and kernel are: for the manifest, and for choosing a fault backend.

Capabilities are probed once per run, in a throwaway container with its own
empty network namespace and NET_ADMIN, removed straight after.
"""

from __future__ import annotations

import platform
from typing import Any

import docker

from harness.lab.engine import labels, translated
from harness.lab.images import ImageSet

# The TCP settings behind TIME_WAIT, FIN retries and port reuse, as a new
# network namespace (a trial's) gets them.
SYSCTLS = (
    "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_orphan_retries", "net.ipv4.tcp_retries1",
    "net.ipv4.tcp_retries2", "net.ipv4.tcp_max_tw_buckets", "net.ipv4.tcp_tw_reuse",
    "net.ipv4.tcp_timestamps", "net.ipv4.tcp_rto_min_us", "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_ehash_entries",
)

# Each check prints name=yes|no. netem's needs: an ingress qdisc, an IFB to
# move ingress packets to, u32 + mirred to send them there, and netem itself.
_CHECKS = {
    "nftables": "nft add table netdev harness_probe",
    "ifb": "ip link add hprobe0 type ifb && ip link set hprobe0 up",
    "ingress_qdisc": "tc qdisc add dev lo handle ffff: ingress",
    "u32_mirred": "tc filter add dev lo parent ffff: protocol ip prio 1 u32 match u32 0 0 "
                  "action mirred egress redirect dev hprobe0",
    "netem": "tc qdisc add dev hprobe0 root netem loss 1%",
    "netem_seed": "tc qdisc change dev hprobe0 root netem loss 1% seed 1",
}


def _script() -> str:
    lines = [f'echo "{k}=$(sysctl -n {k} 2>/dev/null | tr "\\t" " ")"' for k in SYSCTLS]
    lines += [f"if {cmd} >/dev/null 2>&1; then echo {name}=yes; else echo {name}=no; fi"
              for name, cmd in _CHECKS.items()]
    return "\n".join(lines)


def probe(client: docker.DockerClient, images: ImageSet, run_id: str) -> dict[str, Any]:
    """Sysctls and fault capabilities of a fresh namespace on this engine's kernel."""
    with translated("probing the kernel in a throwaway container"):
        out = client.containers.run(
            images["probe"], ["sh", "-c", _script()], network_mode="none", remove=True,
            cap_drop=["ALL"], cap_add=["NET_ADMIN"], labels=labels(run_id, role="probe"))
    values = dict(line.split("=", 1) for line in out.decode().splitlines() if "=" in line)
    return {
        "sysctls": {k: values.get(k, "") for k in SYSCTLS},
        "capabilities": {k: values.get(k) == "yes" for k in _CHECKS},
    }


def engine(client: docker.DockerClient) -> dict[str, Any]:
    with translated("asking the engine what it is"):
        info, version = client.info(), client.version()
    return {
        "engine_version": version.get("Version"),
        "api_version": version.get("ApiVersion"),
        "kernel": info.get("KernelVersion"),
        "os": info.get("OperatingSystem"),
        "cpus": info.get("NCPU"),
        "harness_host": platform.node(),
    }
