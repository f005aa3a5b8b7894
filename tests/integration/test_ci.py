"""CI benchmark jobs on real containers: compare, expectations, exit codes, JUnit, the recipe."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from .conftest import EXPERIMENTS, ROOT, finish, harness

RECIPE = ROOT / "ci" / "benchmark.sh"


@pytest.fixture(scope="module")
def small(images, tmp_path_factory):
    """ci_small twice and ci_small_lossy once, all at once."""
    results = tmp_path_factory.mktemp("ci")
    procs = {name: harness("run", str(EXPERIMENTS / f"{spec}.yaml"), "--json", "--quiet", "--jobs", "3",
                           "--results", str(results / name))
             for name, spec in (("a", "ci_small"), ("b", "ci_small"), ("lossy", "ci_small_lossy"))}
    out = {}
    for name, proc in procs.items():
        rc, doc, err = finish(proc, timeout=300)
        assert rc == 0 and doc, err[-3000:]
        out[name] = doc["run_dir"]
    return out


def test_two_honest_runs_compare_as_same(small):
    rc, doc, err = finish(harness("compare", small["a"], small["b"], "--json"), timeout=60)
    assert rc == 0, err
    verdicts = {r["figure"]: r["verdict"] for r in doc["rows"]}
    assert "rebind_plain_s" in verdicts and "regressed" not in verdicts.values()
    assert doc["environment_differences"] == []


def test_a_different_loss_pattern_regresses_and_names_the_figure(small, tmp_path):
    xml = tmp_path / "compare.xml"
    md = tmp_path / "summary.md"
    proc = subprocess.run([sys.executable, "-m", "harness", "compare", small["a"], small["lossy"],
                           "--junit-xml", str(xml), "--markdown", str(md)], capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr
    # The server's FIN went unanswered 3 times: it left LAST_ACK after its retries, not at once.
    assert "rebind_plain_s" in proc.stdout and "REGRESSED" in proc.stdout
    failures = ET.parse(xml).getroot().findall(".//testcase/failure/..")
    assert {(c.get("classname"), c.get("name")) for c in failures} >= {("client first", "rebind_plain_s")}
    assert "regressed" in md.read_text()


def test_a_violated_expectation_fails_the_run_and_the_junit_says_which(images, tmp_path):
    xml = tmp_path / "run.xml"
    rc, doc, err = finish(harness("run", str(EXPERIMENTS / "ci_violated.yaml"), "--json", "--quiet",
                                  "--results", str(tmp_path), "--junit-xml", str(xml)), timeout=300)
    assert rc == 1, err
    (trial,) = doc["trials"]
    verdicts = {o["check"]: o["verdict"] for o in trial["expectations"]}
    assert verdicts == {"time_wait_s >= 50": "fail", "rebind_plain_s <= 0.5": "pass"}
    root = ET.parse(xml).getroot()
    (failed,) = root.findall(".//testcase/failure/..")
    assert failed.get("name") == "expect[0] time_wait_s >= 50"
    assert "time_wait_s never happened" in failed.find("failure").get("message")
    assert root.get("tests") == "3" and root.get("failures") == "1"


@pytest.mark.parametrize("spec, code", [("ci_small", 0), ("ci_small_lossy", 1)])
def test_the_ci_recipe_end_to_end(small, tmp_path, spec, code):
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(RECIPE), str(EXPERIMENTS / f"{spec}.yaml"), str(out), small["a"]],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HARNESS": f"{sys.executable} -m harness"})
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert (out / "run" / "report.html").is_file() and (out / "run.xml").is_file()
    summary = (out / "summary.md").read_text()
    assert summary.startswith("## harness run ci_small")
    assert ("## harness compare: regressed" in summary) == (code == 1)
    compare = ET.parse(out / "compare.xml").getroot()
    assert int(compare.get("failures")) == (0 if code == 0 else len(compare.findall(".//failure")))
    json.loads((out / "run" / "manifest.json").read_text())  # the next baseline is a whole run directory
