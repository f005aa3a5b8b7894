"""The event catalogue against the programs that write events: every event the C programs and the
fault agent can print is one the catalogue knows, with fields it declares."""

import re
from pathlib import Path

import pytest

from harness import events

SRC = Path(__file__).resolve().parents[2] / "images" / "src"
LITERAL = r'"(?:[^"\\]|\\.)*"'
# emit_at(SOURCE, "name", time, FORMAT-or-NULL, ...): FORMAT may be several adjacent literals
EMIT = re.compile(rf'emit_at\(\s*(\w+|{LITERAL})\s*,\s*"(\w+)"\s*,[^,]+,\s*(NULL|(?:{LITERAL}\s*)+)', re.S)
FIELD = re.compile(r'\\"(\w+)\\":')


def emitted(text: str, macros: dict[str, str]) -> list[tuple[str | None, str, set[str]]]:
    """(src, ev, fields) of every emit_at in a C file; a source named by a macro resolves to it."""
    found = []
    for src, ev, fmt in EMIT.findall(text):
        if src in macros:
            src = macros[src]
        elif src.startswith('"'):
            src = src.strip('"')
        else:  # a helper's parameter: its callers pass SRC (checked through helper_events)
            src = None
        found.append((src, ev, set(FIELD.findall(fmt)) | {"mono"}))  # emit_at stamps every event
    return found


def c_events() -> list[tuple[str, str, str, set[str]]]:
    headers = {p.name: p.read_text() for p in SRC.glob("*.h")}
    helper = {}  # helper function -> (ev, fields) of its emit_at(src, ...)
    for text in headers.values():
        for m in re.finditer(r"static (?:inline )?void (\w+)\(const char \*src[^)]*\)\s*\{(.*?)\n\}", text, re.S):
            helper[m.group(1)] = [(ev, fields) for _, ev, fields in emitted(m.group(2), {})]
    out = []
    for path in sorted(SRC.glob("*.c")):
        text = path.read_text()
        macros = dict(re.findall(r'#define (\w+) "([^"]+)"', text))
        src = macros.get("SRC")
        out += [(path.name, s, ev, f) for s, ev, f in emitted(text, macros)]
        for name, evs in helper.items():
            for caller in re.findall(rf"{name}\((\w+|{LITERAL})", text):
                who = src if caller == "SRC" else caller.strip('"')
                out += [(path.name, who, ev, f) for ev, f in evs]
    return out


def shell_events() -> list[tuple[str, str, str, set[str]]]:
    text = (SRC / "fault_agent.sh").read_text()
    src = re.search(r"report\(\) \{ printf '\{\"src\":\"(\w+)\"", text).group(1)
    out = [("fault_agent.sh", src, ev, set()) for ev in re.findall(r"\breport (\w+)\s*(?:;|$|\n|else|fi)", text)]
    out += [("fault_agent.sh", src, "error", set(FIELD.findall(m))) for m in re.findall(rf"report error ({LITERAL})", text)]
    return out


ALL = c_events() + shell_events()


def test_the_sources_were_read():
    seen = {(src, ev) for _, src, ev, _ in ALL}
    assert len(seen) >= 40
    assert ("agent", "bind_ok") in seen and ("client-agent", "poll_stats") in seen and ("fault", "counted") in seen


@pytest.mark.parametrize(("where", "src", "ev", "fields"), ALL, ids=lambda v: str(v) if isinstance(v, str) else "")
def test_every_emitted_event_is_in_the_catalogue(where, src, ev, fields):
    kind = events.CATALOGUE.get((src, ev))
    assert kind is not None, f"{where}: {src} {ev} is not in harness/events.py"
    undeclared = fields - set(kind.fields)
    assert not undeclared, f"{where}: {src} {ev} writes {undeclared}, which the catalogue does not declare"


def test_an_event_the_catalogue_does_not_know_is_refused():
    assert events.problem({"src": "agent", "ev": "tw_gone", "mono": 1.0, "window_ms": 10.0}) is None
    assert "unknown event" in events.problem({"src": "agent", "ev": "tw_gon", "mono": 1.0})
    assert "no field 'windows_ms'" in events.problem({"src": "agent", "ev": "tw_gone", "mono": 1.0, "windows_ms": 1})
    assert "allowed: bool" in events.problem({"src": "agent", "ev": "bind_ok", "mono": 1.0, "reuseaddr": 1,
                                              "failures": 0, "window_ms": 1.0})
    assert "without window_ms" in events.problem({"src": "agent", "ev": "tw_gone", "mono": 1.0})
