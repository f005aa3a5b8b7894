"""Experiment files: YAML -> frozen, validated dataclasses. No Docker here.

Every problem becomes one SpecError naming the file, the field and what is
allowed, before anything starts.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import re
import reprlib
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from harness import servers, specfile
from harness.errors import SpecError
from harness.figures import COUNTS, EXACT_WORDS, MEASURES

# Limits on what a file may ask for (docs/experiment-files.md).
MAX_EXPERIMENT_NAME = 64  # it names the results folder
MAX_NAME = 200  # case and expectation names
MAX_DESCRIPTION = 10_000
MAX_MESSAGE_BYTES = 200
MAX_TRIALS = 5000  # cases x repeat

CLOSE_FIRST = ("server", "client")
# How the client closes: close() (the kernel keeps an orphan), shutdown(SHUT_WR) with the descriptor
# kept, an abortive close (SO_LINGER 0: a RST), or never (when the server closes first, its socket
# then waits in FIN_WAIT2 until tcp_fin_timeout).
CLIENT_CLOSE = ("close", "shutdown", "abort", "never")
CLOSE_WORDS = {"shutdown": "client shutdown()", "abort": "client aborts (SO_LINGER 0)", "never": "client never closes"}
FAMILIES = ("ipv4", "ipv6")
BACKENDS = ("auto", "nftables", "netem")
# How the agent stops the server when it closes first (images/src/echo_server.c).
# close_listening: it close()s its connections and keeps its listener open, a surviving process.
STOP_WORDS = {"sigint": "SIGINT", "sigkill": "SIGKILL", "close": "close()", "linger0": "SO_LINGER 0",
              "close_listening": "close(), still listening"}
SERVER_STOPS = tuple(STOP_WORDS)
# How a user's server is restarted: a fresh process in the same network namespace (a pod's
# container, systemd, a supervisor), or a fresh namespace too (`docker restart`).
RESTARTS = ("namespace", "container")
# What the client waits for after it sends the message: the same bytes back (the echo server), any
# reply (a user's server: a Redis PONG, an HTTP response), or nothing (a server that speaks only
# when spoken to in its own protocol).
REPLIES = ("echo", "any", "none")
# Where a case's repeats run: one lab (network, a container a side) each, or one lab for them all,
# each on its own server port, where the case's figures allow it (plan.alone_because).
ISOLATION = ("case", "trial")
MAX_CONNECTIONS = 32  # the agents watch up to this many (images/src/diag.h)
MAX_SYSCTLS = 24  # per side; the programs read back these and a few more
SYSCTL_NAME = re.compile(r"net(\.[A-Za-z0-9_-]+)+")
MAX_SYSCTL_VALUE = 100

# A side's sysctls: (name, value) pairs in name order, the value as written (a whole number or a string).
Sysctls = tuple[tuple[str, int | str], ...]


@dataclass(frozen=True)
class Loss:
    """Which final ACKs of the close are dropped: none, the first k, all, or each with p."""

    kind: str  # "none" | "first" | "all" | "random"
    k: int = 0
    p: float = 0.0
    seed: int = 0

    def to_json(self) -> Any:
        """The form the user wrote: 0, k, "all" or {"p": .., "seed": ..}."""
        if self.kind == "none":
            return 0
        if self.kind == "first":
            return self.k
        if self.kind == "all":
            return "all"
        return {"p": self.p, "seed": self.seed}

    @classmethod
    def from_json(cls, doc: Any) -> Loss:
        """to_json's form read back (a run directory's: written by the harness, not validated again)."""
        if doc == 0:
            return NO_LOSS
        if doc == "all":
            return cls("all")
        if isinstance(doc, dict):
            return cls("random", p=doc["p"], seed=doc["seed"])
        return cls("first", k=doc)

    def label(self) -> str:
        return {
            "none": "none",
            "first": f"first {self.k}",
            "all": "all",
            "random": f"p={self.p:g} seed={self.seed}",
        }[self.kind]


NO_LOSS = Loss("none")

# A bind() probe's socket: owned by the old server's user (root) or another (nobody); bound to the
# wildcard address, the old connection's own address, or loopback (another address of the host).
PROBE_USERS = ("same", "other")
PROBE_ADDRESSES = ("any", "server", "loopback")
PROBE_KEYS = ("reuseaddr", "reuseport", "user", "address")


@dataclass(frozen=True)
class BindProbe:
    """`bind_probe`: one more bind() the agent tries every poll from the close until it works,
    beside the book's two (the wildcard address, without and with SO_REUSEADDR, as root)."""

    reuseaddr: bool = False
    reuseport: bool = False
    user: str = "same"
    address: str = "any"

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in PROBE_KEYS}

    def label(self) -> str:
        opts = [o for o, on in (("SO_REUSEADDR", self.reuseaddr), ("SO_REUSEPORT", self.reuseport)) if on]
        return " ".join(["bind() probe", "+".join(opts) or "plain",
                         *(["as another user"] if self.user == "other" else []),
                         *([f"on the {self.address} address"] if self.address != "any" else [])])


