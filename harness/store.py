"""The run directory: results/<experiment>/<UTC timestamp>/, written in phases.

At start: experiment.yaml (the file as run, for people) and manifest.json (the run: its
experiment's settings and its trials as planned, which every reader takes from here, never
planning or validating again). While trials run: events.jsonl (every event as it happens, the
harness's own included, each one the catalogue in events.py knows) and, as each trial ends, its
pcap and its record in trials.jsonl. At the end: the tables and the report. events.jsonl and the
pcaps are the raw data: every figure is derived from them again by `harness report`. This module
alone writes and reads these files. Each JSON file says its format version: this harness writes
version 2 and reads 2, and 1 through the one upgrader (format1.py); it refuses others.
"""

from __future__ import annotations

import datetime
import json
import os
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from harness import events as catalogue
from harness import format1
from harness.errors import EnvironmentProblem, RunDirError
from harness.plan import Trial
from harness.record import TrialResult
from harness.spec import Experiment

FORMAT = 2
READS = (1, 2)
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
    """Whole or not at all: a reader never sees a half-written file; one that cannot be written
    is one line naming it."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        what = "a folder, where a file should be" if path.is_dir() else exc.strerror
        raise RunDirError(f"{path}: cannot be written: {what}") from None


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

    def __init__(self, path: Path, version: int = FORMAT):
        self.path = path
        self.version = version  # a directory of another format keeps its trials.jsonl as it is
        self._lock = threading.Lock()
        self._events: IO[str] | None = None  # events.jsonl, kept open: a study appends thousands a second

    @classmethod
    def create(cls, results: Path, exp: Experiment, trials: list[Trial], manifest: dict[str, Any]) -> RunDir:
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H-%M-%SZ")
        base = results / exp.name
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
        (path / SPEC).write_text(exp.text)
        run.write_json(MANIFEST, {"format": "harness-manifest", "version": FORMAT, **manifest,
                                  "settings": exp.to_json(), "trials": [t.to_json() for t in trials]})
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
        line = json.dumps(record) + "\n"
        with self._lock:
            if self._events is None:
                self._events = open(self.path / EVENTS, "a")  # noqa: SIM115 (open for the run's length)
            self._events.write(line)
            self._events.flush()  # to the kernel with each event: a crash loses none

    def trial(self, record: TrialResult) -> None:
        """A trial's record, as it ends."""
        self._append(TRIALS, record.to_json())

    def rewrite_trials(self, records: list[TrialResult]) -> None:
        """Every record, derived again from the raw data (`harness report`)."""
        if self.version == FORMAT:
            write_atomic(self.path / TRIALS, _header("harness-trials") +
                         "".join(json.dumps(r.to_json()) + "\n" for r in records))

    def capture(self, trial_id: str, data: bytes) -> str:
        (self.path / CAPTURES).mkdir(exist_ok=True)
        (self.path / capture_path(trial_id)).write_bytes(data)
        return capture_path(trial_id)

    def write_text(self, name: str, text: str) -> None:
        write_atomic(self.path / name, text)


@dataclass
class RunData:
    """What a run directory holds, read back (in format 2, whatever its format on disk): the raw
    data every figure is derived from, and the run's experiment and trials as they were planned."""

    path: Path
    manifest: dict[str, Any]
    spec_text: str
    exp: Experiment
    trials: list[Trial]
    events: list[Event]
    warnings: list[str] = field(default_factory=list)

    @property
    def version(self) -> int:
        return int(self.manifest["version"])

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

    def kernel(self, engine: str) -> str:
        """The kernel release of one of the run's engines."""
        return str((self.manifest.get("engines") or {}).get(engine, {}).get("kernel") or "")


NUMBER = (int, float)
MANIFEST_FIELDS: dict[str, tuple[type, ...]] = {
    "experiment": (str,), "run_id": (str,), "close_phase": (list, type(None)), "sysctls": (dict,),
    "images": (dict,), "git": (dict,), "jobs": (int,), "fault_backend": (str, type(None)), "engines": (dict,),
    "settings": (dict,), "trials": (list,),
}


NULL = type(None)
SETTINGS_FIELDS: dict[str, tuple[type, ...]] = {
    "name": (str,), "description": (str,), "repeat": (int,), "port": (int,), "message": (str,), "poll_ms": (int,),
    "restart_every_ms": (int,), "max_wait_s": NUMBER, "fault_backend": (str,), "expect": (list,),
    "reply": (str,), "server": (dict, NULL), "isolation": (str,)}
TRIAL_FIELDS: dict[str, tuple[type, ...]] = {
    "trial": (str,), "index": (int,), "case": (str,), "repeat": (int,), "engine": (str,), "expected_s": NUMBER,
    "params": (dict,), "port": (int,), "lab": (str,), "close_at": (str,)}
LAB_FIELDS = ("port", "lab", "close_at")  # not in runs from before shared labs
PARAM_FIELDS: dict[str, tuple[type, ...]] = {
    "close_first": (str,), "server_reuseaddr": (bool,), "restart_reuseaddr": (bool, NULL),
    "final_ack_loss": (int, str, dict), "client_close": (str,), "family": (str,), "server_stop": (str,),
    "connections": (int,), "client_port": (int, NULL), "client_reuseaddr": (bool,), "watch_client": (bool,), "final_ack_reset": (bool,),
    "server_sysctls": (dict,), "client_sysctls": (dict,), "restart": (str,),
    "keep_restarted": (bool,), "server_reuseport": (bool,), "bind_probe": (dict, NULL)}


