"""Reading an experiment file safely: what comes in is a small, plain YAML document.

Limits keep a hostile or mistaken file from costing memory or time before the
spec checker sees it: a regular file of at most MAX_BYTES, at most MAX_DEPTH
levels of nesting and MAX_ALIASES aliases, no duplicate keys. Scalars follow
YAML 1.2's core schema, so `on`, `yes` or `2026-11-24` stay the strings the
user wrote (and are refused as such) instead of becoming True or a date.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

import yaml

MAX_BYTES = 1 << 20
MAX_DEPTH = 20
MAX_ALIASES = 100

BOOL, INT, FLOAT, TIMESTAMP = (f"tag:yaml.org,2002:{t}" for t in ("bool", "int", "float", "timestamp"))


class Refused(Exception):
    """The file is not one we read; str() says why (the caller names the file)."""


class _Loader(yaml.SafeLoader):
    """SafeLoader with the core schema's scalars, a depth and alias budget, and no duplicate keys."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise Refused(f"more than {MAX_ALIASES} aliases (*name); write the values out")
        self._depth += 1
        if self._depth > MAX_DEPTH:
            mark = self.peek_event().start_mark
            raise Refused(f"nested deeper than {MAX_DEPTH} levels at line {mark.line + 1}")
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> dict:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise Refused(f"line {key_node.start_mark.line + 1}: {str(key)[:40]!r} appears twice in one mapping")
            seen.add(key if isinstance(key, (str, int, float, bool)) else id(key))
        return super().construct_mapping(node, deep)


# YAML 1.2 core schema: true/false only, plain decimal/octal/hex integers and decimal floats, no
# timestamps (YAML 1.1's yes/no/on/off, 1_000, 1:20 and dates become the strings written).
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (BOOL, INT, FLOAT, TIMESTAMP)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver(BOOL, re.compile(r"^(?:true|false)$"), list("tf"))
_Loader.add_implicit_resolver(INT, re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
                              list("-+0123456789"))
_Loader.add_implicit_resolver(
    FLOAT, re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)"
                      r"|\.(?:nan|NaN|NAN))$"), list("-+.0123456789"))


def read(path: Path) -> str:
    """The file's text: a regular file, at most MAX_BYTES, UTF-8."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO opens without waiting for a writer
    except FileNotFoundError:
        raise Refused("no such file") from None
    except OSError as exc:
        raise Refused(f"cannot be read: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise Refused("not a regular file; give the path of a YAML file")
        data = os.read(fd, MAX_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_BYTES:
        raise Refused(f"larger than {MAX_BYTES // 1024} KiB; an experiment file is a few lines")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Refused(f"not UTF-8 text (byte {exc.start})") from None


def load(text: str) -> Any:
    """The YAML document, or Refused / yaml.YAMLError."""
    loader = _Loader(text)
    try:
        return loader.get_single_data()
    except RecursionError:
        raise Refused(f"nested deeper than {MAX_DEPTH} levels") from None
    finally:
        loader.dispose()
