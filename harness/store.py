"""The run directory: results/<experiment>/<UTC timestamp>/, written in phases.

At start: experiment.yaml (the spec as run) and manifest.json. While trials
run: events.jsonl (every event as it happens) and trials.jsonl (each trial's
figures when it ends), so an interrupted run can still be read. At the end:
the tables. Each JSON file says its format version; readers refuse others.
"""

from __future__ import annotations

import datetime
import json
import threading
from pathlib import Path
from typing import Any

from harness.errors import RunDirError

FORMAT = 1
MANIFEST = "manifest.json"
EVENTS = "events.jsonl"
TRIALS = "trials.jsonl"
SPEC = "experiment.yaml"
CAPTURES = "captures"


def _header(kind: str) -> str:
    return json.dumps({"format": kind, "version": FORMAT}) + "\n"


class RunDir:
    """Writes one run's directory; safe to call from many trial threads."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()

    @classmethod
    def create(cls, results: Path, experiment: str, spec_text: str, manifest: dict[str, Any]) -> RunDir:
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H-%M-%SZ")
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
        (self.path / name).write_text(json.dumps(doc, indent=2) + "\n")

    def _append(self, name: str, record: dict[str, Any]) -> None:
        line = json.dumps(record) + "\n"
        with self._lock, open(self.path / name, "a") as f:
            f.write(line)

    def event(self, record: dict[str, Any]) -> None:
        self._append(EVENTS, record)

    def trial(self, record: dict[str, Any]) -> None:
        self._append(TRIALS, record)

    def capture(self, trial_id: str, data: bytes) -> str:
        d = self.path / CAPTURES
        d.mkdir(exist_ok=True)
        (d / f"{trial_id}.pcap").write_bytes(data)
        return f"{CAPTURES}/{trial_id}.pcap"

    def write_text(self, name: str, text: str) -> None:
        (self.path / name).write_text(text)


def _read_jsonl(path: Path, kind: str) -> list[dict[str, Any]]:
    lines = path.read_text().splitlines()
    if not lines:
        raise RunDirError(f"{path}: empty; it should start with a format header")
    head = json.loads(lines[0])
    _check(path, head, kind)
    return [json.loads(line) for line in lines[1:] if line.strip()]


def _check(path: Path, doc: dict[str, Any], kind: str) -> None:
    if doc.get("format") != kind or doc.get("version") != FORMAT:
        raise RunDirError(
            f"{path}: format {doc.get('format')!r} version {doc.get('version')!r}; this harness reads "
            f"{kind!r} version {FORMAT}. Use the harness version named in the manifest to read it.")


def load(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """(manifest, trials, events) of a run directory, checking every format version."""
    if not (path / MANIFEST).is_file():
        raise RunDirError(f"{path}: not a run directory (no {MANIFEST})")
    try:
        manifest = json.loads((path / MANIFEST).read_text())
        _check(path / MANIFEST, manifest, "harness-manifest")
        return manifest, _read_jsonl(path / TRIALS, "harness-trials"), _read_jsonl(path / EVENTS, "harness-events")
    except (OSError, json.JSONDecodeError) as exc:
        raise RunDirError(f"{path}: unreadable run directory: {exc}") from None