@dataclass(frozen=True)
class Params:
    """One case's variables; every field has a default so a case names only what differs."""

    close_first: str = "server"
    server_reuseaddr: bool = False
    server_reuseport: bool = False  # the old server's listener (and so its restart's) sets SO_REUSEPORT
    restart_reuseaddr: bool | None = None  # None: the same program restarted, as in the book
    final_ack_loss: Loss = NO_LOSS
    client_close: str = "close"
    family: str = "ipv4"
    server_stop: str = "sigint"
    connections: int = 1  # the client opens this many; the server serves them all at once
    client_port: int | None = None  # the client binds this local port before connect(); None: ephemeral
    client_reuseaddr: bool = False  # the client's socket and its agent's fixed-port tries set SO_REUSEADDR
    watch_client: bool = False  # an agent on the client's side watches its sockets and reconnects
    final_ack_reset: bool = False  # the first final ACK the loss lets through is answered with a RST
    server_sysctls: Sysctls = ()  # set in that side's network namespace before the connection
    client_sysctls: Sysctls = ()
    restart: str = "namespace"  # RESTARTS: how a user's server is restarted
    # The restarted server keeps listening (until it has served one connection) instead of being
    # stopped once it is up: a SYN from the old connection's port then finds a listener.
    keep_restarted: bool = False
    bind_probe: BindProbe | None = None

    def __post_init__(self) -> None:
        # One form for one setting: a restart SO_REUSEADDR like the old server's is the default,
        # and a fixed client port is always watched (so a record's params read back equal).
        if self.restart_reuseaddr == self.server_reuseaddr:
            object.__setattr__(self, "restart_reuseaddr", None)
        if self.client_port is not None:
            object.__setattr__(self, "watch_client", True)

    @property
    def restart_with_reuseaddr(self) -> bool:
        return self.server_reuseaddr if self.restart_reuseaddr is None else self.restart_reuseaddr

    @property
    def watches_client(self) -> bool:
        """A fixed client port is only worth measuring from the client's side."""
        return self.watch_client or self.client_port is not None

    def sysctls(self, side: str) -> dict[str, int | str]:
        return dict(self.server_sysctls if side == "server" else self.client_sysctls)

    def sysctl_names(self) -> frozenset[str]:
        """The sysctls this case sets, on either side."""
        return frozenset(name for name, _ in self.server_sysctls + self.client_sysctls)

    def conflict(self) -> str | None:
        """Why these variables cannot go together, or None."""
        if self.server_stop != "sigint" and self.close_first != "server":
            return f"server_stop: {self.server_stop} needs close_first: server (the agent stops the server)"
        if self.server_stop == "linger0" and (self.final_ack_loss.kind != "none" or self.final_ack_reset):
            return "server_stop: linger0 closes with a RST: there is no final ACK to drop or answer"
        if self.connections > 1 and (self.final_ack_loss.kind != "none" or self.final_ack_reset):
            return ("final_ack_loss and final_ack_reset need connections: 1 "
                    "(the fault numbers the final ACKs of all connections as one stream)")
        if self.final_ack_reset and self.final_ack_loss.kind not in ("none", "first"):
            return "final_ack_reset needs final_ack_loss 0 or k: it answers the first copy the loss lets through"
        if self.client_port is not None and self.connections > 1:
            return "client_port needs connections: 1 (one socket at a time binds a port)"
        if self.client_close == "never" and self.close_first != "server":
            return "client_close: never needs close_first: server (the client closes first otherwise)"
        if self.client_close in ("abort", "never") and (self.final_ack_loss.kind != "none" or self.final_ack_reset):
            return f"client_close: {self.client_close} leaves no final ACK to drop or answer (the client sends no FIN)"
        if self.client_close == "never" and self.server_stop == "linger0":
            return "client_close: never waits in FIN_WAIT2 for a FIN; server_stop: linger0 sends a RST instead"
        if self.client_close == "never" and self.watches_client:
            return "client_close: never keeps the client's connection open for good: its side cannot be watched to the end"
        if self.client_reuseaddr and self.client_port is None:
            return "client_reuseaddr needs client_port (SO_REUSEADDR matters to a bind(), and only a fixed port is bound)"
        if self.keep_restarted and self.close_first != "server":
            return "keep_restarted needs close_first: server (the server is restarted after it closes)"
        if self.keep_restarted and self.server_stop == "close_listening":
            return "keep_restarted needs a restart; server_stop: close_listening keeps the old server listening"
        if self.keep_restarted and self.client_port is not None and not self.restart_with_reuseaddr:
            return ("keep_restarted with client_port needs server_reuseaddr: the client's SYNs wait for the kept "
                    "listener, which without it listens only once the TIME_WAIT is gone")
        if self.keep_restarted and self.bind_probe is not None:
            return "bind_probe needs keep_restarted: false (a kept restart's listener, not the TIME_WAIT, would hold the port)"
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "close_first": self.close_first,
            "server_reuseaddr": self.server_reuseaddr,
            "server_reuseport": self.server_reuseport,
            "restart_reuseaddr": self.restart_with_reuseaddr,
            "final_ack_loss": self.final_ack_loss.to_json(),
            "client_close": self.client_close,
            "family": self.family,
            "server_stop": self.server_stop,
            "connections": self.connections,
            "client_port": self.client_port,
            "client_reuseaddr": self.client_reuseaddr,
            "watch_client": self.watches_client,
            "final_ack_reset": self.final_ack_reset,
            "server_sysctls": dict(self.server_sysctls),
            "client_sysctls": dict(self.client_sysctls),
            "restart": self.restart,
            "keep_restarted": self.keep_restarted,
            "bind_probe": self.bind_probe.to_json() if self.bind_probe else None,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Params:
        """to_json's form read back; what it leaves out keeps its default."""
        values = {f.name: doc[f.name] for f in fields(cls) if f.name in doc}
        if "final_ack_loss" in values:
            values["final_ack_loss"] = Loss.from_json(values["final_ack_loss"])
        if values.get("bind_probe"):
            values["bind_probe"] = BindProbe(**{k: v for k, v in values["bind_probe"].items() if k in PROBE_KEYS})
        for side in ("server_sysctls", "client_sysctls"):
            if side in values:
                values[side] = tuple(sorted(values[side].items()))
        return cls(**values)

    def label(self) -> str:
        """A short, readable case name for tables when the file gives none."""
        onoff = lambda b: "on" if b else "off"
        parts = [
            f"{self.close_first} closes first",
            f"old SO_REUSEADDR {onoff(self.server_reuseaddr)}",
        ]
        if self.server_reuseport:
            parts.append("old SO_REUSEPORT on")
        if self.restart_reuseaddr is not None and self.restart_reuseaddr != self.server_reuseaddr:
            parts.append(f"restart SO_REUSEADDR {onoff(self.restart_reuseaddr)}")
        if self.final_ack_loss.kind != "none":
            parts.append(f"ACK loss {self.final_ack_loss.label()}")
        if self.client_close != "close":
            parts.append(CLOSE_WORDS[self.client_close])
        if self.family != "ipv4":
            parts.append(self.family)
        if self.server_stop != "sigint":
            parts.append(f"server stopped by {STOP_WORDS[self.server_stop]}")
        if self.connections > 1:
            parts.append(f"{self.connections} connections")
        if self.client_port is not None:
            parts.append(f"client port {self.client_port}" + (" with SO_REUSEADDR" if self.client_reuseaddr else ""))
        elif self.watch_client:
            parts.append("client watched")
        if self.final_ack_reset:
            parts.append("final ACK answered with RST")
        for side in ("server", "client"):
            parts += [f"{side} {k}={v}" for k, v in self.sysctls(side).items()]
        if self.restart != "namespace":
            parts.append(f"restarted by {self.restart}")
        if self.keep_restarted:
            parts.append("restarted server kept listening")
        if self.bind_probe:
            parts.append(self.bind_probe.label())
        return ", ".join(parts)


