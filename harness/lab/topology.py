"""One trial's private network and containers, removed together whatever happens.

Each side's namespaces belong to a long-lived program of the trial, started on
the network first; the others join it:
  server side: the agent owns the network and PID namespaces; the server
    joins both, so a SIGINT to the server and its restarts happen in a
    namespace that outlives the process, as on the book's single host;
  client side: the capture (tcpdump) owns the network namespace; the client
    joins it, so the client's kernel keeps its socket (and its FIN
    retransmissions) after the client program exits.
A fault container joins the side that receives the final ACK.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import io
import tarfile
from collections.abc import Callable
from typing import Any

import docker
import docker.types

from harness.errors import LabError
from harness.lab.engine import labels, remove_quietly, translated
from harness.lab.images import ImageSet
from harness.lab.streams import Event, EventStream


class TrialLab:
    """A context manager: the network on entry, containers as the trial asks, all removed on exit."""

    def __init__(self, client: docker.DockerClient, images: ImageSet, run_id: str, trial_id: str,
                 family: str, sink: Callable[[Event], None]):
        self._docker = client
        self._images = images
        self._run_id = run_id
        self._trial = trial_id
        self._family = family
        self._sink = sink
        self._prefix = f"harness-{run_id}-{trial_id}"
        self._containers: list[Any] = []
        self._network: Any = None
        self.owners: dict[str, Any] = {}  # side -> the container owning its namespaces
        self.streams: dict[str, EventStream] = {}

    # --- lifecycle -------------------------------------------------------

    def __enter__(self) -> TrialLab:
        self._create_network()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Remove every container, then the network."""
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            removals = [pool.submit(remove_quietly, c.remove, force=True) for c in reversed(self._containers)]
        errors = [f.exception() for f in removals if f.exception()]
        self._containers.clear()
        if self._network is not None:
            with translated(f"removing the trial network {self._prefix}"):
                remove_quietly(self._network.remove)
            self._network = None
        if errors:
            raise LabError(f"removing the containers of {self._trial}", str(errors[0]))

    def _create_network(self) -> None:
        kwargs: dict[str, Any] = {}
        if self._family == "ipv6":
            # A unique-local /64 per trial, derived from its name so parallel trials differ.
            h = hashlib.sha256(self._prefix.encode()).hexdigest()
            subnet = f"fd{h[:2]}:{h[2:6]}:{h[6:10]}:{h[10:14]}::/64"
            kwargs = {"enable_ipv6": True,
                      "ipam": docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=subnet)])}
        with translated(f"creating the trial network {self._prefix}"):
            self._network = self._docker.networks.create(
                self._prefix, driver="bridge", internal=True,
                labels=labels(self._run_id, self._trial, "network"), **kwargs)

    def _run(self, role: str, image: str, command: list[str], **kwargs: Any) -> Any:
        kwargs.setdefault("cap_drop", ["ALL"])
        with translated(f"starting the {role} container of {self._trial}"):
            c = self._docker.containers.run(
                image, command, name=f"{self._prefix}-{role}", detach=True,
                labels=labels(self._run_id, self._trial, role), **kwargs)
        self._containers.append(c)
        return c

    def _join(self, side: str, pid: bool) -> dict[str, str]:
        owner = self.owners[side]
        joined = {"network_mode": f"container:{owner.id}"}
        if pid:
            joined["pid_mode"] = f"container:{owner.id}"
        return joined

    # --- what a trial starts ---------------------------------------------

    def address(self, side: str) -> str:
        owner = self.owners[side]
        with translated(f"inspecting the {side} side of {self._trial}"):
            owner.reload()  # the address is known once the container runs
        net = owner.attrs["NetworkSettings"]["Networks"][self._network.name]
        return net["GlobalIPv6Address"] if self._family == "ipv6" else net["IPAddress"]

    def own(self, side: str, role: str, target: str, command: list[str],
            caps: tuple[str, ...] = ()) -> Any:
        """Start `side`'s namespace owner on the trial network; its output becomes events."""
        c = self._run(role, self._images[target], command, network=self._network.name,
                      hostname=side, cap_add=list(caps))
        self.owners[side] = c
        self.streams[role] = EventStream(c, role, self._sink)
        return c

    def start(self, role: str, side: str, target: str, command: list[str],
              caps: tuple[str, ...] = (), stream: bool = True, own_pid: bool = False) -> Any:
        """A container of `target`'s image inside `side`'s namespaces; its output becomes events.

        own_pid keeps a PID namespace of its own; otherwise it joins the owner's
        too (the server must: it is then not PID 1, so SIGINT acts as Ctrl+C)."""
        c = self._run(role, self._images[target], command, cap_add=list(caps),
                      **self._join(side, pid=not own_pid))
        if stream:
            self.streams[role] = EventStream(c, role, self._sink)
        return c

    def signal(self, container: Any, sig: str) -> None:
        with translated(f"sending {sig} to {container.name}"):
            container.kill(signal=sig)

    def exec(self, container: Any, argv: list[str]) -> str:
        """Run argv in a running container; its output, or LabError on a non-zero exit."""
        with translated(f"running {' '.join(argv)!r} in {container.name}"):
            rc, out = container.exec_run(argv)
        text = out.decode(errors="replace")
        if rc != 0:
            raise LabError(f"running {' '.join(argv)!r} in {container.name}", f"exit {rc}: {text.strip()}")
        return text

    def put_file(self, container: Any, path: str, data: bytes) -> None:
        directory, _, name = path.rpartition("/")
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        with translated(f"copying {path} into {container.name}"):
            container.put_archive(directory or "/", buf.getvalue())

    def get_file(self, container: Any, path: str) -> bytes:
        with translated(f"copying {path} out of {container.name}"):
            chunks, _ = container.get_archive(path)
            raw = b"".join(chunks)
        with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
            member = tar.next()
            f = tar.extractfile(member) if member else None
            return f.read() if f else b""

    def events(self) -> list[Event]:
        """Every event so far, container by container."""
        return [e for s in self.streams.values() for e in s.events]

    def logs(self) -> str:
        return "\n".join(s.text() for s in self.streams.values())
