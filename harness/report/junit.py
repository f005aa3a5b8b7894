"""JUnit XML, which GitHub Actions, GitLab and Jenkins show as test results.

A run: one test case per trial (an error when it did not measure) and one per
expectation check and case (a failure when a trial broke it). A comparison:
one per case and figure (a failure when it regressed or changed, skipped when
inconclusive), and one for the environment when it must be the same.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from harness.compare import CHANGED, INCONCLUSIVE, REGRESSED, Comparison
from harness.expect import FAIL, NO_DATA, by_case
from harness.record import TrialResult, labeller
from harness.report.tables import values_text


def _suite(root: ET.Element, name: str) -> ET.Element:
    return ET.SubElement(root, "testsuite", name=name)


def _case(suite: ET.Element, classname: str, name: str, seconds: float | None = None) -> ET.Element:
    return ET.SubElement(suite, "testcase", classname=classname, name=name, time=f"{seconds or 0:.3f}")


def _count(root: ET.Element) -> str:
    """Fill in the totals every reader expects, per suite and for the whole document."""
    totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    for suite in root:
        cases = suite.findall("testcase")
        counts = {"tests": len(cases),
                  "failures": sum(1 for c in cases if c.find("failure") is not None),
                  "errors": sum(1 for c in cases if c.find("error") is not None),
                  "skipped": sum(1 for c in cases if c.find("skipped") is not None)}
        suite.attrib.update({k: str(v) for k, v in counts.items()})
        suite.set("time", f"{sum(float(c.get('time', 0)) for c in cases):.3f}")
        for k, v in counts.items():
            totals[k] += v
    root.attrib.update({k: str(v) for k, v in totals.items()})
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def run(experiment: str, results: list[TrialResult]) -> str:
    root = ET.Element("testsuites", name=f"harness run {experiment}")
    trials = _suite(root, f"{experiment}: trials")
    label = labeller(results)
    for r in sorted(results, key=lambda r: r.index):
        tc = _case(trials, f"{experiment}.{label(r)}", f"{r.trial} measured", r.wall_s)
        if r.failed:
            ET.SubElement(tc, "error", message=r.why, type=r.status).text = r.logs
        elif not r.ok:
            ET.SubElement(tc, "skipped", message=f"{r.status}: {r.why}")
    checks = _suite(root, f"{experiment}: expectations")
    for o in by_case(results):
        tc = _case(checks, f"{experiment}.{o.case}", f"expect[{o.expect}] {o.check}")
        if o.verdict == FAIL:
            ET.SubElement(tc, "failure", message=f"{o.check}: {values_text(o.trials)}", type="expectation failed").text = \
                "\n".join(f"{t}: {v} {value if value is not None else '-'} {detail}" for t, v, value, detail in o.trials)
        elif o.verdict == NO_DATA:
            ET.SubElement(tc, "skipped", message="no data: no trial of this case measured")
    return _count(root)


def compare(c: Comparison, base: str, new: str, require_same_env: bool) -> str:
    root = ET.Element("testsuites", name=f"harness compare {base} {new}")
    if require_same_env:
        env = _suite(root, "environment")
        tc = _case(env, "environment", "same environment as the baseline")
        if c.env:
            ET.SubElement(tc, "failure", message=f"{len(c.env)} differences", type="environment differs").text = \
                "\n".join(f"{what}: {a} -> {b}" for what, a, b in c.env)
    suite = _suite(root, "figures")
    for row in c.rows:
        tc = _case(suite, row.case, row.figure)
        if row.base_named is not None:
            text = f"baseline {row.base_named}, new {row.new_named}; {row.test}"
        else:
            text = (f"baseline {row.base.median if row.base else '-'}, new {row.new.median if row.new else '-'}, "
                    f"difference {row.diff if row.diff is not None else '-'}, threshold {row.threshold:g} "
                    f"({row.why_threshold}); {row.test}")
        if row.verdict in (REGRESSED, CHANGED):
            ET.SubElement(tc, "failure", message=f"{row.figure} {row.verdict}: {text}", type=row.verdict).text = text
        elif row.verdict == INCONCLUSIVE:
            ET.SubElement(tc, "skipped", message=f"inconclusive: {text}")
    return _count(root)