@dataclass(frozen=True)
class Case:
    name: str
    params: Params


@dataclass(frozen=True)
class Bound:
    """What one figure of a trial must be. With `of`, the bounds apply to figure - of."""

    figure: str
    never: bool = False  # null: it never happened (None in the record)
    equals: int | str | None = None  # an exact count, or an exact word (EXACT_WORDS)
    min: float | None = None
    max: float | None = None
    of: str | None = None
    within: float | None = None  # |figure - of| <= within

    def text(self) -> str:
        """The bound in words, e.g. "time_wait_s >= 110" or "|rebind_plain_s - tw_gone_s| <= 0.02"."""
        if self.never:
            return f"{self.figure} never happens"
        if self.equals is not None:
            return f"{self.figure} == {self.equals:g}" if isinstance(self.equals, int) else \
                f"{self.figure} is {self.equals}"
        x = f"{self.figure} - {self.of}" if self.of else self.figure
        parts = [f"|{x}| <= {self.within:g}"] if self.within is not None else []
        if self.min is not None and self.max is not None:
            parts.append(f"{self.min:g} <= {x} <= {self.max:g}")
        elif self.min is not None:
            parts.append(f"{x} >= {self.min:g}")
        elif self.max is not None:
            parts.append(f"{x} <= {self.max:g}")
        return " and ".join(parts)


