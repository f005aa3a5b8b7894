"""The run directory: results/<experiment>/<UTC timestamp>/, written in phases.

At start: experiment.yaml (the spec as run) and manifest.json. While trials
run: events.jsonl (every event as it happens, the harness's own included) and,
as each trial ends, its pcap and its record in trials.jsonl. At the end: the
tables and the report. events.jsonl and the pcaps are the raw data: every
figure is derived from them again by `harness report`. Each JSON file says its
format version; readers refuse others.
"""

from __future__ import annotations

import datetime
import json
import os
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import EnvironmentProblem, RunDirError

FORMAT = 1
MANIFEST = "manifest.json"
EVENTS = "events.jsonl"
TRIALS = "trials.jsonl"
SPEC = "experiment.yaml"
CAPTURES = "captures"
Event = dict[str, Any]


def _header(kind: str) -> str:
    return json.dumps({"format": kind, "version": FORMAT}) + "\n"


def capture_path(trial_id: str) -> str:
    return f"{CAPTURES}/{trial_id}.pcap"


def write_atomic(path: Path, data: str | bytes) -> None:
    """Whole or not at all: a reader never sees a half-written file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    os.replace(tmp, path)


def check_writable(folder: Path) -> None:
    """Fail now, before anything starts, if run directories cannot be made under `folder`."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".harness-probe-"):
            pass
    except OSError as exc:
        raise EnvironmentProblem(f"{folder}: cannot write run directories here: {exc.strerror}") from None


