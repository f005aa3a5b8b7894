"""The Docker engine connection, our labels, and Docker errors turned into ours."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import docker
import docker.errors
import requests.exceptions

from harness.errors import EnvironmentProblem, LabError

LABEL = "io.harness"  # every object we create carries it
RUN_LABEL = "io.harness.run"
TRIAL_LABEL = "io.harness.trial"
ROLE_LABEL = "io.harness.role"


def labels(run_id: str, trial: str = "", role: str = "") -> dict[str, str]:
    out = {LABEL: "1", RUN_LABEL: run_id}
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


def connect() -> docker.DockerClient:
    """A client for the engine in the environment (DOCKER_HOST or the local socket)."""
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        raise EnvironmentProblem(
            f"cannot reach a Docker engine ({exc.__class__.__name__}); start one "
            "(`dockerd &`, or `bash .ci/run` which installs and starts it) or set DOCKER_HOST"
        ) from None
    return client


def remove_labelled(client: docker.DockerClient, run_id: str | None = None,
                    networks: bool = True) -> tuple[int, int]:
    """Remove our containers, then networks (of one run, or all); returns the counts.

    networks=False removes containers only: what an interrupt does first, while
    trial threads may still be tearing down networks of their own."""
    filt = [f"{RUN_LABEL}={run_id}"] if run_id else [LABEL]
    with translated("removing the harness's containers and networks"):
        found = client.containers.list(all=True, filters={"label": filt})
        for c in found:
            remove_quietly(c.remove, force=True)
        nets = client.networks.list(filters={"label": filt}) if networks else []
        for n in nets:
            remove_quietly(n.remove)
    return len(found), len(nets)


def remove_quietly(remove: Callable[..., None], **kwargs: Any) -> None:
    """Remove, where gone already or being removed by another thread counts as done."""
    try:
        remove(**kwargs)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        if exc.status_code != 409:  # 409: removal already in progress
            raise
