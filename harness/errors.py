"""One root for every error the harness reports, and the exit codes of the whole CLI.

Only cli.py turns errors into exit codes; each error kind carries its code here.
"""

from __future__ import annotations

import enum
import os
import shlex
import signal
import sys
import tempfile
import traceback


class Exit(enum.IntEnum):
    """What `harness` exits with, for every subcommand (README, "Exit codes")."""

    OK = 0  # everything measured, every expectation held, no regression
    FAILED_CHECK = 1  # an expectation failed, or `compare` found a regression
    BAD_INPUT = 2  # experiment file, arguments or run directory
    ENVIRONMENT = 3  # no engine, image build, missing kernel feature, engine gone
    TRIAL_FAILED = 4  # some trial did not measure
    INTERNAL = 70  # a bug in the harness (EX_SOFTWARE); the traceback goes to a file
    HANGUP = 128 + signal.SIGHUP  # 129
    INTERRUPTED = 128 + signal.SIGINT  # 130
    TERMINATED = 128 + signal.SIGTERM  # 143


class HarnessError(Exception):
    """Something the user can act on; str() is the one line they see."""

    exit_code = Exit.ENVIRONMENT
    logs: str = ""  # what the failing programs said, when there is something (LabError)


class SpecError(HarnessError):
    """Bad experiment file: names the file, the field and what is allowed."""

    exit_code = Exit.BAD_INPUT

    def __init__(self, file: str, field: str, problem: str):
        self.file, self.field, self.problem = file, field, problem
        where = f"{file}: {field}: " if field else f"{file}: "
        super().__init__(where + problem)


class UsageError(HarnessError):
    """A bad command-line value that argparse's own checks let through."""

    exit_code = Exit.BAD_INPUT


class EnvironmentProblem(HarnessError):
    """The machine cannot run the experiment: no engine, no netem, no base image..."""

    exit_code = Exit.ENVIRONMENT


class EngineGone(EnvironmentProblem):
    """The engine stopped answering mid-run: nothing more can be asked of it, cleanup included."""


class LabError(HarnessError):
    """A Docker operation failed; carries what was being done and container logs."""

    exit_code = Exit.ENVIRONMENT

    def __init__(self, doing: str, cause: str, logs: str = ""):
        self.doing, self.cause, self.logs = doing, cause, logs
        super().__init__(f"{doing}: {cause}")


class TrialFailed(HarnessError):
    """A trial did not produce its measurements; the run goes on and reports it (its events
    hold the programs' own words)."""

    exit_code = Exit.TRIAL_FAILED


class RunDirError(HarnessError):
    """A run directory is missing, incomplete or of an unknown format version."""

    exit_code = Exit.BAD_INPUT


def bug_report(exc: BaseException) -> str:
    """A bug's traceback, written to a file to attach to a report; returns that file's path."""
    from harness import __version__

    fd, path = tempfile.mkstemp(prefix="harness-crash-", suffix=".txt")
    with os.fdopen(fd, "w") as f:
        f.write(f"harness {__version__}: {shlex.join(sys.argv)}\n")
        traceback.print_exception(exc, file=f)
    return path


def bug_line(exc: BaseException) -> str:
    """What the user reads of a bug: one line, naming its traceback's file."""
    return (f"internal error ({exc.__class__.__name__}: {str(exc)[:200]}); this is a bug in the harness, "
            f"please report it with {bug_report(exc)}")