class RunDir:
    """Writes one run's directory; safe to call from many trial threads."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()

    @classmethod
    def create(cls, results: Path, experiment: str, spec_text: str, manifest: dict[str, Any]) -> RunDir:
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H-%M-%SZ")
        base = results / experiment
        base.mkdir(parents=True, exist_ok=True)
        for n in range(1, 1000):
            path = base / (stamp if n == 1 else f"{stamp}-{n}")
            try:
                path.mkdir()
                break
            except FileExistsError:
                continue
        else:
            raise RunDirError(f"cannot make a new run directory under {base}")
        run = cls(path)
        (path / SPEC).write_text(spec_text)
        run.write_json(MANIFEST, {"format": "harness-manifest", "version": FORMAT, **manifest})
        (path / EVENTS).write_text(_header("harness-events"))
        (path / TRIALS).write_text(_header("harness-trials"))
        return run

    def write_json(self, name: str, doc: dict[str, Any]) -> None:
        write_atomic(self.path / name, json.dumps(doc, indent=2) + "\n")

    def _append(self, name: str, record: dict[str, Any]) -> None:
        line = json.dumps(record) + "\n"
        with self._lock, open(self.path / name, "a") as f:
            f.write(line)

    def event(self, record: Event) -> None:
        self._append(EVENTS, record)

    def trial(self, record: dict[str, Any]) -> None:
        self._append(TRIALS, record)

    def rewrite_trials(self, records: list[dict[str, Any]]) -> None:
        write_atomic(self.path / TRIALS, _header("harness-trials") + "".join(json.dumps(r) + "\n" for r in records))

    def capture(self, trial_id: str, data: bytes) -> str:
        (self.path / CAPTURES).mkdir(exist_ok=True)
        (self.path / capture_path(trial_id)).write_bytes(data)
        return capture_path(trial_id)

    def write_text(self, name: str, text: str) -> None:
        write_atomic(self.path / name, text)


@dataclass
class RunData:
    """What a run directory holds, read back: the raw data every figure is derived from."""

    path: Path
    manifest: dict[str, Any]
    spec_text: str
    events: list[Event]
    warnings: list[str] = field(default_factory=list)

    def trial_events(self) -> dict[str, list[Event]]:
        out: dict[str, list[Event]] = {}
        for e in self.events:
            out.setdefault(e.get("trial", ""), []).append(e)
        return out

    def pcap(self, trial_id: str) -> bytes | None:
        try:
            return (self.path / capture_path(trial_id)).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise RunDirError(f"{self.path / capture_path(trial_id)}: cannot be read: {exc.strerror}") from None


NUMBER = (int, float)
# The type of every field an event may carry; readers rely on them, so a damaged file is refused
# here, naming its line, rather than failing somewhere in the analysis.
EVENT_FIELDS: dict[str, tuple[type, ...]] = {
    **dict.fromkeys(("trial", "src", "ev", "text", "stderr", "side", "how", "what", "backend", "logs", "subnet"),
                    (str,)),
    **dict.fromkeys(("mono", "realtime", "expires_ms", "window_ms", "late_ms", "late_max_ms", "after_s",
                     "period_s", "phase_s", "waited_s", "wall_s"), NUMBER),
    **dict.fromkeys(("attempt", "attempts", "failures", "polls", "interval_ms", "late_over_5ms", "pid", "lport",
                     "bytes", "read", "so_error", "nice", "bind_errors", "other", "status"), (int,)),
    "reuseaddr": (bool,), "states": (list,), "phases": (dict,), "errno": (str, int),
    **dict.fromkeys(("injection_point", "error", "capture"), (str, type(None))),
}
MANIFEST_FIELDS: dict[str, tuple[type, ...]] = {
    "experiment": (str,), "run_id": (str,), "close_phase": (list, type(None)), "sysctls": (dict,),
    "images": (dict,), "git": (dict,), "jobs": (int,), "fault_backend": (str, type(None)),
}


def _typed(doc: dict[str, Any], fields: dict[str, tuple[type, ...]], where: str) -> None:
    for key, types in fields.items():
        if key in doc and type(doc[key]) not in types:  # type(): a bool is not a number here
            allowed = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise RunDirError(f"{where}: {key} is {json.dumps(doc[key])[:40]}; allowed: {allowed}")


def _check_event(path: Path, number: int, e: dict[str, Any]) -> None:
    where = f"{path}:{number}"
    for key in ("trial", "ev"):
        if key not in e:
            raise RunDirError(f"{where}: an event without {key!r}")
    _typed(e, EVENT_FIELDS, where)
    if "states" in e and not all(isinstance(s, str) for s in e["states"]):
        raise RunDirError(f"{where}: states must be a list of strings")


def _check(path: Path, doc: Any, kind: str) -> None:
    if not isinstance(doc, dict) or doc.get("format") != kind or doc.get("version") != FORMAT:
        got = (doc.get("format"), doc.get("version")) if isinstance(doc, dict) else (None, None)
        raise RunDirError(
            f"{path}: format {got[0]!r} version {got[1]!r}; this harness reads {kind!r} version {FORMAT}. "
            "Use the harness version named in the manifest to read it.")


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RunDirError(f"{path}: missing; this run directory is incomplete") from None
    except UnicodeDecodeError as exc:
        raise RunDirError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise RunDirError(f"{path}: cannot be read: {exc.strerror}") from None


def read_jsonl(path: Path, kind: str, warnings: list[str], check: Any = None) -> list[dict[str, Any]]:
    """The records of a JSON-lines file after its format header, each passed to check(path, line, doc).

    A last line without its newline was cut off mid-write (a crash): it is
    skipped with a warning. Any other bad line is an error naming it."""
    text = _read_text(path)
    lines = text.split("\n")
    if not lines[0].strip():
        raise RunDirError(f"{path}: empty; it should start with a format header")
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
            if not isinstance(doc, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            if number == len(lines) and number > 1:
                warnings.append(f"{path}:{number}: last line cut off (the run was stopped mid-write); skipped")
                continue
            raise RunDirError(f"{path}:{number}: not a JSON object ({exc})") from None
        if number == 1:
            _check(path, doc, kind)
        else:
            if check is not None:
                check(path, number, doc)
            records.append(doc)
    return records


def load(path: Path) -> RunData:
    """A run directory's manifest, experiment file and events, checking every format version."""
    if not path.is_dir() or not (path / MANIFEST).is_file():
        raise RunDirError(f"{path}: not a run directory (no {MANIFEST})")
    try:
        manifest = json.loads(_read_text(path / MANIFEST))
    except ValueError as exc:
        raise RunDirError(f"{path / MANIFEST}: not valid JSON ({exc})") from None
    _check(path / MANIFEST, manifest, "harness-manifest")
    _typed(manifest, MANIFEST_FIELDS, str(path / MANIFEST))
    cp = manifest.get("close_phase")
    if cp is not None and not (len(cp) == 2 and all(type(x) in NUMBER for x in cp)):
        raise RunDirError(f"{path / MANIFEST}: close_phase must be [period, phase] or null")
    warnings: list[str] = []
    events = read_jsonl(path / EVENTS, "harness-events", warnings, _check_event)
    if not any(e.get("src") == "harness" for e in events) and (path / TRIALS).is_file():
        for number, e in enumerate(_events_of_early_runs(read_jsonl(path / TRIALS, "harness-trials", warnings))):
            _check_event(path / TRIALS, number // 2 + 2, e)
            events.append(e)
    return RunData(path, manifest, _read_text(path / SPEC), events, warnings)


def _events_of_early_runs(records: list[dict[str, Any]]) -> list[Event]:
    """What the harness now writes as events about each trial, from the trial records of runs
    made before it did (same format version): the fault it applied and how the trial ended."""
    out: list[Event] = []
    for r in records:
        if r.get("backend", "none") != "none":
            out.append({"trial": r.get("trial"), "src": "harness", "ev": "fault", "backend": r["backend"],
                        "injection_point": r.get("injection_point")})
        harness_error = r.get("status") != "ok" and not str(r.get("why", "")).startswith(("agent:", "not over"))
        out.append({"trial": r.get("trial"), "src": "harness", "ev": "trial_end",
                    "error": r.get("why") if harness_error else None, "phases": r.get("phases", {}),
                    "wall_s": r.get("wall_s"), "capture": r.get("capture")})
    return out
