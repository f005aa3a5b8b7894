"""Subcommands. The only place errors become exit codes."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import shlex
import subprocess
import sys
import tempfile
import threading
import traceback
import unicodedata
import uuid
from pathlib import Path
from typing import Any, NoReturn

from tabulate import tabulate

from harness import __version__, plan, spec, stopping, store
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


MAX_JOBS = 256
PERIOD_S = (0.01, 3600.0)  # --close-phase: the agent sleeps up to one period before the close


def jobs(text: str) -> int:
    """--jobs N: 1 to MAX_JOBS trials at once."""
    if not text.isdigit() or not 1 <= int(text) <= MAX_JOBS:
        raise argparse.ArgumentTypeError(f"{printable(text[:30])!r}: want a whole number from 1 to {MAX_JOBS}")
    return int(text)


def close_phase(text: str) -> tuple[float, float]:
    """--close-phase PERIOD,PHASE (seconds on the host's CLOCK_MONOTONIC)."""
    shown = printable(text[:40])
    try:
        period, phase = (float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{shown!r}: want PERIOD,PHASE in seconds, e.g. 20.48,3.5") from None
    if not (PERIOD_S[0] <= period <= PERIOD_S[1] and 0 <= phase < period):  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"{shown!r}: want {PERIOD_S[0]:g} <= PERIOD <= {PERIOD_S[1]:g} "
                                         "and 0 <= PHASE < PERIOD")
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
          f"{plan.estimate_wall_seconds(trials, jobs) / 60:.1f} min (estimate from the kernel's "
          "rules: 60 s TIME_WAIT, FIN re-sends from 200 ms with backoff, each case's sysctls)")


def cmd_plan(args: argparse.Namespace) -> int:
    trials = plan.trials(spec.load(args.spec))
    print_plan(trials, args.jobs or default_jobs(len(trials)))
    return Exit.OK


def cmd_run(args: argparse.Namespace) -> int:
    exp = spec.load(args.spec)
    trials = plan.trials(exp)
    jobs = args.jobs or default_jobs(len(trials))
    check_outputs(args)
    if args.dry_run:
        print_plan(trials, jobs)
        return Exit.OK
    store.check_writable(Path(args.results) / exp.name)  # before a single container starts

    from harness.lab import engine
    from harness.progress import Progress

    progress = Progress(quiet=args.quiet)
    run_id = uuid.uuid4().hex[:8]
    quick = None
    try:
        client, quick = engine.connect(), engine.connect(engine.QUICK_TIMEOUT_S)
        run = _measure(args, exp, trials, jobs, run_id, client, quick, args.stop, progress)
    except (stopping.Stop, HarnessError) as exc:
        progress.end()
        if quick is not None:  # what a stop in the image build or the probe left
            with contextlib.suppress(HarnessError):
                engine.remove_labelled(quick, run_id)
        if isinstance(exc, stopping.Stop):
            print(f"harness: stopped by {exc}; every container and network of run {run_id} is removed",
                  file=sys.stderr)
            return exc.exit_code
        raise
    progress.note("writing the report")
    return _report(args, run.path)


def _measure(args: argparse.Namespace, exp: spec.Experiment, trials: list[plan.Trial], jobs: int, run_id: str,
             client: Any, quick: Any, stop: threading.Event, progress: Any) -> store.RunDir:
    """Images, the kernel's facts, the run directory, then every trial: the part a stop can cut short."""
    from harness import execute
    from harness.faults.choose import choose
    from harness.lab import facts, images

    imgs = images.ensure(client, progress.note, args.base_image)
    kernel = facts.probe(client, imgs, run_id)
    facts.check_sysctls(client, imgs, run_id, spec.sysctl_fields(exp), exp.source)
    losses = [t.params.final_ack_loss for t in trials if t.params.final_ack_loss.kind != "none"]
    resets = any(t.params.final_ack_reset for t in trials)
    backend, why = (choose(exp.fault_backend, losses, kernel["capabilities"], exp.source, resets)
                    if losses or resets else (None, "no loss asked for"))
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
    ctx = execute.RunContext(client, quick, imgs, exp, run_id, run, progress, backend, stop,
                             threading.Semaphore(setup_slots()), args.close_phase)
    progress.begin(len(trials))
    try:
        execute.run_all(ctx, trials, jobs)
    except (stopping.Stop, HarnessError):
        print(f"harness: what was measured is in {run.path} (`harness report {run.path}` for its tables)",
              file=sys.stderr)
        raise
    finally:
        progress.end()
    return run