@dataclass(frozen=True)
class Expectation:
    """An `expect:` item: bounds on figures of every trial of the cases it is `where` for."""

    index: int
    name: str
    # (parameter or "case", value) pairs a case must match, values in their JSON form: a
    # case's restart_reuseaddr is the one in force (the old server's, unless it names one).
    where: tuple[tuple[str, Any], ...]
    bounds: tuple[Bound, ...]

    def applies(self, case: Case) -> bool:
        params = case.params.to_json()
        return all(_matches(k, case.name if k == "case" else params[k], v) for k, v in self.where)

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "name": self.name, "where": [list(kv) for kv in self.where],
                "bounds": [dataclasses.asdict(b) for b in self.bounds]}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Expectation:
        return cls(doc["index"], doc["name"], tuple((k, v) for k, v in doc["where"]),
                   tuple(Bound(**b) for b in doc["bounds"]))

    def where_text(self) -> str:
        return ", ".join(f"{k}={json.dumps(v)}" for k, v in self.where) or "every case"


def _matches(key: str, value: Any, wanted: Any) -> bool:
    """A where: value against a case's. Sysctls match when each one named is set so (others aside;
    whitespace aside, as the kernel prints ranges with a tab); {} matches a case that sets none."""
    if key in ("server_sysctls", "client_sysctls") and wanted:
        return all(k in value and str(value[k]).split() == str(v).split() for k, v in wanted.items())
    return bool(value == wanted)


@dataclass(frozen=True)
class Experiment:
    name: str
    description: str
    source: str  # the file it came from, for messages
    text: str  # the file as run, saved in the run directory
    repeat: int = 1
    port: int = 7777
    message: str = "hello"
    poll_ms: int = 10
    restart_every_ms: int = 100
    max_wait_s: float = 600.0
    fault_backend: str = "auto"
    matrix: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    cases: tuple[Case, ...] = field(default_factory=tuple)
    expect: tuple[Expectation, ...] = ()
    reply: str = "echo"  # REPLIES
    server: servers.ServerSpec | None = None  # None: the harness's echo server
    isolation: str = "case"  # ISOLATION

    # What a run directory keeps of it (its manifest's "settings"): the file as validated when the
    # run began, read back as it was, never validated again under later rules. The cases are the
    # manifest's trials'.
    SETTINGS = ("name", "description", "repeat", "port", "message", "poll_ms", "restart_every_ms", "max_wait_s",
                "fault_backend", "reply", "isolation")

    def to_json(self) -> dict[str, Any]:
        return {**{k: getattr(self, k) for k in self.SETTINGS}, "expect": [e.to_json() for e in self.expect],
                "server": self.server.to_json() if self.server else None}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], source: str, text: str) -> Experiment:
        server = servers.ServerSpec.from_json(doc["server"]) if doc.get("server") else None
        return cls(source=source, text=text, expect=tuple(Expectation.from_json(e) for e in doc["expect"]),
                   server=server, **{k: doc[k] for k in cls.SETTINGS if k in doc})


# --- field parsers: each takes (value, where) and raises SpecError via `bad` ---


