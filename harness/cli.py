"""Subcommands. The only place errors become exit codes."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any, NoReturn

from tabulate import tabulate

from harness import __version__, plan, spec, store
from harness.errors import Exit, HarnessError, UsageError
from harness.record import TrialResult


def default_jobs(n_trials: int) -> int:
    # Trials mostly wait on kernel timers; ~10 per core keeps the agents' 10 ms
    # polls on time. Docker's default address pools allow about 30 networks.
    return max(1, min(n_trials, 10 * (os.cpu_count() or 1), 24))


def setup_slots() -> int:
    # Container starts are CPU-bound (dockerd, containerd, runc): on 2 cores two
    # trial setups at once took twice as long each (3.3 s against 1.8 s), so
    # more at once only delays every trial and the agents' polls.
    return max(1, (os.cpu_count() or 1) // 2)


def close_phase(text: str) -> tuple[float, float]:
    """--close-phase PERIOD,PHASE (seconds on the host's CLOCK_MONOTONIC)."""
    try:
        period, phase = (float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: want PERIOD,PHASE in seconds, e.g. 20.48,3.5") from None
    if not (period > 0 and 0 <= phase < period):
        raise argparse.ArgumentTypeError(f"{text!r}: want PERIOD > 0 and 0 <= PHASE < PERIOD")
    return period, phase


def _git() -> dict[str, Any]:
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"],
                                capture_output=True, text=True, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "-C", str(root), "status", "--porcelain"],
                                    capture_output=True, text=True, check=True).stdout.strip())
        return {"commit": commit, "dirty": dirty}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}


def print_plan(trials: list[plan.Trial], jobs: int) -> None:
    rows = [[t.id, t.case, t.repeat, f"{t.expected_s:.0f}"] for t in plan.schedule(trials)]
    print(tabulate(rows, ["trial", "case", "repeat", "expected s"], tablefmt="simple"))
    print(f"\n{len(trials)} trials, {jobs} at a time: about "
          f"{plan.estimate_wall_seconds(trials, jobs) / 60:.1f} min (estimate from Linux's "
          "defaults: 60 s TIME_WAIT, 200 ms first RTO)")


def cmd_plan(args: argparse.Namespace) -> int:
    trials = plan.trials(spec.load(args.spec))
    print_plan(trials, args.jobs or default_jobs(len(trials)))
    return Exit.OK


def cmd_run(args: argparse.Namespace) -> int:
    from harness import execute
    from harness.faults.choose import choose
    from harness.lab import engine, facts, images
    from harness.progress import Progress

    exp = spec.load(args.spec)
    trials = plan.trials(exp)
    jobs = args.jobs or default_jobs(len(trials))
    check_outputs(args)
    if args.dry_run:
        print_plan(trials, jobs)
        return Exit.OK

    progress = Progress(quiet=args.quiet)
    client = engine.connect()
    imgs = images.ensure(client, progress.note, args.base_image)
    run_id = uuid.uuid4().hex[:8]
    kernel = facts.probe(client, imgs, run_id)
    losses = [t.params.final_ack_loss for t in trials if t.params.final_ack_loss.kind != "none"]
    backend, why = (choose(exp.fault_backend, losses, kernel["capabilities"], exp.source)
                    if losses else (None, "no loss asked for"))
    progress.note(f"fault backend: {backend.name if backend else 'none'} ({why})")

    manifest = {
        "experiment": exp.name, "run_id": run_id, "harness_version": __version__,
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join(sys.argv), "git": _git(), **facts.engine(client), **kernel,
        "images": {"base": imgs.base, "base_origin": imgs.base_origin, "tags": imgs.tags, "ids": imgs.ids},
        "fault_backend": backend.name if backend else None, "fault_backend_why": why,
        "jobs": jobs, "close_phase": args.close_phase,
        "trials": [{"trial": t.id, "case": t.case, "repeat": t.repeat} for t in trials],
    }
    run = store.RunDir.create(Path(args.results), exp.name, exp.text, manifest)
    progress.note(f"run {run_id}: {len(trials)} trials, {jobs} at a time -> {run.path}")
    ctx = execute.RunContext(client, imgs, exp, run_id, run, progress, backend, threading.Event(),
                             threading.Semaphore(setup_slots()), args.close_phase)
    progress.begin(len(trials))
    try:
        execute.run_all(ctx, trials, jobs)
    except KeyboardInterrupt:
        progress.end()
        print(f"interrupted; what was measured so far is in {run.path}", file=sys.stderr)
        return Exit.INTERRUPTED
    progress.end()
    progress.note("writing the report")
    return _report(args, run.path)


