"""The experiment file's `server:` section: a server of the user's choice instead of the harness's
echo server. YAML -> a frozen, validated ServerSpec; no Docker here (lab/images.py builds its
image, lab/roles.py runs it, images/src/server_keeper.c keeps it).

    server:
      image: redis:7            # an image the engine has; or
      packages: [redis-server]  # Debian packages, installed on the harness's own base
      command: [redis-server, --port, "6379", --save, ""]
      port: 6379
      stop: SIGTERM             # a signal; docker-stop (SIGTERM, SIGKILL 10 s later);
                                # {signal: SIGQUIT, kill_after_s: 5}; or {command: [nginx, -s, quit]}
      env: {KEY: value}         # optional
      user: redis               # optional: the container's user
      caps: [NET_BIND_SERVICE]  # optional: none by default, only what is named here
"""

from __future__ import annotations

import re
import signal
from dataclasses import dataclass
from typing import Any, Protocol

PORT_WORD = "{port}"  # in a command's words: the trial's port
FIELDS = ("image", "packages", "command", "port", "stop", "env", "user", "caps")
MAX_WORDS = 32  # words of a command (the keeper's limit for a stop command too)
MAX_WORD = 1000
MAX_PACKAGES = 50
DOCKER_STOP_S = 10.0  # `docker stop`'s default grace before SIGKILL
# A capability the server may ask for: every Linux capability but those that would let it leave its
# container or touch the lab (NET_ADMIN stays with the fault agent alone).
CAPS = ("AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "IPC_LOCK", "KILL",
        "NET_BIND_SERVICE", "NET_BROADCAST", "NET_RAW", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
        "SYS_NICE", "SYS_RESOURCE")
IMAGE = re.compile(r"[a-z0-9][a-z0-9._/:@-]{0,254}")
PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]{0,99}")  # Debian policy's package names
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")
USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,31})?")


class Reader(Protocol):
    """What spec.py's field reader offers (each raises SpecError naming the file and field)."""

    def bad(self, where: str, problem: str) -> Exception: ...
    def integer(self, value: Any, where: str, lo: int, hi: int) -> int: ...
    def number(self, value: Any, where: str, lo: float, hi: float) -> float: ...
    def text(self, value: Any, where: str, limit: int = ..., lines: bool = ...) -> str: ...
    def mapping(self, value: Any, where: str, allowed: tuple[str, ...]) -> dict[Any, Any]: ...


@dataclass(frozen=True)
class Stop:
    """How the server is stopped: a signal (SIGKILL kill_after_s later, when given), or a command."""

    signal: int = signal.SIGTERM
    kill_after_s: float | None = None
    command: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"signal": signal.Signals(self.signal).name, "kill_after_s": self.kill_after_s,
                "command": list(self.command)}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Stop:
        return cls(signal.Signals[doc["signal"]].value, doc["kill_after_s"], tuple(doc["command"]))

    def label(self) -> str:
        if self.command:
            return " ".join(self.command)
        name = signal.Signals(self.signal).name
        return name if self.kill_after_s is None else f"{name}, SIGKILL {self.kill_after_s:g} s later"


@dataclass(frozen=True)
class ServerSpec:
    command: tuple[str, ...]
    port: int
    image: str | None = None
    packages: tuple[str, ...] = ()
    stop: Stop = Stop()
    env: tuple[tuple[str, str], ...] = ()
    user: str | None = None
    caps: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """What the tables call it: its program."""
        return self.command[0].rsplit("/", 1)[-1]

    @property
    def port_per_trial(self) -> bool:
        """Whether the harness sets its port ({port} in its command, and in its stop command if it
        has one, which would otherwise stop another trial's): then each trial of a shared lab runs
        one on a port of its own, `port` being the first."""
        return all(any(PORT_WORD in w for w in words) for words in (self.command, self.stop.command) if words)

    def to_json(self) -> dict[str, Any]:
        return {"image": self.image, "packages": list(self.packages), "command": list(self.command),
                "port": self.port, "stop": self.stop.to_json(), "env": dict(self.env), "user": self.user,
                "caps": list(self.caps)}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> ServerSpec:
        return cls(tuple(doc["command"]), doc["port"], doc["image"], tuple(doc["packages"]),
                   Stop.from_json(doc["stop"]), tuple(sorted(doc["env"].items())), doc["user"], tuple(doc["caps"]))


def with_port(words: tuple[str, ...], port: int) -> list[str]:
    """A command's words with {port} as the trial's port."""
    return [w.replace(PORT_WORD, str(port)) for w in words]


