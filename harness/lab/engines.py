"""Which Docker engines a run uses, named as Docker names them.

`--engine NAME` is a Docker context (`docker context ls`: the ecosystem's names, so a context made
by `harness kernel-lab up`, `docker context create` or Docker Desktop works as it does for the
CLI); `--engine URL` an engine's address (unix://, tcp://). Without `--engine`, the environment's
engine, as the CLI finds it: DOCKER_HOST (with DOCKER_TLS_VERIFY and DOCKER_CERT_PATH), else the
current context (DOCKER_CONTEXT, or the CLI's config), else the local socket.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import docker
import docker.errors
import requests.exceptions

from harness.errors import EnvironmentProblem, UsageError

if TYPE_CHECKING:
    from harness.faults import FaultBackend
    from harness.lab.ends import Ends
    from harness.lab.images import ImageSet
    from harness.lab.subnets import Subnets

LOCAL = "unix:///var/run/docker.sock"
DEFAULT = "default"  # the CLI's name for the environment's engine
API_VERSION = "1.41"  # Docker 20.10's; later engines speak it too
REMOVERS = 16  # container removals at once, per engine: each takes the engine about 0.25 s


@dataclass(frozen=True)
class EngineRef:
    name: str  # as the user named it: a context, a URL, or "default"
    host: str
    cert_dir: Path | None = None  # ca.pem, cert.pem, key.pem: the TLS client's (DOCKER_CERT_PATH's form)
    verify: bool = True

    def env(self) -> dict[str, str]:
        """The environment that makes the docker CLI (and docker.from_env) use this engine."""
        env = {k: v for k, v in os.environ.items() if k not in ("DOCKER_CONTEXT", "DOCKER_TLS_VERIFY",
                                                                  "DOCKER_CERT_PATH")}
        env["DOCKER_HOST"] = self.host
        if self.cert_dir is not None:
            env["DOCKER_CERT_PATH"] = str(self.cert_dir)
            if self.verify:
                env["DOCKER_TLS_VERIFY"] = "1"
        return env


def _config_dir() -> Path:
    return Path(os.environ.get("DOCKER_CONFIG", Path.home() / ".docker"))


def _context(name: str) -> EngineRef:
    """A context from the CLI's store: contexts/meta/<sha256(name)>/meta.json and its TLS files."""
    digest = hashlib.sha256(name.encode()).hexdigest()
    meta = _config_dir() / "contexts" / "meta" / digest / "meta.json"
    try:
        doc = json.loads(meta.read_text())
        endpoint = doc["Endpoints"]["docker"]
        host = endpoint["Host"]
    except FileNotFoundError:
        raise UsageError(f"--engine {name}: no such Docker context (`docker context ls` lists them; "
                         "or give an address, e.g. unix:///var/run/docker.sock)") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EnvironmentProblem(f"Docker context {name}: unreadable ({meta}: {exc})") from None
    tls = _config_dir() / "contexts" / "tls" / digest / "docker"
    return EngineRef(name, host, tls if (tls / "cert.pem").is_file() else None,
                     not endpoint.get("SkipTLSVerify", False))


def _current_context() -> str:
    if os.environ.get("DOCKER_CONTEXT"):
        return os.environ["DOCKER_CONTEXT"]
    try:
        return json.loads((_config_dir() / "config.json").read_text()).get("currentContext") or DEFAULT
    except (OSError, ValueError, AttributeError):
        return DEFAULT


def resolve(given: str | None) -> EngineRef:
    """The engine `--engine` names (None: the environment's)."""
    if given is None:
        if os.environ.get("DOCKER_HOST"):
            cert = os.environ.get("DOCKER_CERT_PATH")
            if not cert:
                return EngineRef(DEFAULT, os.environ["DOCKER_HOST"])
            return EngineRef(DEFAULT, os.environ["DOCKER_HOST"], Path(cert), bool(os.environ.get("DOCKER_TLS_VERIFY")))
        current = _current_context()
        return EngineRef(DEFAULT, LOCAL) if current == DEFAULT else _context(current)
    if "://" in given:
        return EngineRef(given, given)
    return EngineRef(DEFAULT, LOCAL) if given == DEFAULT else _context(given)


def client(ref: EngineRef, timeout: float) -> docker.DockerClient:
    """A client for the engine, checked to answer."""
    tls = None
    if ref.cert_dir is not None:
        tls = docker.tls.TLSConfig(client_cert=(str(ref.cert_dir / "cert.pem"), str(ref.cert_dir / "key.pem")),
                                   ca_cert=str(ref.cert_dir / "ca.pem") if ref.verify else None,
                                   verify=ref.verify)
    try:
        # An explicit API version (the one the harness is made against): "auto" would ask the
        # engine before trust_env is off.
        c = docker.DockerClient(base_url=ref.host, tls=tls, timeout=timeout, version=API_VERSION)
        if tls is not None:
            # requests would prefer REQUESTS_CA_BUNDLE (set on some machines) over the engine's CA.
            c.api.trust_env = False
        c.ping()
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        where = "" if ref.name == DEFAULT else f" {ref.name}"
        raise EnvironmentProblem(
            f"cannot reach the Docker engine{where} at {ref.host} ({exc.__class__.__name__}); start one "
            "(`dockerd &`, `bash .ci/run`, or `harness kernel-lab up`), or name another with --engine") from None
    return c


@dataclass
class Engine:
    """One engine of the run, and what the trials on it use."""

    name: str
    kernel: str
    docker: docker.DockerClient
    quick: docker.DockerClient  # short timeouts: removal after a stop must not hang with the engine
    ping: docker.DockerClient  # shorter still: is the engine still there? (EngineWatch)
    images: ImageSet
    subnets: Subnets
    fault: FaultBackend | None
    # Labs setting up at once, each until its trials have closed (execute._Gate). Container starts and
    # trials' starts load the engine and its host's CPUs; bounding them keeps other labs' 10 ms
    # polls on time.
    setting_up: threading.Semaphore
    # Trials starting their programs and making their handshake at once.
    starting: threading.Semaphore
    # Every trial's container removals, a few at once (each takes the engine about 0.25 s).
    remover: concurrent.futures.ThreadPoolExecutor = dataclasses.field(
        default_factory=lambda: concurrent.futures.ThreadPoolExecutor(REMOVERS, thread_name_prefix="rm-"))
    lacks: frozenset[str] = frozenset()  # sysctls the run sets that this kernel has not: those cases do not run here
    wheel_ticks: dict[str, Any] | None = None  # facts.wheel_ticks: when a TIME_WAIT can end, if the host could tell
    ends: Ends | None = None  # with the ticks: when its trials' TIME_WAITs end, for its labs' removals to avoid
