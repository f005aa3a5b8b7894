"""Subcommands. The only place errors become exit codes."""

from __future__ import annotations

import argparse
import enum
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

from harness import __version__, plan, report, spec, store
from harness.errors import HarnessError


class Exit(enum.IntEnum):
    OK = 0
    TRIALS_FAILED = 1  # the run finished, some trial did not measure
    BAD_INPUT = 2  # experiment file, arguments or run directory
    ENVIRONMENT = 3  # no engine, image build, missing kernel feature
    INTERRUPTED = 130


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
        records = execute.run_all(ctx, trials, jobs)
    except KeyboardInterrupt:
        progress.end()
        print(f"interrupted; what was measured so far is in {run.path}", file=sys.stderr)
        return Exit.INTERRUPTED
    progress.end()
    write_tables(run, exp.name, exp.description, records)
    emit(args, exp.name, run.path, records)
    return Exit.OK if all(r["status"] == "ok" for r in records) else Exit.TRIALS_FAILED


def write_tables(run: store.RunDir, name: str, description: str, records: list[dict[str, Any]]) -> None:
    run.write_text("results.md", report.markdown(name, description, records))
    run.write_text("results.csv", report.stats_csv(records))
    run.write_text("trials.csv", report.trials_csv(records))


def emit(args: argparse.Namespace, name: str, run_dir: Path, records: list[dict[str, Any]]) -> None:
    if args.json:
        trials = [{k: v for k, v in r.items() if k != "logs"} for r in records]
        json.dump({"experiment": name, "run_dir": str(run_dir), "trials": trials}, sys.stdout, indent=2)
        print()
    else:
        print(report.terminal(records))
        print(f"\nrun directory: {run_dir}")


def cmd_report(args: argparse.Namespace) -> int:
    path = Path(args.run_dir)
    manifest, records, _ = store.load(path)
    description = spec.parse((path / store.SPEC).read_text(), str(path / store.SPEC)).description
    run = store.RunDir(path)
    write_tables(run, manifest["experiment"], description, records)
    emit(args, manifest["experiment"], path, sorted(records, key=lambda r: r["index"]))
    return Exit.OK if all(r["status"] == "ok" for r in records) else Exit.TRIALS_FAILED


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
        self.exit(Exit.BAD_INPUT, f"{self.prog}: {message} (see {self.prog} --help)\n")


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
    run.set_defaults(func=cmd_run)

    p = sub.add_parser("plan", help="same as run --dry-run")
    p.add_argument("spec")
    p.add_argument("--jobs", type=int, default=0)
    p.set_defaults(func=cmd_plan)

    rep = sub.add_parser("report", help="tables again from a run directory (no Docker)")
    rep.add_argument("run_dir")
    rep.add_argument("--json", action="store_true")
    rep.set_defaults(func=cmd_report)

    img = sub.add_parser("images", help="build the lab images (the harness also does it when needed)")
    img.add_argument("--force", action="store_true", help="rebuild even if present")
    img.add_argument("--base-image")
    img.set_defaults(func=cmd_images)

    cl = sub.add_parser("clean", help="remove every container and network the harness left")
    cl.set_defaults(func=cmd_clean)

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
