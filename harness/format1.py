"""Run directories of format 1, upgraded to format 2 in memory: the one place that knows how older
harness versions wrote their runs. Nothing here touches the files.

Format 1 kept the experiment file but not the trials as planned, and its events changed shape
while the format number did not. This turns such a directory into what format 2 holds:
  - the manifest's settings and trials, from the experiment file as that run validated it (the
    one place a run's file is parsed again) and the trials the manifest lists;
  - the harness's own events, which the first versions did not write: the fault as applied (from
    the manifest's backend and the case) and each trial's end (from trials.jsonl where it is
    there, else from the raw data alone: its pcap, and whether its programs finished);
  - the agent's count of failed restarts (restart_stats), which older agents listed one by one;
  - fields older programs left out that their behaviour fixes: a client of one connection (conn
    0, connections 1), and a restart's failures before it came up (its attempt - 1).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness import plan, spec
from harness.errors import RunDirError, SpecError
from harness.events import AGENT, CLIENT, HARNESS, Ev
from harness.faults.choose import named

Event = dict[str, Any]
NUMBER = (int, float)
# The type of every field a format-1 event may carry, by name: what that format's readers relied on.
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


def check_event(path: Path, number: int, e: dict[str, Any]) -> None:
    """A format-1 event, as that format's readers checked it: a damaged file is refused naming its line."""
    where = f"{path}:{number}"
    for key in ("trial", "ev"):
        if key not in e:
            raise RunDirError(f"{where}: an event without {key!r}")
    for key, types in EVENT_FIELDS.items():
        if key in e and type(e[key]) not in types:
            allowed = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise RunDirError(f"{where}: {key} is {json.dumps(e[key])[:40]}; allowed: {allowed}")
    if "states" in e and not all(isinstance(s, str) for s in e["states"]):
        raise RunDirError(f"{where}: states must be a list of strings")


def _planned(path: Path, manifest: dict[str, Any], spec_text: str) -> tuple[spec.Experiment, list[plan.Trial]]:
    """The experiment as that run validated it, and its trials: those the manifest lists, with
    their cases' settings from the file (older manifests list none: planned as that run did)."""
    try:
        exp = spec.parse(spec_text, str(path / "experiment.yaml"))
        cases = {c.name: c.params for c in plan.cases(exp)}
    except SpecError as exc:
        raise RunDirError(f"{path}: a format-1 run whose experiment file this harness no longer reads ({exc}); "
                          "use the harness version named in its manifest") from None
    listed = manifest.get("trials")
    if not listed:
        engines = list(manifest.get("engines") or {"": {}})
        return exp, plan.on_engines(plan.trials(exp), engines, str(manifest.get("engine_mode", "each")))
    trials = []
    for t in listed:
        params = cases.get(t["case"])
        if params is None:
            raise RunDirError(f"{path}: its manifest names the case {t['case']!r}, which its experiment file lacks")
        trials.append(plan.Trial(int(t["trial"][1:]), t["case"], t["repeat"], params, plan.expected_seconds(params),
                                 t.get("engine", ""), exp.port))
    return exp, trials


def _restart_stats(agent: list[Event]) -> Event | None:
    """The count an older agent did not print: its failed restarts, listed one by one."""
    end = next((e for e in agent if e.get("ev") in (Ev.DONE, Ev.TIMEOUT)), None)
    if end is None or any(e.get("ev") == Ev.RESTART_STATS for e in agent):
        return None
    fails = [e for e in agent if e.get("ev") == Ev.RESTART_FAIL]
    up = next((e for e in agent if e.get("ev") == Ev.RESTART_UP), None)
    bind = sum(1 for e in fails if "bind() error" in e.get("stderr", ""))
    return {"src": AGENT, "ev": Ev.RESTART_STATS, "mono": end["mono"],
            "attempts": len(fails) + (up is not None), "bind_errors": bind, "other": len(fails) - bind}


def _filled(e: Event) -> Event:
    """An older event with the fields it left out and its behaviour fixes."""
    src, ev = e.get("src"), e.get("ev")
    if src == CLIENT and ev in (Ev.CONNECTED, Ev.EOF) and "conn" not in e:
        return {**e, "conn": 0}  # one connection, before clients opened several
    if src == CLIENT and ev in (Ev.ECHOED, Ev.CLOSE) and "connections" not in e:
        return {**e, "connections": 1}
    if src == AGENT and ev == Ev.RESTART_UP and "failures" not in e:
        return {**e, "failures": e["attempt"] - 1}
    return e


def _fault(manifest: dict[str, Any], t: plan.Trial, record: dict[str, Any] | None) -> Event | None:
    """The fault the run applied to this trial: from its record, else from the manifest's backend."""
    if record is not None and record.get("backend", "none") != "none":
        return {"src": HARNESS, "ev": Ev.FAULT, "backend": record["backend"],
                "injection_point": record.get("injection_point")}
    backend = (manifest.get("engines") or {}).get(t.engine, {}).get("fault_backend") or manifest.get("fault_backend")
    if not backend or (t.params.final_ack_loss.kind == "none" and not t.params.final_ack_reset):
        return None
    passive = "client" if t.params.close_first == "server" else "server"
    return {"src": HARNESS, "ev": Ev.FAULT, "backend": backend, "injection_point": named(backend).where(passive)}


def _end(path: Path, t: plan.Trial, record: dict[str, Any] | None) -> Event:
    """How the trial ended for the harness: from its record, else what the raw data shows."""
    capture = f"captures/{t.id}.pcap"
    if record is None:
        return {"src": HARNESS, "ev": Ev.TRIAL_END, "error": None,
                "capture": capture if (path / capture).is_file() else None}
    harness_error = record.get("status") != "ok" and not str(record.get("why", "")).startswith(("agent:", "not over"))
    end = {"src": HARNESS, "ev": Ev.TRIAL_END, "error": record.get("why") if harness_error else None,
           "phases": record.get("phases", {}), "wall_s": record.get("wall_s"), "capture": record.get("capture")}
    return {k: v for k, v in end.items() if v is not None or k == "error"}


def upgrade(path: Path, manifest: dict[str, Any], spec_text: str, events: list[Event],
            records: list[dict[str, Any]]) -> tuple[dict[str, Any], list[Event]]:
    """(manifest, events) of a format-1 directory as format 2 has them."""
    exp, trials = _planned(path, manifest, spec_text)
    by_trial: dict[str, list[Event]] = {}
    for e in events:
        by_trial.setdefault(e["trial"], []).append(e)
    recorded = {r.get("trial"): r for r in records}
    out: list[Event] = []
    for t in trials:
        mine = by_trial.pop(t.id, [])
        if not mine:  # never started: nothing to add
            continue
        agent = [e for e in mine if e.get("src") == AGENT]
        stats = _restart_stats(agent)
        wrote_own = any(e.get("src") == HARNESS for e in mine)
        added = [] if wrote_own else [x for x in (_fault(manifest, t, recorded.get(t.id)),
                                                   _end(path, t, recorded.get(t.id))) if x]
        out += [{"trial": t.id, **_filled(e)} for e in [*mine, *([stats] if stats else []), *added]]
    for rest in by_trial.values():  # events of no planned trial: kept, as they were
        out += rest
    upgraded = {**manifest, "settings": exp.to_json(), "trials": [t.to_json() for t in trials]}
    return upgraded, out