def _report(args: argparse.Namespace, path: Path) -> int:
    """The report stage, for `run` and `report` alike: the run directory's raw data analysed again."""
    from harness import report  # matplotlib is slow to import: only where a report is made

    from harness.report import junit, summary

    made = report.regenerate(path)
    for warning in made.warnings:
        print(f"harness: warning: {warning}", file=sys.stderr)
    emit(args, made.exp.name, path, made.results)
    print(f"report: {made.html}", file=sys.stderr if args.json else sys.stdout)
    write_outputs(args, junit=lambda: junit.run(made.exp.name, made.results),
                  markdown=lambda: summary.run_markdown(made.exp.name, made.results, str(made.html)))
    return run_exit(made.results)


def check_outputs(args: argparse.Namespace) -> None:
    """The files CI asked for can be written: say so now, not after the run."""
    for flag, path in (("--junit-xml", args.junit_xml), ("--markdown", args.markdown)):
        if path is not None and not os.access(Path(path).parent.resolve(), os.W_OK):
            raise UsageError(f"{flag} {path}: cannot write there (no such folder, or no permission)")


def write_outputs(args: argparse.Namespace, junit: Any, markdown: Any) -> None:
    for path, make in ((args.junit_xml, junit), (args.markdown, markdown)):
        if path is not None:
            try:
                Path(path).write_text(make())
            except OSError as exc:
                raise UsageError(f"{path}: cannot be written: {exc.strerror}") from None


def run_exit(results: list[TrialResult]) -> Exit:
    """A trial that did not measure outweighs a failed expectation: its data are missing."""
    if not all(r.ok for r in results):
        return Exit.TRIAL_FAILED
    return Exit.FAILED_CHECK if any(r.failed_expectations for r in results) else Exit.OK


def emit(args: argparse.Namespace, name: str, run_dir: Path, results: list[TrialResult]) -> None:
    if args.json:
        trials = [{k: v for k, v in r.to_json().items() if k != "logs"} for r in results]
        json.dump({"experiment": name, "run_dir": str(run_dir), "trials": trials}, sys.stdout, indent=2)
        print()
    else:
        from harness.report import tables

        print(tables.terminal(results))
        print(f"\nrun directory: {run_dir}")


def cmd_report(args: argparse.Namespace) -> int:
    check_outputs(args)
    return _report(args, Path(args.run_dir))


def cmd_compare(args: argparse.Namespace) -> int:
    from harness import analyze, compare
    from harness.report import junit, summary

    check_outputs(args)
    thresholds = {t.figure: t for t in map(compare.Threshold.parse, args.threshold)}
    sides = []
    for name in (args.baseline, args.new):
        data = store.load(Path(name))
        for warning in data.warnings:
            print(f"harness: warning: {warning}", file=sys.stderr)
        exp, results = analyze.run(data)
        sides.append((exp, compare.Side(name, data.manifest, results)))
    (base_exp, base), (_, new) = sides
    c = compare.compare(base, new, thresholds, base_exp.restart_every_ms / 1000)
    if args.json:
        doc = {"baseline": base.name, "new": new.name, "environment_differences": [
            {"what": w, "baseline": a, "new": b} for w, a, b in c.env],
            "rows": [{**row.__dict__, "base": row.base and row.base.__dict__, "new": row.new and row.new.__dict__}
                     for row in c.rows], "only_in_baseline": c.only_base, "only_in_new": c.only_new}
        json.dump(doc, sys.stdout, indent=2)
        print()
    else:
        print(summary.compare_text(c))
    write_outputs(args, junit=lambda: junit.compare(c, base.name, new.name, args.require_same_env),
                  markdown=lambda: summary.compare_markdown(c, base.name, new.name))
    if c.regressed or (args.require_same_env and c.env):
        return Exit.FAILED_CHECK
    return Exit.OK


