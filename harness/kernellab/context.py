"""The lab as a Docker context (`docker --context NAME`, `docker context ls`), and as the
environment variables docker-py and the CLI read."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from harness.errors import EnvironmentProblem
from harness.kernellab import proc

MARK = "harness kernel-lab"  # in the description: a context we made and may replace or remove


def host(port: int) -> str:
    return f"tcp://127.0.0.1:{port}"


def create_argv(name: str, port: int, certs: Path, package: str) -> list[str]:
    endpoint = f"host={host(port)},ca={certs / 'ca.pem'},cert={certs / 'cert.pem'},key={certs / 'key.pem'}"
    return ["docker", "context", "create", name, "--description", f"{MARK}: {package}", "--docker", endpoint]


def env(port: int, certs: Path) -> dict[str, str]:
    """What docker.from_env() and the CLI need to reach the lab without the context."""
    return {"DOCKER_HOST": host(port), "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(certs)}


def _description(name: str) -> str | None:
    """The context's description, or None if there is no such context."""
    p = subprocess.run(["docker", "context", "inspect", name], capture_output=True, text=True)
    if p.returncode != 0:
        return None
    return json.loads(p.stdout)[0].get("Metadata", {}).get("Description", "")


def create(name: str, port: int, certs: Path, package: str) -> None:
    """Register the lab; replaces a context of ours left by a lab that died, never anyone else's."""
    proc.need("docker")
    found = _description(name)
    if found is not None and not found.startswith(MARK):
        raise EnvironmentProblem(f"a Docker context named {name} exists and is not a kernel lab's; "
                                 "choose another --name")
    if found is not None:
        remove(name)
    # The CLI copies the TLS files into its context store (~/.docker/contexts, 0600).
    proc.run(create_argv(name, port, certs, package), f"creating the Docker context {name}")


def remove(name: str) -> bool:
    """Remove the context if it is ours; True if it was there."""
    found = _description(name)
    if found is None or not found.startswith(MARK):
        return False
    proc.run(["docker", "context", "rm", "--force", name], f"removing the Docker context {name}")
    return True
