"""A run's results -> every file `harness report` writes into the run directory.

report.html (self-contained: styles and figures inline, nothing fetched),
report.md with its figures in figures/, the tables (results.md, results.csv,
trials.csv) and trials.jsonl. Everything is made in memory first and written
only when all of it could be made. User text reaches the pages through
templates that escape it.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup
from tabulate import tabulate

from harness import __version__
from harness.plan import cases as plan_cases
from harness.record import NOT_APPLICABLE, TrialResult, by_case
from harness.report import diagrams, headline, plots, tables
from harness.spec import Experiment
from harness.store import RunDir

Event = dict[str, Any]
FIGURES = "figures"
TRIALS_PER_WORKER = 12  # below this, starting a process costs more than it saves
# Each case's trials drawn one by one, its representative and its failures first: a study's repeats
# look alike, and a thousand trials' figures would take matplotlib minutes.
FIGURES_PER_CASE = 10


def _md(text: Any) -> str:
    """Text for a Markdown page or table cell: no HTML, no cell breaks, on one line."""
    s = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")
    return " ".join(s.split())


_ENV = jinja2.Environment(loader=jinja2.PackageLoader("harness.report", "templates"),
                          autoescape=jinja2.select_autoescape(["html.j2"]), trim_blocks=True,
                          lstrip_blocks=True, undefined=jinja2.StrictUndefined)
_ENV.filters["md"] = _md


def _inline(svg: str) -> Markup:
    """matplotlib's SVG as an element of the page (it escapes the text it draws)."""
    return Markup(svg[svg.index("<svg"):])


def _trial_figures(job: tuple[TrialResult, list[Event]]) -> tuple[str, str, str | None]:
    r, events = job
    title = f"{r.trial}: {r.case}" + (f" (Linux {r.kernel})" if r.kernel else "")
    seq = plots.sequence_svg(diagrams.sequence(r, events), title, f"{r.trial}-s")
    tl = diagrams.socket_timeline(r, events)
    return r.trial, seq, plots.timeline_svg(tl, title, f"{r.trial}-t") if tl else None


def _drawn(results: list[TrialResult]) -> list[TrialResult]:
    """The trials whose figures the report draws: up to FIGURES_PER_CASE of each case."""
    out = []
    for rs in by_case(results).values():
        rep = diagrams.representative(rs)
        out += sorted(rs, key=lambda r: (r is not rep, not r.failed, r.index))[:FIGURES_PER_CASE]
    return out