def cmd_images(args: argparse.Namespace) -> int:
    from harness.lab import engine, images

    s = images.ensure(engine.connect(), lambda line: print(line, file=sys.stderr), args.base_image, args.force)
    for target, tag in s.tags.items():
        print(f"{target}: {tag} ({s.ids[target][:19]})")
    print(f"base: {s.base} ({s.base_origin})")
    return Exit.OK


def cmd_clean(args: argparse.Namespace) -> int:
    from harness.lab import engine

    containers, networks = engine.remove_labelled(engine.connect())
    print(f"removed {containers} container(s) and {networks} network(s) labelled {engine.LABEL}")
    return Exit.OK


class _Parser(argparse.ArgumentParser):
    """Bad arguments in one line, like every other bad input (argparse prints its usage first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(Exit.BAD_INPUT, f"{self.prog}: {message} (see {self.prog} --help)\n")


def ci_outputs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--junit-xml", metavar="FILE", help="also write JUnit XML (CI systems show it as test results)")
    p.add_argument("--markdown", metavar="FILE", help="also write a short Markdown summary (e.g. $GITHUB_STEP_SUMMARY)")


def parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="harness", description="TCP teardown experiments on real containers.")
    ap.add_argument("--version", action="version", version=f"harness {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run an experiment file and write a run directory")
    run.add_argument("spec", help="experiment file (YAML), e.g. experiments/restart.yaml")
    run.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    run.add_argument("--jobs", type=int, default=0, help="trials at once (default: by trial count and cores)")
    run.add_argument("--dry-run", action="store_true", help="print the trials and an estimate; run nothing")
    run.add_argument("--results", default="results", help="where run directories go (default: results)")
    run.add_argument("--base-image", help="base image for the lab images (default: debian:bookworm-slim, "
                                          "or a local one made with mmdebstrap when no registry answers)")
    run.add_argument("--quiet", action="store_true", help="no progress on stderr")
    run.add_argument("--close-phase", type=close_phase, metavar="PERIOD,PHASE",
                     help="start each close at the next instant where the host's CLOCK_MONOTONIC "
                          "mod PERIOD is PHASE (seconds): the kernel's timer wheel then rounds every "
                          "TIME_WAIT alike (README, 'The timer wheel')")
    ci_outputs(run)
    run.set_defaults(func=cmd_run)

    p = sub.add_parser("plan", help="same as run --dry-run")
    p.add_argument("spec")
    p.add_argument("--jobs", type=int, default=0)
    p.set_defaults(func=cmd_plan)

    rep = sub.add_parser("report", help="analyse a run directory again and write its tables and report (no Docker)")
    rep.add_argument("run_dir")
    rep.add_argument("--json", action="store_true")
    ci_outputs(rep)
    rep.set_defaults(func=cmd_report)

    cmp = sub.add_parser("compare", help="compare a run with a baseline run, case by case (no Docker)")
    cmp.add_argument("baseline", help="the baseline's run directory")
    cmp.add_argument("new", help="the new run's directory")
    cmp.add_argument("--threshold", action="append", default=[], metavar="FIGURE=VALUE[%]",
                     help="call a difference up to VALUE (seconds or a count, or a percentage of the "
                          "baseline's median) the same; never finer than the instrument (repeatable)")
    cmp.add_argument("--require-same-env", action="store_true",
                     help="fail (exit 1) when kernel, sysctls, engine, images, harness or fault backend differ")
    cmp.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    ci_outputs(cmp)
    cmp.set_defaults(func=cmd_compare)

    img = sub.add_parser("images", help="build the lab images (the harness also does it when needed)")
    img.add_argument("--force", action="store_true", help="rebuild even if present")
    img.add_argument("--base-image")
    img.set_defaults(func=cmd_images)

    cl = sub.add_parser("clean", help="remove every container and network the harness left")
    cl.set_defaults(func=cmd_clean)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "jobs", 0) < 0:
        print("harness: --jobs: must be 1 or more", file=sys.stderr)
        return Exit.BAD_INPUT
    try:
        return int(args.func(args))
    except HarnessError as exc:
        print(f"harness: {exc}", file=sys.stderr)
        if getattr(exc, "logs", ""):
            print(exc.logs, file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("harness: interrupted", file=sys.stderr)
        return Exit.INTERRUPTED
