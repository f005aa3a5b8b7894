"""What the engine and kernel are: for the manifest, for choosing a fault backend, and
whether the kernel takes the sysctls an experiment sets.

Capabilities are probed once per run, in a throwaway container with its own
empty network namespace and NET_ADMIN, removed straight after.
"""

from __future__ import annotations

import platform
import re
import time
from pathlib import Path
from typing import Any

import docker
import docker.errors

from harness import timerwheel
from harness.errors import LabError, SpecError
from harness.lab.engine import labels, remove_quietly, translated
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


_SYSCTL_LINES = [f'echo "{k}=$(sysctl -n {k} 2>/dev/null | tr "\\t" " ")"' for k in SYSCTLS]
_CHECK_LINES = [f"if {cmd} >/dev/null 2>&1; then echo {name}=yes; else echo {name}=no; fi"
                for name, cmd in _CHECKS.items()]


def _probe(client: docker.DockerClient, image: str, run_id: str, lines: list[str]) -> dict[str, str]:
    """name=value lines printed by a script run in a throwaway container with its own empty
    network namespace and NET_ADMIN."""
    with translated("probing the kernel in a throwaway container"):
        out = client.containers.run(
            image, ["sh", "-c", "\n".join(lines)], network_mode="none", remove=True,
            cap_drop=["ALL"], cap_add=["NET_ADMIN"], labels=labels(run_id, role="probe"))
    return dict(line.split("=", 1) for line in out.decode().splitlines() if "=" in line)


def probe(client: docker.DockerClient, images: ImageSet, run_id: str) -> dict[str, Any]:
    """Sysctls and fault capabilities of a fresh namespace on this engine's kernel."""
    values = _probe(client, images["probe"], run_id, _SYSCTL_LINES + _CHECK_LINES)
    return {
        "sysctls": {k: values.get(k, "") for k in SYSCTLS},
        "capabilities": {k: values.get(k) == "yes" for k in _CHECKS},
    }


def capabilities(client: docker.DockerClient, image: str) -> dict[str, bool]:
    """The fault capabilities alone, in any image that has nft and tc (`harness doctor`)."""
    values = _probe(client, image, "doctor", _CHECK_LINES)
    return {k: values.get(k) == "yes" for k in _CHECKS}


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


CLOCK_MONOTONIC_COARSE = 6  # <linux/time.h>; its resolution is the kernel's jiffy (Python does not name it)


def wheel_ticks() -> dict[str, Any] | None:
    """The instants this host's kernel can end a TIME_WAIT on (timerwheel.ticks), and the boot they
    hold for: an agent on another kernel (a VM's engine) finds another boot_id and does without.
    None where /proc/timer_list cannot be read (only root can; a container cannot)."""
    try:
        readings = [Path("/proc/timer_list").read_text() for _ in range(3)]
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        jiffy_ns = round(time.clock_getres(CLOCK_MONOTONIC_COARSE) * 1e9)
    except OSError:
        return None
    found = timerwheel.ticks(readings, jiffy_ns)
    return None if found is None else {"period_ns": found[0], "phase_ns": found[1], "boot_id": boot}


# How the runtime reports a sysctl it could not set, e.g. "open /proc/sys/net/core/rmem_max:
# no such file or directory" or "write /proc/sys/net/ipv4/tcp_tw_reuse: invalid argument".
_REFUSAL = re.compile(r"(?:open|write) /proc/sys/([A-Za-z0-9_./-]+): ([a-z][a-z ]*[a-z])")


def _refused(client: docker.DockerClient, images: ImageSet, run_id: str,
             sysctls: dict[str, str]) -> tuple[str, str] | None:
    """Start a throwaway container whose new network namespace gets these sysctls the way a
    trial's namespace owner gets them (the runtime writes each before anything runs): the
    first one the kernel refused and its answer, or None."""
    doing = "setting the experiment's sysctls in a throwaway network namespace"
    with translated(doing):
        c = client.containers.create(images["probe"], ["true"], network_mode="none", sysctls=sysctls,
                                     cap_drop=["ALL"], labels=labels(run_id, role="probe"))
    try:
        c.start()
        return None
    except docker.errors.APIError as exc:
        said = exc.explanation or str(exc)
        m = _REFUSAL.search(said)
        if m is None:
            raise LabError(doing, said) from None
        return m.group(1).replace("/", "."), m.group(2)
    finally:
        with translated(doing):
            remove_quietly(c.remove, force=True)


MISSING = "no such file or directory"


def _why(answer: str, value: str) -> str:
    if answer in ("permission denied", "read-only file system"):
        return f"read-only in a network namespace ({answer}); allowed: a writable net.* sysctl"
    return f"the kernel refused {value!r} ({answer}); allowed: a value this sysctl takes"


def check_sysctls(client: docker.DockerClient, images: ImageSet, run_id: str,
                  fields: dict[tuple[str, str, str], str], source: str) -> frozenset[str]:
    """Every (side, name, value) an experiment sets, applied before any trial starts: the names
    this kernel lacks in a network namespace (its cases are not applicable here: a kernel older
    than the sysctl, or a name no kernel has), while a value the kernel refuses, or a read-only
    name, is a SpecError naming the field (spec.sysctl_fields)
    where it is written. One throwaway namespace per round; each round sets one value of every
    name it has."""
    values: dict[str, list[str]] = {}
    for _, name, value in fields:
        if value not in values.setdefault(name, []):
            values[name].append(value)
    lacking: set[str] = set()
    for i in range(max(map(len, values.values()), default=0)):
        asked = {name: vs[i] for name, vs in values.items() if i < len(vs) and name not in lacking}
        while asked and (refusal := _refused(client, images, run_id, asked)) is not None:
            name, answer = refusal
            if answer == MISSING and name in asked:
                lacking.add(name)
                del asked[name]
                continue
            where = next((w for (_, n, v), w in fields.items() if n == name and v == asked.get(name)), "sysctls")
            raise SpecError(source, where, _why(answer, asked.get(name, "")))
    return frozenset(lacking)
