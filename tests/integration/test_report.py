"""`harness report` on real run directories: the analysis again from raw data, and the HTML
report as a reader opens it, in headless Chromium with the network blocked."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from .conftest import ARTIFACTS, finish, harness


def copy_of(runs, name, tmp_path) -> Path:
    _, doc, _ = runs[name]
    dst = tmp_path / name
    shutil.copytree(doc["run_dir"], dst)
    return dst


def records(run_dir: Path) -> list[dict]:
    lines = (run_dir / "trials.jsonl").read_text().splitlines()[1:]
    return sorted((json.loads(line) for line in lines), key=lambda r: r["index"])


def test_run_ends_with_the_report_and_prints_its_path(runs):
    _, doc, err = runs["paths"]
    report = Path(doc["run_dir"]) / "report.html"
    assert f"report: {report}" in err
    assert report.is_file() and (report.parent / "report.md").is_file()
    assert len(list((report.parent / "figures").glob("t*-sequence.svg"))) == len(doc["trials"])


def test_report_derives_every_figure_again_from_the_raw_data(runs, tmp_path):
    run_dir = copy_of(runs, "paths", tmp_path)
    recorded = records(run_dir)
    rc, again, err = finish(harness("report", str(run_dir), "--json"), timeout=120)
    assert rc == 0, err
    logs = lambda rs: [{k: v for k, v in r.items() if k != "logs"} for r in rs]
    assert logs(again["trials"]) == logs(recorded)
    # with trials.jsonl gone, the same figures come from events.jsonl and the pcaps alone
    (run_dir / "trials.jsonl").unlink()
    (run_dir / "report.html").unlink()
    rc, without, err = finish(harness("report", str(run_dir), "--json"), timeout=120)
    assert rc == 0, err
    assert logs(without["trials"]) == logs(recorded)
    assert (run_dir / "report.html").is_file() and records(run_dir) == recorded


def open_report(browser, path: Path):
    """The page, and what it tried: requests other than the file itself, console errors, dialogs."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    left: list[str] = []

    def route(r):
        if r.request.url == path.as_uri():
            r.continue_()
        else:
            left.append(r.request.url)
            r.abort()
    context.route("**/*", route)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
    page.goto(path.as_uri(), wait_until="load")
    return page, left, problems


def test_the_report_in_a_browser_renders_every_figure_and_fetches_nothing(runs, browser):
    _, doc, _ = runs["paths"]
    report = Path(doc["run_dir"]) / "report.html"
    page, left, problems = open_report(browser, report)
    sizes = page.evaluate("[...document.querySelectorAll('svg')].map(s => s.getBoundingClientRect())"
                          ".map(r => [r.width, r.height])")
    assert len(sizes) >= 1 + len({t["case"] for t in doc["trials"]})
    assert all(w > 100 and h > 100 for w, h in sizes), sizes
    # At 1280 px the page does not scroll sideways: the case table shows only what varies.
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    assert left == [] and problems == []
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)


@pytest.mark.parametrize("field", ["description", "case name"])
def test_a_script_in_the_experiment_file_is_shown_as_text_and_runs_nothing(runs, browser, tmp_path, field):
    run_dir = copy_of(runs, "seeded_again", tmp_path)
    manifest = run_dir / "manifest.json"  # what a report reads of the experiment (format 2)
    doc = json.loads(manifest.read_text())
    attack = "<script>alert(1)</script>"
    if field == "description":
        doc["settings"]["description"] = f"The seeded case {attack}"
    else:
        for t in doc["trials"]:
            t["case"] = attack
    manifest.write_text(json.dumps(doc))
    rc, _, err = finish(harness("report", str(run_dir)), timeout=120)
    assert rc == 0, err
    page, left, problems = open_report(browser, run_dir / "report.html")
    assert attack in page.inner_text("body")
    assert page.evaluate("document.querySelectorAll('script').length") == 0
    assert left == [] and problems == []
