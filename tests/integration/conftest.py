"""Integration tests: the real engine, real containers, real kernel. No mocks."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import docker
import pytest

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
EXPERIMENTS = HERE / "experiments"
ARTIFACTS = ROOT / "test-artifacts"  # kept after the run: what a reader would have seen
CLOSE_PHASE = "3.0,1.25"
TIME_WAIT_RANGE = (59.9, 65.2)  # TCP_TIMEWAIT_LEN, rounded up by the timer wheel (at most 5.12 s)


# The long runs, started together as the session starts, so that their minutes of TIME_WAIT pass
# while other tests run: group (the fixture that returns their results) -> run -> (file, options).
GROUPS = {
    "runs": {"paths": (EXPERIMENTS / "paths.yaml", ()),
             # seeded_again also closes on a set phase of the monotonic clock (--close-phase).
             "seeded_again": (EXPERIMENTS / "seeded_again.yaml", ("--close-phase", CLOSE_PHASE))},
    # More trial networks at once than Docker's default address pools hold (about 30).
    "forty": {"forty": (EXPERIMENTS / "forty.yaml", ("--jobs", "40"))},
    # One case's repeats in one lab, each on its own port.
    "shared": {"shared": (EXPERIMENTS / "shared.yaml", ())},
    "catalog": {name: ((ROOT / "experiments" / f"{name}.yaml") if name != "catalog_v6"
                       else EXPERIMENTS / f"{name}.yaml", ("--jobs", str(jobs)))
                # trials at once per run: 21 in all (every group starts at once, and set-ups come
                # in a burst: more made a forty's client miss its 30 s to start), each run's
                # longest trials together
                for name, jobs in (("retries", 2), ("abortive_close", 2), ("client_time_wait", 2),
                                   ("rst_in_time_wait", 2), ("tw_buckets", 1), ("catalog_v6", 1),
                                   ("syn_in_time_wait", 2), ("tw_reuse", 3), ("tw_reuse_delay", 2),
                                   ("other_ends", 2), ("bind_rules", 2))},
    # Servers no one on this team wrote (experiments/servers), and servers that misbehave.
    "servers": {**{p.stem: (p, ()) for p in sorted((ROOT / "experiments" / "servers").glob("*.yaml"))},
                "unread_close": (ROOT / "experiments" / "unread_close.yaml", ()),
                **{p.stem: (p, ()) for p in sorted((EXPERIMENTS / "servers").glob("*.yaml"))}},
}
NEEDED: set[str] = set()  # the groups some selected test asks for


def pytest_itemcollected(item):  # marked as collected, so `-m "not docker"` leaves these out
    if HERE in Path(item.fspath).parents:
        item.add_marker(pytest.mark.docker)


@pytest.hookimpl(trylast=True)  # after -k/-m deselection: NEEDED is what the selected tests ask for
def pytest_collection_modifyitems(items):
    NEEDED.update(g for g in GROUPS if any(g in getattr(item, "fixturenames", ()) for item in items))
    # The kernel lab's VM takes both cores: its tests go last, after every timing on this host.
    items.sort(key=lambda item: item.get_closest_marker("kernellab") is not None)


@pytest.fixture(scope="session")
def engine():
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.fail(f"these tests need a running Docker engine ({exc}); `bash .ci/run` starts one")
    return client


def default_signals() -> None:
    """In the child: the stop signals at their defaults, whatever this test process inherited
    (a job started in the background by a shell has SIGINT ignored, and passes that on)."""
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_DFL)


def harness(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "harness", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=default_signals, **kw)


def run_objects(engine, run_id: str) -> tuple[list, list]:
    """The containers and networks of one run."""
    f = {"label": f"io.harness.run={run_id}"}
    return engine.containers.list(all=True, filters=f), engine.networks.list(filters=f)


def wait_for_line(proc: subprocess.Popen, text: str, timeout: float) -> str:
    """stderr up to the first line containing text (the run's progress goes there)."""
    deadline, seen = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen += line
        if text in line:
            return seen
    raise AssertionError(f"no {text!r} within {timeout} s:\n{seen[-3000:]}")


def run_id(doc: dict) -> str:
    """The id of the run a --json document reports (from its run directory's manifest)."""
    return json.loads((Path(doc["run_dir"]) / "manifest.json").read_text())["run_id"]


def run_id_of(progress: str) -> str:
    """The id in the harness's "run ID: N trials ..." line."""
    return re.search(r"^run ([0-9a-f]{8}):", progress, re.M).group(1)


def ok_trial(results: dict, name: str, case: str) -> dict:
    """The trial of run `name` (a group's results, e.g. the runs fixture) whose case is `case`,
    asserted to have measured ("ok")."""
    _, doc, _ = results[name]
    (t,) = [t for t in doc["trials"] if t["case"] == case]
    assert t["status"] == "ok", f"{case}: {t['why']}\n{t.get('logs', '')}"
    return t


def finish(proc: subprocess.Popen, timeout: float) -> tuple[int, dict | None, str]:
    out, err = proc.communicate(timeout=timeout)
    try:
        doc = json.loads(out) if out.strip() else None
    except json.JSONDecodeError:
        doc = None
    return proc.returncode, doc, err


@pytest.fixture(scope="session")
def images(engine):
    """Build (or find) the lab images once, before runs start in parallel."""
    proc = subprocess.run([sys.executable, "-m", "harness", "images"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture(scope="session", autouse=True)
def started(request, tmp_path_factory):
    """Every group of long runs a selected test needs, started at once."""
    procs: dict[str, dict[str, subprocess.Popen]] = {}
    if NEEDED:
        request.getfixturevalue("images")
        results = tmp_path_factory.mktemp("results")
        procs = {group: {name: harness("run", str(spec), "--json", "--results", str(results / group), *args)
                         for name, (spec, args) in GROUPS[group].items()} for group in NEEDED}
    yield procs
    for p in (p for group in procs.values() for p in group.values()):
        if p.poll() is None:
            p.terminate()
            p.wait()


def results(started: dict, group: str) -> dict[str, tuple[int, dict | None, str]]:
    """A group's runs, once they are over: exit code, JSON document, stderr."""
    done = {name: finish(p, timeout=900) for name, p in started[group].items()}
    for name, (rc, doc, err) in done.items():
        assert doc is not None, f"{name}: no JSON (exit {rc}):\n{err[-3000:]}"
    return done


@pytest.fixture(scope="session")
def runs(started):
    """paths.yaml and seeded_again.yaml: every path the harness runs."""
    return results(started, "runs")


@pytest.fixture(scope="session")
def forty(started):
    return results(started, "forty")


@pytest.fixture(scope="session")
def shared(started):
    return results(started, "shared")


@pytest.fixture(scope="session")
def servers(started):
    """Servers of their own (experiments/servers) and misbehaving ones (experiments/servers here)."""
    return results(started, "servers")


@pytest.fixture(scope="session")
def catalog(started):
    """The catalog's experiments (experiments/*.yaml beyond the book) and catalog_v6.yaml."""
    return results(started, "catalog")


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium (Debian's package), driven by Playwright; no background traffic of its own."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("the report's browser tests need Chromium (apt-get install chromium); `bash .ci/run` installs it")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-quic"])
        yield b
        b.close()
