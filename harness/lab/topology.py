"""A lab: a private network and a container a side, removed together whatever happens; the
trials it hosts, one (its own lab) or a case's repeats (a shared lab, each on its own server port).

Each side's container's first process owns the side's namespaces, so they
outlive the programs that come and go in them:
  server side: server-keeper -H, which only reaps orphans and holds; the agent
    of each trial starts in it, and starts the server itself, so a SIGINT to the
    server and its restarts happen in a namespace that outlives the process, as
    on the book's single host;
  client side: the capture (tcpdump) of every port of the lab; each trial's
    client, and its client's side's agent, start in it, so the client's kernel
    keeps its socket (and its FIN retransmissions) after the client program is
    gone.
Each trial's fault agent starts in the side that receives the final ACK. A
trial's programs start through the side's launcher (launcher.py: one `docker
exec` a side for the whole lab), a user's server's keeper by `docker exec` in
its container; either way they take the harness's commands on stdin.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import struct
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
from harness.lab.launcher import PROGRAM, Launcher
from harness.lab.streams import ByteStream, Event, EventStream, Stopped
from harness.lab.subnets import Exhausted, Subnets
from harness.stopping import Flag

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


STDOUT = 1  # an exec output frame's stream


def _frames(stream: Any, stdout_only: bool = False) -> Iterator[bytes]:
    """The payloads of an exec's output stream (8-byte headers: stream, 3 zeros, big-endian length),
    or of its stdout's frames alone. Not the SDK's frames_iter: it polls the socket before every
    read, and over TLS the next frames may already sit decrypted in the TLS buffer, so it would wait
    for bytes it already has."""
    with stream:
        while len(header := stream.read(8)) == 8:
            which, length = struct.unpack(">B3xL", header)
            payload = stream.read(length)
            if which == STDOUT or not stdout_only:
                yield payload


def _exec(lab: Lab, container: Any, command: list[str], user: str, env: dict[str, str] | None,
          what: str, stdout_only: bool = False) -> tuple[Any, Iterator[bytes]]:
    """`docker exec` with stdin: (the socket to write to it, its output's chunks: of its stdout
    alone, or of both streams)."""
    with translated(f"starting {what}"):
        lab.unless_stopping()
        ex = lab.docker.api.exec_create(container.id, command, stdin=True, stdout=True, stderr=True, user=user,
                                        environment=env)
        sock = lab.docker.api.exec_start(ex["Id"], socket=True)
    # the SDK hands back a SocketIO over a unix or plain TCP engine, the socket itself over TLS
    raw = getattr(sock, "_sock", sock)
    raw.settimeout(None)  # a program can be silent for minutes (a TIME_WAIT, or three)
    return raw, _frames(_reader(sock, raw), stdout_only)


class Lab:
    """A context manager: the network on entry, containers as its trials ask, all removed on exit."""

    def __init__(self, client: docker.DockerClient, images: ImageSet, subnets: Subnets, run_id: str,
                 name: str, family: str, sink: Callable[[Event], None], stopping: Flag,
                 remover: concurrent.futures.ThreadPoolExecutor):
        self.docker = client
        self._subnets = subnets
        self._subnet: Any = None
        self.stopping = stopping  # once set, no container starts
        self._images = images
        self._run_id = run_id
        self._trial = name  # what its labels and messages name: its trial's id, or the shared lab's name
        self._family = family
        self._sink = sink  # the lab's own events (its network), each of its trials' too
        self._prefix = f"harness-{run_id}-{name}"
        self.containers: dict[str, Any] = {}  # role -> container, until its removal starts
        self._remover = remover
        self._removals: list[concurrent.futures.Future[None]] = []
        self._network: Any = None
        self.owners: dict[str, Any] = {}  # side -> the container owning its namespaces
        self.streams: dict[str, EventStream] = {}  # of the owners that print events (the capture)
        self.outputs: dict[str, ByteStream] = {}
        self.launchers: dict[str, Launcher] = {}  # side -> its launcher (launch())

    # --- lifecycle -------------------------------------------------------

    def __enter__(self) -> Lab:
        self.unless_stopping()
        self._create_network()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Remove every container (what release() started included), then the network."""
        self.release(*self.containers)
        errors = [exc for f in self._removals if (exc := f.exception())]
        self._removals.clear()
        if self._network is not None and not errors:  # Docker keeps a network that has containers
            with translated(f"removing the lab network {self._prefix}"):
                remove_quietly(self._network.remove)
            self._network = None
            self._subnets.release(self._subnet)
        if errors:
            raise LabError(f"removing the containers of {self._trial}", str(errors[0]))

    def release(self, *roles: str) -> None:
        """Start removing these roles' containers; close() waits for them (and reports errors)."""
        for role in roles:
            c = self.containers.pop(role, None)
            if c is not None:
                self._removals.append(self._remover.submit(remove_quietly, c.remove, force=True))

    def _create_network(self) -> None:
        """The lab's network, on a subnet of the harness's own pool (subnets.py), not Docker's."""
        what = f"creating the lab network {self._prefix}"
        pools = []
        if self._family == "ipv6":
            # A unique-local /64 per lab, derived from its name so parallel labs differ.
            h = hashlib.sha256(self._prefix.encode()).hexdigest()
            pools.append(docker.types.IPAMPool(subnet=f"fd{h[:2]}:{h[2:6]}:{h[6:10]}:{h[10:14]}::/64"))
        for _ in range(NETWORK_TRIES):
            try:
                subnet = self._subnets.acquire()
            except Exhausted as exc:
                raise LabError(what, f"{exc} (--subnet-pool): run fewer trials at once (--jobs), or give a larger pool") from None
            try:
                with translated(what):
                    self._network = self.docker.networks.create(
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
            self.unless_stopping()
            c = self.docker.containers.create(
                image, command, name=f"{self._prefix}-{role}",
                labels=labels(self._run_id, self._trial, role), **kwargs)
            self.containers[role] = c
            if data_out:
                self.outputs[role] = ByteStream(c.attach(stdout=True, stderr=False, stream=True), role,
                                                self.stopping)
            self.unless_stopping()
            c.start()
        return c

    def unless_stopping(self) -> None:
        if self.stopping.is_set():
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
            sysctls: dict[str, str] | None = None, events: bool = True) -> Any:
        """Start `side`'s container on the lab's network, its namespaces' owner.

        data_out: its stdout is data, kept as bytes in outputs[role]; events come from stderr.
        events: its output becomes the lab's events (each trial's).
        sysctls: set in the new network namespace before anything runs in it (the runtime writes
        them; a name this kernel does not have there fails the start)."""
        c = self._run(role, self._images[IMAGE], command, data_out, network=self._network.name,
                      hostname=side, cap_add=caps, sysctls=sysctls or None)
        self.owners[side] = c
        if events:
            with translated(f"reading the {role} container of {self._trial}"):  # a stop may remove it first
                logs = c.logs(stream=True, follow=True, stdout=not data_out)
            self.streams[role] = EventStream.follow(logs, role, self._sink, self.stopping)
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
        in a namespace of its own on the lab network (the side's sysctls set in it). Returns its
        address; the keeper starts in it with exec(..., into=RESTARTED)."""
        self.release(GUEST, *(role for role, c in self.containers.items() if c is self.owners[side]))
        c = self._run(RESTARTED, self._images[GUEST], ["-H"], entrypoint=[KEEPER_PATH], network=self._network.name,
                      hostname=side, cap_add=caps or None, user=user or "", environment=env, sysctls=sysctls or None)
        return self._address(c)

    def signal(self, container: Any, sig: str) -> None:
        with translated(f"sending {sig} to {container.name}"):
            container.kill(signal=sig)

    def launch(self, side: str) -> None:
        """Start `side`'s launcher in its owner's container: its trials' programs start through it."""
        # its stdout alone: records; a line on its stderr (its own failure to start) would break them
        sock, chunks = _exec(self, self.owners[side], [PROGRAM], "root", None, f"the launcher of {self._trial}",
                             stdout_only=True)
        self.launchers[side] = Launcher(sock, chunks, f"the {side} side of {self._trial}")

    def trial(self, trial_id: str, sink: Callable[[Event], None]) -> TrialLab:
        """One trial's window on the lab: its programs, their events in its sink."""
        return TrialLab(self, trial_id, sink)


class TrialLab:
    """One trial's programs in a lab: started in a side's container through its launcher (a user's
    server's keeper with `docker exec` in the server's container), their output the trial's events,
    their stdin its commands. Several trials' run side by side in a shared lab."""

    def __init__(self, lab: Lab, trial_id: str, sink: Callable[[Event], None]):
        self.lab = lab
        self._trial = trial_id
        self._sink = sink
        self.streams: dict[str, EventStream] = {}
        self._execs: dict[str, Any] = {}  # role -> the socket of a program `docker exec` started
        self._launched: dict[str, tuple[Launcher, str]] = {}  # role -> its side's launcher, its key there

    def exec(self, role: str, side: str, command: list[str], user: str = "root",
             env: dict[str, str] | None = None, into: str | None = None, src: str | None = None) -> None:
        """Start a program in `side`'s container through its launcher, or by `docker exec` in the
        container of role `into` (a user's server's image, which has no launcher); its output
        becomes events (of `src`, the role's own unless given, for its lines that are not events),
        and send() writes commands to its stdin."""
        if into is None:
            launcher = self.lab.launchers[side]
            key = f"{self._trial}-{role}"
            self.lab.unless_stopping()
            stream = EventStream(src or role, self._sink, self.lab.stopping)
            launcher.start(key, command, "" if user == "root" else user, env or {}, stream)
            self.streams[role] = stream
            self._launched[role] = (launcher, key)
        else:
            sock, chunks = _exec(self.lab, self.lab.containers[into], command, user, env,
                                 f"{role} in the {side} side of {self._trial}")
            self._execs[role] = sock
            self.streams[role] = EventStream.follow(chunks, src or role, self._sink, self.lab.stopping)

    def send(self, role: str, command: str) -> None:
        """One command line to a program exec() started."""
        if role in self._launched:
            launcher, key = self._launched[role]
            launcher.write(key, command.encode() + b"\n")
            return
        try:
            self._execs[role].sendall(command.encode() + b"\n")
        except OSError as exc:
            raise LabError(f"telling {role} to {command}", str(exc)) from None

    def signal(self, role: str, sig: str) -> None:
        """A signal to a program its side's launcher started."""
        launcher, key = self._launched[role]
        launcher.signal(key, sig)

    def kill(self) -> None:
        """SIGKILL to every program of this trial its launchers started (a server its agent
        started goes with the lab)."""
        for role in self._launched:
            self.signal(role, "SIGKILL")

    def event(self, e: Event) -> None:
        """An event of the harness's own about this trial, among its programs' events."""
        self._sink(e)