def _render(results: list[TrialResult], events: dict[str, list[Event]]) -> dict[str, tuple[str, str | None]]:
    """The sequence diagram and socket timeline of each trial drawn; on several processes when there
    are many."""
    jobs = [(r, events.get(r.trial, [])) for r in _drawn(results)
            if r.status != NOT_APPLICABLE and (r.timeline or events.get(r.trial))]
    workers = min(os.cpu_count() or 1, len(jobs) // TRIALS_PER_WORKER)
    if workers <= 1:
        done: Iterable[tuple[str, str, str | None]] = map(_trial_figures, jobs)
    else:
        # spawn, not fork: `harness run` has threads, and a forked child could inherit a held lock.
        pool = concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        with pool:
            done = list(pool.map(_trial_figures, jobs, chunksize=max(1, len(jobs) // (4 * workers))))
    return {trial: (seq, tl) for trial, seq, tl in done}


def _value(v: Any) -> str:
    if v is None or v == {}:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, dict):
        return ", ".join(f"{k}={x}" for k, x in v.items())
    return str(v)


def _provenance(manifest: dict[str, Any], results: list[TrialResult]) -> list[tuple[str, str]]:
    git = manifest.get("git") or {}
    images = manifest.get("images") or {}
    points = sorted({r.injection_point for r in results if r.injection_point})
    commit = git.get("commit") or "unknown"
    rows = [
        ("kernel", f"{manifest.get('kernel')} ({manifest.get('os')}, {manifest.get('cpus')} CPUs)"),
        ("engine", f"Docker {manifest.get('engine_version')} (API {manifest.get('api_version')})"),
        ("harness", f"{manifest.get('harness_version')}, commit {commit}" + (" (with local changes)"
                                                                          if git.get("dirty") else "")),
        ("command line", manifest.get("command", "")),
        ("fault backend", f"{manifest.get('fault_backend') or 'none'} ({manifest.get('fault_backend_why', '')})"),
        ("injection point", "; ".join(points) or "none (no loss asked for)"),
        ("base image", f"{images.get('base')} ({images.get('base_origin')})"),
        *((f"image {t}", i) for t, i in sorted((images.get("ids") or {}).items())),
        ("trials at once", str(manifest.get("jobs"))),
        ("close phase", "any instant" if not manifest.get("close_phase")
         else "every close at CLOCK_MONOTONIC mod {} = {} s".format(*manifest["close_phase"])),
        ("run id, host", f"{manifest.get('run_id')} on {manifest.get('harness_host')}"),
    ]
    return [(k, str(v)) for k, v in rows]


def split_params(cases: list[dict[str, Any]]) -> tuple[list[str], list[tuple[str, str]]]:
    """The parameters that differ between cases (the case table's columns), and the rest with the
    one value every case has (one line): a few differences stand out from many defaults."""
    names = list(cases[0]["params"]) if cases else []
    varying = [k for k in names if len({c["params"][k] for c in cases}) > 1]
    return varying, [(k, cases[0]["params"][k]) for k in names if k not in varying]


def build(run_dir: Path, exp: Experiment, manifest: dict[str, Any], results: list[TrialResult],
          events: dict[str, list[Event]]) -> dict[str, str]:
    """Every file of the report, by its path in the run directory."""
    rendered = _render(results, events)
    files = {f"{FIGURES}/{t}-sequence.svg": seq for t, (seq, _) in rendered.items()}
    files.update({f"{FIGURES}/{t}-timeline.svg": tl for t, (_, tl) in rendered.items() if tl})
    points = diagrams.case_points(results)
    files[f"{FIGURES}/cases.svg"] = plots.cases_svg(points, "cases")

    groups = by_case(results)
    per_case = []
    for case, rs in groups.items():
        rep = diagrams.representative(rs)
        if rep.trial in rendered:
            seq, tl = rendered[rep.trial]
            per_case.append({"case": case, "trial": rep.trial, "n": len(rs), "sequence_svg": _inline(seq),
                             "timeline_svg": _inline(tl) if tl else None,
                             "others": [r.trial for r in rs if r is not rep and r.trial in rendered]})
    counts = {case: len(rs) for case, rs in groups.items()}
    cases = [{"name": c.name, "params": {k: _value(v) for k, v in c.params.to_json().items()},
              "trials": counts.get(c.name, 0)} for c in plan_cases(exp)]
    varying, shared = split_params(cases)
    headers, rows = tables.case_rows(results)
    context = {
        "exp": exp, "manifest": manifest, "results": results, "run_dir": str(run_dir),
        "headline": headline.sentences(results), "param_names": varying, "shared_params": shared,
        "cases": cases, "table": {"headers": headers, "rows": rows}, "table_note": tables.NOTE,
        "table_md": tabulate(rows, headers, tablefmt="github", disable_numparse=True).replace("<", "&lt;"),
        "cases_svg": _inline(files[f"{FIGURES}/cases.svg"]),
        "boxes": any(len(v) >= 5 for p in points for v in p.values.values()),
        "per_case": per_case, "failed": [r for r in results if r.failed],
        "not_applicable": tables.not_applicable(results),
        "checks": tables.expectation_rows(results), "check_headers": tables.EXPECT_HEADERS,
        "restart_failures": tables.restart_failure_rows(results), "restart_headers": tables.RESTART_HEADERS,
        "provenance": _provenance(manifest, results),
        "engines": tables.engine_rows(results), "engine_headers": tables.ENGINE_HEADERS,
        "sysctls": sorted((manifest.get("sysctls") or {}).items()), "version": __version__,
    }
    files["report.html"] = _ENV.get_template("report.html.j2").render(context)
    files["report.md"] = re.sub(r"\n{3,}", "\n\n", _ENV.get_template("report.md.j2").render(context))
    files["results.md"] = tables.markdown(exp.name, exp.description, results)
    files["results.csv"] = tables.stats_csv(results)
    files["trials.csv"] = tables.trials_csv(results)
    return files


def write(run: RunDir, files: dict[str, str]) -> Path:
    """Write what build() made; returns the HTML report's path."""
    (run.path / FIGURES).mkdir(exist_ok=True)
    for name, text in files.items():
        run.write_text(name, text)
    return run.path / "report.html"