def _planned(manifest: dict[str, Any], where: str) -> None:
    """The manifest's settings and trials have the shape this harness wrote them in."""
    settings, trials = manifest.get("settings"), manifest.get("trials")
    if not isinstance(settings, dict) or not isinstance(trials, list):
        raise RunDirError(f"{where}: without the run's settings and trials")
    _typed(settings, SETTINGS_FIELDS, f"{where}: settings")
    for i, t in enumerate(trials):
        if not isinstance(t, dict) or set(t) - set(TRIAL_FIELDS) or set(TRIAL_FIELDS) - set(LAB_FIELDS) - set(t) \
                or set(t["params"]) - set(PARAM_FIELDS):
            raise RunDirError(f"{where}: trials[{i}] is not a trial as planned")
        _typed(t, TRIAL_FIELDS, f"{where}: trials[{i}]")
        _typed(t["params"], PARAM_FIELDS, f"{where}: trials[{i}].params")


def _typed(doc: dict[str, Any], fields: dict[str, tuple[type, ...]], where: str) -> None:
    for key, types in fields.items():
        if key in doc and type(doc[key]) not in types:  # type(): a bool is not a number here
            allowed = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise RunDirError(f"{where}: {key} is {json.dumps(doc[key])[:40]}; allowed: {allowed}")


def _check_event(path: Path, number: int, e: dict[str, Any]) -> None:
    if not isinstance(e.get("trial"), str):
        raise RunDirError(f"{path}:{number}: an event without its trial")
    problem = catalogue.problem(e)
    if problem is None and not all(isinstance(s, str) for s in e.get("states", [])):
        problem = "states must be a list of strings"
    if problem is not None:
        raise RunDirError(f"{path}:{number}: {problem}")


def _check(path: Path, doc: Any, kind: str, versions: tuple[int, ...] = READS) -> int:
    """The file's format version, checked; RunDirError for another kind or version."""
    if not isinstance(doc, dict) or doc.get("format") != kind or doc.get("version") not in versions:
        got = (doc.get("format"), doc.get("version")) if isinstance(doc, dict) else (None, None)
        raise RunDirError(
            f"{path}: format {got[0]!r} version {got[1]!r}; this harness reads {kind!r} version "
            f"{' or '.join(map(str, versions))}. Use the harness version named in the manifest to read it.")
    return int(doc["version"])


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RunDirError(f"{path}: missing; this run directory is incomplete") from None
    except IsADirectoryError:
        raise RunDirError(f"{path}: a folder, where a file should be") from None
    except UnicodeDecodeError as exc:
        raise RunDirError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise RunDirError(f"{path}: cannot be read: {exc.strerror}") from None


def read_jsonl(path: Path, kind: str, version: int, warnings: list[str],
               check: Any = None) -> list[dict[str, Any]]:
    """The records of a JSON-lines file after its format header (of this version), each passed to
    check(path, line, doc).

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
            _check(path, doc, kind, (version,))
        else:
            if check is not None:
                check(path, number, doc)
            records.append(doc)
    return records


def records(path: Path) -> list[TrialResult]:
    """trials.jsonl's records: each trial as the run's analysis left it."""
    warnings: list[str] = []
    try:
        return [TrialResult.from_json(d) for d in read_jsonl(path / TRIALS, "harness-trials", FORMAT, warnings)]
    except (KeyError, TypeError, ValueError) as exc:
        raise RunDirError(f"{path / TRIALS}: not a trial record ({exc})") from None


def load(path: Path) -> RunData:
    """A run directory, checking every format version; a format-1 one is upgraded to format 2 on
    the way in (format1.py), so every reader sees one shape."""
    if not path.is_dir() or not (path / MANIFEST).is_file():
        raise RunDirError(f"{path}: not a run directory (no {MANIFEST})")
    try:
        manifest = json.loads(_read_text(path / MANIFEST))
    except ValueError as exc:
        raise RunDirError(f"{path / MANIFEST}: not valid JSON ({exc})") from None
    version = _check(path / MANIFEST, manifest, "harness-manifest")
    _typed(manifest, MANIFEST_FIELDS, str(path / MANIFEST))
    cp = manifest.get("close_phase")
    if cp is not None and not (len(cp) == 2 and all(type(x) in NUMBER for x in cp)):
        raise RunDirError(f"{path / MANIFEST}: close_phase must be [period, phase] or null")
    warnings: list[str] = []
    spec_text = _read_text(path / SPEC)
    if version == 1:
        events = read_jsonl(path / EVENTS, "harness-events", 1, warnings, format1.check_event)
        old = read_jsonl(path / TRIALS, "harness-trials", 1, warnings) if (path / TRIALS).is_file() else []
        manifest, events = format1.upgrade(path, manifest, spec_text, events, old)
        for number, e in enumerate(events, 2):
            problem = catalogue.problem(e)
            if problem is not None:
                raise RunDirError(f"{path / EVENTS}: upgraded from format 1, event {number}: {problem}")
    else:
        _planned(manifest, str(path / MANIFEST))
        events = read_jsonl(path / EVENTS, "harness-events", FORMAT, warnings, _check_event)
    try:
        exp = Experiment.from_json(manifest["settings"], str(path / SPEC), spec_text)
        trials = [Trial.from_json(t, exp.port) for t in manifest["trials"]]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise RunDirError(f"{path / MANIFEST}: its settings or trials are damaged ({exc.__class__.__name__}: "
                          f"{exc})") from None
    return RunData(path, manifest, spec_text, exp, trials, events, warnings)