def _report(args: argparse.Namespace, path: Path) -> int:
    """The report stage, for `run` and `report` alike: the run directory's raw data analysed again."""
    data = store.load(path)  # a damaged run directory is one line, before the slow imports below
    from harness import report  # matplotlib is slow to import: only where a report is made
    from harness.report import junit, summary

    made = report.regenerate(data)
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
    # An eval-able line: compose.yaml builds the same images FROM $BASE_IMAGE.
    print(f"export BASE_IMAGE={shlex.quote(s.base)}  # base image ({s.base_origin})")
    return Exit.OK


def cmd_clean(args: argparse.Namespace) -> int:
    from harness.lab import engine

    def dead(labels: dict[str, str]) -> bool:
        return args.all or not engine.owner_alive(labels.get(engine.OWNER_LABEL))

    containers, networks = engine.remove_labelled(engine.connect(engine.QUICK_TIMEOUT_S), only=dead)
    whose = "of every harness run" if args.all else "of harness runs that are no longer running"
    print(f"removed {containers} container(s) and {networks} network(s) {whose}")
    return Exit.OK


class _Parser(argparse.ArgumentParser):
    """Bad arguments in one line, like every other bad input (argparse prints its usage first)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


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
    run.add_argument("--jobs", type=jobs, default=0, help=f"trials at once, 1-{MAX_JOBS} (default: by trial count and cores)")
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
    p.add_argument("--jobs", type=jobs, default=0)
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

    cl = sub.add_parser("clean", help="remove the containers and networks of runs that are no longer running "
                                      "(after a crash or SIGKILL)")
    cl.add_argument("--all", action="store_true", help="remove those of every harness run, running ones too")
    cl.set_defaults(func=cmd_clean)
    return ap


def printable(text: str) -> str:
    """Text for the terminal: control characters (an ANSI escape, say) shown, not obeyed."""
    return "".join(c if c in "\n\t" or unicodedata.category(c) not in ("Cc", "Cf")
                   else repr(c)[1:-1] for c in text)


def _internal(exc: BaseException) -> int:
    """A bug: one line on the terminal, the traceback in a file to attach to a report."""
    fd, path = tempfile.mkstemp(prefix="harness-crash-", suffix=".txt")
    with os.fdopen(fd, "w") as f:
        f.write(f"harness {__version__}: {shlex.join(sys.argv)}\n")
        traceback.print_exception(exc, file=f)
    print(f"harness: internal error ({exc.__class__.__name__}: {printable(str(exc))[:200]}); this is a bug "
          f"in the harness, please report it with {path}", file=sys.stderr)
    return Exit.INTERNAL


def _leave(code: int) -> int:
    """Return the exit code; or exit now when a thread is still stuck in a call to an engine
    that stopped answering (the interpreter would wait for it at exit)."""
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def main(argv: list[str] | None = None) -> int:
    with stopping.handled() as stop:
        try:
            args = parser().parse_args(argv)
            args.stop = stop
            code = int(args.func(args))
        except stopping.Stop as exc:
            print(f"harness: stopped by {exc}", file=sys.stderr)
            code = exc.exit_code
        except HarnessError as exc:
            print(f"harness: {printable(str(exc))}", file=sys.stderr)
            if getattr(exc, "logs", ""):
                print(printable(exc.logs), file=sys.stderr)
            code = exc.exit_code
        except Exception as exc:  # noqa: BLE001 - the one place a bug becomes an exit code
            code = _internal(exc)
    return _leave(code)
