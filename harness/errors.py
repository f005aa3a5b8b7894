"""One root for every error the harness reports; the CLI turns them into exit codes."""

from __future__ import annotations


class HarnessError(Exception):
    """Something the user can act on; str() is the one line they see."""

    exit_code = 1


class SpecError(HarnessError):
    """Bad experiment file: names the file, the field and what is allowed."""

    exit_code = 2

    def __init__(self, file: str, field: str, problem: str):
        self.file, self.field, self.problem = file, field, problem
        where = f"{file}: {field}: " if field else f"{file}: "
        super().__init__(where + problem)


class EnvironmentProblem(HarnessError):
    """The machine cannot run the experiment: no engine, no netem, no base image..."""

    exit_code = 3


class LabError(HarnessError):
    """A Docker operation failed; carries what was being done and container logs."""

    exit_code = 3

    def __init__(self, doing: str, cause: str, logs: str = ""):
        self.doing, self.cause, self.logs = doing, cause, logs
        super().__init__(f"{doing}: {cause}")


class TrialFailed(HarnessError):
    """A trial did not produce its measurements; the run goes on and reports it."""

    def __init__(self, why: str, logs: str = ""):
        self.why, self.logs = why, logs
        super().__init__(why)


class RunDirError(HarnessError):
    """A run directory is missing, incomplete or of an unknown format version."""

    exit_code = 2
