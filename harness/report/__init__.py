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
from harness.spec import Experiment


@dataclass(frozen=True)
class Report:
    exp: Experiment
    results: list[TrialResult]
    html: Path
    warnings: list[str]


def regenerate(data: store.RunData) -> Report:
    """Analyse a run directory's raw data again and write every derived file from it."""
    exp, results = analyze.run(data)
    files = pages.build(data.path, exp, data.manifest, results, data.trial_events())
    return Report(exp, results, pages.write(store.RunDir(data.path), files, results), data.warnings)
