"""One trial's private network and containers, removed together whatever happens.

One container a side, whose first program owns the side's namespaces, so
they outlive the programs that come and go in them:
  server side: the agent, which starts the server itself, so a SIGINT to the
    server and its restarts happen in a namespace that outlives the process,
    as on the book's single host;
  client side: the capture (tcpdump); the client, and the client's side's
    agent, start in it by `docker exec`, so the client's kernel keeps its
    socket (and its FIN retransmissions) after the client program is gone.
The fault agent starts, by `docker exec` too, in the side that receives the
final ACK. Programs started so take the harness's commands on stdin.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import docker
import docker.errors
import docker.types

from harness import events
from harness.errors import LabError
from harness.events import Ev
from harness.lab.engine import labels, remove_quietly, translated
from harness.lab.images import KEEPER_PATH, ImageSet
from harness.lab.streams import ByteStream, Event, EventStream, Stopped
from harness.lab.subnets import Exhausted, Subnets

NETWORK_TRIES = 20
IMAGE = "probe"  # every program of a trial is in it (images/Dockerfile)
GUEST = "guest"  # a user's server's container and image (lab/images.guest)
RESTARTED = "guest-restarted"  # its container after a restart: container


def _reader(sock: Any, raw: Any) -> Any:
    """What to read an exec's output from: the HTTP response's buffered reader, which the SDK read
    the upgrade's headers through and which may already hold the program's first bytes (a program
    that prints at once, under load: they were lost, and its start never seen), else the socket."""
    response = getattr(sock, "_response", None)
    buffered = getattr(getattr(getattr(response, "raw", None), "_fp", None), "fp", None)
    return buffered if buffered is not None else raw.makefile("rb")


def _frames(stream: Any) -> Iterator[bytes]:
    """The payloads of an exec's output stream (8-byte headers: stream, 3 zeros, big-endian length).
    Not the SDK's frames_iter: it polls the socket before every read, and over TLS the next frames
    may already sit decrypted in the TLS buffer, so it would wait for bytes it already has."""
    with stream:
        while len(header := stream.read(8)) == 8:
            yield stream.read(struct.unpack(">4xL", header)[0])


class TrialLab:
    """A context manager: the network on entry, containers as the trial asks, all removed on exit."""

    def __init__(self, client: docker.DockerClient, images: ImageSet, subnets: Subnets, run_id: str,
                 trial_id: str, family: str, sink: Callable[[Event], None], stopping: threading.Event,
                 remover: concurrent.futures.ThreadPoolExecutor):
        self._docker = client
        self._subnets = subnets
        self._subnet: Any = None
        self._stopping = stopping  # once set, no container starts
        self._images = images
        self._run_id = run_id
        self._trial = trial_id
        self._family = family
        self._sink = sink
        self._prefix = f"harness-{run_id}-{trial_id}"
        self._containers: dict[str, Any] = {}  # role -> container, until its removal starts
        self._remover = remover
        self._removals: list[concurrent.futures.Future[None]] = []
        self._network: Any = None
        self.owners: dict[str, Any] = {}  # side -> the container owning its namespaces
        self.streams: dict[str, EventStream] = {}
        self._execs: dict[str, Any] = {}  # role -> the socket of a program exec() started
        self.outputs: dict[str, ByteStream] = {}

    # --- lifecycle -------------------------------------------------------

    def __enter__(self) -> TrialLab:
        self._unless_stopping()
        self._create_network()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Remove every container (what release() started included), then the network."""
        self.release(*self._containers)
        errors = [exc for f in self._removals if (exc := f.exception())]
        self._removals.clear()
        if self._network is not None and not errors:  # Docker keeps a network that has containers
            with translated(f"removing the trial network {self._prefix}"):
                remove_quietly(self._network.remove)
            self._network = None
            self._subnets.release(self._subnet)
        if errors:
            raise LabError(f"removing the containers of {self._trial}", str(errors[0]))

    def release(self, *roles: str) -> None:
        """Start removing these roles' containers; close() waits for them (and reports errors)."""
        for role in roles:
            c = self._containers.pop(role, None)
            if c is not None:
                self._removals.append(self._remover.submit(remove_quietly, c.remove, force=True))

    def _create_network(self) -> None:
        """The trial's network, on a subnet of the harness's own pool (subnets.py), not Docker's."""
        what = f"creating the trial network {self._prefix}"
        pools = []
        if self._family == "ipv6":
            # A unique-local /64 per trial, derived from its name so parallel trials differ.
            h = hashlib.sha256(self._prefix.encode()).hexdigest()
            pools.append(docker.types.IPAMPool(subnet=f"fd{h[:2]}:{h[2:6]}:{h[6:10]}:{h[10:14]}::/64"))
        for _ in range(NETWORK_TRIES):
            try:
                subnet = self._subnets.acquire()
            except Exhausted as exc:
                raise LabError(what, f"{exc} (--subnet-pool): run fewer trials at once (--jobs), or give a larger pool") from None
            try:
                with translated(what):
                    self._network = self._docker.networks.create(
                        self._prefix, driver="bridge", internal=True, enable_ipv6=self._family == "ipv6",
                        ipam=docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=str(subnet)),
                                                                   *pools]),
                        labels=labels(self._run_id, self._trial, "network"))
            except LabError as exc:
                if "overlap" in exc.cause:
                    self._subnets.refused(subnet)  # another run took it meanwhile
                    continue
                self._subnets.release(subnet)
                raise
            self._subnet = subnet
            self._sink(events.harness(Ev.NETWORK, subnet=str(subnet), mono=time.monotonic()))
            return
        raise LabError(what, f"{NETWORK_TRIES} subnets in a row were taken by others meanwhile")

    def _run(self, role: str, image: str, command: list[str], data_out: bool = False, **kwargs: Any) -> Any:
        """Create and start; data_out attaches to stdout first, so not a byte of it is missed."""
        kwargs.setdefault("cap_drop", ["ALL"])
        with translated(f"starting the {role} container of {self._trial}"):
            self._unless_stopping()
            c = self._docker.containers.create(
                image, command, name=f"{self._prefix}-{role}",
                labels=labels(self._run_id, self._trial, role), **kwargs)
            self._containers[role] = c
            if data_out:
                self.outputs[role] = ByteStream(c.attach(stdout=True, stderr=False, stream=True), role,
                                                self._stopping)
            self._unless_stopping()
            c.start()
        return c

    def _unless_stopping(self) -> None:
        if self._stopping.is_set():
            raise Stopped()

    # --- what a trial starts ---------------------------------------------

    def address(self, side: str) -> str:
        return self._address(self.owners[side])

    def _address(self, container: Any) -> str:
        with translated(f"inspecting {container.name}"):
            container.reload()  # the address is known once the container runs
        net = container.attrs["NetworkSettings"]["Networks"][self._network.name]
        return net["GlobalIPv6Address"] if self._family == "ipv6" else net["IPAddress"]

    def own(self, side: str, role: str, command: list[str], caps: list[str], data_out: bool = False,
            sysctls: dict[str, str] | None = None) -> Any:
        """Start `side`'s container on the trial network, its namespaces' owner; its output becomes events.

        data_out: its stdout is data, kept as bytes in outputs[role]; events come from stderr.
        sysctls: set in the new network namespace before anything runs in it (the runtime writes
        them; a name this kernel does not have there fails the start)."""
        c = self._run(role, self._images[IMAGE], command, data_out, network=self._network.name,
                      hostname=side, cap_add=caps, sysctls=sysctls or None)
        self.owners[side] = c
        self.streams[role] = EventStream(c.logs(stream=True, follow=True, stdout=not data_out), role, self._sink,
                                         self._stopping)
        return c

    def guest(self, side: str, caps: list[str], user: str | None, env: dict[str, str]) -> None:
        """A container of a user's server's image (GUEST), joined to `side`'s network namespace, its
        owner's, with only `caps`; its first process only reaps orphans (server-keeper -H), and the
        keeper starts in it with exec(..., into=GUEST)."""
        self._run(GUEST, self._images[GUEST], ["-H"], entrypoint=[KEEPER_PATH], network_mode=f"container:{self.owners[side].id}",
                  cap_add=caps or None, user=user or "", environment=env)

    def remake_guest(self, side: str, caps: list[str], user: str | None, env: dict[str, str],
                     sysctls: dict[str, str]) -> str:
        """`docker restart` for a user's server: its side's containers go, and their network
        namespace with whatever TIME_WAIT it held; a new container of its image (RESTARTED) comes up
        in a namespace of its own on the trial network (the side's sysctls set in it). Returns its
        address; the keeper starts in it with exec(..., into=RESTARTED)."""
        self.release(GUEST, *(role for role, c in self._containers.items() if c is self.owners[side]))
        c = self._run(RESTARTED, self._images[GUEST], ["-H"], entrypoint=[KEEPER_PATH], network=self._network.name,
                      hostname=side, cap_add=caps or None, user=user or "", environment=env, sysctls=sysctls or None)
        return self._address(c)

    def exec(self, role: str, side: str, command: list[str], user: str = "root",
             env: dict[str, str] | None = None, into: str | None = None, src: str | None = None) -> None:
        """Start a program in `side`'s container (cheaper for the engine than a container of its
        own), or in the container of role `into`; its output becomes events (of `src`, the role's
        own unless given, for its lines that are not events), and send() writes commands to its stdin."""
        container = self._containers[into] if into else self.owners[side]
        with translated(f"starting {role} in the {side} side of {self._trial}"):
            self._unless_stopping()
            ex = self._docker.api.exec_create(container.id, command, stdin=True, stdout=True, stderr=True, user=user,
                                              environment=env)
            sock = self._docker.api.exec_start(ex["Id"], socket=True)
        # the SDK hands back a SocketIO over a unix or plain TCP engine, the socket itself over TLS
        raw = getattr(sock, "_sock", sock)
        raw.settimeout(None)  # a program can be silent for minutes (a TIME_WAIT, or three)
        self._execs[role] = raw
        self.streams[role] = EventStream(_frames(_reader(sock, raw)), src or role, self._sink, self._stopping)

    def send(self, role: str, command: str) -> None:
        """One command line to a program exec() started."""
        try:
            self._execs[role].sendall(command.encode() + b"\n")
        except OSError as exc:
            raise LabError(f"telling {role} to {command}", str(exc)) from None

    def event(self, e: Event) -> None:
        """An event of the harness's own about this trial, among its programs' events."""
        self._sink(e)

    def signal(self, container: Any, sig: str) -> None:
        with translated(f"sending {sig} to {container.name}"):
            container.kill(signal=sig)