class _Reader:
    def __init__(self, source: str):
        self.source = source

    def bad(self, where: str, problem: str) -> SpecError:
        return SpecError(self.source, where, problem)

    def choice(self, value: Any, where: str, allowed: tuple[str, ...]) -> str:
        if value not in allowed:
            raise self.bad(where, f"got {_show(value)}; allowed: {', '.join(allowed)}")
        return value

    def boolean(self, value: Any, where: str) -> bool:
        if not isinstance(value, bool):
            raise self.bad(where, f"got {_show(value)}; allowed: true, false")
        return value

    def integer(self, value: Any, where: str, lo: int, hi: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise self.bad(where, f"got {_show(value)}; allowed: a whole number from {lo} to {hi}")
        return value

    def number(self, value: Any, where: str, lo: float, hi: float) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
            raise self.bad(where, f"got {_show(value)}; allowed: a number from {lo:g} to {hi:g}")
        return float(value)

    def text(self, value: Any, where: str, limit: int = MAX_NAME, lines: bool = False) -> str:
        """A non-empty string of at most `limit` characters, without control characters (a
        newline and a tab are allowed where `lines`): names reach terminals and file names."""
        if not isinstance(value, str) or not value.strip():
            raise self.bad(where, f"got {_show(value)}; allowed: a non-empty string")
        if len(value) > limit:
            raise self.bad(where, f"{len(value)} characters; allowed: up to {limit}")
        allowed_controls = "\n\t" if lines else ""
        bad = next((c for c in value if unicodedata.category(c) in ("Cc", "Cf") and c not in allowed_controls), None)
        if bad is not None:
            raise self.bad(where, f"contains the control character {bad!r}; allowed: printable text")
        return value

    def mapping(self, value: Any, where: str, allowed: tuple[str, ...]) -> dict:
        if not isinstance(value, dict):
            raise self.bad(where, f"got {type(value).__name__}; allowed: a mapping of {', '.join(allowed)}")
        for key in value:
            if key not in allowed:
                shown = key if isinstance(key, str) and re.fullmatch(r"\w{1,40}", key) else _show(key)
                raise self.bad(f"{where}.{shown}" if where else shown, f"unknown field; allowed: {', '.join(allowed)}")
        return value

    def loss(self, value: Any, where: str) -> Loss:
        allowed = '0 (none), a whole number k (the first k), "all", or {p: 0..1, seed: N}'
        if value == 0 and not isinstance(value, bool):
            return NO_LOSS
        if value == "all":
            return Loss("all")
        if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= 1000:
            return Loss("first", k=value)
        if isinstance(value, dict):
            m = self.mapping(value, where, ("p", "seed"))
            if "p" not in m or "seed" not in m:
                raise self.bad(where, f"needs both p and seed; allowed: {allowed}")
            return Loss(
                "random",
                p=self.number(m["p"], f"{where}.p", 0.0, 1.0),
                seed=self.integer(m["seed"], f"{where}.seed", 0, 2**32 - 1),
            )
        raise self.bad(where, f"got {_show(value)}; allowed: {allowed}")

    def sysctls(self, value: Any, where: str) -> Sysctls:
        """{net.NAME: value}: namespaced sysctls by their dotted names (which ones this kernel has
        in a network namespace is checked before anything starts, see lab/facts.py)."""
        allowed = "a mapping of net.* sysctl names to whole numbers or strings"
        if not isinstance(value, dict):
            raise self.bad(where, f"got {_show(value)}; allowed: {allowed}")
        if len(value) > MAX_SYSCTLS:
            raise self.bad(where, f"{len(value)} sysctls; allowed: up to {MAX_SYSCTLS}")
        out = []
        for name, v in value.items():
            if not isinstance(name, str) or not SYSCTL_NAME.fullmatch(name) or len(name) > 200:
                raise self.bad(where, f"got the name {_show(name)}; allowed: a dotted sysctl name under net. "
                                      "(only the network namespace's sysctls can differ per side)")
            w = f"{where}.{name}"
            if isinstance(v, bool) or not isinstance(v, (int, str)):
                raise self.bad(w, f"got {_show(v)}; allowed: a whole number or a string")
            if isinstance(v, str):
                self.text(v, w, limit=MAX_SYSCTL_VALUE)
            elif not -2**63 <= v < 2**63:
                raise self.bad(w, f"got {_show(v)}; allowed: a 64-bit whole number")
            out.append((name, v))
        return tuple(sorted(out))

    def param(self, name: str, value: Any, where: str) -> Any:
        parsers: dict[str, Callable[[Any, str], Any]] = {
            "close_first": lambda v, w: self.choice(v, w, CLOSE_FIRST),
            "server_reuseaddr": self.boolean,
            "server_reuseport": self.boolean,
            "restart_reuseaddr": self.boolean,
            "final_ack_loss": self.loss,
            "client_close": lambda v, w: self.choice(v, w, CLIENT_CLOSE),
            "family": lambda v, w: self.choice(v, w, FAMILIES),
            "server_stop": lambda v, w: self.choice(v, w, SERVER_STOPS),
            "connections": lambda v, w: self.integer(v, w, 1, MAX_CONNECTIONS),
            "client_port": lambda v, w: self.integer(v, w, 1024, 65535),
            "client_reuseaddr": self.boolean,
            "watch_client": self.boolean,
            "final_ack_reset": self.boolean,
            "server_sysctls": self.sysctls,
            "client_sysctls": self.sysctls,
            "restart": lambda v, w: self.choice(v, w, RESTARTS),
            "keep_restarted": self.boolean,
            "bind_probe": self.bind_probe,
        }
        return parsers[name](value, where)

    def bind_probe(self, value: Any, where: str) -> BindProbe:
        m = self.mapping(value, where, PROBE_KEYS)
        return BindProbe(
            reuseaddr=self.boolean(m.get("reuseaddr", False), f"{where}.reuseaddr"),
            reuseport=self.boolean(m.get("reuseport", False), f"{where}.reuseport"),
            user=self.choice(m.get("user", "same"), f"{where}.user", PROBE_USERS),
            address=self.choice(m.get("address", "any"), f"{where}.address", PROBE_ADDRESSES))


PARAM_NAMES = tuple(Params.__dataclass_fields__)
TOP_LEVEL = (
    "name", "description", "repeat", "port", "message", "poll_ms",
    "restart_every_ms", "max_wait_s", "fault_backend", "matrix", "cases", "expect", "server", "reply",
    "isolation",
)
BOUND_KEYS = ("min", "max", "of", "within")


def _bound(r: _Reader, figure: str, value: Any, where: str) -> Bound:
    """null, an exact count, or {min, max, of, within}."""
    allowed = ("null (never happens), a whole number (a count), "
               "or a mapping of min, max, and of: FIGURE with within or min/max")
    if value is None:
        return Bound(figure, never=True)
    if figure in EXACT_WORDS:
        names = r.text(value, where)
        # every name the agent's strerrorname_np can print (aliases such as EOPNOTSUPP too), or its
        # "errno N" for a number glibc cannot name
        unknown = [n for n in names.split(", ") if not (n.startswith("E") and isinstance(getattr(errno, n, None), int))
                   and not re.fullmatch(r"errno \d+", n)]
        if unknown:
            raise r.bad(where, f"{unknown[0]!r} is no errno name; allowed: errno names as the record writes them, "
                               "in the order they came, joined by ', ' (EADDRINUSE, or EADDRINUSE, EACCES)")
        return Bound(figure, equals=names)
    if isinstance(value, int) and not isinstance(value, bool):
        if figure not in COUNTS:
            raise r.bad(where, f"got {_show(value)}; an exact value is for counts ({', '.join(sorted(COUNTS))}); "
                               "bound a time with min and max")
        return Bound(figure, equals=value)
    if not isinstance(value, dict):
        raise r.bad(where, f"got {_show(value)}; allowed: {allowed}")
    m = r.mapping(value, where, BOUND_KEYS)
    of = r.choice(m["of"], f"{where}.of", MEASURES) if "of" in m else None
    nums = {k: r.number(m[k], f"{where}.{k}", -1e9, 1e9) for k in ("min", "max", "within") if k in m}
    if "within" in nums and of is None:
        raise r.bad(where, "within needs of: the figure it is within of")
    if not nums:
        raise r.bad(where, f"bounds nothing; allowed: {allowed}")
    if "min" in nums and "max" in nums and nums["min"] > nums["max"]:
        raise r.bad(where, f"min {nums['min']:g} is above max {nums['max']:g}")
    return Bound(figure, of=of, min=nums.get("min"), max=nums.get("max"), within=nums.get("within"))


def _expectation(r: _Reader, raw: Any, index: int) -> Expectation:
    where = f"expect[{index}]"
    figures = MEASURES + EXACT_WORDS
    m = r.mapping(raw, where, ("name", "where") + figures)
    matches: list[tuple[str, Any]] = []
    if "where" in m:
        for key, value in r.mapping(m["where"], f"{where}.where", ("case",) + PARAM_NAMES).items():
            w = f"{where}.where.{key}"
            # A case parameter is matched in its JSON form (a Loss as written, sysctls as a mapping).
            value = r.text(value, w) if key == "case" else Params(**{key: r.param(key, value, w)}).to_json()[key]
            matches.append((key, value))
    bounds = tuple(_bound(r, k, v, f"{where}.{k}") for k, v in m.items() if k in figures)
    if not bounds:
        raise r.bad(where, f"bounds no figure; allowed: {', '.join(figures)}")
    name = r.text(m["name"], f"{where}.name") if "name" in m else " and ".join(b.text() for b in bounds)
    return Expectation(index, name, tuple(matches), bounds)


def _case(r: _Reader, raw: Any, where: str) -> Case:
    m = r.mapping(raw, where, ("name",) + PARAM_NAMES)
    values = {k: r.param(k, v, f"{where}.{k}") for k, v in m.items() if k != "name"}
    params = Params(**values)
    conflict = params.conflict()
    if conflict:
        raise r.bad(where, conflict)
    name = r.text(m["name"], f"{where}.name") if "name" in m else params.label()
    return Case(name, params)


def _message(r: _Reader, value: Any, reply: str) -> str:
    """The bytes the client sends: YAML's escapes ("PING\\r\\n") give line ends; no NUL (it travels
    as a command-line word). Empty only when no echo is awaited."""
    if not isinstance(value, str) or (not value and reply == "echo"):
        need = "non-empty: it is echoed" if reply == "echo" else "may be empty"
        raise r.bad("message", f"got {_show(value)}; allowed: a string ({need})")
    if len(value.encode()) > MAX_MESSAGE_BYTES:
        raise r.bad("message", f"{len(value.encode())} bytes; allowed: up to {MAX_MESSAGE_BYTES} (one send, one read)")
    bad = next((c for c in value if unicodedata.category(c) in ("Cc", "Cf") and c not in "\r\n\t"), None)
    if bad is not None:
        raise r.bad("message", f"contains the control character {bad!r}; allowed: text, with \\r, \\n and \\t")
    return value


def _guest_rules(r: _Reader, server: servers.ServerSpec | None, matrix: list[tuple[str, tuple[Any, ...]]],
                 cases: list[Case]) -> None:
    """A user's server is stopped its own way, by the harness, first; restart styles are for it alone."""
    keys = ("close_first", "server_stop", "restart", "keep_restarted", "server_reuseport", "bind_probe")
    given = [(f"matrix.{k}", v) for k, vs in matrix for v in vs if k in keys]
    given += [(f"cases[{i}].{k}", getattr(c.params, k)) for i, c in enumerate(cases) for k in keys]
    for where, value in given:
        key = where.rsplit(".", 1)[1]
        if server is not None and key == "close_first" and value != "server":
            raise r.bad(where, "a server of your own closes first (it is the one stopped); allowed: server")
        if server is not None and key == "server_stop" and value != "sigint":
            raise r.bad(where, "a server of your own is stopped as server.stop says; set that instead")
        if server is not None and key == "server_reuseport" and value:
            raise r.bad(where, "server_reuseport is for the harness's echo server; a server of your own sets "
                               "its socket options itself")
        if server is not None and key == "keep_restarted" and value:
            raise r.bad(where, "keep_restarted is for the harness's echo server; a server of your own is "
                               "stopped once its restart is up")
        if server is not None and key == "bind_probe" and value is not None and value.user != "same":
            raise r.bad(f"{where}.user", "other means a user other than the echo server's (root); beside a server of "
                                         "your own the probe runs as root; allowed: same")
        if server is None and key == "restart" and value != "namespace":
            raise r.bad(where, "restart styles are for a server of your own (a server: section); "
                               "the harness's echo server restarts in its namespace")


def parse(text: str, source: str) -> Experiment:
    """Validate an experiment file's text; `source` names it in messages."""
    r = _Reader(source)
    try:
        doc = specfile.load(text)
    except specfile.Refused as exc:
        raise r.bad("", str(exc)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise r.bad("", f"not valid YAML{at}: {problem}") from None
    if doc is None:
        raise r.bad("", "empty; an experiment needs a name, a description and cases or a matrix")
    doc = r.mapping(doc, "", TOP_LEVEL)
    for required in ("name", "description"):
        if required not in doc:
            raise r.bad(required, "missing; every experiment needs a name and a description")
    name = r.text(doc["name"], "name", limit=MAX_EXPERIMENT_NAME)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise r.bad("name", f"got {_show(name)}; allowed: letters, digits, '_', '-', '.' (it names the results folder)")

    matrix: list[tuple[str, tuple[Any, ...]]] = []
    if "matrix" in doc:
        for key, values in r.mapping(doc["matrix"], "matrix", PARAM_NAMES).items():
            if not isinstance(values, list) or not values:
                raise r.bad(f"matrix.{key}", "allowed: a non-empty list of values")
            matrix.append((key, tuple(r.param(key, v, f"matrix.{key}[{i}]") for i, v in enumerate(values))))
    cases: list[Case] = []
    if "cases" in doc:
        if not isinstance(doc["cases"], list) or not doc["cases"]:
            raise r.bad("cases", "allowed: a non-empty list of cases")
        cases = [_case(r, c, f"cases[{i}]") for i, c in enumerate(doc["cases"])]
    if not matrix and not cases:
        raise r.bad("cases", "missing; give a matrix, a list of cases, or both")
    expect: list[Expectation] = []
    if "expect" in doc:
        if not isinstance(doc["expect"], list) or not doc["expect"]:
            raise r.bad("expect", "allowed: a non-empty list of expectations")
        expect = [_expectation(r, e, i) for i, e in enumerate(doc["expect"])]
    server = servers.parse(r, doc["server"]) if "server" in doc else None
    _guest_rules(r, server, matrix, cases)
    if server is not None and "port" in doc and doc["port"] != server.port:
        raise r.bad("port", f"the server listens on server.port ({server.port}); give the port once, there")
    reply = r.choice(doc.get("reply", "any" if server else "echo"), "reply", REPLIES)
    isolation = r.choice(doc.get("isolation", "case"), "isolation", ISOLATION)
    repeat = r.integer(doc.get("repeat", 1), "repeat", 1, 1000)
    port = server.port if server else r.integer(doc.get("port", 7777), "port", 1024, 65535)
    if isolation == "case" and port + repeat - 1 > 65535:
        raise r.bad("port" if "port" in doc else "repeat",
                    f"the repeats of a case that share a lab listen on ports {port} to {port + repeat - 1}; "
                    f"allowed: up to 65535 (a lower port, fewer repeats, or isolation: trial)")

    return Experiment(
        name=name,
        description=r.text(doc["description"], "description", limit=MAX_DESCRIPTION, lines=True),
        source=source,
        text=text,
        repeat=repeat,
        port=port,
        message=_message(r, doc.get("message", "hello"), reply),
        poll_ms=r.integer(doc.get("poll_ms", 10), "poll_ms", 1, 10),
        restart_every_ms=r.integer(doc.get("restart_every_ms", 100), "restart_every_ms", 10, 10_000),
        max_wait_s=r.number(doc.get("max_wait_s", 600), "max_wait_s", 1, 24 * 3600),
        fault_backend=r.choice(doc.get("fault_backend", "auto"), "fault_backend", BACKENDS),
        matrix=tuple(matrix),
        cases=tuple(cases),
        expect=tuple(expect),
        reply=reply,
        server=server,
        isolation=isolation,
    )


def sysctl_fields(exp: Experiment) -> dict[tuple[str, str, str], str]:
    """Where each (side, name, value as text) of the file's sysctls is first written: the field
    a message about it names."""
    out: dict[tuple[str, str, str], str] = {}
    places = [(f"matrix.{key}[{i}]", key, v) for key, values in exp.matrix for i, v in enumerate(values)]
    places += [(f"cases[{i}].{key}", key, getattr(c.params, key)) for i, c in enumerate(exp.cases)
               for key in ("server_sysctls", "client_sysctls")]
    for where, key, value in places:
        if key in ("server_sysctls", "client_sysctls"):
            for name, v in value:
                out.setdefault((key.split("_")[0], name, str(v)), f"{where}.{name}")
    return out


def load(path: str | Path) -> Experiment:
    try:
        text = specfile.read(Path(path))
    except specfile.Refused as exc:
        raise SpecError(str(path), "", str(exc)) from None
    return parse(text, str(path))


_SHOW = reprlib.Repr()
_SHOW.maxlevel, _SHOW.maxstring, _SHOW.maxother, _SHOW.maxlist, _SHOW.maxdict = 2, 50, 50, 4, 4


def _show(value: Any) -> str:
    """A value as the user wrote it, cut short (a huge or deeply shared one too): one readable line."""
    return _SHOW.repr(value)
