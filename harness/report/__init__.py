"""Run directory -> tables, figures and the report; never touches Docker.

tables.py (the per-case and per-trial tables), diagrams.py (what each figure
shows, as data), plots.py (the figures, drawn), headline.py (the findings in
words), pages.py (report.html, report.md and the files beside them).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness import analyze, store
from harness.record import TrialResult
from harness.report import pages


@dataclass(frozen=True)
class Report:
    results: list[TrialResult]
    html: Path
    warnings: list[str]


def regenerate(data: store.RunData, records: list[TrialResult] | None = None) -> Report:
    """Write every derived file of a run directory from its trials' records; without them, the
    records are derived again from the raw data first (and trials.jsonl holds them from then on)."""
    run = store.RunDir(data.path, data.version)
    if records is None:
        records = analyze.run(data)
        run.rewrite_trials(records)
    files = pages.build(data.path, data.exp, data.manifest, records, data.trial_events())
    return Report(records, pages.write(run, files), data.warnings)
