"""Subcommands. The only place errors become exit codes."""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import shlex
import sys
import threading
import unicodedata
import uuid
from pathlib import Path
from typing import Any, NoReturn

from tabulate import tabulate

from harness import plan, provenance, spec, stopping, store
from harness.errors import EngineGone, Exit, HarnessError, UsageError, bug_line
from harness.lab.subnets import DEFAULT_POOL, PREFIX
from harness.record import TrialResult, none_ran


def default_jobs(n_labs: int) -> int:
    # Labs mostly wait on kernel timers; ~10 per core keeps the agents' 10 ms polls on time (a
    # case's repeats share one: docs/benchmarks.md, "Study-sized runs").
    return max(1, min(n_labs, 10 * (os.cpu_count() or 1), MAX_JOBS))


MAX_JOBS = 256
PERIOD_S = (0.01, 3600.0)  # --close-phase: the agent sleeps up to one period before the close


def jobs(text: str) -> int:
    """--jobs N: 1 to MAX_JOBS labs at once."""
    if not text.isdigit() or not 1 <= int(text) <= MAX_JOBS:
        raise argparse.ArgumentTypeError(f"{printable(text[:30])!r}: want a whole number from 1 to {MAX_JOBS}")
    return int(text)


def subnet_pool(text: str) -> str:
    """--subnet-pool CIDR: an IPv4 network of /29s for lab networks."""
    try:
        net = ipaddress.IPv4Network(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{printable(text[:40])!r}: want an IPv4 network, e.g. 10.199.0.0/16") from None
    if net.prefixlen > PREFIX:
        raise argparse.ArgumentTypeError(f"{text}: want /{PREFIX} or wider (one /{PREFIX} per lab)")
    return str(net)


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


def print_plan(trials: list[plan.Trial], jobs: int) -> None:
    rows = [[t.id, t.case, t.repeat, t.lab, t.port, f"{t.expected_s:.0f}"] for t in plan.schedule(trials)]
    print(tabulate(rows, ["trial", "case", "repeat", "lab", "port", "expected s"], tablefmt="simple"))
    print(f"\n{len(trials)} trials in {len(plan.labs(trials))} labs, {jobs} labs at a time: about "
          f"{plan.estimate_wall_seconds(trials, jobs) / 60:.1f} min (estimate from the kernel's "
          "rules: 60 s TIME_WAIT, FIN re-sends from 200 ms with backoff, each case's sysctls)")


def cmd_plan(args: argparse.Namespace) -> int:
    exp = spec.load(args.spec)
    trials = plan.into_labs(exp, plan.trials(exp), 0, None)
    print_plan(trials, args.jobs or default_jobs(len(plan.labs(trials))))
    return Exit.OK


def cmd_run(args: argparse.Namespace) -> int:
    from harness import prepare

    exp = spec.load(args.spec)
    refs = prepare.engines_named(args.engine)
    trials = plan.on_engines(plan.trials(exp), [r.name for r in refs], args.engines)
    # The labs as planned before the engines are asked (a netem engine's faults keep a lab a trial).
    jobs = args.jobs or default_jobs(len(plan.labs(plan.into_labs(exp, trials, 0, args.close_phase))))
    check_outputs(args)
    if args.dry_run:
        print_plan(plan.into_labs(exp, trials, 0, args.close_phase), jobs)
        return Exit.OK
    store.check_writable(Path(args.results) / exp.name)  # before a single container starts

    from harness.execute import RunContext
    from harness.progress import Progress

    progress = Progress(quiet=args.quiet)
    run_id = uuid.uuid4().hex[:8]
    ctx = None
    try:
        ready = prepare.prepare(refs, exp, trials, run_id, args.base_image, args.subnet_pool, progress.note)
        seed = int(run_id, 16)  # of the close phases in shared labs: the manifest keeps it, and each trial's
        trials = plan.into_labs(exp, trials, seed, args.close_phase, ready.one_qdisc)
        manifest = prepare.manifest(exp, run_id, ready, jobs, args.engines, args.close_phase, seed)
        run = store.RunDir.create(Path(args.results), exp, trials, manifest)
        ctx = RunContext(ready.engines, exp, run_id, run, progress, args.stop)
        progress.note(f"run {run_id}: {len(trials)} trials in {len(plan.labs(trials))} labs, {jobs} labs at a time "
                      f"-> {run.path}")
        records = _measure(ctx, trials, jobs)
    except (stopping.Stop, HarnessError) as exc:
        progress.end()
        if ctx is None and not isinstance(exc, EngineGone):  # what a stop in the image build or the probe left
            _remove_run(run_id, refs)
        if isinstance(exc, stopping.Stop):
            print(f"harness: stopped by {exc}; every container and network of run {run_id} is removed",
                  file=sys.stderr)
            return exc.exit_code
        raise
    progress.note("writing the report")
    return _report(args, ctx.store.path, records)


def _remove_run(run_id: str, refs: list[Any]) -> None:
    from harness.lab import engine, engines

    for ref in refs:
        with contextlib.suppress(HarnessError):
            engine.remove_labelled(engines.client(ref, engine.QUICK_TIMEOUT_S), run_id)


def _measure(ctx: Any, trials: list[plan.Trial], jobs: int) -> list[TrialResult]:
    """Every trial's record; when the run is cut short, each trial's record says why."""
    from harness import execute

    ctx.progress.begin(len(trials))
    try:
        return execute.run_all(ctx, trials, jobs)
    except (stopping.Stop, HarnessError):
        print(f"harness: what was measured is in {ctx.store.path} (`harness report {ctx.store.path}` for its "
              "tables)", file=sys.stderr)
        raise
    finally:
        ctx.progress.end()


def _report(args: argparse.Namespace, path: Path, records: list[TrialResult] | None = None) -> int:
    """The report stage, for `run` (its trials' records as they ended) and `report` (the records
    derived again from the run directory's raw data)."""
    data = store.load(path)  # a damaged run directory is one line, before the slow imports below
    from harness import report  # matplotlib is slow to import: only where a report is made
    from harness.report import junit, summary

    made = report.regenerate(data, records)
    for warning in made.warnings:
        print(f"harness: warning: {warning}", file=sys.stderr)
    emit(args, data.exp.name, path, made.results)
    print(f"report: {made.html}", file=sys.stderr if args.json else sys.stdout)
    write_outputs(args, junit=lambda: junit.run(data.exp.name, made.results),
                  markdown=lambda: summary.run_markdown(data.exp.name, made.results, str(made.html)))
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
    """A trial that did not measure outweighs a failed expectation: its data are missing. A run where
    no case applied to any kernel measured nothing: the environment's answer, not a success."""
    if results and none_ran(results):
        print("harness: no case of this run applies to its kernels (each lacks a sysctl the case sets: newer "
              "than the kernel, the host's alone, or misspelt); nothing was measured", file=sys.stderr)
        return Exit.ENVIRONMENT
    if any(r.failed for r in results):
        return Exit.TRIAL_FAILED
    return Exit.FAILED_CHECK if any(r.failed_expectations for r in results) else Exit.OK


def emit(args: argparse.Namespace, name: str, run_dir: Path, results: list[TrialResult]) -> None:
    from harness.report import tables

    if args.json:
        trials = [{k: v for k, v in r.to_json().items() if k != "logs"} for r in results]
        json.dump({"experiment": name, "run_dir": str(run_dir), "engines": tables.engine_quality(results),
                   "trials": trials}, sys.stdout, indent=2)
        print()
    else:
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
        sides.append(compare.Side(name, data.manifest, analyze.run(data)))
    base, new = sides
    c = compare.compare(base, new, thresholds)
    if args.json:
        doc = {"baseline": base.name, "new": new.name, "environment_differences": [
            {"what": w, "baseline": a, "new": b} for w, a, b in c.env],
            "rows": [{**row.__dict__, "base": row.base and row.base.__dict__, "new": row.new and row.new.__dict__}
                     for row in c.rows], "only_in_baseline": c.only_base, "only_in_new": c.only_new,
            "not_applicable": [{"case": case, "run": side, "why": why} for case, side, why in c.not_applicable]}
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

    client = engine.connect(engine.QUICK_TIMEOUT_S)
    containers, networks = engine.remove_labelled(client) if args.all else engine.remove_dead(client, unowned=True)
    whose = "of every harness run" if args.all else "of harness runs that are no longer running"
    print(f"removed {containers} container(s) and {networks} network(s) {whose}")
    return Exit.OK


def cmd_setup(args: argparse.Namespace) -> int:
    from harness.machine import setup

    setup.run(lambda line: print(f"setup: {line}", file=sys.stderr, flush=True), args.kernel_lab)
    return Exit.OK


def cmd_doctor(args: argparse.Namespace) -> int:
    from harness.machine import doctor

    print(provenance.describe())
    found = doctor.findings(args.engine)
    for f in found:
        print(printable(f.line()))
    return Exit.ENVIRONMENT if doctor.needs_fixing(found) else Exit.OK


def cmd_kernel_lab(args: argparse.Namespace) -> int:
    from harness.kernellab import lab

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    if args.action == "up":
        rec = lab.up(args.kernel, args.name, not args.no_images, say)
        print(f"kernel lab {rec['name']} is up: kernel {rec['kernel']}, Docker {rec['docker']} "
              f"(context {rec['name']}; {rec['accel']})\n{rec['usage']}")
    elif args.action == "down":
        lab.down(args.name, args.purge, say)
    else:
        rows = [[r["name"], r.get("package", "?"), r["state"], r.get("port", "") if r["state"] == "up" else "",
                 r["data_mb"]] for r in lab.ls()]
        print(tabulate(rows, ["name", "kernel package", "state", "port", "data MB"], tablefmt="simple")
              if rows else "no kernel labs")
    return Exit.OK


def lab_name(text: str) -> str:
    from harness.kernellab.lab import NAME

    if not NAME.match(text):
        raise argparse.ArgumentTypeError(f"{text!r}: letters, digits and _.+- (a Docker context name)")
    return text


class _Parser(argparse.ArgumentParser):
    """Bad arguments in one line, like every other bad input (argparse prints its usage first)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def ci_outputs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--junit-xml", metavar="FILE", help="also write JUnit XML (CI systems show it as test results)")
    p.add_argument("--markdown", metavar="FILE", help="also write a short Markdown summary (e.g. $GITHUB_STEP_SUMMARY)")


def parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="harness", description="TCP teardown experiments on real containers.")
    ap.add_argument("--version", action="version", version=provenance.describe())
    sub = ap.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run an experiment file and write a run directory")
    run.add_argument("spec", help="experiment file (YAML), e.g. experiments/restart.yaml")
    run.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    run.add_argument("--jobs", type=jobs, default=0, help=f"labs at once, 1-{MAX_JOBS} (default: by lab count and cores)")
    run.add_argument("--dry-run", action="store_true", help="print the trials and an estimate; run nothing")
    run.add_argument("--results", default="results", help="where run directories go (default: results)")
    run.add_argument("--base-image", help="base image for the lab images (default: debian:bookworm-slim, "
                                          "or a local one made with mmdebstrap when no registry answers)")
    run.add_argument("--quiet", action="store_true", help="no progress on stderr")
    run.add_argument("--engine", action="append", metavar="NAME|URL",
                     help="a Docker engine to run on: a Docker context (docker context ls; harness kernel-lab up "
                          "makes one) or an address; repeat it for several (default: the environment's engine)")
    run.add_argument("--engines", choices=plan.ENGINE_MODES, default="each",
                     help="with several engines: every trial on each (the kernel becomes a dimension of the "
                          "results; default), or the trials shared among them (shard)")
    run.add_argument("--subnet-pool", type=subnet_pool, default=os.environ.get("HARNESS_SUBNET_POOL", DEFAULT_POOL),
                     metavar="CIDR", help=f"where lab networks get their /29s (default {DEFAULT_POOL}, or "
                                          "HARNESS_SUBNET_POOL); never a subnet the engine or this host uses")
    run.add_argument("--close-phase", type=close_phase, metavar="PERIOD,PHASE",
                     help="start each close at the next instant where the host's CLOCK_MONOTONIC "
                          "mod PERIOD is PHASE (seconds): the kernel's timer wheel then rounds every "
                          "TIME_WAIT alike (docs/findings.md, 'The timer wheel')")
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
                          "baseline's median) the same; never finer than the instrument (repeatable; "
                          "FIGURE times: every figure in seconds)")
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

    st = sub.add_parser("setup", help="make this machine ready: install and start what is missing "
                                      "(a Docker engine, mmdebstrap); does nothing where all is there")
    st.add_argument("--kernel-lab", action="store_true", help="also the tools `harness kernel-lab up` needs")
    st.set_defaults(func=cmd_setup)

    dr = sub.add_parser("doctor", help="what the harness finds here (engine, kernel, fault backends, base image, "
                                       "kernel labs); exit 3 when a run would lack something")
    dr.add_argument("--engine", metavar="NAME|URL", help="a Docker context or an address (default: the "
                                                         "environment's engine)")
    dr.set_defaults(func=cmd_doctor)

    kl = sub.add_parser("kernel-lab", help="a Docker engine on a Debian kernel, in a QEMU VM "
                                           "(docs/kernel-lab.md)")
    kl.set_defaults(func=cmd_kernel_lab)
    klsub = kl.add_subparsers(dest="action", required=True)
    up = klsub.add_parser("up", help="build (once) and boot it; register it as a Docker context")
    up.add_argument("--kernel", default="6.1", help="a Debian kernel package (linux-image-...) or a "
                                                    "version like 6.1 or 6.12: the newest cloud-amd64 one")
    up.add_argument("--name", type=lab_name, help="lab and context name (default: debian-<kernel release>)")
    up.add_argument("--no-images", action="store_true", help="do not copy the harness's images into it")
    down = klsub.add_parser("down", help="stop it and remove its context (its images stay, unless --purge)")
    down.add_argument("name", type=lab_name)
    down.add_argument("--purge", action="store_true", help="also delete its data disk")
    klsub.add_parser("ls", help="the labs and their state")
    return ap


def printable(text: str) -> str:
    """Text for the terminal: control characters (an ANSI escape, say) shown, not obeyed."""
    return "".join(c if c in "\n\t" or unicodedata.category(c) not in ("Cc", "Cf")
                   else repr(c)[1:-1] for c in text)


def _internal(exc: BaseException) -> int:
    """A bug: one line on the terminal, the traceback in a file to attach to a report."""
    print(f"harness: {printable(bug_line(exc))}", file=sys.stderr)
    return Exit.INTERNAL


def _leave(code: int) -> int:
    """Return the exit code; or exit now when a trial's thread is still stuck in a call to an
    engine that stopped answering (the interpreter would wait for it at exit)."""
    execute = sys.modules.get("harness.execute")  # no run, no trial threads
    if execute and any(t.is_alive() and t.name.startswith(execute.THREAD_NAMES) for t in threading.enumerate()):
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
            if exc.logs:
                print(printable(exc.logs), file=sys.stderr)
            code = exc.exit_code
        except Exception as exc:
            code = _internal(exc)
    return _leave(code)
