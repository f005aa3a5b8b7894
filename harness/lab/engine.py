"""The Docker engine connection, our labels, and Docker errors turned into ours.

Every object a run creates carries its run id and its owner (host, PID and the
process's start time), so `harness clean` can tell a crashed run's leftovers
from the objects of a run that is still going.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ipaddress
import os
import socket
from collections.abc import Callable, Iterator
from typing import Any

import docker
import docker.errors
import requests.exceptions

from harness.errors import LabError
from harness.lab import engines
from harness.lab.engines import REMOVERS

LABEL = "io.harness"  # every object we create carries it
RUN_LABEL = "io.harness.run"
TRIAL_LABEL = "io.harness.trial"
ROLE_LABEL = "io.harness.role"
OWNER_LABEL = "io.harness.owner"  # host:pid:start, the process that made it
TIMEOUT_S = 120  # per socket read: a trial's capture can be silent for a minute (TIME_WAIT)
QUICK_TIMEOUT_S = 15  # for removals after a stop, which must not hang when the engine does
PING_TIMEOUT_S = 3  # is the engine still there?


def _start_ticks(pid: int | str) -> str | None:
    """When the process started, in clock ticks since boot (/proc/PID/stat field 22): with the
    PID, it tells a live process from a later one that reused the PID."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


OWNER = f"{socket.gethostname()}:{os.getpid()}:{_start_ticks('self')}"


def owner_alive(owner: str | None) -> bool:
    """Is the process that made an object still running? Unknown owners (another host) count as
    alive; objects from before owners were recorded, as not."""
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid, _, start = rest.partition(":")
    if host != socket.gethostname():
        return True
    return pid.isdigit() and _start_ticks(pid) == start


def labels(run_id: str, trial: str = "", role: str = "") -> dict[str, str]:
    out = {LABEL: "1", RUN_LABEL: run_id, OWNER_LABEL: OWNER}
    if trial:
        out[TRIAL_LABEL] = trial
    if role:
        out[ROLE_LABEL] = role
    return out


@contextlib.contextmanager
def translated(doing: str) -> Iterator[None]:
    """Docker's exceptions enter our code here and leave as LabError."""
    try:
        yield
    except docker.errors.APIError as exc:
        raise LabError(doing, exc.explanation or str(exc)) from None
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        raise LabError(doing, str(exc)) from None


def connect(timeout: float = TIMEOUT_S) -> docker.DockerClient:
    """A client for the environment's engine (engines.py: DOCKER_HOST, else the current context)."""
    return engines.client(engines.resolve(None), timeout)


def is_local(client: docker.DockerClient) -> bool:
    """Does the engine run on this host (its Unix socket), so that this host's routes matter?"""
    return client.api.base_url.startswith("http+docker://")


def network_subnets(client: docker.DockerClient) -> list[ipaddress.IPv4Network]:
    """The IPv4 subnets of every network the engine has."""
    with translated("listing the engine's networks"):
        nets = client.networks.list()
    out = []
    for n in nets:
        for cfg in (n.attrs.get("IPAM") or {}).get("Config") or []:
            with contextlib.suppress(ValueError, KeyError):
                net = ipaddress.ip_network(cfg["Subnet"], strict=False)
                if net.version == 4:
                    out.append(net)
    return out


def alive(client: docker.DockerClient) -> bool:
    try:
        return bool(client.ping())
    except (docker.errors.DockerException, requests.exceptions.RequestException):
        return False


def remove_labelled(client: docker.DockerClient, run_id: str | None = None, networks: bool = True,
                    only: Callable[[dict[str, str]], bool] = lambda labels: True) -> tuple[int, int]:
    """Remove the containers, then the networks, of one run (or of every run) that `only` picks
    by their labels, many at once; returns the counts.

    networks=False removes containers only: what a stop does first, while trial threads may
    still be tearing down networks of their own."""
    api = client.api
    with translated("removing the harness's containers and networks"), \
            concurrent.futures.ThreadPoolExecutor(REMOVERS) as pool:
        found = [c["Id"] for c in _listed(client, run_id, networks=False) if only(c.get("Labels") or {})]
        list(pool.map(lambda c: remove_quietly(api.remove_container, container=c, force=True), found))
        nets = [n["Id"] for n in _listed(client, run_id, networks=True) if only(n.get("Labels") or {})] \
            if networks else []
        list(pool.map(lambda n: remove_quietly(api.remove_network, net_id=n), nets))
    return len(found), len(nets)


def _listed(client: docker.DockerClient, run_id: str | None, networks: bool) -> list[dict[str, Any]]:
    """The summaries (id, labels) of one run's (or every run's) containers, stopped ones too, or
    networks: as the engine lists them, without looking each one up, which fails for an object
    another run removes meanwhile."""
    filters = {"label": [f"{RUN_LABEL}={run_id}"] if run_id else [RUN_LABEL]}
    return client.api.networks(filters=filters) if networks else client.api.containers(all=True, filters=filters)


def remove_dead(client: docker.DockerClient, unowned: bool) -> tuple[int, int]:
    """Remove what runs whose process is gone left behind (a crash, a SIGKILL); returns the counts.
    Objects without an owner (made by harness versions before owners were recorded) go only with
    `unowned`: whether their run still goes cannot be told."""
    return remove_labelled(client, only=lambda labels: (unowned or OWNER_LABEL in labels)
                           and not owner_alive(labels.get(OWNER_LABEL)))


def remove_quietly(remove: Callable[..., None], **kwargs: Any) -> None:
    """Remove, where gone already or being removed by another thread counts as done."""
    try:
        remove(**kwargs)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        if exc.status_code != 409:  # 409: removal already in progress
            raise


def count_labelled(client: docker.DockerClient, run_id: str | None = None) -> tuple[int, int]:
    """How many containers (stopped ones too) and networks one run (or every run) has on the
    engine: what remove_labelled would remove, counted and left in place."""
    with translated("counting the harness's containers and networks"):
        return len(_listed(client, run_id, networks=False)), len(_listed(client, run_id, networks=True))


def remove_images(client: docker.DockerClient) -> int:
    """Remove every image the harness built or imported (labelled LABEL: the lab images and a
    local base), by force; returns how many. The next run builds them again, from nothing."""
    with translated("removing the harness's images"):
        found = client.images.list(filters={"label": LABEL})
        for image in found:
            client.images.remove(image.id, force=True)
    return len(found)


def _label(label: str) -> tuple[str, str]:
    """A label written key=value as (key, value); a bare key as (key, "1")."""
    key, sep, value = label.partition("=")
    return key, value if sep else "1"


def create_networks(client: docker.DockerClient, prefix: str, n: int, label: str) -> list[str]:
    """Create n networks, prefix-0 to prefix-(n-1), each labelled `label` ("key=value"), each
    given a subnet from the engine's default address pools: what other users of the engine
    take from them. They belong to no run (no RUN_LABEL), so neither a run nor `harness clean`
    removes them: remove_networks(client, label) does. Returns their names."""
    key, value = _label(label)
    names = [f"{prefix}-{i}" for i in range(n)]
    with translated(f"creating {n} networks labelled {label}"):
        for name in names:
            client.networks.create(name, labels={key: value})
    return names


def remove_networks(client: docker.DockerClient, label: str) -> int:
    """Remove every network labelled `label` ("key=value", or "key" for any value); returns how many."""
    with translated(f"removing the networks labelled {label}"):
        nets = client.networks.list(filters={"label": label})
        for n in nets:
            with contextlib.suppress(docker.errors.NotFound):  # gone already
                n.remove()
    return len(nets)
