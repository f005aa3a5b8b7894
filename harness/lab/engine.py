"""The Docker engine connection, our labels, and Docker errors turned into ours."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

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


def remove_labelled(client: docker.DockerClient, run_id: str | None = None) -> tuple[int, int]:
    """Remove our containers and networks (of one run, or all); returns the counts."""
    filt = [f"{RUN_LABEL}={run_id}"] if run_id else [LABEL]
    containers = client.containers.list(all=True, filters={"label": filt})
    for c in containers:
        with contextlib.suppress(docker.errors.NotFound):
            c.remove(force=True)
    networks = client.networks.list(filters={"label": filt})
    for n in networks:
        with contextlib.suppress(docker.errors.NotFound):
            n.remove()
    return len(containers), len(networks)
