"""Short summaries for CI pages: Markdown for a job summary ($GITHUB_STEP_SUMMARY), and the
comparison's table for the terminal."""

from __future__ import annotations

from tabulate import tabulate

from harness.analyze import Summary
from harness.compare import SAME, Comparison, Row
from harness.record import TrialResult
from harness.report import headline, tables

COMPARE_HEADERS = ["case", "figure", "baseline", "new", "difference", "same within", "verdict"]


def _median(s: Summary | None) -> str:
    return "-" if s is None else f"{s.median:.3f}" + (f" (n={s.n})" if s.n > 1 else "")


def _row(r: Row) -> list[str]:
    verdict = f"{r.verdict.upper()} ({r.test})" if r.verdict != SAME else "same"
    if r.base_named is not None:  # a label: its values, no size
        return [r.case, r.figure, r.base_named, r.new_named or "-", "-", "-", verdict]
    diff = "-" if r.diff is None else f"{r.diff:+.3f}"
    return [r.case, r.figure, _median(r.base), _median(r.new), diff, f"{r.threshold:.3f} ({r.why_threshold})", verdict]


def compare_text(c: Comparison, fmt: str = "simple", all_rows: bool = True, bullet: str = "  ") -> str:
    parts = []
    if c.env:
        parts.append("Environments differ:\n" + "\n".join(f"{bullet}{what}: {a} -> {b}" for what, a, b in c.env))
    else:
        parts.append("Same environment (kernel, sysctls, engine, images, harness, fault backend).")
    rows = [_row(r) for r in c.rows if all_rows or r.verdict != SAME]
    if rows:
        parts.append(tabulate(rows, COMPARE_HEADERS, tablefmt=fmt, disable_numparse=True))
    counts = {v: sum(1 for r in c.rows if r.verdict == v) for v in dict.fromkeys(r.verdict for r in c.rows)}
    parts.append(", ".join(f"{n} {v}" for v, n in counts.items()) or "nothing to compare")
    for label, cases in (("only in the baseline", c.only_base), ("only in the new run", c.only_new)):
        if cases:
            parts.append(f"Cases {label}: " + "; ".join(cases))
    if c.not_applicable:
        parts.append("Not applicable, so not compared:\n" + "\n".join(f"{bullet}{case} ({side}): {why}"
                                                                     for case, side, why in c.not_applicable))
    return "\n\n".join(parts)


def compare_markdown(c: Comparison, base: str, new: str) -> str:
    verdict = "regressed" if c.regressed else "no regression"  # a changed label counts
    return (f"## harness compare: {verdict}\n\nBaseline `{base}`, new `{new}`.\n\n"
            + compare_text(c, fmt="github", all_rows=False, bullet="- ") + "\n")


def run_markdown(experiment: str, results: list[TrialResult], report: str) -> str:
    headers, rows = tables.case_rows(results)
    parts = [f"## harness run {experiment}", "\n\n".join(headline.sentences(results)),
             tabulate(rows, headers, tablefmt="github", disable_numparse=True)]
    failing = [row for row in tables.expectation_rows(results) if row[0] != "PASS"]
    if failing:
        parts.append("### Expectations not met\n\n" + tabulate(failing, tables.EXPECT_HEADERS, tablefmt="github",
                                                                disable_numparse=True))
    failed = tables.failures(results)
    if failed:
        parts.append("### Trials that did not measure\n\n" + tabulate(failed, ["trial", "case", "why"],
                                                                       tablefmt="github"))
    skipped = tables.not_applicable(results)
    if skipped:
        parts.append("### Not applicable (not run)\n\n" + tabulate(skipped, ["case", "why"], tablefmt="github"))
    parts.append(f"Report: `{report}`")
    return "\n\n".join(parts) + "\n"