def _words(r: Reader, value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or len(value) > MAX_WORDS:
        raise r.bad(where, f"allowed: a list of 1 to {MAX_WORDS} words (argv), e.g. [redis-server, --port, '6379']")
    out = []
    for i, w in enumerate(value):
        if isinstance(w, bool) or not isinstance(w, (str, int)):
            raise r.bad(f"{where}[{i}]", "allowed: a string (quote numbers you mean as words)")
        w = str(w)
        if len(w) > MAX_WORD or "\0" in w:
            raise r.bad(f"{where}[{i}]", f"allowed: up to {MAX_WORD} characters, no NUL")
        out.append(w)
    if not out[0].strip():
        raise r.bad(f"{where}[0]", "allowed: the program to run, not an empty word")
    return tuple(out)


def _signal(r: Reader, value: Any, where: str) -> int:
    names = [s.name for s in signal.Signals if s.name.startswith("SIG") and not s.name.startswith("SIG_")]
    if not isinstance(value, str) or value not in names:
        raise r.bad(where, f"got {value!r:.40}; allowed: a signal name, e.g. SIGTERM, SIGINT, SIGQUIT")
    return signal.Signals[value].value


def _stop(r: Reader, value: Any, where: str) -> Stop:
    if value == "docker-stop":
        return Stop(signal.SIGTERM, DOCKER_STOP_S)
    if isinstance(value, str):
        return Stop(_signal(r, value, where))
    allowed = "a signal name, docker-stop, {signal: NAME, kill_after_s: S} or {command: [WORD, ...]}"
    if not isinstance(value, dict):
        raise r.bad(where, f"allowed: {allowed}")
    m = r.mapping(value, where, ("signal", "kill_after_s", "command"))
    if "command" in m:
        if set(m) != {"command"}:
            raise r.bad(where, "a stop command goes alone (it stops the server its own way)")
        return Stop(command=_words(r, m["command"], f"{where}.command"))
    if "signal" not in m:
        raise r.bad(where, f"allowed: {allowed}")
    after = r.number(m["kill_after_s"], f"{where}.kill_after_s", 0.001, 3600) if "kill_after_s" in m else None
    return Stop(_signal(r, m["signal"], f"{where}.signal"), after)


def parse(r: Reader, value: Any, where: str = "server") -> ServerSpec:
    m = r.mapping(value, where, FIELDS)
    for required in ("command", "port"):
        if required not in m:
            raise r.bad(f"{where}.{required}", "missing; a server needs its command and the port it listens on")
    if ("image" in m) == ("packages" in m):
        raise r.bad(where, "give either image (one the engine has) or packages (Debian packages on the "
                           "harness's base), not both nor neither")
    image = None
    if "image" in m:
        image = m["image"]
        if not isinstance(image, str) or not IMAGE.fullmatch(image):
            raise r.bad(f"{where}.image", f"got {image!r:.60}; allowed: an image reference, e.g. redis:7")
    packages: tuple[str, ...] = ()
    if "packages" in m:
        raw = m["packages"]
        if not isinstance(raw, list) or not raw or len(raw) > MAX_PACKAGES:
            raise r.bad(f"{where}.packages", f"allowed: a list of 1 to {MAX_PACKAGES} Debian package names")
        for i, p in enumerate(raw):
            if not isinstance(p, str) or not PACKAGE.fullmatch(p):
                raise r.bad(f"{where}.packages[{i}]", f"got {p!r:.60}; allowed: a Debian package name")
        packages = tuple(raw)
    env: dict[str, str] = {}
    if "env" in m:
        if not isinstance(m["env"], dict):
            raise r.bad(f"{where}.env", "allowed: a mapping of names to strings")
        for k, v in m["env"].items():
            if not isinstance(k, str) or not ENV_NAME.fullmatch(k):
                raise r.bad(f"{where}.env", f"got the name {k!r:.40}; allowed: letters, digits and _")
            if isinstance(v, bool) or not isinstance(v, (str, int)) or "\0" in str(v) or len(str(v)) > MAX_WORD:
                raise r.bad(f"{where}.env.{k}", f"allowed: a string of up to {MAX_WORD} characters, no NUL")
            env[k] = str(v)
    user = None
    if "user" in m:
        user = str(m["user"]) if isinstance(m["user"], (str, int)) and not isinstance(m["user"], bool) else ""
        if not USER.fullmatch(user):
            raise r.bad(f"{where}.user", f"got {m['user']!r:.40}; allowed: a user name or id, optionally :group")
    caps: tuple[str, ...] = ()
    if "caps" in m:
        raw = m["caps"]
        if not isinstance(raw, list) or any(c not in CAPS for c in raw):
            raise r.bad(f"{where}.caps", f"allowed: a list of capabilities from {', '.join(CAPS)}")
        caps = tuple(sorted(set(raw)))
    return ServerSpec(command=_words(r, m["command"], f"{where}.command"),
                      port=r.integer(m["port"], f"{where}.port", 1, 65535), image=image, packages=packages,
                      stop=_stop(r, m["stop"], f"{where}.stop") if "stop" in m else Stop(),
                      env=tuple(sorted(env.items())), user=user, caps=caps)
